#!/usr/bin/env bash
# The Python package end to end as a user gets it: a fresh virtual environment,
# `pip install ./ffi/python` (maturin from PyPI builds the extension), then its pytest suite:
# parity with the goldens and with the NumPy reference run live (models/reference), numpy
# arrays, threads, exceptions, and the Dask example on a LocalCluster of two workers.
# Usage: ffi/python/test.sh [VENV_DIR]   (default: a temporary one, removed after)
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/apt-ensure.sh
# venv needs ensurepip, which Debian ships apart from python3.
apt_ensure python-package python3 python3-venv
venv=${1:-}
if [ -z "$venv" ]; then
  venv=$(mktemp -d)
  trap 'rm -rf "$venv"' EXIT
fi
python3 -m venv "$venv"
py=$venv/bin/python
"$py" -m pip install -q --upgrade pip
# The test extras, the distributed example's packages and the reference's (onnxruntime, OpenCV).
"$py" -m pip install -q "pytest>=7" "pillow>=9" "dask[distributed]>=2023.1" "pandas>=1.5" "pyarrow>=12" "numpy>=1.26,<3" "onnxruntime>=1.17" "opencv-python-headless>=4.8"
"$py" -m pip install -q -e models --no-deps
# The repository's target/ so that the crates `cargo test` built are reused.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} "$py" -m pip install ./ffi/python
# Run from elsewhere: `import usq` must find the installed package, not the source folder.
(cd "$venv" && "$py" -m pytest -q "$OLDPWD/ffi/python/tests")
