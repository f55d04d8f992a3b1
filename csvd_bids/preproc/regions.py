"""Regions in subject space that the detectors and lesion tables need."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Periventricular = within this distance of the lateral ventricles (domain.md: "contiguous with
# or within ~10 mm of the lateral ventricles").
PERIVENTRICULAR_MM = 10.0

# The subject-space region map (``seg-regions_dseg``): one label per brain voxel.
REGION_LABELS = {
    1: "lateral_ventricles",
    2: "periventricular_wm",
    3: "deep_wm",
    4: "centrum_semiovale",
    5: "basal_ganglia",
    6: "thalamus",
    7: "internal_capsule",
    8: "external_capsule",
    9: "brainstem",
    10: "cerebellum",
    11: "cortex_frontal",
    12: "cortex_parietal",
    13: "cortex_temporal",
    14: "cortex_occipital",
    15: "cortex_insula",
    16: "juxtacortical_wm_frontal",
    17: "juxtacortical_wm_parietal",
    18: "juxtacortical_wm_temporal",
    19: "juxtacortical_wm_occipital",
    20: "juxtacortical_wm_insula",
    21: "other_csf",
}


def distance_mm(mask: np.ndarray, zooms: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) of every voxel to the nearest voxel of ``mask``."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    return ndimage.distance_transform_edt(~mask, sampling=zooms).astype(np.float32)


def subject_ventricles(
    prior: np.ndarray, dark: np.ndarray, zooms: tuple[float, float, float], reach_mm: float = 15.0
) -> np.ndarray:
    """Ventricles of this subject: the warped template ventricles grown into CSF-dark voxels
    (within ``reach_mm``) that connect to them, so enlarged ventricles are followed."""
    seed = prior > 0.5
    near = distance_mm(seed, zooms) <= reach_mm
    grown, _ = ndimage.label((dark & near) | seed)
    keep = np.unique(grown[seed])
    return np.isin(grown, keep[keep > 0])


def periventricular_deep_regions(
    ventricles: np.ndarray, zooms: tuple[float, float, float]
) -> tuple[np.ndarray, dict[int, str]]:
    """1 = within PERIVENTRICULAR_MM of the ventricles, 2 = elsewhere (deep)."""
    regions = np.where(distance_mm(ventricles, zooms) <= PERIVENTRICULAR_MM, 1, 2).astype(np.uint8)
    return regions, {1: "periventricular", 2: "deep"}
