"""A small B-mode ultrasound simulator (the project's own code) and the fixture writer.

Pipeline, in beam space (rows = depth samples, cols = scan lines):
  scatterers (zero-mean Gaussian amplitudes -> Rayleigh envelope) x sqrt(echogenicity of a phantom)
  -> PSF convolution (Gaussian-windowed cosine along depth, Gaussian across lines)
  -> envelope |analytic signal| (scipy.signal.hilbert) -> depth attenuation, imperfect TGC
  -> log compression over a fixed dynamic range -> (optional) scan conversion to a sector/fan.
The phantom (tissue background, anechoic cysts, a bright layer, a vessel with bright walls) is
defined in physical (x, z) coordinates, so cysts stay round after scan conversion.

    models/.venv/bin/python -m usq_reference.simulate_bmode   # writes tests/fixtures/sim_*.{png,jpg,tif}

It lives in the reference package because the reference's test manifold (make_test_manifold) is
fitted on its images and the reference imports nothing from usq_tools; usq_tools.train.mim uses
its organ phantoms (simulate_random) for training data.
"""
import io
import os

import cv2
import numpy as np
from PIL import Image
from scipy.signal import fftconvolve, hilbert

from usq_reference import ROOT

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


def beam_image(n_samples, n_lines, coords, rng, axial_cycles=3.0, lateral_sigma=1.5, dyn_range_db=55.0,
               phantom_fn=None, atten=2.2, tgc=1.7, gray_level=0.45, tissue_ref=False):
    """Simulate an envelope-detected, log-compressed beam-space image in 0..1.
    coords(z_idx, line_idx) -> (x, z) physical coordinates of every sample."""
    zi, li = np.mgrid[0:n_samples, 0:n_lines].astype(np.float64)
    x, z = coords(zi, li)
    echo = (phantom_fn or phantom)(x, z, rng)  # drawn first, so the phantom layout does not depend on the grid size
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
    env *= np.exp(-atten * depth) * np.exp(tgc * depth)  # attenuation, under-compensated by TGC
    # reference level: the median envelope (of tissue only with tissue_ref, so that a large anechoic
    # region, e.g. amniotic fluid, stays dark instead of becoming the median gray)
    ref = np.median(env[echo >= 0.1]) if tissue_ref and (echo >= 0.1).mean() > 0.05 else np.median(env)
    db = 20 * np.log10(env / ref + 1e-6)
    return np.clip((db + gray_level * dyn_range_db) / dyn_range_db, 0, 1)  # median tissue -> ~45% gray


