"""Write tests/golden/golden.json and tests/golden/inter_area/* with the independent reference
(usq_reference + onnxruntime on models/tinyusfm-seeded.onnx).

    models/.venv/bin/python -m usq_reference.make_goldens
"""
import hashlib
import json
import os

import cv2
import numpy as np
import onnxruntime
import usq_reference as ref

ROOT = ref.ROOT
FIX = "tests/fixtures"
MANIFOLD = "tests/fixtures/manifold"
PUBLISHED = "../shared/data/us-metrics-nrq"  # relative to the repo root; read at run time, never copied
LIN, SEC = f"{FIX}/sim_linear_640x480.png", f"{FIX}/sim_sector_800x540.png"
SMALL, TALL = f"{FIX}/sim_small_200x150.png", f"{FIX}/sim_tall_180x400.png"

ULPIPS_PAIRS = [(LIN, f"{FIX}/sim_linear_640x480_blur.png"), (LIN, f"{FIX}/sim_linear_640x480_noise.png"),
                (SEC, f"{FIX}/sim_sector_800x540_jpeg.png"), (LIN, LIN), (LIN, f"{FIX}/sim_linear_640x480_rgb.png"),
                (SMALL, f"{FIX}/sim_small_200x150.tif")]
NRQ_CASES = [(LIN, None), (LIN, "Phantom"), (SEC, None), (SMALL, None), (TALL, "Fetal"),
             (f"{FIX}/sim_linear_640x480_16bit.png", None)]
NRQ_PUBLISHED_CASES = [(LIN, None), (LIN, "Liver"), (SEC, "Kidney")]
INTER_AREA_SIZES = [(800, 540), (448, 448), (672, 224), (300, 200), (100, 80), (225, 1000), (640, 480)]

abs_ = lambda p: os.path.normpath(os.path.join(ROOT, p))
sha256 = lambda b: hashlib.sha256(b).hexdigest()


def check_gray_conversion():
    """Our fixed-point 601 formula must equal cv2.cvtColor(RGB2GRAY) bit for bit; on the RGB fixture
    the 14-bit variant must agree too (no ties), so its golden holds for either implementation."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    rgb_fix = cv2.cvtColor(cv2.imread(abs_(f"{FIX}/sim_linear_640x480_rgb.png")), cv2.COLOR_BGR2RGB)
    for a in (rgb, rgb_fix):
        assert np.array_equal(ref.rgb_to_gray_u8(a), cv2.cvtColor(a, cv2.COLOR_RGB2GRAY))
    assert np.array_equal(ref.rgb_to_gray_u8(rgb_fix, shift=14), ref.rgb_to_gray_u8(rgb_fix))


def decode_records():
    recs = []
    for f in sorted(os.listdir(abs_(FIX))):
        if not f.startswith("sim_"):
            continue
        p = f"{FIX}/{f}"
        g = ref.load_gray(abs_(p))
        r = {"path": p, "width": g.shape[1], "height": g.shape[0], "gray_sum": int(g.astype(np.int64).sum())}
        if f.endswith(".jpg"):
            r["note"] = ("decoded by libjpeg (Pillow); other decoders (zune-jpeg) may differ by +-1 on a few "
                         "pixels: compare gray_sum with a tolerance, no hash, no metric goldens on this file")
        else:
            r["gray_sha256"] = sha256(np.ascontiguousarray(g).tobytes())
        recs.append(r)
    return recs


def ulpips_record(rp, ip, score, layers):
    """A uLPIPS golden record (golden.json's and hc18.json's format) from ref.ulpips's result."""
    return {"ref": rp, "img": ip, "ulpips": score,
            "layers": [{"block": b, "structure": s, "gram": gr} for b, (s, gr) in zip((2, 4, 6, 10), layers)]}


def nrq_records(enc, cases, manifold_rel):
    mset = ref.load_manifold_set(abs_(manifold_rel))
    out = []
    for p, organ in cases:
        score, k, patches = ref.nrq(enc, ref.load_gray(abs_(p)), mset, organ)
        assert np.isfinite(score)
        out.append({"path": p, "manifold": manifold_rel, "organ": organ, "nrq": score, "k": k,
                    "patches": [{"x": x, "y": y, "loglik": ll} for x, y, ll in patches]})
        print(f"NRQ {p} organ={organ} [{manifold_rel}]: {score:.6f} (k={k} of {len(patches)})")
    return out


