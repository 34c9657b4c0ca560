#!/usr/bin/env bash
# Every command that takes --threads, at 1 and 2 threads, interleaved (1, 2, 1, 2, ...), on both
# shipped models: issue 17 asks that 2 threads be faster than 1 for each. Wall-clock seconds of
# the whole command (model load included: what a user waits for), the median of ROUNDS runs;
# `usq live` is timed by what its summary reports instead (it plays at the clip's rate).
#
#   cargo build --release && bash benches/threads.sh [ROUNDS]    # default 3 rounds, ~6 minutes
#
# Frames: HC18 subjects 600-629 from ../shared/data when it is there (the held-out ones, as the
# v4l2 end-to-end test plays them), else the simulator's fixtures. Run on a quiet machine: a
# build or a fuzzer on the other core changes the 2-thread numbers most.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
usq=./target/release/usq
[ -x "$usq" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

frames="$work/frames"
mkdir -p "$frames" "$work/fit/FetalHead"
if [ -d ../shared/data/hc18/images ]; then
  cp ../shared/data/hc18/images/6[0-2][0-9]_HC.png "$frames"/
  src="HC18 subjects 600-629"
else
  for i in 1 2 3 4; do for f in tests/fixtures/sim_*.png; do cp "$f" "$frames/$i-$(basename "$f")"; done; done
  src="the simulator's fixtures"
fi
one=$(ls "$frames"/*.png | head -1)
two=$(ls "$frames"/*.png | sed -n 2p)
ls "$frames"/*.png | head -16 | xargs -I{} cp {} "$work/fit/FetalHead/"
echo "frames: $(ls "$frames" | wc -l) of $src; rounds: $rounds; $(nproc) CPUs"

# name|command (THREADS and MODEL are filled in per run)
jobs=(
  "score, one frame (28 patches)|$usq score $one --model MODEL --threads THREADS --json"
  "score, a folder of $(ls "$frames" | wc -l) frames (4 patches each)|$usq score $frames --model MODEL --max-patches 4 --threads THREADS --json"
  "compare, one pair|$usq compare $one $two --model MODEL --threads THREADS --json"
  "fit-nrq, 16 frames|$usq fit-nrq $work/fit --out $work/out --model MODEL --holdout 0 --threads THREADS"
)
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

printf '%-44s %-6s %10s %10s %7s\n' "command" "model" "1 thread" "2 threads" "ratio"
for model in int8 fp32; do
  path=models/tinyusfm-$model.onnx
  [ "$model" = fp32 ] && path=models/tinyusfm.onnx
  for job in "${jobs[@]}"; do
    name=${job%%|*}
    cmd=${job#*|}
    cmd=${cmd//MODEL/$path}
    : > "$work/t1"; : > "$work/t2"
    for _ in $(seq "$rounds"); do
      for t in 1 2; do
        began=$(date +%s%N)
        ${cmd//THREADS/$t} > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
        echo $(( ($(date +%s%N) - began) / 1000000 )) >> "$work/t$t"
      done
    done
    a=$(median < "$work/t1"); b=$(median < "$work/t2")
    printf '%-44s %-6s %8.2f s %8.2f s %6.2fx\n' "$name" "$model" "$(echo "$a/1000" | bc -l)" \
      "$(echo "$b/1000" | bc -l)" "$(echo "$b/$a" | bc -l)"
  done
  # live: the clip at 10 fps for 60 frames; what a second thread buys is patches per frame
  # at the same budget, so that is the figure (and the latency beside it).
  for t in 1 2; do
    "$usq" live --input "$frames" --fps 10 --frames 60 --model "$path" --threads "$t" --json \
      > "$work/live$t.jsonl" 2> "$work/live$t.err" || { cat "$work/live$t.err" >&2; exit 1; }
  done
  for t in 1 2; do
    patches=$(grep -o '"patches_scored":[0-9]*' "$work/live$t.jsonl" | cut -d: -f2 | median)
    latency=$(grep -o '"latency_ms":[0-9.]*' "$work/live$t.jsonl" | cut -d: -f2 | median)
    misses=$(grep -c '"deadline_missed":true' "$work/live$t.jsonl" || true)
    results=$(wc -l < "$work/live$t.jsonl")
    echo "live, 60 frames at 10 fps, $t thread(s), $model: $results results, median $patches patches a frame, latency p50 $latency ms, $misses over budget"
  done
done
