#!/usr/bin/env bash
# Installs libusq as a C library: PREFIX/include/usq.h, PREFIX/lib/libusq.a,
# PREFIX/lib/libusq.so.<soname version> (+ libusq.so), PREFIX/lib/pkgconfig/{usq,usq-static}.pc.
#   ffi/install.sh PREFIX            builds (cargo build --release -p usq-ffi) and installs
#   ffi/install.sh PREFIX LIBDIR     installs libusq_ffi.a / libusq_ffi.so already built in LIBDIR
# (cargo names them after the Rust crate, usq_ffi; installed they are libusq).
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
cp "$libs/libusq_ffi.a" "$prefix/lib/libusq.a"
cp "$libs/libusq_ffi.so" "$prefix/lib/libusq.so.$version"
# The soname (ffi/build.rs): the major version, or 0.y while the major is 0.
abi=$(echo "$version" | awk -F. '{print ($1 == 0) ? $1 "." $2 : $1}')
ln -sf "libusq.so.$version" "$prefix/lib/libusq.so.$abi"
ln -sf "libusq.so.$abi" "$prefix/lib/libusq.so"
for pc in usq usq-static; do
  sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$here/$pc.pc.in" > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed libusq $version in $prefix"
