"""usq: ultrasound image quality from the TinyUSFM foundation model, numpy in and out.

    import numpy as np, usq
    scorer = usq.Scorer()                       # the shipped model and organ manifolds
    r = scorer.nrq(frame)                       # frame: H x W uint8 / uint16, H x W x 3|4, or a path
    r.nrq, r.quality, r.faults                  # the paper's NRQ, the 0-100 index beside it, fault flags
    scorer.ulpips(reference, frame).ulpips      # TinyUSFM-uLPIPS, lower is closer

Every library error is a `usq.UsqError` (of a kind: `ImageError`, `ModelError`, ...).
"""
from ._usq import (
    ImageError,
    InferenceError,
    InvalidArgumentError,
    IoError,
    Layer,
    ManifoldError,
    ModelError,
    NonFiniteError,
    NrqResult,
    Patch,
    Scorer,
    UlpipsResult,
    UsqError,
    __version__,
    fit_manifold,
)

__all__ = [
    "Scorer", "NrqResult", "UlpipsResult", "Patch", "Layer",
    "UsqError", "IoError", "ImageError", "ModelError", "ManifoldError", "InvalidArgumentError",
    "NonFiniteError", "InferenceError", "__version__", "fit_manifold",
]
