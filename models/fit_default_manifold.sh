#!/usr/bin/env bash
# Fits the default NRQ manifold models/nrq/FetalHead.npz with `usq fit-nrq` on the HC18
# fetal-head frames of subjects 000-599 (600-699 are kept for evaluation), read from
# ../shared/data/hc18 at run time. Usage: models/fit_default_manifold.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/tinyusfm.onnx}
hc18=${USQ_SHARED_DATA:-../shared/data}/hc18/images
[ -d "$hc18" ] || { echo "HC18 images not found at $hc18" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir "$root/FetalHead"
for f in "$hc18"/[0-5][0-9][0-9]_*HC.png; do
  ln -s "$(realpath "$f")" "$root/FetalHead/"
done
cargo build --release --quiet
# 12 spread patches per image and 8 components: chosen on training subjects (fit on 000-499,
# NRQ monotonicity on distorted frames of 500-599; models/README.md has the numbers). With 4
# patches per image the farthest-point spread puts 3 of every 4 in the frame's dark corners.
./target/release/usq fit-nrq "$root" --out models/nrq --model "$model" --patches-per-image 12 --components 8
