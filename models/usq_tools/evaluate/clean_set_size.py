"""How many clean frames an organ's manifold needs: NRQ monotonicity with distortion severity on
the validation sources of an organ, with manifolds fitted by `usq fit-nrq` on the first N
training sources (the shipped settings, the shipped model). What README's "Bring your own
organ" section quotes. Validation frames only: the held-out sources stay for models/REPORT.md.

    models/.venv/bin/python -m usq_tools.evaluate.clean_set_size --organ Lung --sources 3,6,12,25
"""
import argparse
import json
import os
import tempfile

from ..paths import MODELS as MODELS_DIR, ROOT, USQ
from .distortions import FAMILIES, FAMILY_TITLE, distorted_frames
from .organ import FIT_ARGS, MODELS, ORGANS
from .stats import nrq_target_met, severity_rhos
from .usq_cli import run, usq_score


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--organ", choices=sorted(ORGANS), default="Lung")
    ap.add_argument("--sources", default="3,6,12,25", help="training sources per manifold, comma separated")
    ap.add_argument("--per-source", type=int, default=1, help="validation frames per source")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(MODELS_DIR, "report"))
    a = ap.parse_args()
    data = ORGANS[a.organ]
    by_source = data.frames_by_source("train")
    train_sources = list(by_source)
    frames = data.spread_frames("validation", a.per_source)
    res = {"organ": a.organ, "validation_frames": len(frames), "seed": a.seed, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        _, items, _ = distorted_frames(frames, a.seed, tmp)
        paths = [it[3] for it in items]
        names = sorted({it[0] for it in items})
        for n in [int(s) for s in a.sources.split(",")]:
            chosen = train_sources[:n]
            fit_frames = [f for s in chosen for f in by_source[s]]
            root = os.path.join(tmp, f"fit{n}")
            data.link(fit_frames, os.path.join(root, a.organ))
            out = os.path.join(tmp, f"nrq{n}")
            run([USQ, "fit-nrq", root, "--out", out, "--model", MODELS["trained"], *FIT_ARGS])
            nrq = usq_score(paths, MODELS["trained"], out, 0, a.workers, organ=a.organ)
            rhos = {fam: severity_rhos(items, names, fam, nrq)["median"] for fam in FAMILIES}
            run_res = {"sources": len(chosen), "frames": len(fit_frames), "families": rhos,
                       "monotone": sum(nrq_target_met(r) for r in rhos.values())}
            res["runs"].append(run_res)
            print(f"{n} sources, {len(fit_frames)} frames: {run_res['monotone']}/9 monotone", flush=True)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"clean-set-size-{a.organ}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(f"\n{a.organ}: {res['validation_frames']} validation frames; wrote {os.path.relpath(path, ROOT)}\n")
    print("| training sources (frames) | monotone | " + " | ".join(FAMILY_TITLE[f] for f in FAMILIES) + " |")
    print("|---|---|" + "---|" * len(FAMILIES))
    for r in res["runs"]:
        print(f"| {r['sources']} ({r['frames']}) | {r['monotone']}/9 | "
              + " | ".join(f"{r['families'][f]:+.2f}" for f in FAMILIES) + " |")


if __name__ == "__main__":
    main()
