"""Per-organ monotonicity of NRQ and uLPIPS with distortion severity, on held-out frames of an organ
other than fetal head: the trained model beside the seeded random one, each with a manifold
fitted by `usq fit-nrq` on the same training frames. Writes models/report/organ-<Organ>.json and
prints a Markdown table for models/REPORT.md.

    models/.venv/bin/python -m usq_tools.evaluate.organ --organ Lung --manifold models/nrq

The trained model's manifold is the shipped one (--manifold, fitted on training sources by
models/fit_default_manifold.sh); the seeded model's is fitted here on the same training frames
with the same settings. The distortions are the report's (evaluate/distortions.py), applied
to held-out frames only: the frames of held-out source videos (data/pocus_lung.py).
"""
import argparse
import json
import os
import tempfile

from scipy.stats import spearmanr

from ..data import pocus_lung
from ..paths import MODELS as MODELS_DIR, ROOT, USQ
from .distortions import FAMILIES, FAMILY_TITLE, distorted_frames
from .stats import nrq_target_met, psnr, severity_rhos, ssim, ulpips_target_met
from .usq_cli import run, ulpips_scores, usq_score

MODELS = {"trained": os.path.join(MODELS_DIR, "tinyusfm.onnx"),
          "seeded": os.path.join(MODELS_DIR, "tinyusfm-seeded.onnx")}
