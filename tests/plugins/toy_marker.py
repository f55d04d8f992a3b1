"""A toy marker, as a lab would add its own: one module and one ``register`` call.

It finds the brightest FLAIR voxels of the brain and names each lesion by hemisphere. Loaded
through CSVD_BIDS_MARKER_PLUGINS by tests/test_new_marker.py, which checks that it reaches every
output without any other edit.
"""

from __future__ import annotations

import numpy as np

from csvd_bids.labels import MarkerLabel
from csvd_bids.markers.base import Detection, MarkerSpec, SessionImages, register

TOY_PERCENTILE = 99.5  # of the brain's FLAIR intensities


def locate_toy(session: SessionImages, mask: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """1 left, 2 right of the image's middle column (x increases to the right in RAS)."""
    columns = np.arange(mask.shape[0])[:, None, None]
    side = np.where(columns < mask.shape[0] / 2, 1, 2) * np.ones(mask.shape, np.uint8)
    return side.astype(np.uint8), {1: "left", 2: "right"}


def detect_toy(session: SessionImages) -> Detection:
    flair = session.data("flair")
    brain = session.brain_mask
    mask = brain & (flair >= np.percentile(flair[brain], TOY_PERCENTILE))
    score = np.where(brain, flair / max(float(flair[brain].max()), 1e-6), 0.0)
    regions, names = locate_toy(session, mask)
    return Detection(score.astype(np.float32), mask, regions, names, notes=["a toy marker"])


register(
    MarkerSpec(
        "toy",
        required=("flair",),
        detect=detect_toy,
        locate=locate_toy,
        method=f"FLAIR at or above the brain's {TOY_PERCENTILE}th percentile (a toy)",
        regions=("left", "right"),
    ),
    label=MarkerLabel("toy", "TOY", 6, "toy lesion", "#00ffff", dseg_rank=6),
)
