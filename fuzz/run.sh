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
mkdir -p "$corpus"/{npz_manifold,image_decode,ulpips_weights}
cp ../tests/fixtures/manifold/*.npz ../models/nrq/*.npz "$corpus/npz_manifold/"
cp ../tests/fixtures/*.png ../tests/fixtures/*.jpg ../tests/fixtures/*.tif "$corpus/image_decode/"
cp ../models/ulpips_weights.json "$corpus/ulpips_weights/"
for t in npz_manifold image_decode ulpips_weights; do
  echo "== $t: $seconds s"
  cargo +nightly fuzz run "$t" "$corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 | grep -E "^(stat::|Done|==|SUMMARY|.*ERROR)" || true
  [ -z "$(ls -A artifacts/$t 2>/dev/null)" ] || { echo "$t: findings in fuzz/artifacts/$t"; exit 1; }
done
echo "fuzz: no findings"
