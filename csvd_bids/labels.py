"""The CSVD markers: their keys, BIDS labels, label-map indices and colours.

One table, read by the generator, the pipeline, the outputs and the group level, so that a
marker is named the same way everywhere (``--markers`` key, ``label-<LABEL>`` entity,
``seg-csvd_dseg`` index); the ``seg-csvd_dseg.tsv`` lookup is generated from it. A marker added
outside this file (``csvd_bids.markers.base.register(spec, label=...)``) joins the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MarkerLabel:
    key: str  # command-line name (``--markers``)
    label: str  # BIDS ``label-`` entity value and table column prefix
    index: int  # value in the seg-csvd dseg
    name: str  # human-readable name
    color: str  # display colour in the dseg lookup
    # Where two markers claim one voxel of the label map, the higher rank wins.
    dseg_rank: int = 0

    @property
    def plural(self) -> str:
        return self.name[:-1] + "ies" if self.name.endswith("y") else self.name + "s"


# A cavity (lacune) or an acute infarct is what a rater would call a voxel that another
# marker's mask also holds: they rank highest.
MARKER_LABELS: list[MarkerLabel] = [
    MarkerLabel("wmh", "WMH", 1, "white matter hyperintensity", "#ffd700", dseg_rank=1),
    MarkerLabel("cmb", "CMB", 2, "cerebral microbleed", "#d62728", dseg_rank=3),
    MarkerLabel("pvs", "PVS", 3, "enlarged perivascular space", "#1f77b4", dseg_rank=2),
    MarkerLabel("lacunes", "LAC", 4, "lacune", "#9467bd", dseg_rank=4),
    MarkerLabel("rssi", "RSSI", 5, "recent small subcortical infarct", "#2ca02c", dseg_rank=5),
]
BY_KEY: dict[str, MarkerLabel] = {}
BY_LABEL: dict[str, MarkerLabel] = {}
BACKGROUND = ("background", "BG", "#000000")


def check_marker_table(markers: list[MarkerLabel]) -> None:
    """Refuse a table a label map cannot be made from: every key, label, index and rank
    once (index 0 is the background)."""
    for what in ("key", "label", "index", "dseg_rank"):
        values = [getattr(m, what) for m in markers]
        if len(set(values)) != len(values):
            raise ValueError(f"marker table: a {what} is used twice: {values}")
    if any(not 0 < m.index < 256 for m in markers):
        raise ValueError("marker table: dseg indices must be 1-255 (0 is the background)")


def add_marker_label(marker: MarkerLabel) -> None:
    """Add a marker to the table (checked first: nothing changes when it is refused)."""
    check_marker_table([*MARKER_LABELS, marker])
    MARKER_LABELS.append(marker)
    BY_KEY[marker.key] = BY_LABEL[marker.label] = marker


def remove_marker_label(key: str) -> None:
    marker = BY_KEY.pop(key)
    del BY_LABEL[marker.label]
    MARKER_LABELS.remove(marker)


check_marker_table(MARKER_LABELS)
BY_KEY.update({m.key: m for m in MARKER_LABELS})
BY_LABEL.update({m.label: m for m in MARKER_LABELS})


def dseg_priority() -> tuple[str, ...]:
    """Marker labels in painting order: where masks overlap, the later wins."""
    return tuple(m.label for m in sorted(MARKER_LABELS, key=lambda m: m.dseg_rank))


def paint_dseg(masks: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """One label map (uint8 indices) from per-label masks; where masks overlap, the higher
    ranked marker wins. Labels absent from ``masks`` are simply not painted."""
    unknown = set(masks) - set(BY_LABEL)
    if unknown:
        raise KeyError(f"no dseg index for {sorted(unknown)}")
    dseg = np.zeros(shape, dtype=np.uint8)
    for label in dseg_priority():
        if label in masks:
            dseg[np.asarray(masks[label]) > 0] = BY_LABEL[label].index
    return dseg


def dseg_tsv_text() -> str:
    """Contents of the ``seg-csvd_dseg.tsv`` lookup table (BIDS dseg.tsv columns)."""
    rows = [(0, *BACKGROUND)] + [(m.index, m.name, m.label, m.color) for m in MARKER_LABELS]
    lines = ["index\tname\tabbreviation\tcolor\tmapping"]
    lines += [f"{index}\t{name}\t{abbr}\t{color}\t" for index, name, abbr, color in sorted(rows)]
    return "\n".join(lines) + "\n"
