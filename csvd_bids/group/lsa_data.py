"""The lenticulostriate-territory model's inputs: every session's T1w patches of the six
basal-ganglia regions with that region's FA and CBF (``*_desc-basalganglia_stats.tsv``), read
from the participant-level derivatives only.

One sample is one region of one session. A region without its patch file, or with a patch of
another shape, is left out with a warning; a missing FA or CBF (``n/a``: no DWI, no ASL, too
little coverage) stays NaN and is masked out of that target's loss and figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from csvd_bids.group.basal_ganglia import TABLE_GLOBS

LOGGER = logging.getLogger("csvd_bids.group")
NA = "n/a"
TARGETS = ("fa", "cbf")  # column <target>_mean of the region table
PATCH_SHAPE = (32, 32, 32)
TEMPLATE_SPACE = "MNI152NLin2009aSym"
ROIS = tuple(f"{s}_{h}" for s in ("caudate", "putamen", "pallidum") for h in ("left", "right"))


@dataclass
class PatchData:
    """Samples (one row per session and region) and their patches, in the same order."""

    samples: pd.DataFrame  # participant_id, session_id, roi, volume_mm3, fa, cbf
    patches: np.ndarray  # (n, 32, 32, 32) float32
    warnings: list[str] = field(default_factory=list)

    @property
    def targets(self) -> np.ndarray:
        """(n, 2) FA and CBF, NaN where n/a."""
        return self.samples[list(TARGETS)].to_numpy(dtype=np.float64)


def patch_path(folder: Path, prefix: str, roi: str) -> Path:
    structure, side = roi.split("_")
    hemi = "L" if side == "left" else "R"
    name = f"{prefix}_hemi-{hemi}_space-{TEMPLATE_SPACE}_label-{structure}_desc-patch_T1w.nii.gz"
    return folder / name


def _ids(prefix: str) -> tuple[str, str]:
    parts = prefix.split("_")
    return parts[0], next((p for p in parts if p.startswith("ses-")), NA)


def session_key(participant: str, session) -> tuple[str, str]:
    """Sessions compared as (sub, ses or "n/a"): the group table reads a blank session as NaN."""
    return str(participant), session if isinstance(session, str) and session else NA


def load_patch_data(output_dir: Path, sessions: set[tuple[str, str]] | None = None) -> PatchData:
    """Every region of every session (only ``sessions`` when given: those of the group
    table) that has a patch; warnings name what was left out."""
    tables = sorted(p for pattern in TABLE_GLOBS for p in output_dir.glob(pattern))
    rows, patches, warnings = [], [], []
    missing: list[str] = []
    for table_path in tables:
        prefix = table_path.name.removesuffix("_desc-basalganglia_stats.tsv")
        participant, session = _ids(prefix)
        if sessions is not None and (participant, session) not in sessions:
            continue
        table = pd.read_csv(table_path, sep="\t", na_values=[NA], keep_default_na=False)
        for _, row in table.iterrows():
            roi = str(row["roi"])
            path = patch_path(table_path.parent, prefix, roi)
            if not path.is_file():
                missing.append(f"{prefix} {roi}")
                continue
            data = np.asanyarray(nib.load(path).dataobj, dtype=np.float32)
            if data.shape != PATCH_SHAPE or not np.isfinite(data).all():
                warnings.append(f"{path.name}: shape {data.shape} or non-finite values; left out")
                continue
            rows.append(
                {
                    "participant_id": participant,
                    "session_id": session,
                    "roi": roi,
                    "volume_mm3": pd.to_numeric(row.get("volume_mm3"), errors="coerce"),
                    **{t: pd.to_numeric(row.get(f"{t}_mean"), errors="coerce") for t in TARGETS},
                }
            )
            patches.append(data)
    if missing:
        warnings.append(
            f"{len(missing)} region(s) without a T1w patch left out (e.g. {', '.join(missing[:3])})"
        )
    for note in warnings:
        LOGGER.warning("lenticulostriate model: %s", note)
    samples = pd.DataFrame(
        rows, columns=["participant_id", "session_id", "roi", "volume_mm3", *TARGETS]
    )
    stack = np.stack(patches) if patches else np.zeros((0, *PATCH_SHAPE), np.float32)
    return PatchData(samples, stack, warnings)
