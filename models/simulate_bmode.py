#!/usr/bin/env python3
"""A small B-mode ultrasound simulator (the project's own code) and the fixture writer.

Pipeline, in beam space (rows = depth samples, cols = scan lines):
  scatterers (zero-mean Gaussian amplitudes -> Rayleigh envelope) x sqrt(echogenicity of a phantom)
  -> PSF convolution (Gaussian-windowed cosine along depth, Gaussian across lines)
  -> envelope |analytic signal| (scipy.signal.hilbert) -> depth attenuation, imperfect TGC
  -> log compression over a fixed dynamic range -> (optional) scan conversion to a sector/fan.
The phantom (tissue background, anechoic cysts, a bright layer, a vessel with bright walls) is
defined in physical (x, z) coordinates, so cysts stay round after scan conversion.

    python3 models/simulate_bmode.py          # writes tests/fixtures/sim_*.{png,jpg,tif}
"""
import io
import os

import cv2
import numpy as np
from PIL import Image
from scipy.signal import fftconvolve, hilbert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def phantom(x, z, rng):
    """Echogenicity (linear power scale) at physical coords x (lateral, -0.5..0.5) and z (depth 0..1)."""
    e = 1.0 + 0.25 * np.sin(7 * x + rng.uniform(0, 6)) * np.sin(5 * z + rng.uniform(0, 6))  # tissue texture
    # a bright layer (e.g. fascia) with a sharp upper boundary, slightly tilted
    z0, tilt = rng.uniform(0.12, 0.22), rng.uniform(-0.08, 0.08)
    layer = (z > z0 + tilt * x) & (z < z0 + tilt * x + rng.uniform(0.02, 0.05))
    e = np.where(layer, 6.0, e)
    e = np.where(z > z0 + tilt * x + 0.05, e * 1.4, e)  # different tissue below the boundary
    # a vessel: horizontal anechoic tube with bright walls
    zv, rv = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.06)
    dv = np.abs(z - zv)
    e = np.where(dv < rv * 1.25, 4.0, e)
    e = np.where(dv < rv, 0.005, e)
    # one or two anechoic cysts, and a hyperechoic inclusion
    for _ in range(rng.integers(1, 3)):
        cx, cz, r = rng.uniform(-0.3, 0.3), rng.uniform(0.6, 0.85), rng.uniform(0.05, 0.1)
        e = np.where((x - cx) ** 2 + (z - cz) ** 2 < r ** 2, 0.003, e)
    cx, cz, r = rng.uniform(-0.35, 0.35), rng.uniform(0.55, 0.9), rng.uniform(0.03, 0.06)
    return np.where((x - cx) ** 2 + (z - cz) ** 2 < r ** 2, e * 3.0, e)


def beam_image(n_samples, n_lines, coords, rng, axial_cycles=3.0, lateral_sigma=1.5, dyn_range_db=55.0):
    """Simulate an envelope-detected, log-compressed beam-space image in 0..1.
    coords(z_idx, line_idx) -> (x, z) physical coordinates of every sample."""
    zi, li = np.mgrid[0:n_samples, 0:n_lines].astype(np.float64)
    x, z = coords(zi, li)
    echo = phantom(x, z, rng)  # drawn first, so the phantom layout does not depend on the grid size
    amp = rng.standard_normal((n_samples, n_lines)) * np.sqrt(echo)
    # PSF: RF pulse with ~4 samples per carrier period along depth; Gaussian beam across lines
    period = 4.0
    t = np.arange(-int(3 * axial_cycles * period), int(3 * axial_cycles * period) + 1)
    axial = np.exp(-0.5 * (t / (axial_cycles * period / 2)) ** 2) * np.cos(2 * np.pi * t / period)
    u = np.arange(-int(4 * lateral_sigma) - 1, int(4 * lateral_sigma) + 2)
    lateral = np.exp(-0.5 * (u / lateral_sigma) ** 2)
    rf = fftconvolve(amp, np.outer(axial, lateral), mode="same")
    env = np.abs(hilbert(rf, axis=0))
    depth = zi / n_samples
    env *= np.exp(-2.2 * depth) * np.exp(1.7 * depth)  # attenuation, under-compensated by TGC
    db = 20 * np.log10(env / np.median(env) + 1e-6)
    return np.clip((db + 0.45 * dyn_range_db) / dyn_range_db, 0, 1)  # median tissue maps to ~45% gray


