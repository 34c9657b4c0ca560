"""How the acquisition checks' measures and organ rule were chosen (src/checks.rs), on training
frames only: HC18 subjects 000-599 (every third frame) and the POCUS lung training sources, with
fault simulations of this module's own (not usq_tools.evaluate.faults, which evaluates them: other
code, other parameters, other frames).

    models/.venv/bin/python -m usq_tools.select_checks [--split validation]

Pixel measures, two candidates each, recomputed here in numpy (src/checks.rs is the one that
ships): the echo level as the 90th percentile of the 16-px block means of the whole frame
(`frame`, before) or of the blocks inside the image, 2 gray levels above the darkest (`image`);
partial contact as the lateral halves' balance (75th percentile of each half's blocks, `halves`,
before) or the widest run of block columns whose brightest block is under a quarter of the echo
level (`dead width`), or only such a run that starts at either side of the image (`edge dead
width`: a rib's shadow in the middle of a lung sector would not count). The edge run changed
nothing (2026-12-07): every training frame with a run over 0.15 of the width has it at a side (68
of 256 lung frames, 0 in the middle; validation 56 of 134), the widest in a clean source whose one
side has no echo at all (Reg_pat3Image_135215, 0.261; Reg_pat2Image_134240 in validation, 0.391),
which one frame cannot tell from an aperture that lost contact, so the shipped measure stays.
Thresholds as src/checks.rs derives them: the clean training frames' 0.5 % (or 99.5 %) quantile
moved by its margin. Prints per simulated fault and severity the share of
frames flagged, and the clean frames flagged.

Organ rule: the margins of `usq score --json` (4 patches, as the evaluation) of the training
frames of each organ against their own organ; each rule's clean false positives, and its
detection when the same frames are judged against the other organ (own and other swap).
"""
import argparse
import json
import os

import cv2
import numpy as np

from .data import hc18, pocus_lung
from .evaluate.usq_cli import run
from .paths import USQ

BLOCK = 16
SEED = 20261206
# Training-side simulations (the evaluation's are other code with other parameters).
GAIN_DB = [12, 18, 24]
LOST_RESIDUAL = [0.08, 0.03, 0.0]
PARTIAL_SHARE = [0.3, 0.4, 0.5]
# src/checks.rs CONTACT_PARTIAL_MARGIN_SHARE: 0.1 when the measure was chosen here, 0.15 after the
# validation frames (`--split validation` shows why).
DEAD_WIDTH_MARGIN = 0.15


def blocks(g):
    h, w = g.shape
    bh, bw = h // BLOCK, w // BLOCK
    return np.rint(g[:bh * BLOCK, :bw * BLOCK].astype(np.float64).reshape(bh, BLOCK, bw, BLOCK).mean((1, 3)))


def pct(v, q):
    return float(np.percentile(v, q, method="inverted_cdf")) if v.size else 0.0


