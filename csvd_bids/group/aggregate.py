"""Group level: gather every session's summary into ``group_csvd.tsv``.

Reads the participant-level derivatives only (never bids_dir or the work dir).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.errors import NoInputError

LOGGER = logging.getLogger("csvd_bids.group")
SUMMARY_GLOBS = ("sub-*/anat/*_desc-summary_stats.tsv", "sub-*/ses-*/anat/*_desc-summary_stats.tsv")


def find_summaries(output_dir: Path) -> list[Path]:
    return sorted(p for pattern in SUMMARY_GLOBS for p in output_dir.glob(pattern))


def collect_summaries(paths: list[Path]) -> pd.DataFrame:
    tables = [pd.read_csv(p, sep="\t", na_values=["n/a"], keep_default_na=False) for p in paths]
    table = pd.concat(tables, ignore_index=True, sort=False)
    return table.sort_values(
        ["participant_id", "session_id"], na_position="first", ignore_index=True
    )


def _dictionary(paths: list[Path]) -> dict:
    """Union of the per-session data dictionaries (same columns, so the first wins)."""
    merged: dict = {}
    for path in paths[:1] + paths[-1:]:
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            for key, value in json.loads(sidecar.read_text()).items():
                merged.setdefault(key, value)
    return merged


def run_group_level(output_dir: Path) -> Path:
    paths = find_summaries(output_dir)
    if not paths:
        raise NoInputError(
            f"{output_dir}: no participant-level outputs (*_desc-summary_stats.tsv) to aggregate; "
            "run the participant level first"
        )
    table = collect_summaries(paths)
    out = output_dir / "group_csvd.tsv"
    ds.write_json(out.with_suffix(".json"), _dictionary(paths))
    ds.write_tsv(out, table)
    LOGGER.info(
        "group level: %d sessions of %d subjects -> %s",
        len(table),
        table["participant_id"].nunique(),
        out,
    )
    return out