def simulate(width, height, seed, sector=False):
    """A B-mode image as float in 0..1, shape (height, width). Deterministic in seed."""
    rng = np.random.default_rng(seed)
    n_samples = 4 * height  # RF is sampled finer than the display; decimated after detection
    if not sector:
        # a linear probe fires fewer lines than display columns; the scanner interpolates across lines
        aspect, n_lines = width / height, max(width // 3, 8)
        img = beam_image(n_samples, n_lines, lambda zi, li: ((li / n_lines - 0.5) * aspect, zi / n_samples), rng)
        img = cv2.resize(img.astype(np.float32), (n_lines, height), interpolation=cv2.INTER_AREA)
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    # sector: apex above the top edge, +-35 degrees, radius r0..r1 (in units of image height)
    half_angle, r0, r1, apex_z = np.deg2rad(35), 0.12, 1.1, -0.1
    n_lines = 192
    theta_of = lambda li: (li / (n_lines - 1) - 0.5) * 2 * half_angle
    r_of = lambda zi: r0 + (r1 - r0) * zi / n_samples
    beam = beam_image(n_samples, n_lines, lambda zi, li: (r_of(zi) * np.sin(theta_of(li)),
                                                          r_of(zi) * np.cos(theta_of(li)) - r0), rng)
    beam = cv2.resize(beam.astype(np.float32), (n_lines, height), interpolation=cv2.INTER_AREA)
    # scan conversion: every display pixel looks up its (r, theta) in beam space; black outside the fan
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    px, pz = (xx - width / 2) / height, yy / height - apex_z
    r, th = np.hypot(px, pz), np.arctan2(px, pz)
    map_x = ((th / (2 * half_angle) + 0.5) * (n_lines - 1)).astype(np.float32)
    map_y = ((r - r0) / (r1 - r0) * height).astype(np.float32)
    out = cv2.remap(beam, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (np.abs(th) <= half_angle) & (r >= r0) & (r <= r1)
    return np.where(inside, out, 0).astype(np.float32)


def to_u8(f):
    return np.clip(np.round(f * 255), 0, 255).astype(np.uint8)


def save_png(path, arr):
    Image.fromarray(arr).save(path, optimize=True)


def write_fixtures(out=FIXTURES):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    lin_f = simulate(640, 480, seed=1)
    lin = to_u8(lin_f)
    sec = to_u8(simulate(800, 540, seed=2, sector=True))
    small = to_u8(simulate(200, 150, seed=3))
    save_png(p("sim_linear_640x480.png"), lin)
    save_png(p("sim_sector_800x540.png"), sec)
    save_png(p("sim_small_200x150.png"), small)
    save_png(p("sim_tall_180x400.png"), to_u8(simulate(180, 400, seed=4)))
    # colour: a slight warm tint, as some scanners export (3 channels, no alpha)
    lf = lin.astype(np.float32)
    rgb = np.stack([lf * 1.0, lf * 0.94 + 4, lf * 0.85 + 10], axis=-1)
    save_png(p("sim_linear_640x480_rgb.png"), np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    Image.fromarray(lin).save(p("sim_linear_640x480.jpg"), quality=90)
    # 16-bit: 12-bit detector data stored left-aligned in 16 bits (multiples of 16), from the float image
    v16 = (np.round(lin_f.astype(np.float64) * 4095) * 16).astype(np.uint16)
    Image.fromarray(v16).save(p("sim_linear_640x480_16bit.png"), optimize=True)
    Image.fromarray(small).save(p("sim_small_200x150.tif"))  # uncompressed TIFF
    # distorted versions for full-reference comparison
    save_png(p("sim_linear_640x480_blur.png"), cv2.GaussianBlur(lin, (0, 0), sigmaX=2, sigmaY=2))
    rng = np.random.default_rng(5)
    # multiplicative noise with a speckle-like grain (correlated over ~2 px), mean 1, std ~0.3
    speckle = cv2.GaussianBlur(rng.gamma(2.0, 0.5, lin.shape).astype(np.float32), (0, 0), 1.0)
    speckle = 1 + (speckle - speckle.mean()) * (0.3 / speckle.std())
    save_png(p("sim_linear_640x480_noise.png"), np.clip(np.round(lf * speckle), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    Image.fromarray(sec).save(buf, format="JPEG", quality=10)
    save_png(p("sim_sector_800x540_jpeg.png"), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    total = 0
    for f in sorted(os.listdir(out)):
        if f.startswith("sim_"):
            total += os.path.getsize(p(f))
            print(f"{os.path.getsize(p(f)):9d}  {f}")
    print(f"{total:9d}  total")


if __name__ == "__main__":
    write_fixtures()
