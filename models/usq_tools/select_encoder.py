"""Choose between candidate encoders on training subjects only, before anything touches the
held-out report: the whole evaluation pipeline of usq_tools.evaluate.report with everything fitted on
HC18 subjects 000-499 (NRQ manifold by `usq fit-nrq` with its defaults, U-Net segmenter) and
measured on distorted frames of 12 subjects of 500-599.

    models/.venv/bin/python -m usq_tools.select_encoder NAME=MODEL.onnx [...]
    e.g. shipped=models/tinyusfm.onnx raw=/tmp/raw.onnx

Prints per candidate: how many families reach the monotonicity targets (NRQ median Spearman
<= -0.9, uLPIPS >= 0.9) with the medians, and the task anchor (Spearman with the Dice drop and
2AFC) of uLPIPS and NRQ beside PSNR and SSIM. Writes the numbers to --out (JSON).
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

from .data.hc18 import FIT_BELOW, validation_split
from .evaluate.distortions import FAMILIES, distorted_items
from .evaluate.segmenter import dice_drops, segment_dices, train_segmenter
from .evaluate.stats import nrq_target_met, psnr, severity_rhos, srho, ssim, two_afc, ulpips_target_met
from .evaluate.usq_cli import link_fit_root, run, ulpips_scores, usq_score
from .paths import ROOT, USQ


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="+", help="NAME=MODEL.onnx")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-patches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/usq-select")
    ap.add_argument("--out", default="/tmp/usq-select/selection.json")
    a = ap.parse_args()
    os.chdir(ROOT)
    os.makedirs(a.work, exist_ok=True)
    cands = dict(c.split("=", 1) for c in a.candidates)
    fit, names = validation_split(a.n, a.seed)
    print("validation frames:", ", ".join(names), flush=True)

    clean, items, imgs = distorted_items(names, a.seed, tempfile.mkdtemp(prefix="frames-", dir=a.work))
    predict, n_train, _ = train_segmenter(a.seed, 8, print, names=fit)
    dices, clean_dice = segment_dices(predict, items, imgs)
    print(f"segmenter on {n_train} frames of 000-{FIT_BELOW - 1}; validation clean Dice "
          f"{np.mean(list(clean_dice.values())):.3f}", flush=True)
    root = link_fit_root(os.path.join(a.work, "fit_root"), fit)

    dist, drop, groups = dice_drops(items, dices, clean_dice)

    def anchor(bad):
        acc, _ = two_afc(drop, np.asarray(bad, np.float64), groups)
        return {"spearman": srho(drop, bad), "afc": acc}

    def monotone(vals):
        return {fam: severity_rhos(items, names, fam, vals)["median"] for fam in FAMILIES}

    out = {"frames": names, "psnr": anchor([-psnr(clean[f], imgs[p]) for f, _, _, p in dist]),
           "ssim": anchor([-ssim(clean[f], imgs[p]) for f, _, _, p in dist]), "candidates": {}}
    print(f"PSNR anchor {out['psnr']}, SSIM anchor {out['ssim']}", flush=True)
    for name, model in cands.items():
        t0 = time.time()
        man = os.path.join(a.work, "manifold_" + name)
        run([USQ, "fit-nrq", root, "--out", man, "--model", model])
        nrq = usq_score([it[3] for it in items], model, man, a.max_patches, a.workers)
        ulp = ulpips_scores(items, model, a.workers)
        r = {"nrq_monotone": monotone(nrq), "ulpips_monotone": monotone(ulp),
             "nrq_anchor": anchor([-nrq[p] for _, _, _, p in dist]),
             "ulpips_anchor": anchor([ulp[p] for _, _, _, p in dist]), "seconds": time.time() - t0}
        out["candidates"][name] = r
        nm = sum(nrq_target_met(v) for v in r["nrq_monotone"].values())
        um = sum(ulpips_target_met(v) for v in r["ulpips_monotone"].values())
        print(f"{name} ({model}, {r['seconds']:.0f} s): NRQ monotone {nm}/9 "
              + " ".join(f"{k} {v:+.2f}" for k, v in r["nrq_monotone"].items())
              + f"; uLPIPS monotone {um}/9; anchor uLPIPS rho {r['ulpips_anchor']['spearman']:+.3f} "
              f"2AFC {r['ulpips_anchor']['afc']:.3f}; NRQ rho {r['nrq_anchor']['spearman']:+.3f} "
              f"2AFC {r['nrq_anchor']['afc']:.3f}", flush=True)
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
