"""Write tests/golden/hc18.json: uLPIPS and NRQ goldens on REAL HC18 fetal-head frames
(../shared/data/hc18, read at run time only; the repo holds numbers, never the images).
Same record formats as golden.json's "ulpips" and "nrq" lists; paths are repo-relative
("../shared/data/hc18/images/<file>"), so the Rust tests skip when the shared data is absent.

    models/.venv/bin/python -m usq_reference.make_hc18_goldens
"""
import json
import os
import sys

import cv2
import numpy as np
import onnxruntime
import usq_reference as ref
from usq_reference import make_goldens as mg   # abs_, sha256, ulpips_record, nrq_records, MANIFOLD, PUBLISHED

IMG = "../shared/data/hc18/images"
hc = lambda name: f"{IMG}/{name}.png"

# 4 same-subject pairs (first vs second acquisition), 4 different-subject pairs (600..699)
ULPIPS_PAIRS = [(hc(f"{s}_HC"), hc(f"{s}_2HC")) for s in ("010", "014", "017", "019")] + \
               [(hc(f"{a}_HC"), hc(f"{b}_HC")) for a, b in ((600, 601), (620, 640), (650, 651), (680, 699))]
NRQ_FRAMES = [hc(f"{n}_HC") for n in range(600, 680, 10)]  # 600, 610, ..., 670
NRQ_CASES = [(p, None) for p in NRQ_FRAMES] + [(hc(f"{n}_HC"), "Phantom") for n in (600, 630, 660)]
NRQ_PUBLISHED_CASES = [(hc("610_HC"), None), (hc("640_HC"), None), (hc("670_HC"), "Liver")]


def load(p):
    g = ref.load_gray(mg.abs_(p))
    assert g.shape == (540, 800) and g.dtype == np.uint8, (p, g.shape, g.dtype)
    return g


def main():
    if not os.path.isdir(mg.abs_(IMG)):
        sys.exit(f"missing {mg.abs_(IMG)} (shared HC18 data)")
    for p, _ in NRQ_CASES + NRQ_PUBLISHED_CASES:
        load(p)  # all frames exist, 800x540 8-bit gray
    model_rel = "models/tinyusfm-seeded.onnx"
    enc = ref.Encoder(mg.abs_(model_rel))
    g = {"model": model_rel, "model_sha256": mg.sha256(open(mg.abs_(model_rel), "rb").read()),
         "generator": {"script": "models/reference/make_hc18_goldens.py", "numpy": np.__version__,
                       "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__},
         "data": "HC18 training set (van den Heuvel et al., PLoS ONE 2018; zenodo 10.5281/zenodo.1322001, "
                 "CC BY 4.0), read from ../shared/data/hc18 at test time, never copied",
         "ulpips": []}
    for rp, ip in ULPIPS_PAIRS:
        score, layers = ref.ulpips(enc, load(rp), load(ip))
        assert np.isfinite(score) and score > 0 and all(np.isfinite(v) for l in layers for v in l)
        g["ulpips"].append(mg.ulpips_record(rp, ip, score, layers))
        print(f"uLPIPS {rp} vs {ip}: {score:.8f}")
    g["nrq"] = mg.nrq_records(enc, NRQ_CASES, mg.MANIFOLD) + mg.nrq_records(enc, NRQ_PUBLISHED_CASES, mg.PUBLISHED)
    assert all(np.isfinite(p["loglik"]) for r in g["nrq"] for p in r["patches"])
    with open(mg.abs_("tests/golden/hc18.json"), "w") as f:
        json.dump(g, f, indent=1)
        f.write("\n")
    print("wrote tests/golden/hc18.json")


if __name__ == "__main__":
    main()
