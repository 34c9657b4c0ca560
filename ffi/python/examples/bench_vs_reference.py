"""Per-frame time of usq from Python against the paper-semantics NumPy reference on onnxruntime
(models/reference), both on the shipped fp32 model and manifolds, one thread each, the same frame.

    python examples/bench_vs_reference.py [--frame tests/fixtures/sim_sector_800x540.png] [--iterations 10] [--threads 1]

Needs `pip install ./ffi/python` and `pip install -e models` (onnxruntime, NumPy, OpenCV).
Prints p50 and mean per frame (whole-frame NRQ, and a uLPIPS pair) and the ratio.
"""
import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

import usq
import usq_reference as ref

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def timed(f, n):
    f()  # warm-up
    t = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t), statistics.mean(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frame", default=os.path.join(REPO, "tests/fixtures/sim_sector_800x540.png"))
    ap.add_argument("--other", default=os.path.join(REPO, "tests/fixtures/sim_sector_800x540_jpeg.png"))
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    model = os.path.join(REPO, "models", "tinyusfm.onnx")
    gray, other = ref.load_gray(a.frame), ref.load_gray(a.other)

    enc = ref.Encoder(model, batch=4)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
    enc.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    manifolds = ref.load_manifold_set(os.path.join(REPO, "models", "nrq"))
    scorer = usq.Scorer(threads=1)

    rows = [
        ("NRQ, whole frame", lambda: scorer.nrq(gray), lambda: ref.nrq(enc, gray, manifolds)),
        ("uLPIPS, one pair", lambda: scorer.ulpips(gray, other), lambda: ref.ulpips(enc, gray, other)),
    ]
    print(f"frame {os.path.relpath(a.frame, REPO)} {gray.shape[1]}x{gray.shape[0]}, {a.iterations} iterations, "
          f"onnxruntime {ort.__version__} intra_op {a.threads}, usq {usq.__version__} (fp32, 1 thread)")
    for name, ours, theirs in rows:
        (p50_u, mean_u), (p50_r, mean_r) = timed(ours, a.iterations), timed(theirs, a.iterations)
        print(f"{name}: usq-python p50 {p50_u:.1f} ms (mean {mean_u:.1f}), reference p50 {p50_r:.1f} ms "
              f"(mean {mean_r:.1f}), reference / usq = {p50_r / p50_u:.2f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
