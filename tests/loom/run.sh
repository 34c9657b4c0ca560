#!/usr/bin/env bash
# The frame ring's state machine (src/engine/slots.rs) under loom and Miri.
#
#   tests/loom/run.sh [PREEMPTIONS] [SEEDS]
#
# loom: every interleaving of producer and worker within PREEMPTIONS preemptions (default 3;
# `none`: every interleaving).
# Miri: the same tests on std threads, under Miri's checks for undefined behaviour and data
# races, once per scheduler seed 0..SEEDS (default 16). Installs the nightly toolchain with its
# miri and rust-src components (rustup) if missing. SEEDS=0: loom only (what CI runs).
set -euo pipefail
cd "$(dirname "$0")"
PREEMPTIONS=${1:-3} SEEDS=${2:-16}
echo "== loom, preemption bound $PREEMPTIONS"
USQ_LOOM_PREEMPTIONS=$PREEMPTIONS RUSTFLAGS="--cfg loom" cargo test --release -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(loom:|test |test result)'
if [ "$SEEDS" = 0 ]; then echo "loom: PASS (Miri not run: SEEDS=0)"; exit 0; fi
echo "== Miri, seeds 0..$SEEDS"
rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri' ||
  rustup toolchain install nightly --profile minimal --component miri --component rust-src
MIRIFLAGS="-Zmiri-many-seeds=0..$SEEDS" cargo +nightly miri test 2>&1 | grep -E '^(test |test result)|error|Undefined'
echo "loom+miri: PASS"