# The live model: scored with the trained model's manifold, compared with the fp32 scores.
INT8 = os.path.join(MODELS_DIR, "tinyusfm-int8.onnx")
ORGANS = {"Lung": pocus_lung}
# The settings of the shipped manifolds (models/fit_default_manifold.sh), used for the seeded model too.
# Every frame fits (no hold-out for the quality-index scale, which these evaluations do not read),
# as the manifolds these numbers were first measured with.
FIT_ARGS = ["--patches-per-image", "12", "--components", "8", "--holdout", "0"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--organ", choices=sorted(ORGANS), default="Lung")
    ap.add_argument("--manifold", default=os.path.join(MODELS_DIR, "nrq"), help="the trained model's manifold folder")
    ap.add_argument("--split", choices=["heldout", "validation"], default="heldout")
    ap.add_argument("--per-source", type=int, default=2, help="frames per source video, evenly spread")
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(MODELS_DIR, "report"))
    ap.add_argument("--trained", default=MODELS["trained"],
                    help="the trained model (a candidate, with its --manifold, when choosing on --split validation)")
    ap.add_argument("--max-patches", type=int, default=0, help="usq score --max-patches (0: the full grid)")
    ap.add_argument("--candidate-only", action="store_true",
                    help="score --trained alone (no seeded model, no int8): choosing between candidates")
    a = ap.parse_args()
    models = {"trained": a.trained} if a.candidate_only else {**MODELS, "trained": a.trained}
    data = ORGANS[a.organ]
    frames = data.spread_frames(a.split, a.per_source)
    res = {"organ": a.organ, "split": a.split, "frames": len(frames), "sources": len(data.sources(a.split)),
           "seed": a.seed, "usq": os.path.relpath(USQ, ROOT), "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        fit_root = os.path.join(tmp, "fit")
        data.link(data.frames("train"), os.path.join(fit_root, a.organ))
        manifolds = {"trained": a.manifold}
        if "seeded" in models:
            manifolds["seeded"] = os.path.join(tmp, "nrq_seeded")
            run([USQ, "fit-nrq", fit_root, "--out", manifolds["seeded"], "--model", models["seeded"], *FIT_ARGS])
        clean, items, imgs = distorted_frames(frames, a.seed, tmp)
        paths = [it[3] for it in items]
        names = sorted({it[0] for it in items})
        scores = {}
        for m, path in models.items():
            scores[f"nrq_{m}"] = usq_score(paths, path, manifolds[m], a.max_patches, a.workers, organ=a.organ)
            scores[f"ulpips_{m}"] = ulpips_scores(items, path, a.workers)
        int8 = None if a.candidate_only else {"nrq": usq_score(paths, INT8, a.manifold, a.max_patches, a.workers, organ=a.organ),
                                              "ulpips": ulpips_scores(items, INT8, a.workers)}
        scores["psnr"] = {it[3]: -psnr(clean[it[0]], imgs[it[3]]) if it[1] != "clean" else -100.0 for it in items}
        scores["ssim"] = {it[3]: -ssim(clean[it[0]], imgs[it[3]]) if it[1] != "clean" else -1.0 for it in items}
    for fam in FAMILIES:
        res["families"][fam] = {k: severity_rhos(items, names, fam, v)["median"] for k, v in scores.items()}
    # uLPIPS of a clean frame is exactly 0 for both models, so only distorted frames count there.
    distorted_paths = [it[3] for it in items if it[1] != "clean"]
    if int8:
        res["int8_vs_fp32"] = {"nrq": agreement(scores["nrq_trained"], int8["nrq"], paths),
                               "ulpips": agreement(scores["ulpips_trained"], int8["ulpips"], distorted_paths)}
    count = lambda key, met: sum(met(r[key]) for r in res["families"].values())
    res["monotone"] = {f"{metric}_{m}": count(f"{metric}_{m}", met) for m in models
                       for metric, met in (("nrq", nrq_target_met), ("ulpips", ulpips_target_met))}
    res["trained_model"] = os.path.relpath(a.trained, ROOT)
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, f"organ-{a.organ}.json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"{a.organ}: {res['frames']} frames of {res['sources']} {a.split} sources; wrote {os.path.relpath(out, ROOT)}\n")
    if a.candidate_only:
        print(f"{a.trained}: NRQ monotone {res['monotone']['nrq_trained']}/9, uLPIPS {res['monotone']['ulpips_trained']}/9: "
              + " ".join(f"{fam} {r['nrq_trained']:+.2f}" for fam, r in res["families"].items()))
    else:
        print("\n".join(markdown(res)))


def agreement(fp32, int8, paths):
    """Spearman and largest absolute difference of two models' scores over paths."""
    a, b = [fp32[p] for p in paths], [int8[p] for p in paths]
    return {"n": len(paths), "spearman": float(spearmanr(a, b).statistic),
            "max_abs_diff": float(max(abs(x - y) for x, y in zip(a, b)))}


def markdown(res):
    """The table and the monotone counts of one organ's results, for stdout and models/REPORT.md."""
    L = ["| family | NRQ trained | NRQ seeded | uLPIPS trained | uLPIPS seeded | -PSNR | -SSIM |",
         "|---|---|---|---|---|---|---|"]
    for fam, r in res["families"].items():
        L.append(f"| {FAMILY_TITLE[fam]} | {r['nrq_trained']:+.2f} | {r['nrq_seeded']:+.2f} | {r['ulpips_trained']:+.2f} "
                 f"| {r['ulpips_seeded']:+.2f} | {r['psnr']:+.2f} | {r['ssim']:+.2f} |")
    m = res["monotone"]
    if "int8_vs_fp32" in res:
        f = res["int8_vs_fp32"]
        L.append(f"\nThe int8 model (`tinyusfm-int8.onnx`, the live one where the CPU has VNNI) against fp32 on the same "
                 f"frames, the trained model's manifold: Spearman NRQ **{f['nrq']['spearman']:.4f}** (n {f['nrq']['n']}, "
                 f"largest difference {f['nrq']['max_abs_diff']:.2f}), uLPIPS **{f['ulpips']['spearman']:.4f}** "
                 f"(n {f['ulpips']['n']} distorted frames, largest difference {f['ulpips']['max_abs_diff']:.4f}); target 0.99.")
    L.append(f"\nMonotone families (NRQ median Spearman <= -0.9; uLPIPS >= 0.9): NRQ trained **{m['nrq_trained']}/9**, "
             f"seeded {m['nrq_seeded']}/9; uLPIPS trained **{m['ulpips_trained']}/9**, seeded {m['ulpips_seeded']}/9.\n")
    return L


if __name__ == "__main__":
    main()