def simulate(width, height, seed, sector=False, organ=None, acoustics=None, half_angle_deg=35.0):
    """A B-mode image as float in 0..1, shape (height, width). Deterministic in seed.
    organ: None (the fixtures' phantom) or a name in ORGANS; acoustics: beam_image keyword overrides."""
    rng = np.random.default_rng(seed)
    kw = dict(acoustics or {})
    if organ is not None:
        kw["phantom_fn"] = lambda x, z, r: ORGANS[organ](x, z, r)
    n_samples = 4 * height  # RF is sampled finer than the display; decimated after detection
    if not sector:
        # a linear probe fires fewer lines than display columns; the scanner interpolates across lines
        aspect, n_lines = width / height, max(width // 3, 8)
        img = beam_image(n_samples, n_lines, lambda zi, li: ((li / n_lines - 0.5) * aspect, zi / n_samples), rng,
                         **kw)
        img = cv2.resize(img.astype(np.float32), (n_lines, height), interpolation=cv2.INTER_AREA)
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    # sector: apex above the top edge, +-35 degrees, radius r0..r1 (in units of image height)
    half_angle, r0, r1, apex_z = np.deg2rad(half_angle_deg), 0.12, 1.1, -0.1
    n_lines = 192
    theta_of = lambda li: (li / (n_lines - 1) - 0.5) * 2 * half_angle
    r_of = lambda zi: r0 + (r1 - r0) * zi / n_samples
    beam = beam_image(n_samples, n_lines, lambda zi, li: (r_of(zi) * np.sin(theta_of(li)),
                                                          r_of(zi) * np.cos(theta_of(li)) - r0), rng, **kw)
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


# --- organ-like phantoms for training data (echogenicity, linear power scale; x lateral, z depth 0..1) ---

def _ellipse(x, z, cx, cz, ax, az, ang=0.0):
    """Normalised elliptic radius (<1 inside) of an ellipse rotated by ang."""
    c, s = np.cos(ang), np.sin(ang)
    u, v = (x - cx) * c + (z - cz) * s, -(x - cx) * s + (z - cz) * c
    return np.sqrt((u / ax) ** 2 + (v / az) ** 2)


def _texture(x, z, rng, amp=0.25):
    return 1.0 + amp * np.sin(rng.uniform(4, 9) * x + rng.uniform(0, 6)) * np.sin(rng.uniform(3, 7) * z + rng.uniform(0, 6))


def _skin(e, x, z, rng):
    """Bright skin line and a hypoechoic subcutaneous layer at the top."""
    zs = rng.uniform(0.02, 0.05)
    e = np.where(z < zs, 5.0, e)
    return np.where((z >= zs) & (z < zs + rng.uniform(0.03, 0.08)), e * 0.45, e)


def phantom_liver(x, z, rng):
    """Homogeneous parenchyma, portal veins (bright walls), hepatic veins, curved bright diaphragm."""
    e = _skin(_texture(x, z, rng, 0.15) * 1.2, x, z, rng)
    for _ in range(rng.integers(3, 7)):
        r = _ellipse(x, z, rng.uniform(-0.45, 0.45), rng.uniform(0.2, 0.75), rng.uniform(0.02, 0.06),
                     rng.uniform(0.015, 0.04), rng.uniform(0, np.pi))
        walls = rng.random() < 0.5
        e = np.where((r < 1.35) & walls, 4.0, e)
        e = np.where(r < 1, 0.004, e)
    zd, curv = rng.uniform(0.7, 0.9), rng.uniform(0.3, 0.9)
    zc = zd - curv * x ** 2
    e = np.where(np.abs(z - zc) < rng.uniform(0.01, 0.025), 9.0, e)
    e = np.where(z > zc + 0.02, 0.6 * _texture(x, z, rng, 0.5), e)  # mirror artefact / lung below
    if rng.random() < 0.5:  # a hyperechoic lesion (haemangioma-like)
        e = np.where(_ellipse(x, z, rng.uniform(-0.3, 0.3), rng.uniform(0.3, 0.6), 0.05, 0.04) < 1, e * 3.5, e)
    return e


def phantom_kidney(x, z, rng):
    """Kidney: bright capsule, hypoechoic cortex, dark pyramids, hyperechoic central sinus."""
    e = _skin(_texture(x, z, rng) * 1.1, x, z, rng)
    cx, cz, ax, az, ang = rng.uniform(-0.1, 0.1), rng.uniform(0.45, 0.6), rng.uniform(0.28, 0.4), \
        rng.uniform(0.14, 0.2), rng.uniform(-0.3, 0.3)
    r = _ellipse(x, z, cx, cz, ax, az, ang)
    e = np.where(r < 1.08, 5.0, e)
    e = np.where(r < 1, 0.55, e)
    for k in range(rng.integers(5, 9)):  # pyramids around the sinus
        t = 2 * np.pi * k / 8 + rng.uniform(-0.2, 0.2)
        px, pz = cx + 0.62 * ax * np.cos(t), cz + 0.62 * az * np.sin(t)
        e = np.where(_ellipse(x, z, px, pz, 0.045, 0.03, t) < 1, 0.15, e)
    e = np.where(_ellipse(x, z, cx, cz, 0.5 * ax, 0.35 * az, ang) < 1, 3.0 * _texture(x, z, rng, 0.4), e)
    return e


def phantom_fetal(x, z, rng):
    """Fetal head in amniotic fluid: bright elliptic skull, brain with midline echo, uterine wall."""
    e = _skin(_texture(x, z, rng) * 1.0, x, z, rng)
    zu = rng.uniform(0.12, 0.25)
    wall = z < zu + 0.04 * np.sin(6 * x + rng.uniform(0, 6))
    e = np.where(wall, e, 0.01)                       # fluid below the uterine wall
    cx, cz, ax, az, ang = rng.uniform(-0.2, 0.2), rng.uniform(0.5, 0.65), rng.uniform(0.2, 0.3), \
        rng.uniform(0.15, 0.24), rng.uniform(-0.8, 0.8)
    r = _ellipse(x, z, cx, cz, ax, az, ang)
    th = rng.uniform(0.06, 0.12)
    e = np.where((r < 1 + th) & (r > 1 - th) & ~wall, 8.0 * _texture(x, z, rng, 0.5), e)
    e = np.where((r <= 1 - th) & ~wall, 0.35 * _texture(x, z, rng, 0.6), e)
    c, s = np.cos(ang), np.sin(ang)
    v = -(x - cx) * s + (z - cz) * c
    e = np.where((r < 0.85) & (np.abs(v) < 0.008) & ~wall, 2.5, e)   # midline (falx)
    if rng.random() < 0.6:  # a limb or placenta-like mass in the fluid
        e = np.where(_ellipse(x, z, rng.uniform(-0.4, 0.4), rng.uniform(0.8, 0.95), 0.15, 0.06) < 1, 1.3, e)
    return e


def phantom_cardiac(x, z, rng):
    """Heart: myocardium, 2-4 anechoic chambers, bright pericardium."""
    e = _skin(_texture(x, z, rng) * 1.3, x, z, rng)
    cx, cz = rng.uniform(-0.1, 0.1), rng.uniform(0.5, 0.6)
    e = np.where(np.abs(_ellipse(x, z, cx, cz, 0.42, 0.38) - 1) < 0.04, 6.0, e)
    for k in range(rng.integers(2, 5)):
        px, pz = cx + (-0.15 if k % 2 else 0.15) + rng.uniform(-0.04, 0.04), cz + (-0.12 if k < 2 else 0.14)
        e = np.where(_ellipse(x, z, px, pz, rng.uniform(0.08, 0.13), rng.uniform(0.08, 0.14),
                              rng.uniform(0, np.pi)) < 1, 0.004, e)
    return e


def phantom_muscle(x, z, rng):
    """Musculoskeletal: skin, fat with septa, striated muscle, bone surface with acoustic shadow."""
    e = _skin(_texture(x, z, rng, 0.1), x, z, rng)
    zf, zm = rng.uniform(0.08, 0.12), rng.uniform(0.18, 0.3)
    tilt = rng.uniform(-0.15, 0.15)
    zz = z - tilt * x
    e = np.where((zz > zf) & (zz < zm), 0.5 + 2.5 * (np.sin(rng.uniform(50, 90) * zz + 9 * x) > 0.92), e)
    e = np.where(np.abs(zz - zm) < 0.012, 6.0, e)    # fascia
    fib = np.sin(rng.uniform(70, 130) * (zz + rng.uniform(-0.2, 0.2) * x)) > 0.6
    e = np.where(zz > zm + 0.012, np.where(fib, 2.2, 0.7), e)
    zb = rng.uniform(0.65, 0.85) + rng.uniform(-0.1, 0.1) * np.cos(3 * x)
    e = np.where(np.abs(z - zb) < 0.015, 12.0, e)
    return np.where(z > zb + 0.015, 0.02, e)         # shadow behind bone


ORGANS = {"superficial": phantom, "liver": phantom_liver, "kidney": phantom_kidney, "fetal": phantom_fetal,
          "cardiac": phantom_cardiac, "muscle": phantom_muscle}


def simulate_random(seed, width=800, height=540):
    """A training image: organ, geometry (linear / sector) and acoustics drawn from seed. uint8."""
    rng = np.random.default_rng([seed, 7919])
    organ = list(ORGANS)[rng.integers(len(ORGANS))]
    sector = bool(rng.random() < 0.5)
    atten = rng.uniform(1.5, 3.0)
    ac = dict(axial_cycles=rng.uniform(2.0, 4.0), lateral_sigma=rng.uniform(1.0, 2.5),
              dyn_range_db=rng.uniform(45, 65), atten=atten, tgc=atten - rng.uniform(0.0, 0.9),
              gray_level=rng.uniform(0.35, 0.55), tissue_ref=True)
    img = simulate(width, height, seed, sector=sector, organ=organ, acoustics=ac,
                   half_angle_deg=rng.uniform(25, 40))
    return to_u8(img), organ, sector


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