def measures(g):
    """{candidate: value} of one gray frame."""
    b = blocks(g)
    bw = b.shape[1]
    inside = b.min() + 2
    image = b[b >= inside]
    echo_image = pct(image if image.size else b, 90)
    l, r = pct(b[:, :bw // 2], 75), pct(b[:, bw - bw // 2:], 75)
    top = b.max(0)
    cols = np.nonzero(top >= inside)[0]
    widest = run_ = edge = 0
    if cols.size:
        dead = top[cols[0]:cols[-1] + 1] < 0.25 * echo_image
        for d in dead:
            run_ = run_ + 1 if d else 0
            widest = max(widest, run_)
        # the run from either side of the image inward: where an aperture loses contact, unlike
        # a shadow (a rib's, in lung frames) in the middle of the sector
        edge = max(np.argmin(np.append(dead, False)), np.argmin(np.append(dead[::-1], False)))
    return {"echo frame": pct(b, 90), "echo image": echo_image,
            "halves": min(l, r) / max(l, r) if max(l, r) > 0 else 1.0,
            "dead width": widest / len(cols) if cols.size else 0.0,
            "edge dead width": edge / len(cols) if cols.size else 0.0}


def image_mask(g):
    return cv2.morphologyEx((g > 5).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8)) > 0


def floor(shape, rng):
    return np.abs(rng.normal(0, 4, shape))


def simulate(g, fault, sev, rng):
    x = g.astype(np.float64)
    if fault == "gain_low":
        y = x * 10 ** (-GAIN_DB[sev] / 20)
    elif fault == "contact_lost":
        m = image_mask(g)
        rows = np.nonzero(m.any(1))[0]
        yy = np.arange(g.shape[0])[:, None] - (rows[0] if rows.size else 0)
        ring = np.where(yy >= 0, 60 * np.exp(-np.clip(yy, 0, None) / 25.0) * (0.5 + 0.5 * np.sin(yy / 1.1)), 0)
        y = np.where(m, LOST_RESIDUAL[sev] * x + floor(g.shape, rng) + ring, 0)
    else:
        m = image_mask(g)
        cols = np.nonzero(m.mean(0) > 0.05)[0]
        x0, x1 = (cols[0], cols[-1]) if cols.size else (0, g.shape[1] - 1)
        xx = np.arange(g.shape[1])[None, :]
        cut = PARTIAL_SHARE[sev] * (x1 - x0)
        lost = (xx < x0 + cut) if rng.random() < 0.5 else (xx > x1 - cut)
        y = np.where(m & lost, floor(g.shape, rng) + 0.02 * x, x)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def frames_of(split):
    if split == "train":
        fh = [os.path.join(hc18.DATA, "images", f) for f in hc18.frames("train")][::3]
    else:
        fh = [os.path.join(hc18.DATA, "images", f) for f in hc18.validation_split(100, SEED)[1]]
    return {"FetalHead": fh, "Lung": pocus_lung.frames(split)}


def pixel_measures(paths, rng=None):
    """The clean frames' measures and, with an rng, each simulated fault's ({(fault, severity): ...})."""
    clean, faulty = [], {}
    for p in paths:
        g = hc18.read_gray(p)
        clean.append(measures(g))
        for fault in ("gain_low", "contact_lost", "contact_partial") if rng else ():
            for sev in range(3):
                faulty.setdefault((fault, sev), []).append(measures(simulate(g, fault, sev, rng)))
    return clean, faulty


def flags(m, t, echo):
    """The three level checks of one frame's measures under thresholds t, with one echo candidate."""
    lost = m[echo] < t[echo] * 10 ** (-12 / 20)
    return {"gain_low": m[echo] < t[echo] * 10 ** (-3 / 20), "contact_lost": lost,
            "contact_partial halves": not lost and m["halves"] < t["halves"] * 10 ** (-3 / 20),
            "contact_partial dead width": not lost and m["dead width"] > t["dead width"] + DEAD_WIDTH_MARGIN,
            "contact_partial edge": not lost and m["edge dead width"] > t["edge dead width"] + DEAD_WIDTH_MARGIN}


def organ_margins(paths, organ):
    out = run([USQ, "score", *paths, "--json", "--organ", organ, "--max-patches", "4", "--threads", "2"])
    recs = [json.loads(line)["checks"] for line in out.splitlines() if line.strip()]
    return np.array([r["organ_margin"] for r in recs]), np.array([r["other_organ_margin"] for r in recs])


RULES = {
    "before: below own range and inside another's, or 10 below": lambda o, t: (o < -10) | ((o < 0) & (t >= 0) & (t > o)),
    "another's range holds it and fits it better by 0, or 15 below": lambda o, t: ((t >= 0) & (t > o)) | (o < -15),
    "another's range holds it and fits it better by 1, or 10 below": lambda o, t: ((t >= 0) & (t > o + 1)) | (o < -10),
    "another's range holds it and fits it better by 1, or 15 below": lambda o, t: ((t >= 0) & (t > o + 1)) | (o < -15),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["train", "validation"], default="train",
                    help="frames to measure on; thresholds always come from the training frames")
    ap.add_argument("--pixels-only", action="store_true", help="the pixel measures only, not the organ rule")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    train = frames_of("train")
    frames = train if args.split == "train" else frames_of("validation")
    for organ in ("FetalHead", "Lung"):
        clean, faulty = pixel_measures(frames[organ], rng)
        # Thresholds from the training frames' clean measures only: no simulation needed there.
        ref = clean if args.split == "train" else pixel_measures(train[organ])[0]
        col = lambda k: np.array([m[k] for m in ref])
        t = {"echo frame": np.quantile(col("echo frame"), 0.005), "echo image": np.quantile(col("echo image"), 0.005),
             "halves": np.quantile(col("halves"), 0.005), "dead width": np.quantile(col("dead width"), 0.995),
             "edge dead width": np.quantile(col("edge dead width"), 0.995)}
        print(f"\n{organ}: {len(frames[organ])} {args.split} frames; thresholds from {len(ref)} training frames: "
              + ", ".join(f"{k} {v:.3g}" for k, v in t.items()))
        for echo in ("echo frame", "echo image"):
            rows = {"clean": [flags(m, t, echo) for m in clean]}
            rows |= {f"{f} {s + 1}": [flags(m, t, echo) for m in ms] for (f, s), ms in faulty.items()}
            print(f"  echo level: {echo}")
            for name, fl in rows.items():
                print(f"    {name:16s} " + "  ".join(f"{k} {np.mean([x[k] for x in fl]):.2f}" for k in fl[0]))
    if args.pixels_only:
        return
    print("\norgan_mismatch (usq score --json, 4 patches):")
    m = {o: organ_margins(frames[o], o) for o in ("FetalHead", "Lung")}
    for name, rule in RULES.items():
        print(f"  {name}: " + "; ".join(
            f"{o} clean flagged {rule(own, other).mean():.3f}, judged as the other organ {rule(other, own).mean():.3f}"
            for o, (own, other) in m.items()))


if __name__ == "__main__":
    main()
