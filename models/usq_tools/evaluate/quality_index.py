"""How the calibrated quality index (0-100, `quality` of `usq score`) reads clean frames it has
never seen: the held-out evaluation frames of each organ (HC18 subjects 600-699; POCUS lung
frames of the held-out sources), scored against their organ with a manifold folder. A scale made
on frames like these puts their median near 50 and few at 0 or 100; a scale made on frames the
manifold was fitted on (flattering) puts it lower.

    models/.venv/bin/python -m usq_tools.evaluate.quality_index [--manifold models/nrq] [--out report/quality_index.json]

Only reads the held-out frames for this report; nothing here chooses a threshold or a scale.
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np

from ..data import link, pocus_lung
from ..data.hc18 import DATA, frames
from ..paths import MODELS, USQ


def score(folder, organ, manifold, threads):
    cmd = [USQ, "score", folder, "--organ", organ, "--json", "--manifold", manifold, "--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def summary(lines):
    q = np.array([l["quality"] for l in lines], dtype=float)
    nrq = np.array([l["nrq"] for l in lines], dtype=float)
    return {"frames": len(q), "median_index": float(np.median(q)), "at_0": float(np.mean(q <= 0)),
            "at_100": float(np.mean(q >= 100)), "quartiles_index": [float(v) for v in np.percentile(q, [25, 50, 75])],
            "median_nrq": float(np.median(nrq))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifold", default=os.path.join(MODELS, "nrq"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the JSON here as well (relative to models/)")
    a = ap.parse_args()
    res = {"manifold": a.manifold, "organs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        fh = link([os.path.join(DATA, "images", f) for f in frames("heldout")], os.path.join(tmp, "FetalHead"))
        lung = link(pocus_lung.frames("heldout"), os.path.join(tmp, "Lung"))
        for organ, folder in [("FetalHead", fh), ("Lung", lung)]:
            res["organs"][organ] = summary(score(folder, organ, a.manifold, a.threads))
            print(organ, res["organs"][organ], flush=True)
    if a.out:
        with open(os.path.join(MODELS, a.out), "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
