#!/usr/bin/env bash
# The C programs (ffi/tests/c/api_test.c, ffi/firmware_loop.c over a clip) against libusq
# built with AddressSanitizer, the C code built with AddressSanitizer and
# UndefinedBehaviorSanitizer (and LeakSanitizer at exit). Any report fails the run.
#
#   ffi/sanitize.sh [FRAMES]
#
# Two builds of libusq: the shipped one, whose Rust allocations come from its own pool (ASan
# sees the pool as one block, so it checks the C side, the boundary and stack accesses), and
# one without the pool (`--no-default-features --features multithread`), where ASan's
# allocator serves every Rust allocation and so checks the library's heap too.
# FRAMES: frames firmware_loop pushes (default 90, 3 s at 30 fps). Needs the nightly toolchain
# (installed with rustup if missing: -Zsanitizer is unstable) and the C compiler. The
# instrumented build lives in target/asan (a cold build of every crate: most of an hour on 2
# cores; later runs rebuild only usq-ffi).
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-90}
triple=$(rustc -vV | sed -n 's/^host: //p')
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -Iinclude -pthread -Wl,-z,noexecstack)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
r=tests/fixtures/sim_linear_640x480.png i=tests/fixtures/sim_linear_640x480_blur.png
# The golden uLPIPS of this pair (golden.json lists "ref", then "img", then "ulpips").
expected=$(grep -A2 "\"ref\": \"$r\"" tests/golden/golden.json | grep -A1 "\"img\": \"$i\"" |
           sed -n 's/.*"ulpips": \([-0-9.eE+]*\).*/\1/p' | head -1)
[ -n "$expected" ] || { echo "sanitize: no golden uLPIPS for $r, $i" >&2; exit 1; }
clip=$work/clip
mkdir -p "$clip"
if [ -d ../shared/data/hc18/images ]; then
  ln -s "$(cd ../shared/data/hc18/images && pwd)"/6[0-2][0-9]_HC.png "$clip"/
else
  echo "SKIPPED real frames: ../shared/data/hc18 is absent, using the simulated fixture"
  ln -s "$PWD/tests/fixtures/sim_sector_800x540.png" "$clip/a.png"
fi

for variant in pool system; do
  features=()
  [ "$variant" = system ] && features=(--no-default-features --features multithread)
  echo "== libusq ($variant allocator) with AddressSanitizer ($triple, nightly)"
  RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
    cargo +nightly build --release -p usq-ffi "${features[@]}" --target "$triple" --target-dir target/asan
  lib=$work/libusq-$variant.a
  cp "target/asan/$triple/release/libusq_ffi.a" "$lib"
  # The run can fail: the library is instrumented, and a planted use-after-free in C code
  # linked the same way is reported.
  n=$(nm "$lib" 2>/dev/null | grep -c ' U __asan_report_load' || true)
  [ "$n" -gt 0 ] || { echo "sanitize: FAIL: $lib is not instrumented" >&2; exit 1; }
  cat >"$work/planted.c" <<'C'
#include <stdlib.h>
#include "usq.h"
int main(void) { volatile char *p = malloc(8); free((void *)p); return p[0] + (usq_version() == NULL); }
C
  cc "${flags[@]}" -o "$work/planted" "$work/planted.c" "$lib" -ldl -lm
  if "$work/planted" 2>"$work/planted.log" || ! grep -q "AddressSanitizer: heap-use-after-free" "$work/planted.log"; then
    echo "sanitize: FAIL: a planted use-after-free went unreported" >&2; exit 1
  fi
  echo "== $n references to ASan's checks in libusq; a planted use-after-free is reported"
  cc "${flags[@]}" -o "$work/api_test" ffi/tests/c/api_test.c "$lib" -ldl -lm
  cc "${flags[@]}" -o "$work/firmware_loop" ffi/firmware_loop.c "$lib" -ldl -lm
  echo "== api_test under ASan+UBSan ($variant allocator)"
  "$work/api_test" models/tinyusfm-seeded.onnx tests/fixtures/manifold "$r" "$i" "$expected" > "$work/api.log" 2>&1 ||
    { tail -40 "$work/api.log"; exit 1; }
  tail -1 "$work/api.log"
  grep -q "ALL OK" "$work/api.log"
  echo "== firmware_loop under ASan+UBSan ($variant allocator): $frames frames at 30 fps"
  "$work/firmware_loop" "$clip" --frames "$frames" --fps 30 --budget-ms 33 > "$work/fw.log" 2>&1 ||
    { tail -40 "$work/fw.log"; exit 1; }
  grep -E "^stats " "$work/fw.log"
  if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$work/api.log" "$work/fw.log"; then
    echo "sanitize: FAIL: a sanitizer report above" >&2; exit 1
  fi
done
echo "sanitize: PASS (api_test, firmware_loop, pool and system allocator: no ASan, LSan or UBSan report)"
