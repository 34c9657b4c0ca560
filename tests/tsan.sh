#!/usr/bin/env bash
# The frame ring and the live engine under ThreadSanitizer: the ring's and the slots' unit
# tests (producer and consumer threads), the project ops' split of one op over a pool of
# threads (attention heads, linear row blocks written through `Disjoint` ranges), and the
# engine's integration tests (the real encoder on a worker thread, a producer thread pushing,
# results read on another). Any data race report fails the run.
#
#   tests/tsan.sh
#
# Needs the nightly toolchain with rust-src (installed with rustup if missing): the standard
# library is rebuilt with the sanitizer (-Zbuild-std), else TSan reports races inside std that
# are not there. The instrumented build lives in target/tsan (cold: most of an hour on 2
# cores).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' || rustup component add rust-src --toolchain nightly
export RUSTFLAGS="-Zsanitizer=thread -Cforce-frame-pointers=yes"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
run=(cargo +nightly test -Zbuild-std --release --target "$triple" --target-dir target/tsan -p usq)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== ring and slots unit tests, and the ops' split over a pool of threads, under ThreadSanitizer"
"${run[@]}" --lib -- engine:: ops::tests::attention_heads_on_several_threads_match_one \
    ops::tests::linear_rows_on_several_threads_match_one ops::tests::linear_f32_rows_on_several_threads_match_one \
    2>&1 | tee "$log"
echo "== engine integration tests under ThreadSanitizer"
"${run[@]}" --test it engine:: 2>&1 | tee -a "$log"
if grep -q "WARNING: ThreadSanitizer" "$log"; then echo "tsan: FAIL: a report above" >&2; exit 1; fi
# The run could have failed: the test binaries carry TSan's checks.
for b in target/tsan/"$triple"/release/deps/usq-* target/tsan/"$triple"/release/deps/it-*; do
  [ -x "$b" ] || continue
  # grep reads all of nm's output (no -q): with pipefail, nm killed by SIGPIPE on a large
  # binary would fail the check falsely.
  nm "$b" 2>/dev/null | grep '__tsan_read' > /dev/null || { echo "tsan: FAIL: $b is not instrumented" >&2; exit 1; }
done
echo "tsan: PASS ($(grep -c '^test .* ok$' "$log") tests, no data race reported)"
