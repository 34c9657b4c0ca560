"""Independent NumPy reference of the usq metrics (the golden-value oracle), run with onnxruntime.

Written from the metric definitions of the paper's official US-Metrics code (arXiv 2604.19512),
not from the Rust sources, so the two implementations check each other. This package
(usq_reference, the folder models/reference/) imports nothing from usq_tools.

    models/.venv/bin/python -m usq_reference ulpips REF IMG [--model M]
    models/.venv/bin/python -m usq_reference nrq IMG --manifold DIR [--organ NAME] [--model M]

Its modules make what the Rust tests check against: simulate_bmode (tests/fixtures/sim_*),
make_test_manifold (tests/fixtures/manifold/), make_goldens (tests/golden/golden.json,
tests/golden/inter_area/), make_hc18_goldens (tests/golden/hc18.json); check_parity compares a
usq build with those goldens.
"""
import argparse
import os

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "models", "tinyusfm-seeded.onnx")
SIZE, GRID, STRIDE = 224, 14, 112
TAU, RADIUS = 20.0, 3          # uLPIPS structure: softmax temperature, 7x7 window half-width
WORST_FRACTION = 0.15          # NRQ: mean of the worst 15% of patches


# ---------------------------------------------------------------- image loading
def rgb_to_gray_u8(rgb, shift=15):
    """OpenCV's fixed-point ITU-R 601 luma, what cv2.cvtColor(RGB2GRAY) does on uint8 (checked on
    OpenCV 4.7, 4.14, 5.0): (9798 R + 19235 G + 3735 B + 2^14) >> 15. The 14-bit variant
    (4899, 9617, 1868, >> 14) differs by +-1 on exact .5 ties (~0.2% of random colours)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    if shift == 14:
        return ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)
    return ((9798 * r + 19235 * g + 3735 * b + 16384) >> 15).astype(np.uint8)


def load_gray(path):
    """Decode to gray uint8 [H,W] with the same rules as the Rust side:
    8-bit gray as is; 16-bit gray -> round(v*255/65535) (full 16-bit range, no auto-levels);
    colour -> OpenCV fixed-point 601 luma, alpha ignored. JPEG is decoded with Pillow (libjpeg):
    other decoders may differ by +-1 on a few pixels."""
    if path.lower().endswith((".jpg", ".jpeg")):
        im = Image.open(path)
        a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    else:
        a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if a is None:
            raise IOError(f"cannot decode {path}")
        if a.ndim == 3:
            a = a[..., [2, 1, 0] + list(range(3, a.shape[2]))]  # OpenCV gives BGR(A): make it RGB(A)
    if a.ndim == 3 and a.shape[2] == 2:   # gray + alpha
        a = a[..., 0]
    if a.dtype == np.uint16:
        if a.ndim != 2:
            raise ValueError("16-bit colour is not supported")
        return np.rint(a.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    if a.dtype != np.uint8:
        raise ValueError(f"unsupported dtype {a.dtype}")
    return a if a.ndim == 2 else rgb_to_gray_u8(a[..., :3])


# ---------------------------------------------------------------- encoder
class Encoder:
    """The ONNX contract model: image [N,1,224,224] raw 0..255 -> block2/4/6/10 [N,197,192]."""

    def __init__(self, model=DEFAULT_MODEL, batch=16):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 4
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.sess.get_outputs()]
        self.batch = batch

    def __call__(self, images):
        """images: [N,224,224] float32 raw 0..255 -> list (per layer) of [N,196,192] float32, cls dropped."""
        images = np.asarray(images, np.float32)
        outs = [[] for _ in self.names]
        for s in range(0, len(images), self.batch):
            res = self.sess.run(None, {"image": images[s:s + self.batch, None]})
            for acc, r in zip(outs, res):
                acc.append(r[:, 1:, :])
        return [np.concatenate(o) for o in outs]


# ---------------------------------------------------------------- uLPIPS
def l2_normalise(x, axis=-1):
    """torch F.normalize: x / max(||x||, 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def resize_input(gray):
    """gray uint8 -> /255 -> INTER_AREA to 224x224 (float32) -> *255: the model's raw input."""
    g = gray.astype(np.float32) / np.float32(255)
    r = cv2.resize(g, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return (r * np.float32(255)).astype(np.float32)


def softmax_rows(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def structure_term(fr, fi):
    """fr, fi: normalised tokens [196,192] (row-major 14x14 grid). Mean over grid positions of the
    mean |P_ref - P_img| of the softmaxed local (7x7, clipped at the border) similarity matrices."""
    gr, gi = fr.reshape(GRID, GRID, -1), fi.reshape(GRID, GRID, -1)
    d = []
    for i in range(GRID):
        for j in range(GRID):
            rows = slice(max(0, i - RADIUS), min(GRID - 1, i + RADIUS) + 1)
            cols = slice(max(0, j - RADIUS), min(GRID - 1, j + RADIUS) + 1)
            wr = gr[rows, cols].reshape(-1, gr.shape[-1])
            wi = gi[rows, cols].reshape(-1, gi.shape[-1])
            pr, pi = softmax_rows(wr @ wr.T * TAU), softmax_rows(wi @ wi.T * TAU)
            d.append(np.abs(pr - pi).mean())
    return float(np.mean(d))


def gram_term(fr, fi):
    n, c = fr.shape
    return float(np.abs(fr.T @ fr / (n * c) - fi.T @ fi / (n * c)).mean())


def ulpips(enc, gray_ref, gray_img):
    """TinyUSFM-uLPIPS (lower = closer). Returns (score, [(structure, gram) per layer])."""
    feats = enc(np.stack([resize_input(gray_ref), resize_input(gray_img)]))
    layers = []
    for f in feats:
        f = l2_normalise(f.astype(np.float64))
        layers.append((structure_term(f[0], f[1]), gram_term(f[0], f[1])))
    score = (sum(s for s, _ in layers) + sum(g for _, g in layers)) / len(layers)
    return score, layers


# ---------------------------------------------------------------- NRQ
def pad_to_min(gray):
    """Pad a side shorter than 224 by BORDER_REFLECT_101, split (224-n)//2 before, the rest after."""
    h, w = gray.shape
    top = (SIZE - h) // 2 if h < SIZE else 0
    left = (SIZE - w) // 2 if w < SIZE else 0
    bottom = SIZE - h - top if h < SIZE else 0
    right = SIZE - w - left if w < SIZE else 0
    if top or bottom or left or right:
        gray = cv2.copyMakeBorder(gray, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    return gray


def grid_starts(n):
    s = list(range(0, n - SIZE + 1, STRIDE))
    if s[-1] != n - SIZE:
        s.append(n - SIZE)
    return s


def patch_grid(h, w):
    """(x, y) top-left corners, y outer / x inner, duplicates removed in order."""
    out = []
    for y in grid_starts(h):
        for x in grid_starts(w):
            if (x, y) not in out:
                out.append((x, y))
    return out


def patch_features(enc, gray):
    """-> (patches [(x,y)], z [n,768] float64): per patch, the concatenated (layer order) token means,
    L2-normalised."""
    img = pad_to_min(gray).astype(np.float32)
    grid = patch_grid(*img.shape)
    feats = enc(np.stack([img[y:y + SIZE, x:x + SIZE] for x, y in grid]))
    z = np.concatenate([f.astype(np.float64).mean(axis=1) for f in feats], axis=1)
    return grid, l2_normalise(z)


def load_manifold(path):
    d = np.load(path)
    m = {k: np.asarray(d[k], np.float64) for k in
         ("pca_mean", "pca_components", "gmm_means", "gmm_covariances", "log_weights", "log_det")}
    m["dim"] = int(d["dim"] if "dim" in d.files else d["D"])
    assert m["pca_components"].shape == (m["dim"], 768)
    return m


def load_manifold_set(folder):
    """{organ: manifold} for every <Organ>.npz in folder, sorted by organ name."""
    names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))
    return {n: load_manifold(os.path.join(folder, n + ".npz")) for n in names}


def logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def loglik(m, z):
    """Per-row GMM log-likelihood in the organ's PCA space (no d*log(2pi) term, as the official code)."""
    x = (z - m["pca_mean"]) @ m["pca_components"].T
    maha = (((x[:, None, :] - m["gmm_means"][None]) ** 2) / m["gmm_covariances"][None]).sum(-1)
    return logsumexp(m["log_weights"][None] - 0.5 * (maha + m["log_det"][None]), axis=1)


def worst_k(n):
    return max(1, round(WORST_FRACTION * n))  # Python round: half to even


def nrq(enc, gray, manifolds, organ=None):
    """TinyUSFM-NRQ (higher = better). Returns (score, k, [(x, y, loglik)])."""
    grid, z = patch_features(enc, gray)
    if organ is not None:
        ll = loglik(manifolds[organ], z)
    else:
        lls = np.stack([loglik(m, z) for m in manifolds.values()])
        ll = logsumexp(lls, axis=0) - np.log(len(manifolds))
    k = worst_k(len(grid))
    return float(np.sort(ll)[:k].mean()), k, [(x, y, float(v)) for (x, y), v in zip(grid, ll)]


def main():
    ap = argparse.ArgumentParser(prog="python -m usq_reference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ulpips")
    a.add_argument("ref")
    a.add_argument("img")
    b = sub.add_parser("nrq")
    b.add_argument("img")
    b.add_argument("--manifold", required=True)
    b.add_argument("--organ")
    args = ap.parse_args()
    enc = Encoder(args.model)
    if args.cmd == "ulpips":
        score, layers = ulpips(enc, load_gray(args.ref), load_gray(args.img))
        print(f"uLPIPS {score:.8f}  layers (structure, gram): {layers}")
    else:
        score, k, patches = nrq(enc, load_gray(args.img), load_manifold_set(args.manifold), args.organ)
        print(f"NRQ {score:.6f}  k={k} of {len(patches)} patches")
