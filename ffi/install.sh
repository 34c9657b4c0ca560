#!/usr/bin/env bash
# Installs libusq as a C library: PREFIX/include/usq.h, PREFIX/lib/libusq.a,
# PREFIX/lib/libusq.so.0 (+ libusq.so), PREFIX/lib/pkgconfig/{usq,usq-static}.pc.
#   ffi/install.sh PREFIX            builds (cargo build --release -p usq-ffi) and installs
#   ffi/install.sh PREFIX LIBDIR     installs libusq.a / libusq.so already built in LIBDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1
libs=${2:-}
if [ -z "$libs" ]; then
  (cd "$here/.." && cargo build --release -p usq-ffi)
  libs="$here/../target/release"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
cp "$here/../include/usq.h" "$prefix/include/"
cp "$libs/libusq.a" "$prefix/lib/"
cp "$libs/libusq.so" "$prefix/lib/libusq.so.$version"
ln -sf "libusq.so.$version" "$prefix/lib/libusq.so.0"
ln -sf "libusq.so.0" "$prefix/lib/libusq.so"
for pc in usq usq-static; do
  sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/$pc.pc.in" > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed libusq $version in $prefix"
