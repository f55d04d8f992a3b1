"""The one small interface every marker detector plugs into.

A marker declares the modalities it needs (all required ones must exist, optional ones are used
when present) and a ``detect`` function. The function receives the session's preprocessed
images on the reference grid with the brain mask and tissue priors, and returns a score map in
[0, 1], a binary mask and, optionally, a region map used to name the region of each lesion.
The per-lesion table is built from the mask by csvd_bids.quant, the same way for every marker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from csvd_bids.labels import BY_KEY, MarkerLabel


@dataclass(frozen=True)
class SessionImages:
    """What a detector sees; every array is on the reference grid."""

    # modality key -> preprocessed image (the DWI as dwi_b0, dwi_trace, dwi_adc; ADC in
    # 1e-6 mm2/s); the first is the reference.
    images: dict[str, nib.Nifti1Image]
    brain_mask: np.ndarray  # bool
    priors: dict[str, np.ndarray]  # template priors in subject space: wm, gm, csf, ventricles
    regions: np.ndarray | None = None  # csvd_bids.preproc.regions.REGION_LABELS map

    @property
    def reference(self) -> nib.Nifti1Image:
        return next(iter(self.images.values()))

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in np.linalg.norm(self.reference.affine[:3, :3], axis=0))

    def data(self, modality: str) -> np.ndarray:
        return np.asanyarray(self.images[modality].dataobj, dtype=np.float32)


@dataclass
class Detection:
    score: np.ndarray  # float32 in [0, 1]: the detector's lesion belief per voxel
    mask: np.ndarray  # bool
    # Region of a lesion = the lowest-index region it touches (e.g. 1 periventricular, 2 deep).
    regions: np.ndarray | None = None
    region_names: dict[int, str] = field(default_factory=dict)


# (session, lesion mask) -> (region map or None, region names)
Locator = Callable[[SessionImages, np.ndarray], tuple[np.ndarray | None, dict[int, str]]]


@dataclass(frozen=True)
class MarkerSpec:
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    # Modalities the detector uses only to leave other markers' lesions out (WMH: the T2w
    # for lacunes, the DWI for recent infarcts): given to the detector and listed among the
    # sources when present, never a model's input channel.
    context: tuple[str, ...] = ()
    detect: Callable[[SessionImages], Detection] | None = None
    method: str = ""  # one sentence for sidecars and reports
    regions: tuple[str, ...] = ()  # region names its lesion table and summary report
    # Region map and names for any mask of this marker (a model's): as the detector names its
    # own lesions. None: model bundles are not supported for the marker.
    locate: (
        Callable[[SessionImages, np.ndarray], tuple[np.ndarray | None, dict[int, str]]] | None
    ) = None

    @property
    def label(self) -> MarkerLabel:
        return BY_KEY[self.key]

    def status(self, available: set[str] | list[str]) -> tuple[bool, str]:
        """(assessed?, why not) for a session with these modalities."""
        missing = [m for m in self.required if m not in available]
        reasons = []
        if missing:
            reasons.append(f"missing modality: {', '.join(missing)}")
        if self.detect is None:
            reasons.append("no detector for this marker in this version of csvd-bids")
        return not reasons, "; ".join(reasons)

    def modalities(self, available: set[str] | list[str]) -> tuple[str, ...]:
        return self.required + tuple(m for m in self.optional + self.context if m in available)


REGISTRY: dict[str, MarkerSpec] = {}
# The DWI reaches detectors as three images on the reference grid.
DWI_IMAGES = ("dwi_b0", "dwi_trace", "dwi_adc")


def image_fields(modality: str) -> tuple[str, ...]:
    """The images a detector receives for one modality key (the DWI gives three)."""
    return DWI_IMAGES if modality == "dwi" else (modality,)


def register(spec: MarkerSpec) -> MarkerSpec:
    if spec.key not in BY_KEY:
        raise ValueError(f"unknown marker key {spec.key!r}")
    REGISTRY[spec.key] = spec
    return spec
