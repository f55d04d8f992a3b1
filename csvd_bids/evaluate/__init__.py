"""Evaluation of marker masks against reference masks (``csvd-bids-eval``).

Masks are paired by subject, session and label (``label-<LABEL>_mask``, LABEL in WMH, CMB,
PVS, LAC, RSSI); other entities (``space``, ``desc``, ...) are ignored. The output mask is
resampled (nearest neighbour) onto the reference grid when the grids differ, and every metric is
computed on the reference grid.

Conventions (also written into the JSON output, see ``CONVENTIONS``):

- Lesion = 26-connected component of a mask.
- A reference lesion is *detected* when any output voxel overlaps it (recall = detected /
  reference lesions); an output component is a *true positive* when it overlaps any reference
  voxel (precision = true-positive components / output components); F1 = 2PR / (P + R).
- Empty masks: both empty: Dice 1, HD95 n/a, AVD n/a; only one empty: Dice 0, HD95 n/a.
- A marker without an output mask for a session that has a reference mask is "not assessed"
  (with the pipeline's reason when its summary gives one), never scored as 0.
"""

from __future__ import annotations

from csvd_bids.evaluate.metrics import (
    CONVENTIONS,
    MaskComparison,
    compare_masks,
    evaluate_pairs,
    summarise,
)
from csvd_bids.evaluate.pairing import (
    MaskPair,
    find_masks,
    marker_labels,
    pair_masks,
    parse_entities,
)

__all__ = [
    "CONVENTIONS",
    "marker_labels",
    "MaskComparison",
    "MaskPair",
    "compare_masks",
    "evaluate_pairs",
    "find_masks",
    "pair_masks",
    "parse_entities",
    "summarise",
]
