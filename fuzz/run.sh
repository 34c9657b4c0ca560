#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer's memory limit (2 GiB
# RSS, 6 GiB for onnx_model's corpus of whole models; 2 GiB for one allocation), so an
# allocation a hostile header asks for is a finding. Needs the nightly toolchain and
# cargo-fuzz: rustup toolchain install nightly; cargo install cargo-fuzz --locked.
#
# Corpora: fuzz/corpus/<target>/ (committed: small seeds and what earlier runs kept; `cargo
# test` replays every one of them through the same harness, tests/it/fuzz_corpus.rs), plus the
# project's fixtures and shipped files as seeds. New inputs go to a scratch folder; MERGE=1
# then merges into fuzz/corpus/<target>/ only those that add coverage and are at most
# MERGE_MAX_LEN bytes (default 4 KiB, 16 KiB for npz_manifold: longer ones are cut there, so
# the committed corpus stays small; image_decode kept 249 inputs, 770 KB, after 15 minutes).
# Findings (crash-, leak-, oom-, timeout-: an input running past 60 s is a hang) land in
# fuzz/artifacts/<target>/; turn each into a regression test. A slow-unit- file (an input past
# 10 s, often only a loaded machine) is listed, not failed on. Every target runs; the exit
# status says whether any had findings. TARGETS="a b" runs only those.
#
# QUIET=Q (seconds) stops a target early once its edge coverage (libFuzzer's `cov:`) has not
# grown for Q seconds: the long runs of docs/reliability.md ("until it stops finding new
# coverage") use a large SECONDS and QUIET. Q counts the fuzzer's own CPU seconds (user +
# system, all its threads, from /proc), not the clock's: on a shared machine a starved fuzzer
# finds nothing because it does not run, which is not a plateau. Each target then prints a
# `plateau:` line: its final coverage, when it last grew (wall and fuzzer CPU) and how long the
# run was. `nice` orders processes only within one autogroup (one session): a fuzzer started
# with setsid competes as an equal with other sessions whatever its nice value, and one whose
# autogroup is niced (/proc/PID/autogroup) beside busy sessions can starve past libFuzzer's
# wall-clock -timeout, a false `timeout-` finding: run such an input alone before believing it.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
all="npz_manifold image_decode ulpips_weights pixel_convert mjpeg_frame c_api_sequence y4m_clip dicom_cine dicom_encapsulated onnx_model"
targets=${TARGETS:-$all}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# shellcheck disable=SC2086 # one folder per target
for t in $all; do mkdir -p "$scratch/$t" "$scratch/seeds/$t"; done
cp ../tests/fixtures/manifold/*.npz ../models/nrq/*.npz "$scratch/seeds/npz_manifold/"
cp ../tests/fixtures/*.png ../tests/fixtures/*.jpg ../tests/fixtures/*.tif "$scratch/seeds/image_decode/"
# onnx_model: the shipped int8 model (5.4 MB; the other targets' inputs stay under 1 MiB), and
# the 3 KB contract fixture, a whole valid model the mutator walks a thousand times faster.
cp ../models/tinyusfm-int8.onnx ../tests/fixtures/tiny_contract.onnx "$scratch/seeds/onnx_model/"
found=""
# CPU seconds the running fuzz binary of target $1 has used; 0 before it has started.
cpu_s() {
  local p
  p=$(pgrep -f "release/$1 " | head -1) || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) / hz) }' "/proc/$p/stat" 2>/dev/null || echo 0
}
for t in $targets; do
  echo "== $t: $seconds s"
  max_len=1048576 rss=2048
  # onnx_model's inputs are whole models (the int8 one is 5.4 MB) and libFuzzer keeps its corpus
  # in memory: 770 of them passed 2 GiB in 33 minutes (2026-12-07), an out-of-memory report from
  # the fuzzer's own corpus, not from an input. Its process gets 6 GiB; one allocation is still
  # capped at 2 GiB (-malloc_limit_mb), which is what finds a hostile size in a model.
  [ "$t" = onnx_model ] && max_len=8388608 rss=6144
  cargo +nightly fuzz build "$t" 2>&1 | grep -E "^error" || true
  log="$scratch/$t.log"
  cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" "$scratch/seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss" -malloc_limit_mb=2048 -max_len="$max_len" \
    -timeout=60 -print_final_stats=1 >"$log" 2>&1 &
  pid=$!
  began=$(date +%s) grew=$(date +%s) cov=0 cpu=0 cpu_grew=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    c=$(cpu_s "$t")
    [ "$c" -gt "$cpu" ] && cpu=$c
    now=$(grep -aoE "cov: [0-9]+" "$log" | tail -1 | cut -d' ' -f2 || true)
    if [ -n "$now" ] && [ "$now" -gt "$cov" ]; then cov=$now grew=$(date +%s) cpu_grew=$cpu; fi
    if [ -n "${QUIET:-}" ] && [ $(( cpu - cpu_grew )) -ge "$QUIET" ]; then
      # libFuzzer prints its final statistics on SIGINT.
      pkill -INT -f "release/$t " || true
      wait "$pid" || true
      break
    fi
  done
  wait "$pid" 2>/dev/null || true
  grep -aE "^(stat::|Done|==|SUMMARY|.*ERROR)" "$log" || true
  end=$(date +%s)
  first=$(grep -aoE "INITED cov: [0-9]+" "$log" | head -1 | cut -d' ' -f3 || true)
  echo "plateau: $t cov ${first:-?} -> $cov, last grew at $(( grew - began )) s of $(( end - began )) s" \
    "(fuzzer CPU: at $cpu_grew s of $cpu s)"
  slow=$(find "artifacts/$t" -name 'slow-unit-*' 2>/dev/null | wc -l)
  [ "$slow" -eq 0 ] || echo "$t: $slow slow inputs (over 10 s) in fuzz/artifacts/$t"
  if [ -n "$(find "artifacts/$t" -type f ! -name 'slow-unit-*' 2>/dev/null)" ]; then
    echo "$t: FINDINGS in fuzz/artifacts/$t"
    found="$found $t"
  fi
  if [ "${MERGE:-0}" = 1 ]; then
    before=$(find "corpus/$t" -type f | wc -l)
    # An npz's zip directory is at its end: cut at 4 KiB, most lose it.
    merge_len=4096
    [ "$t" = npz_manifold ] && merge_len=16384
    cargo +nightly fuzz run "$t" "corpus/$t" "$scratch/$t" -- -merge=1 \
      -max_len="${MERGE_MAX_LEN:-$merge_len}" -rss_limit_mb=2048 -malloc_limit_mb=2048 2>&1 |
      grep -E "^(MERGE-OUTER|==|SUMMARY|.*ERROR)" || true
    echo "$t: corpus/$t $before -> $(find "corpus/$t" -type f | wc -l) inputs"
  fi
done
[ -z "$found" ] || { echo "fuzz: findings in:$found"; exit 1; }
echo "fuzz: no findings"
