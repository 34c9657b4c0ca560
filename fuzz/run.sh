#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from seed corpora made of the project's
# own fixtures, with libFuzzer's memory limit (2 GiB RSS, and the same cap on one allocation),
# so an allocation a hostile header asks for is a finding. Needs the nightly toolchain and
# cargo-fuzz: rustup toolchain install nightly; cargo install cargo-fuzz --locked.
# Findings land in fuzz/artifacts/<target>/; turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus"/{npz_manifold,image_decode,ulpips_weights,pixel_convert,mjpeg_frame,c_api_sequence}
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
for t in npz_manifold image_decode ulpips_weights pixel_convert mjpeg_frame c_api_sequence; do
  echo "== $t: $seconds s"
  cargo +nightly fuzz run "$t" "$corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 | grep -E "^(stat::|Done|==|SUMMARY|.*ERROR)" || true
  [ -z "$(ls -A artifacts/$t 2>/dev/null)" ] || { echo "$t: findings in fuzz/artifacts/$t"; exit 1; }
done
echo "fuzz: no findings"
