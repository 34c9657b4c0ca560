#!/usr/bin/env bash
# Cross-builds the usq library, binary and tests and the C library libusq for TARGET with
# Debian's cross gcc, links the C example against it, and runs tests under qemu-user (no
# binfmt_misc needed), with the emulated CPU set up so tract picks the NEON kernels a real
# board uses.
#
#   cross/test.sh aarch64-unknown-linux-gnu          # CI: every cheap test binary + ViT goldens
#   cross/test.sh armv7-unknown-linux-gnueabihf
#   cross/test.sh TARGET --full                      # the whole suite (hours under emulation)
#   cross/test.sh TARGET [cargo test args...]        # e.g. --test it -- cli::; --no-run only builds
#
# See cross/README.md for what runs, the times, and what differs under emulation.
set -euo pipefail

usage() {
    echo "usage: $0 TARGET [cargo test args...]" >&2
    echo "  TARGET: aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf" >&2
    exit 2
}
[[ $# -ge 1 ]] || usage
target=$1
shift

case "$target" in
    aarch64-unknown-linux-gnu)
        gnu=aarch64-linux-gnu
        qemu=qemu-aarch64-static
        # The cross gcc only recommends its C library (crt*.o, libc.so, libdl, libm): named here.
        packages=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
                  libc6-arm64-cross libgcc-s1-arm64-cross qemu-user-static)
        ;;
    armv7-unknown-linux-gnueabihf)
        gnu=arm-linux-gnueabihf
        qemu=qemu-arm-static
        packages=(gcc-arm-linux-gnueabihf binutils-arm-linux-gnueabihf libc6-dev-armhf-cross
                  libc6-armhf-cross libgcc-s1-armhf-cross qemu-user-static)
        ;;
    *) usage ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- Toolchain: every Debian package the build and the runs need (.ci/apt-ensure.sh touches
# apt only when one is missing, and checks each one), and the Rust target.
# shellcheck source=../.ci/apt-ensure.sh
source .ci/apt-ensure.sh
apt_ensure cross "${packages[@]}"
need_files cross "/usr/bin/$gnu-gcc" "/usr/$gnu/lib/Scrt1.o" "/usr/$gnu/lib/crti.o" \
    "/usr/$gnu/lib/libc.so" "/usr/$gnu/lib/libgcc_s.so.1" "/usr/bin/$qemu"
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# --- Linker, C compiler (for build scripts that use the cc crate) and qemu runner, by env only.
triple=$(echo "$target" | tr 'a-z-' 'A-Z_')
runner="$qemu -L /usr/$gnu"
export "CARGO_TARGET_${triple}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${triple}_RUNNER=$runner"
export "CC_${target//-/_}=$gnu-gcc"
export "AR_${target//-/_}=$gnu-ar"
# tests/it/cli.rs spawns the cross-built `usq` through this runner (see tests/it/common.rs).
export USQ_TEST_RUNNER="$runner"
# qemu-user shows the host's /proc/cpuinfo: without these, tract runs its VFPv2 fallback on
# armv7 and SVE2 kernels on aarch64, neither of which a Cortex-A board uses.
case "$target" in
    aarch64-*) export QEMU_CPU=cortex-a72 ;;
    armv7-*) export TRACT_CPU_ARM32_NEON=true ;;
esac

log=target/$target/cross-test.log
mkdir -p "target/$target"

# --- Build (timed separately from the runs).
t0=$(date +%s)
# One cargo invocation for the library's tests and libusq: built apart, the C library's
# dependencies resolve to other feature sets (libc, serde, image, ...) and tract is compiled
# a second time (6 min per target here). libusq is built for the C library's tests, in deps/.
cargo test --release --target "$target" -p usq -p usq-ffi --no-run
# The C example links against the cross-built static library (the link is the check).
"$gnu-gcc" -std=c11 -O2 -Wall -Wextra -Werror -pthread -Iinclude ffi/firmware_loop.c \
    "target/$target/release/deps/libusq_ffi.a" -ldl -lm -Wl,-z,noexecstack -o "target/$target/firmware_loop"
t1=$(date +%s)
echo "cross: build for $target took $((t1 - t0)) s (library, tests, libusq, firmware_loop)" >&2
if [[ ${1:-} == --no-run ]]; then exit 0; fi

# --- Run.
: > "$log"
status=0
# Both packages named, as in the build: with `-p usq` alone the host's proc-macros resolve to
# other features (cbindgen is gone from the graph) and tract is compiled again. usq-ffi adds no
# test to these runs (its lib has none; its C tests are host-only and not selected).
run() { cargo test --release --target "$target" -p usq -p usq-ffi "$@" 2>&1 | tee -a "$log" || status=$?; }
if [[ $# -eq 0 ]]; then
    # Every test binary that does not loop the ViT over whole patch grids (cross/README.md).
    run --lib
    # The int8 linear op's dot-product kernel (ARMv8.2): the CPU above (ARMv8.0) runs its
    # SMULL/SADALP one.
    if [[ $target == aarch64-* ]]; then
        QEMU_CPU=cortex-a76 run --lib -- ops::tests::linear ops::tests::int8_encoder --nocapture
    fi
    run --test it -- preprocess_parity:: manifold_files:: model_contract:: project_ops::
    # The encoder against the NumPy/onnxruntime goldens: one patch descriptor (1e-5) and the
    # six uLPIPS pairs (1e-4), about 100 s of emulation.
    run --test it -- golden::decoding golden::patch_descriptor golden::worst_k golden::ulpips_matches_the_reference
    # Which kernels tract picked under the emulated CPU (NEON expected), shown in the log.
    run --test it -- model_contract::simd_kernels --nocapture
elif [[ $1 == --full ]]; then
    shift
    # The library's whole suite (not libusq's C tests, which need the host's compiler).
    run --lib --test it --test zero_alloc "$@"
else
    run "$@"
fi
t2=$(date +%s)

echo
echo "=== cross/test.sh $target: test summary ==="
# Indented, so that a log reader counting `test result:` lines does not count them twice.
grep -E '^\s+Running |^test result:|^SKIPPED:|^error|^failures:|^    [a-z_0-9:]+$|^matrix-product kernels' "$log" | sed 's/^/  | /' || true
echo "cross: build $((t1 - t0)) s, test run $((t2 - t1)) s, exit status $status (log: $log)"
exit "$status"
