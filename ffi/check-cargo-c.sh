#!/usr/bin/env bash
# Checks libusq as cargo-c installs it (`cargo cinstall`), against what the C tests check for
# ffi/install.sh: the soname, the header (identical to include/usq.h), and the C API test
# linked through pkg-config, shared and static. Needs cargo-c (`cargo install cargo-c`, 12.5
# CPU-minutes to build here, so CI runs ffi/install.sh's path and this is run by hand),
# a C compiler, pkg-config and readelf. Usage: ffi/check-cargo-c.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo cinstall --version >/dev/null 2>&1 || { echo "cargo-c is not installed: cargo install cargo-c" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cargo cinstall -p usq-ffi --release --prefix="$prefix" --libdir="$prefix/lib" >"$tmp/cinstall.log" 2>&1 \
  || { cat "$tmp/cinstall.log" >&2; exit 1; }
ls -l "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig"
major=$(sed -n 's/^version = "\([0-9]*\)\..*/\1/p' ffi/Cargo.toml | head -1)
minor=$(sed -n 's/^version = "[0-9]*\.\([0-9]*\)\..*/\1/p' ffi/Cargo.toml | head -1)
want=libusq.so.$([ "$major" = 0 ] && echo "0.$minor" || echo "$major")
readelf -dW "$prefix/lib/libusq.so" | grep -q "SONAME.*\[$want\]" || { echo "FAIL: soname is not $want" >&2; exit 1; }
echo "soname: $want"
# build.rs's -z noexecstack reaches cargo-c's link too (tract-linalg's assembly has no .note.GNU-stack).
readelf -lW "$prefix/lib/libusq.so" | grep GNU_STACK | grep -qv RWE || { echo "FAIL: libusq.so has an executable stack" >&2; exit 1; }
echo "stack: not executable"
cmp "$prefix/include/usq.h" include/usq.h || { diff -u include/usq.h "$prefix/include/usq.h" | head -40; echo "FAIL: the installed header differs from include/usq.h" >&2; exit 1; }
echo "header: identical to include/usq.h"
cat "$prefix/lib/pkgconfig/usq.pc"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
ref=tests/fixtures/sim_linear_640x480.png img=tests/fixtures/sim_linear_640x480_blur.png
expected=$(python3 -c "import json;g=json.load(open('tests/golden/golden.json'));print(next(u['ulpips'] for u in g['ulpips'] if u['ref']=='$ref' and u['img']=='$img'))")
# Shared: -lusq finds libusq.so. Static: the archive itself, with the private libraries cargo-c
# recorded (pkg-config --static), since -lusq would pick the shared library.
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$tmp/api_shared" ffi/tests/c/api_test.c \
  $(pkg-config --cflags --libs usq) -Wl,-rpath,"$prefix/lib" -lm
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$tmp/api_static" ffi/tests/c/api_test.c \
  $(pkg-config --cflags usq) "$prefix/lib/libusq.a" $(pkg-config --static --libs-only-l usq | sed 's/-lusq//') \
  -Wl,-z,noexecstack -lm
for exe in api_shared api_static; do
  out=$("$tmp/$exe" models/tinyusfm-seeded.onnx tests/fixtures/manifold "$ref" "$img" "$expected" 2>&1)
  echo "$out" | grep -q "ALL OK" || { echo "$out" >&2; echo "FAIL: $exe" >&2; exit 1; }
  echo "$exe: ALL OK"
done
readelf -lW "$tmp/api_static" | grep GNU_STACK | grep -qv RWE || { echo "FAIL: api_static has an executable stack" >&2; exit 1; }
ldd "$tmp/api_static" | grep -q libusq && { echo "FAIL: api_static links libusq.so" >&2; exit 1; }
echo "cargo-c: PASS"
