"""How closely int8 candidates follow the fp32 model: Spearman of their NRQ (and, with
--ulpips, uLPIPS) with fp32's over distorted HC18 frames, the evaluation's distortions.

    models/.venv/bin/python -m usq_tools.quantise.fidelity CANDIDATE.onnx [...] [--split train] [--n 12]

For choosing how to quantise, run it on --split train (subjects 000-599, the default): the
held-out subjects (600-699) are for usq_tools.evaluate.report's report only, so the choice is not
made on the frames it is judged on. Frames, distortions and NRQ settings are the report's (same
seed handling, --max-patches 12, manifold models/nrq).
"""
import argparse
import os
import shutil
import tempfile

import numpy as np

from ..data.hc18 import pick_eval
from ..evaluate.distortions import distorted_items, reference_pairs
from ..evaluate.stats import srho
from ..evaluate.usq_cli import usq_compare, usq_score
from ..paths import ROOT


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="+", help="int8 ONNX models to compare with --fp32")
    ap.add_argument("--fp32", default="models/tinyusfm.onnx")
    ap.add_argument("--manifold", default="models/nrq")
    ap.add_argument("--split", choices=["train", "heldout"], default="train")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20261201, help="frame choice (the report, usq_tools.evaluate.report, uses 20261130)")
    ap.add_argument("--max-patches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ulpips", action="store_true", help="also uLPIPS (about 3x slower)")
    a = ap.parse_args()
    os.chdir(ROOT)
    names = pick_eval(a.split, a.n, np.random.default_rng(a.seed))
    print(f"{len(names)} {a.split} frames: {', '.join(names)}", flush=True)
    tmp = tempfile.mkdtemp(prefix="usq-int8-")
    try:
        _, items, _ = distorted_items(names, a.seed, tmp)
        paths = [it[3] for it in items]
        pairs = reference_pairs(items)
        ref = usq_score(paths, a.fp32, a.manifold, a.max_patches, a.workers)
        ref_u = usq_compare(pairs, a.fp32, a.workers) if a.ulpips else None
        x = np.array([ref[p] for p in paths])
        print(f"fp32 {a.fp32}: NRQ over {len(paths)} frames, range {x.min():.1f} .. {x.max():.1f}", flush=True)
        for c in a.candidates:
            got = usq_score(paths, c, a.manifold, a.max_patches, a.workers)
            y = np.array([got[p] for p in paths])
            d = y - x
            line = (f"{c}: NRQ Spearman {srho(x, y):.4f}, Pearson {np.corrcoef(x, y)[0, 1]:.4f}, "
                    f"diff mean {d.mean():+.2f} sd {d.std():.2f} max |{np.abs(d).max():.2f}|")
            if a.ulpips:
                u = usq_compare(pairs, c, a.workers)
                xu = np.array([ref_u[p[1]] for p in pairs])
                yu = np.array([u[p[1]] for p in pairs])
                line += f"; uLPIPS Spearman {srho(xu, yu):.4f}"
            print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
