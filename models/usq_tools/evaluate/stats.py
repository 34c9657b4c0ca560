"""Statistics of the evaluation: PSNR, SSIM, Spearman, 2AFC, per-frame monotonicity with severity
and the monotonicity targets."""
import itertools

import cv2
import numpy as np
from scipy.stats import spearmanr

AFC_MIN_GAP = 0.01   # 2AFC: pairs whose Dice drops differ by less than this are not judged
# Spearman over 5 severities takes discrete values; -0.9 exactly (sum d^2 = 38) comes out of
# scipy as -0.8999999999999998. Targets are compared with this much float slack.
TARGET_EPS = 1e-9


def nrq_target_met(rho):
    """NRQ must fall with severity: median Spearman <= -0.9."""
    return rho <= -0.9 + TARGET_EPS


def ulpips_target_met(rho):
    """uLPIPS must rise with severity: median Spearman >= 0.9."""
    return rho >= 0.9 - TARGET_EPS


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a, b):
    """Wang et al. 2004: 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255, valid region."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = k @ k.T
    f = lambda z: cv2.filter2D(z, -1, w, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]
    ma, mb = f(a), f(b)
    va, vb, cab = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
    s = ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2))
    return float(s.mean())


def srho(a, b):
    r = spearmanr(a, b).statistic
    return 0.0 if np.isnan(r) else float(r)


def two_afc(drop, bad, groups):
    """Of two distortions of one frame, which hurts Dice less: accuracy of 'lower badness'.
    Pairs whose Dice drops differ by < AFC_MIN_GAP are skipped; metric ties count 1/2."""
    hit = n = 0.0
    for gidx in groups:
        for i, j in itertools.combinations(gidx, 2):
            if abs(drop[i] - drop[j]) < AFC_MIN_GAP:
                continue
            n += 1
            if bad[i] == bad[j]:
                hit += 0.5
            elif (bad[i] < bad[j]) == (drop[i] < drop[j]):
                hit += 1
    return (hit / n if n else float("nan")), int(n)


def two_afc_split(drop, bad, frame_of):
    """2AFC over every two distorted frames whose Dice drops differ by >= AFC_MIN_GAP, split into
    pairs of one clean frame's distortions ("same": what two_afc measures) and pairs of
    distortions of two different frames ("cross": is the metric's scale comparable across
    images). Returns {"same": (accuracy, pairs), "cross": (accuracy, pairs)}; ties count 1/2."""
    drop, bad = np.asarray(drop, np.float64), np.asarray(bad, np.float64)
    codes = {f: k for k, f in enumerate(dict.fromkeys(frame_of))}
    fr = np.array([codes[f] for f in frame_of])
    i, j = np.triu_indices(len(drop), 1)
    judged = np.abs(drop[i] - drop[j]) >= AFC_MIN_GAP
    i, j = i[judged], j[judged]
    db, dd = bad[i] - bad[j], drop[i] - drop[j]
    score = np.where(db == 0, 0.5, (np.sign(db) == np.sign(dd)).astype(np.float64))
    same = fr[i] == fr[j]
    out = {}
    for k, sel in (("same", same), ("cross", ~same)):
        n = int(sel.sum())
        out[k] = (float(score[sel].mean()) if n else float("nan"), n)
    return out


def severity_rhos(items, names, fam, vals):
    """Per frame, Spearman of vals with severity 0-4 in one family, and the median over frames."""
    rhos = []
    for f in names:
        sel = [(0, it[3]) for it in items if it[0] == f and it[1] == "clean"] + \
              [(it[2], it[3]) for it in items if it[0] == f and it[1] == fam]
        rhos.append(srho([s for s, _ in sel], [vals[p] for _, p in sel]))
    return {"median": float(np.median(rhos)), "per_frame": rhos}
