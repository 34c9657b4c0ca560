"""Fit the task-anchored uLPIPS weights (models/ulpips_weights.json) on training subjects only.

    models/.venv/bin/python -m usq_tools.evaluate.ulpips_weights [--model models/tinyusfm.onnx]

The task anchor: a U-Net segmenter (usq_tools.evaluate.segmenter) trained on HC18 subjects
000-499; one frame of each of --n subjects of 500-599 degraded by the *training* degradations
(usq_tools.train.degrade, 7 families x 4 severities; never the evaluation's distortions, which
the report uses on held-out subjects 600-699); Dice drop = Dice(clean) - Dice(degraded).

The fit: uLPIPS's eight terms (structure and Gram of blocks 2, 4, 6, 10) of every degraded frame
against its clean one, from `usq compare --json`. For every two degraded frames whose Dice drops
differ by >= 0.01 (the report's 2AFC rule; pairs within one frame and across frames), a logistic
loss on the weighted difference of their terms, weights >= 0 (L-BFGS-B with bounds on terms
scaled to unit spread, a small L2 pull towards equal weights), then rescaled so the weights sum
to 2 as the paper's equal 1/4 weights do. Prints the fitting anchor's 2AFC of the reference and
the weighted score beside PSNR; writes the weights with their provenance (--out).
"""
import argparse
import hashlib
import itertools
import json
import os
import tempfile
import time

import cv2
import numpy as np
from scipy.optimize import minimize

from ..data.hc18 import DATA, read_gray, validation_split
from ..export.contract import OUT_BLOCKS
from ..paths import MODELS, ROOT
from ..train.degrade import FAMILIES, degrade
from .segmenter import dice, seg_mask, train_segmenter
from .stats import AFC_MIN_GAP, psnr
from .usq_cli import compare_records

SEVERITIES = (0.25, 0.5, 0.75, 1.0)
FORMAT = "usq-ulpips-weights/1"


def model_label(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}["usq.weights"]


def compare_terms(pairs, model, workers):
    """{image path: (8 terms [s2, g2, s4, g4, ...], reference uLPIPS)} from `usq compare --json`."""
    return {p: ([v for l in r["layers"] for v in (l["structure"], l["gram"])], r["ulpips"])
            for p, r in compare_records(pairs, model, workers).items()}


def pairs_of(drop, frame_of, within_only=False):
    """Index pairs (i, j) whose Dice drops differ by >= AFC_MIN_GAP, as (i, j, +1 if i hurts more)."""
    out = []
    for i, j in itertools.combinations(range(len(drop)), 2):
        if within_only and frame_of[i] != frame_of[j]:
            continue
        if abs(drop[i] - drop[j]) >= AFC_MIN_GAP:
            out.append((i, j, 1.0 if drop[i] > drop[j] else -1.0))
    return np.array(out)


def afc(bad, pairs):
    i, j, y = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    d = bad[i] - bad[j]
    return float(np.mean(np.where(d == 0, 0.5, (np.sign(d) == y).astype(float))))


def fit(terms, pairs, l2=1e-3):
    """Non-negative weights w (sum 2) maximising a logistic pairwise likelihood."""
    scale = terms.std(axis=0) + 1e-12
    x = terms / scale
    i, j, y = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    dx = (x[i] - x[j]) * y[:, None]              # want w . dx > 0
    prior = np.full(x.shape[1], 1.0)

    def f(v):
        z = dx @ v
        loss = np.logaddexp(0.0, -z).mean() + l2 * ((v - prior) ** 2).sum()
        p = -1.0 / (1.0 + np.exp(z))             # d softplus(-z) / dz
        return loss, (dx * p[:, None]).mean(axis=0) + 2 * l2 * (v - prior)

    r = minimize(f, prior.copy(), jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(prior))
    w = r.x / scale
    return 2.0 * w / w.sum(), r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(MODELS, "tinyusfm.onnx"))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(MODELS, "ulpips_weights.json"))
    a = ap.parse_args()
    os.chdir(ROOT)
    t0 = time.time()
    fit_names, names = validation_split(a.n, a.seed)
    predict, n_seg, _ = train_segmenter(a.seed, 8, print, names=fit_names)
    tmp = tempfile.mkdtemp(prefix="usq-ulpw-")
    rows = []   # (frame, family, severity, path, clean path, drop, psnr)
    for f in names:
        clean_path = os.path.join(DATA, "images", f)
        g = read_gray(clean_path)
        mask = seg_mask(f)
        imgs = [(fam, s, np.rint(degrade(g.astype(np.float32), fam, s, np.random.default_rng(
            [a.seed, names.index(f), k]))).astype(np.uint8))
            for k, fam in enumerate(FAMILIES) for s in SEVERITIES]
        preds = predict([g] + [d for _, _, d in imgs])
        d0 = dice(preds[0], mask)
        for (fam, s, d), pr in zip(imgs, preds[1:]):
            p = os.path.join(tmp, f"{os.path.splitext(f)[0]}_{fam}_{s}.png")
            cv2.imwrite(p, d)
            rows.append((f, fam, s, p, clean_path, d0 - dice(pr, mask), psnr(g, d)))
    print(f"{len(rows)} degraded frames of {len(names)} subjects; computing uLPIPS terms", flush=True)
    res = compare_terms([(r[4], r[3]) for r in rows], a.model, a.workers)
    terms = np.array([res[r[3]][0] for r in rows])
    ref = np.array([res[r[3]][1] for r in rows])
    drop = np.array([r[5] for r in rows])
    frame_of = [r[0] for r in rows]
    pairs = pairs_of(drop, frame_of)
    w, opt = fit(terms, pairs)
    weighted = terms @ w
    within = pairs_of(drop, frame_of, within_only=True)
    neg_psnr = -np.array([r[6] for r in rows])
    summary = {k: {"reference": afc(ref, p), "weighted": afc(weighted, p), "psnr": afc(neg_psnr, p), "pairs": len(p)}
               for k, p in (("all pairs", pairs), ("same-image pairs", within))}
    for k, v in summary.items():
        print(f"fitting anchor, {k} ({v['pairs']}): 2AFC reference {v['reference']:.3f}, weighted "
              f"{v['weighted']:.3f}, PSNR {v['psnr']:.3f}", flush=True)
    with open(a.model, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    out = {
        "format": FORMAT,
        "weights": model_label(a.model),
        "layers": [{"block": b, "structure": round(float(w[2 * k]), 6), "gram": round(float(w[2 * k + 1]), 6)}
                   for k, b in enumerate(OUT_BLOCKS)],
        "about": "Task-anchored uLPIPS: sum over layers of structure x its weight + Gram x its weight, reported "
                 "beside the paper's uLPIPS (equal weights 1/4), never in its place. Weights sum to 2 like the "
                 "paper's. Fitted by models/usq_tools/evaluate/ulpips_weights.py on HC18 training subjects "
                 "(van den Heuvel et al. 2018, CC BY 4.0): segmenter on 000-499, anchor frames of 500-599 with the "
                 "training-only degradations; the held-out evaluation is models/REPORT.md.",
        "fitted": {"model_file": os.path.relpath(a.model, ROOT), "model_sha256": sha, "frames": names,
                   "segmenter_frames": n_seg, "families": list(FAMILIES), "severities": list(SEVERITIES),
                   "pairs": len(pairs), "optimizer": str(opt.message), "seconds": round(time.time() - t0, 1),
                   "fitting_anchor_2afc": summary},
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print("weights: " + ", ".join(f"block {l['block']} structure {l['structure']:.3f} gram {l['gram']:.3f}"
                                  for l in out["layers"]) + f"; wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
