"""Type stubs of the usq package (the compiled module usq._usq)."""
import os
from typing import Iterable, Optional, Union

import numpy as np
import numpy.typing as npt

Image = Union[str, os.PathLike, npt.NDArray[np.uint8], npt.NDArray[np.uint16]]
"""A path, or an array: H x W gray, H x W x 3 RGB or H x W x 4 RGBA, uint8 or uint16."""

__version__: str

class UsqError(Exception): ...
class IoError(UsqError): ...
class ImageError(UsqError): ...
class ModelError(UsqError): ...
class ManifoldError(UsqError): ...
class InvalidArgumentError(UsqError): ...
class NonFiniteError(UsqError): ...
class InferenceError(UsqError): ...

class Patch:
    """One scored patch: top-left corner in the padded frame, log-likelihood under the manifold."""
    x: int
    y: int
    loglik: float

class NrqResult:
    """TinyUSFM-NRQ of one frame (higher is better) with what explains it."""
    nrq: float
    """The paper's score: mean log-likelihood of the worst 15 % of patches."""
    quality: Optional[float]
    """Calibrated index 0-100 beside NRQ (50 = a typical clean frame of the organ); None without a scale."""
    quality_organ: Optional[str]
    organ: Optional[str]
    """The organ scored against; None when all organs were combined."""
    patches: list[Patch]
    worst: list[int]
    """Indices into patches of the worst region, worst first."""
    faults: list[str]
    """Acquisition faults raised ('gain_low', 'contact_lost', ...), the main one first."""
    echo_level: float
    clipped_share: float
    dead_width: float
    pixel_std: float
    organ_margin: Optional[float]
    def to_dict(self) -> dict: ...

class Layer:
    block: int
    structure: float
    gram: float

class UlpipsResult:
    """TinyUSFM-uLPIPS (lower is closer; 0 = identical) with each layer's terms."""
    ulpips: float
    layers: list[Layer]
    def to_dict(self) -> dict: ...

def fit_manifold(
    root: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    model: Optional[Union[str, os.PathLike]] = None,
    patches_per_image: int = 12,
    pca_dim: int = 128,
    components: int = 8,
    seed: int = 0,
    holdout: float = 0.2,
    calibration: Optional[Union[str, os.PathLike]] = None,
    threads: int = 1,
) -> list[dict]:
    """One manifold per organ sub-folder of root (clean frames, recursive), written as
    out/<Organ>.npz, as `usq fit-nrq`: the quality scale from the last `holdout` share of the
    frames (held out of the fit) or from `calibration` (a root laid out the same way).
    Returns one dict per organ: organ, path, frames, patches, pca_dim, explained_variance,
    em_iterations, converged, mean_loglik, calibration_frames, quality_scale."""

class Scorer:
    """A model and its organ manifolds, loaded once. The GIL is released while the encoder runs."""
    def __init__(
        self,
        model: Optional[Union[str, os.PathLike]] = None,
        manifold: Optional[Union[str, os.PathLike]] = None,
        organ: Optional[str] = None,
        threads: int = 1,
    ) -> None: ...
    @property
    def organs(self) -> list[str]: ...
    def nrq(self, image: Image) -> NrqResult: ...
    def nrq_batch(self, images: Iterable[Image]) -> list[NrqResult]: ...
    def ulpips(self, reference: Image, image: Image) -> UlpipsResult: ...
    def ulpips_batch(self, references: Iterable[Image], images: Iterable[Image]) -> list[UlpipsResult]: ...
    def heatmap(self, image: Image) -> npt.NDArray[np.uint8]:
        """H' x W' x 3 RGB: the frame tinted by patch scores, worst region outlined, colour bar below."""