def inter_area_goldens():
    """Deterministic inputs (gradient + 7x5 checker + 1-level seeded noise: small PNGs), OpenCV's outputs."""
    d = abs_("tests/golden/inter_area")
    os.makedirs(d, exist_ok=True)
    for w, h in INTER_AREA_SIZES:
        rng = np.random.default_rng(1000 + 7 * w + h)
        yy, xx = np.mgrid[0:h, 0:w]
        a = 20 + 150 * xx / w + 60 * yy / h + 25 * ((xx // 7 + yy // 5) % 2) + rng.integers(0, 2, (h, w))
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
        cv2.imwrite(f"{d}/{w}x{h}_in.png", a)
        assert np.array_equal(cv2.imread(f"{d}/{w}x{h}_in.png", cv2.IMREAD_UNCHANGED), a)
        out = cv2.resize(a.astype(np.float32) / np.float32(255), (224, 224), interpolation=cv2.INTER_AREA)
        np.save(f"{d}/{w}x{h}_out.npy", out.astype(np.float32))
    # reflect-101 padding of a 150x100 (W x H) input to 224x224, split (224-n)//2 before
    rng = np.random.default_rng(150100)
    a = np.clip(np.round(np.add.outer(np.arange(100) * 1.5, np.arange(150)) + rng.integers(0, 8, (100, 150))), 0, 255)
    a = a.astype(np.uint8)
    cv2.imwrite(f"{d}/reflect_150x100_in.png", a)
    top, left = (224 - 100) // 2, (224 - 150) // 2
    out = cv2.copyMakeBorder(a, top, 224 - 100 - top, left, 224 - 150 - left, cv2.BORDER_REFLECT_101)
    assert out.shape == (224, 224) and np.array_equal(out, ref.pad_to_min(a))
    np.save(f"{d}/reflect_150x100_out.npy", out)


def main():
    check_gray_conversion()
    # worst-region k: the spec's examples, and n=10 -> round(1.5) = 2 (half to even)
    assert [ref.worst_k(n) for n in (1, 6, 7, 10, 16, 20)] == [1, 1, 1, 2, 2, 3]
    model_rel = "models/tinyusfm-seeded.onnx"
    enc = ref.Encoder(abs_(model_rel))
    g = {"model": model_rel, "model_sha256": sha256(open(abs_(model_rel), "rb").read()),
         "generator": {"script": "models/reference/make_goldens.py", "numpy": np.__version__,
                       "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__},
         "decode": decode_records(), "ulpips": []}
    for rp, ip in ULPIPS_PAIRS:
        score, layers = ref.ulpips(enc, ref.load_gray(abs_(rp)), ref.load_gray(abs_(ip)))
        g["ulpips"].append(ulpips_record(rp, ip, score, layers))
        print(f"uLPIPS {rp} vs {ip}: {score:.8f}")
    assert g["ulpips"][3]["ulpips"] == 0.0 and g["ulpips"][0]["ulpips"] > 0
    g["nrq"] = nrq_records(enc, NRQ_CASES, MANIFOLD)
    g["nrq_published"] = nrq_records(enc, NRQ_PUBLISHED_CASES, PUBLISHED)
    g["worst_k"] = {str(n): ref.worst_k(n) for n in range(1, 65)}
    grid, z = ref.patch_features(enc, ref.load_gray(abs_(LIN)))
    g["patch_features"] = [{"path": LIN, "x": grid[0][0], "y": grid[0][1], "z": z[0].tolist()}]
    os.makedirs(abs_("tests/golden"), exist_ok=True)
    with open(abs_("tests/golden/golden.json"), "w") as f:
        json.dump(g, f, indent=1)
        f.write("\n")
    inter_area_goldens()
    print("wrote tests/golden/golden.json and tests/golden/inter_area/")


if __name__ == "__main__":
    main()
