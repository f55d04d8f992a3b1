"""The one small interface every marker detector plugs into.

A marker declares the modalities it needs (all required ones must exist, optional ones are used
when present), the other markers whose lesions it leaves out (``excludes``: edges of the
participant graph, so each detector runs once per session) and a ``detect`` function. The
function receives the session's preprocessed images on the reference grid with the brain mask,
tissue priors, region map and the masks of the markers it excludes, and returns a score map in
[0, 1], a binary mask, a region map used to name the region of each lesion, and notes on any
degraded mode. A detector that cannot model a session's images raises ``NotAssessableError``:
the marker is then "not assessed" with that reason and the rest of the session goes on. The
STRIVE size rule and the per-lesion tables are applied after the detector (or a model bundle),
the same way for every marker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from csvd_bids.labels import BY_KEY, MarkerLabel, add_marker_label, remove_marker_label
from csvd_bids.morphology import FACES, remove_small_lesions


@dataclass(frozen=True)
class SessionImages:
    """What a detector sees; every array is on the reference grid."""

    # modality key -> preprocessed image (the DWI as dwi_b0, dwi_trace, dwi_adc; ADC in
    # 1e-6 mm2/s); the first is the reference.
    images: dict[str, nib.Nifti1Image]
    brain_mask: np.ndarray  # bool
    priors: dict[str, np.ndarray]  # template priors in subject space: wm, gm, csf, ventricles
    regions: np.ndarray  # csvd_bids.preproc.regions.REGION_LABELS map (uint8)
    # marker key -> that marker's mask on this session, for the markers this one excludes
    # (MarkerSpec.excludes) that could be assessed here
    excluded: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def reference(self) -> nib.Nifti1Image:
        return next(iter(self.images.values()))

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in np.linalg.norm(self.reference.affine[:3, :3], axis=0))

    def data(self, modality: str) -> np.ndarray:
        return np.asanyarray(self.images[modality].dataobj, dtype=np.float32)

    def leave_out_excluded(self, mask: np.ndarray, min_volume_mm3: float) -> np.ndarray:
        """``mask`` without the lesions of the markers it excludes, grown by one voxel (a
        lacune's gliotic rim, an infarct's edge), and without what that leaves under
        ``min_volume_mm3``. The one exclusion rule, for a detector and a model bundle alike."""
        if not self.excluded:
            return mask
        other = np.zeros(self.brain_mask.shape, dtype=bool)
        for excluded in self.excluded.values():
            other |= excluded
        kept = mask & ~ndimage.binary_dilation(other, FACES)
        return remove_small_lesions(kept, float(np.prod(self.zooms)), min_volume_mm3)


@dataclass
class Detection:
    score: np.ndarray  # float32 in [0, 1]: the detector's lesion belief per voxel
    mask: np.ndarray  # bool
    # Region of a lesion = the lowest-index region it touches (e.g. 1 periventricular, 2 deep).
    regions: np.ndarray | None = None
    region_names: dict[int, str] = field(default_factory=dict)
    # degraded modes the user must know of (e.g. "trace only: T2 shine-through not rejected"):
    # written to the marker's sidecar and the session's qc_warnings
    notes: list[str] = field(default_factory=list)


class NotAssessableError(ValueError):
    """A detector cannot model this session's images (e.g. too little white matter to estimate
    normal tissue); the message is the reason the marker is reported as not assessed."""


@dataclass(frozen=True)
class MarkerSpec:
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    # Markers whose lesions this one leaves out (STRIVE keeps them apart; WMH: lacunes with
    # their gliotic rim, recent infarcts). Each is an edge of the session graph: that marker's
    # node (its detector or model bundle) runs once and its mask reaches this detector as
    # SessionImages.excluded; it runs even when not selected with --markers (not written then).
    excludes: tuple[str, ...] = ()
    detect: Callable[[SessionImages], Detection] | None = None
    method: str = ""  # one sentence for sidecars and reports
    regions: tuple[str, ...] = ()  # region names its lesion table and summary report
    # Region-map labels its lesions lie in (WMH: white matter, deep grey matter, brainstem): a
    # model's lesion mostly elsewhere (cortex, sulci) is dropped, as the detector never searches
    # there. Empty: anywhere.
    lesion_regions: tuple[int, ...] = ()
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
        return self.required + tuple(m for m in self.optional if m in available)


REGISTRY: dict[str, MarkerSpec] = {}
LEFT_OUT = "left out"  # what became of an excluded marker's lesions, when it was assessed
# The DWI reaches detectors as three images on the reference grid.
DWI_IMAGES = ("dwi_b0", "dwi_trace", "dwi_adc")


def image_fields(modality: str) -> tuple[str, ...]:
    """The images a detector receives for one modality key (the DWI gives three)."""
    return DWI_IMAGES if modality == "dwi" else (modality,)


def register(spec: MarkerSpec, label: MarkerLabel | None = None) -> MarkerSpec:
    """Make a marker known to every part of csvd-bids (graph, tables, label map, reports,
    evaluation). ``label``: its names and label-map index, for a marker that is not in the
    table of csvd_bids.labels (a new marker's module registers both in this one call)."""
    if label is not None and label.key != spec.key:
        raise ValueError(f"marker {spec.key!r} registered with the label of {label.key!r}")
    for other in spec.excludes:
        if other == spec.key or spec.key in dependencies(other):
            raise ValueError(f"marker {spec.key!r}: excluding {other!r} makes a cycle")
        if other not in REGISTRY:
            raise ValueError(f"marker {spec.key!r} excludes {other!r}, which is not registered")
    if label is not None and label.key not in BY_KEY:
        add_marker_label(label)
    if spec.key not in BY_KEY:
        raise ValueError(f"unknown marker key {spec.key!r}: give its label (csvd_bids.labels)")
    REGISTRY[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    """Remove a marker registered with its own label (a plugin or a test's toy marker)."""
    if any(key in spec.excludes for spec in REGISTRY.values()):
        raise ValueError(f"marker {key!r} is excluded by another marker")
    del REGISTRY[key]
    remove_marker_label(key)


def dependencies(key: str) -> tuple[str, ...]:
    """Every marker whose mask ``key`` needs, directly or through another (registered only)."""
    found: dict[str, None] = {}
    for other in REGISTRY[key].excludes if key in REGISTRY else ():
        found.update(dict.fromkeys((*dependencies(other), other)))
    return tuple(found)
