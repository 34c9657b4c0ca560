"""Training-only acquisition degradations for usq_tools.train.quality.

Separate code with separate parameters from the evaluation's distortions
(usq_tools.evaluate.distortions, which nothing under usq_tools.train imports): other noise models,
other geometry, other ranges, drawn continuously instead of at four fixed severities. Families of
the evaluation that no training degradation imitates at all: JPEG, downscale-upscale, additive
Gaussian noise and reverberation-like ghosting (and dropout: the nearest, `contact`, fades one side
of the image, not a rectangle in the middle).

Each family takes a gray float32 image (0..255) and a severity s in (0, 1] and returns float32
clipped to 0..255; s = 0 is the clean image. The severity is the training target, so each family
maps s to a visibly growing effect; the random geometry (where, which side) is independent of s.
"""
import cv2
import numpy as np

FAMILIES = ("rayleigh", "lateral_blur", "tgc", "cone_shadow", "haze", "overgain", "contact")
# what each stands for at the scanner, for the docs
MEANING = {
    "rayleigh": "coarser, stronger speckle (multiplicative Rayleigh field, laterally elongated)",
    "lateral_blur": "lost lateral resolution / defocus (anisotropic Gaussian, sigma_x up to 5.4 px)",
    "tgc": "a wrong TGC curve (smooth random gain profile over depth, up to 18 dB lost)",
    "cone_shadow": "a shadow cast from the probe face (a wedge, attenuation up to 95 %)",
    "haze": "near-field clutter / haze (low-frequency fog lifting the black level, up to 70 levels)",
    "overgain": "too much gain (x (1 + 1.5 s) + 20 s, clipped)",
    "contact": "poor contact on one side of the aperture (a side band fading to a noise floor)",
}


def _smooth_field(rng, h, w, sigma_y, sigma_x):
    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y)
    return n / (n.std() + 1e-6)


def degrade(x, family, s, rng):
    """x float32 [H,W] 0..255 -> degraded float32 [H,W] 0..255."""
    if s <= 0:
        return x.copy()
    h, w = x.shape
    if family == "rayleigh":
        a = _smooth_field(rng, h, w, 0.7, 1.6)
        b = _smooth_field(rng, h, w, 0.7, 1.6)
        r = np.sqrt(a * a + b * b) / np.sqrt(2.0)          # Rayleigh, mean ~0.89
        r /= r.mean()
        k = 0.9 * s
        y = x * ((1 - k) + k * r)
    elif family == "lateral_blur":
        y = cv2.GaussianBlur(x, (0, 0), sigmaX=0.4 + 5.0 * s, sigmaY=0.3 + 1.2 * s)
    elif family == "tgc":
        knots = rng.uniform(-1.0, 0.15, 5).astype(np.float32)
        knots[rng.integers(5)] = -1.0                       # the loss reaches its full depth somewhere
        depth = np.interp(np.linspace(0, 4, h), np.arange(5), knots).astype(np.float32)
        depth = cv2.GaussianBlur(depth[:, None], (0, 0), sigmaX=1, sigmaY=h / 12)[:, 0]
        db = 18.0 * s * depth
        y = x * (10.0 ** (db / 20.0))[:, None]
    elif family == "cone_shadow":
        ax, ay = rng.uniform(0.2, 0.8) * w, -rng.uniform(0.1, 0.6) * h
        half = np.deg2rad(rng.uniform(3, 10))
        start = rng.uniform(0.1, 0.5) * h
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = np.arctan2(xx - ax, yy - ay)
        centre = np.arctan2(rng.uniform(0.3, 0.7) * w - ax, h - ay)
        inside = 1.0 / (1.0 + np.exp((np.abs(ang - centre) - half) / 0.01))
        below = 1.0 / (1.0 + np.exp(-(yy - start) / 8.0))
        y = x * (1.0 - 0.95 * s * inside * below)
    elif family == "haze":
        fog = _smooth_field(rng, h, w, h / 8, w / 8)
        fog = 0.5 + 0.5 * np.tanh(fog)                     # 0..1, low frequency
        y = x + 70.0 * s * fog
    elif family == "overgain":
        y = x * (1.0 + 1.5 * s) + 20.0 * s
    elif family == "contact":
        frac = 0.15 + 0.45 * s
        xs = np.arange(w, dtype=np.float32) / w
        d = xs if rng.random() < 0.5 else 1.0 - xs        # distance from the lost side
        fade = 1.0 / (1.0 + np.exp(-(d - frac) / 0.03))     # 0 at the side, 1 past frac
        floor = np.abs(rng.standard_normal((h, w)).astype(np.float32)) * 6.0
        y = x * fade[None, :] + floor * (1.0 - fade[None, :])
    else:
        raise ValueError(family)
    return np.clip(y, 0, 255).astype(np.float32)
