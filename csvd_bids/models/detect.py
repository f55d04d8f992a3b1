"""A marker's detection by a model bundle instead of its unsupervised detector.

The probability map is the score; the mask is the probability at or above the bundle's
threshold (or the caller's: the WMH second opinion's is lower) inside the brain, without
lesions under the bundle's minimum volume, without lesions
lying mostly outside the marker's regions (``MarkerSpec.lesion_regions``: a FLAIR-only WMH model
found cortex and sulci bright on thick-slice FLAIR as lesions) and without the lesions of the
markers it excludes (``SessionImages.leave_out_excluded``, as the detector);
the caller applies the marker's size rule (``csvd_bids.markers.size_rules``) to it, as to a
detector's mask. Regions are named by the marker's own ``locate``, so tables and summaries do
not depend on the method.
"""

from __future__ import annotations

import numpy as np
import torch

from csvd_bids.markers.base import Detection, MarkerSpec, SessionImages
from csvd_bids.models.bundle import Bundle, BundleError
from csvd_bids.models.inference import predict
from csvd_bids.morphology import keep_mostly_within, remove_small_lesions


def check_bundle_supported(bundle: Bundle, spec: MarkerSpec) -> None:
    """Refuse a bundle for a marker whose lesions cannot be located without its detector."""
    if spec.locate is None:
        raise BundleError(
            bundle.path, f"models for {spec.key} are not supported by this version of csvd-bids"
        )


def detect_with_bundle(
    bundle: Bundle,
    spec: MarkerSpec,
    session: SessionImages,
    device: str = "auto",
    tta: bool = False,
    threads: int = 1,
    threshold: float | None = None,
) -> Detection:
    """``threshold``: the probability a voxel needs (default: the bundle's own)."""
    torch.set_num_threads(max(1, int(threads)))
    missing = [c for c in bundle.inputs if c not in session.images]
    if missing:
        raise BundleError(bundle.path, f"needs {', '.join(missing)}, which the session lacks")
    channels = np.stack([session.data(c) for c in bundle.inputs])
    brain = np.asarray(session.brain_mask, dtype=bool)
    probability = predict(
        bundle, bundle.build_network(), channels, brain, session.zooms, device, tta
    )
    if threshold is None:
        threshold = float(bundle.metadata["threshold"])
    mask = brain & (probability >= threshold)
    affine = session.reference.affine
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    min_volume = float(bundle.metadata["min_lesion_mm3"])
    mask = remove_small_lesions(mask, voxel_mm3, min_volume)
    if spec.lesion_regions:
        mask = keep_mostly_within(mask, np.isin(session.regions, spec.lesion_regions))
    mask = session.leave_out_excluded(mask, min_volume)  # as the marker's detector does
    regions, names = spec.locate(session, mask)
    return Detection(score=probability, mask=mask, regions=regions, region_names=names)
