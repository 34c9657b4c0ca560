"""The evaluation's distortions: 9 families x severities 1-4 (severity 0 = the clean frame),
numpy/OpenCV, seeded per (frame, family) so a family's severities are nested."""
import os

import cv2
import numpy as np

from ..data.hc18 import DATA, read_gray

FAMILIES = ["speckle", "additive", "blur", "jpeg", "downup", "shadow", "dropout", "gain", "reverb"]
FAMILY_TITLE = {
    "speckle": "speckle-like multiplicative noise", "additive": "additive Gaussian noise",
    "blur": "Gaussian blur", "jpeg": "JPEG", "downup": "downscale-upscale",
    "shadow": "acoustic-shadow band", "dropout": "dropout region", "gain": "gain drift (depth)",
    "reverb": "reverberation-like ghosting"}
# severity 1..4 parameters (index 0 = clean); fixed before any held-out frame was scored
PARAMS = {
    "speckle": [0, 0.10, 0.20, 0.35, 0.50],   # std of the multiplicative field (1 + s*n)
    "additive": [0, 4, 8, 16, 28],            # std of additive Gaussian noise, gray levels
    "blur": [0, 1.0, 2.0, 3.5, 6.0],          # Gaussian sigma, pixels
    "jpeg": [100, 40, 20, 10, 5],             # JPEG quality
    "downup": [1, 1.5, 2.0, 3.0, 5.0],        # down (INTER_AREA) then up (INTER_CUBIC) factor
    "shadow": [0, 0.40, 0.60, 0.80, 0.95],    # attenuation inside the band (width grows too)
    "dropout": [0, 0.15, 0.25, 0.35, 0.45],   # side of the zeroed rectangle / frame side
    "gain": [0, 4, 8, 14, 20],                # gain lost from top to bottom, dB
    "reverb": [0, 0.15, 0.30, 0.45, 0.60],    # amplitude of the first ghost (k-th: a^k)
}
SHADOW_HALF_WIDTH = [0, 30, 45, 60, 80]
SEVERITIES = [0, 1, 2, 3, 4]


def distort(g, family, sev, seed):
    """g uint8 [H,W] -> uint8 [H,W]; the random draws depend on (seed, frame, family) only, so the
    severities of one family share one noise field / one location (monotone by construction)."""
    if sev == 0:
        return g.copy()
    rng = np.random.default_rng(seed)
    H, W = g.shape
    x = g.astype(np.float32)
    p = PARAMS[family][sev]
    if family == "speckle":
        n = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), 0.8)
        n /= n.std()
        y = x * (1.0 + p * n)
    elif family == "additive":
        y = x + p * rng.standard_normal((H, W)).astype(np.float32)
    elif family == "blur":
        y = cv2.GaussianBlur(x, (0, 0), p)
    elif family == "jpeg":
        ok, buf = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, int(p)])
        assert ok
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    elif family == "downup":
        small = cv2.resize(x, (max(1, round(W / p)), max(1, round(H / p))), interpolation=cv2.INTER_AREA)
        y = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    elif family == "shadow":
        cx = rng.uniform(0.3, 0.7) * W
        y0 = rng.uniform(0.2, 0.45) * H
        hw = SHADOW_HALF_WIDTH[sev]
        xx = np.arange(W, dtype=np.float32)[None, :]
        yy = np.arange(H, dtype=np.float32)[:, None]
        bx = 1.0 / (1.0 + np.exp((np.abs(xx - cx) - hw) / 6.0))
        by = 1.0 / (1.0 + np.exp(-(yy - y0) / 10.0))
        y = x * (1.0 - p * bx * by)
    elif family == "dropout":
        cx = (0.5 + rng.uniform(-0.1, 0.1)) * W
        cy = (0.5 + rng.uniform(-0.1, 0.1)) * H
        hw, hh = p * W / 2, p * H / 2
        m = np.zeros((H, W), np.float32)
        m[int(max(0, cy - hh)):int(min(H, cy + hh)), int(max(0, cx - hw)):int(min(W, cx + hw))] = 1
        m = cv2.GaussianBlur(m, (0, 0), 3.0)
        y = x * (1.0 - m)
    elif family == "gain":
        db = p * np.arange(H, dtype=np.float32)[:, None] / (H - 1)
        y = x * (10.0 ** (-db / 20.0))
    elif family == "reverb":
        d = 48
        y = x.copy()
        for k in (1, 2, 3):
            s = np.zeros_like(x)
            s[k * d:] = x[:H - k * d]
            y += (p ** k) * s
    else:
        raise ValueError(family)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def distorted_items(names, seed, tmp):
    """distorted_frames of the HC18 frames with these file names."""
    return distorted_frames([os.path.join(DATA, "images", f) for f in names], seed, tmp)


def distorted_frames(paths, seed, tmp):
    """Each frame (severity 0, the original file) and its 9 families x severities 1-4, written as
    PNG into tmp; a frame is named by its file name. Returns the clean grays (by name), the items
    (frame, family, severity, path) and path -> gray."""
    clean, items, imgs = {}, [], {}
    for fi, path in enumerate(paths):
        f = os.path.basename(path)
        clean[f] = read_gray(path)
        items.append((f, "clean", 0, os.path.realpath(path)))
        imgs[items[-1][3]] = clean[f]
        for fam, sev, d in distortions_of(clean[f], seed, fi):
            p = os.path.join(tmp, f"{os.path.splitext(f)[0]}_{fam}_{sev}.png")
            cv2.imwrite(p, d)
            items.append((f, fam, sev, p))
            imgs[p] = d
    return clean, items, imgs


def distortions_of(g, seed, index):
    """[(family, severity, uint8 image)] of the 9 families x severities 1-4 of the index-th frame,
    family-major; the draws are seeded with seed * 1000 + index * 16 + the family's number."""
    return [(fam, sev, distort(g, fam, sev, seed * 1000 + index * 16 + ki))
            for ki, fam in enumerate(FAMILIES) for sev in SEVERITIES[1:]]


def reference_pairs(items):
    """(clean frame, distorted frame) paths of every distorted item."""
    src = {f: p for f, fam, _, p in items if fam == "clean"}
    return [(src[f], p) for f, fam, _, p in items if fam != "clean"]
