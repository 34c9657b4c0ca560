#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from seed corpora made of the project's
# own fixtures, with libFuzzer's memory limit (2 GiB RSS, and the same cap on one allocation),
# so an allocation a hostile header asks for is a finding. Needs the nightly toolchain and
# cargo-fuzz: rustup toolchain install nightly; cargo install cargo-fuzz --locked.
# Findings land in fuzz/artifacts/<target>/; turn each into a regression test.
# TARGETS="a b" runs only those.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
all="npz_manifold image_decode ulpips_weights pixel_convert mjpeg_frame c_api_sequence y4m_clip dicom_cine onnx_model"
targets=${TARGETS:-$all}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# shellcheck disable=SC2086 # one folder per target
for t in $all; do mkdir -p "$corpus/$t"; done
cp ../tests/fixtures/manifold/*.npz ../models/nrq/*.npz "$corpus/npz_manifold/"
cp ../tests/fixtures/*.png ../tests/fixtures/*.jpg ../tests/fixtures/*.tif "$corpus/image_decode/"
cp ../models/ulpips_weights.json "$corpus/ulpips_weights/"
# pixel_convert: a 32-byte header (format, width, height, stride, roi x, y, w, h as u32 LE)
# and the bytes: a 200x150 Gray8 frame of zeros with a 100x100 region at (10, 10).
{ printf '\x01\0\0\0\xc8\0\0\0\x96\0\0\0\xc8\0\0\0\x0a\0\0\0\x0a\0\0\0\x64\0\0\0\x64\0\0\0'
  head -c 30000 /dev/zero; } > "$corpus/pixel_convert/gray8_200x150"
# mjpeg_frame: the fixture JPEG, behind its selector byte (5: MJPG at 640x480).
{ printf '\x05'; cat ../tests/fixtures/sim_linear_640x480.jpg; } > "$corpus/mjpeg_frame/sim_640x480"
# c_api_sequence: a few call sequences (see the target for the byte layout); libFuzzer grows them.
printf '\x01\x40\x01\x40\x01\x00\x01\x00\x00\x00' > "$corpus/c_api_sequence/producer"
head -c 400 ../tests/fixtures/sim_small_200x150.png > "$corpus/c_api_sequence/bytes"
# y4m_clip: a 16x8 4:2:0 stream of two frames.
{ printf 'YUV4MPEG2 W16 H8 F30:1 Ip A1:1 C420jpeg\n'
  printf 'FRAME\n'; head -c 192 /dev/zero
  printf 'FRAME\n'; head -c 128 /dev/zero | tr '\0' '\310'; head -c 64 /dev/zero
} > "$corpus/y4m_clip/two_frames"
# dicom_cine: 8 parameter bytes (rows, columns, frames, depth/samples, frame time, bits,
# window, transfer syntax), a patch count, then pixel bytes (see the target).
{ printf '\x1f\x27\x02\x00\x10\x00\x01\x00\x00'; head -c 400 ../tests/fixtures/sim_small_200x150.png; } > "$corpus/dicom_cine/gray8"
{ printf '\x0f\x0f\x01\x03\x05\x00\x00\x01\x00'; head -c 300 /dev/urandom; } > "$corpus/dicom_cine/rgb16"
# onnx_model: the shipped int8 model (5.4 MB; the other targets' inputs stay under 1 MiB).
cp ../models/tinyusfm-int8.onnx "$corpus/onnx_model/"
for t in $targets; do
  echo "== $t: $seconds s"
  max_len=1048576
  [ "$t" = onnx_model ] && max_len=8388608
  cargo +nightly fuzz run "$t" "$corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 2>&1 | grep -E "^(stat::|Done|==|SUMMARY|.*ERROR)" || true
  [ -z "$(ls -A artifacts/$t 2>/dev/null)" ] || { echo "$t: findings in fuzz/artifacts/$t"; exit 1; }
done
echo "fuzz: no findings"
