"""The five CSVD markers: their keys, BIDS labels and label-map indices.

One table, read by the generator, the pipeline, the outputs and the group level, so that
a marker is named the same way everywhere (``--markers`` key, ``label-<LABEL>`` entity,
``seg-csvd_dseg`` index).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class MarkerLabel:
    key: str  # command-line name (``--markers``)
    label: str  # BIDS ``label-`` entity value and table column prefix
    index: int  # value in the seg-csvd dseg
    name: str  # human-readable name

    @property
    def plural(self) -> str:
        return self.name[:-1] + "ies" if self.name.endswith("y") else self.name + "s"


MARKER_LABELS: tuple[MarkerLabel, ...] = (
    MarkerLabel("wmh", "WMH", 1, "white matter hyperintensity"),
    MarkerLabel("cmb", "CMB", 2, "cerebral microbleed"),
    MarkerLabel("pvs", "PVS", 3, "enlarged perivascular space"),
    MarkerLabel("lacunes", "LAC", 4, "lacune"),
    MarkerLabel("rssi", "RSSI", 5, "recent small subcortical infarct"),
)

BY_KEY: dict[str, MarkerLabel] = {m.key: m for m in MARKER_LABELS}
BY_LABEL: dict[str, MarkerLabel] = {m.label: m for m in MARKER_LABELS}

# When two markers claim one voxel of the label map, the later in this order wins:
# a cavity (lacune) or an acute infarct is what a rater would call that voxel.
DSEG_PRIORITY: tuple[str, ...] = ("WMH", "PVS", "CMB", "LAC", "RSSI")


def dseg_tsv_text() -> str:
    """Contents of the ``seg-csvd_dseg.tsv`` lookup table shipped with the package."""
    return resources.files("csvd_bids.data").joinpath("seg-csvd_dseg.tsv").read_text()
