"""The cohort table of the lenticulostriate territory: every session's basal-ganglia regions
(``*_desc-basalganglia_stats.tsv``) in one long table, ``group_basalganglia.tsv``, one row per
session and region, for the group-level models of FA and CBF."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds

TABLE_GLOBS = (
    "sub-*/anat/*_desc-basalganglia_stats.tsv",
    "sub-*/ses-*/anat/*_desc-basalganglia_stats.tsv",
)
IDS = {
    "participant_id": {"Description": "Participant (sub-<label>)."},
    "session_id": {"Description": "Session (ses-<label>), n/a without sessions."},
}


def _ids(path: Path) -> dict[str, str]:
    parts = path.name.split("_")
    session = next((p for p in parts if p.startswith("ses-")), "n/a")
    return {"participant_id": parts[0], "session_id": session}


def write_basal_ganglia_table(output_dir: Path, summaries: list[Path]) -> Path | None:
    """Concatenate the tables of the sessions whose summaries were aggregated (``summaries``);
    None when none has one."""
    finished = {p.name.removesuffix("_desc-summary_stats.tsv") for p in summaries}
    paths = sorted(
        p
        for pattern in TABLE_GLOBS
        for p in output_dir.glob(pattern)
        if p.name.removesuffix("_desc-basalganglia_stats.tsv") in finished
    )
    if not paths:
        return None
    frames = [
        pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False).assign(**_ids(p)) for p in paths
    ]
    table = pd.concat(frames, ignore_index=True)
    table = table[[*IDS, *(c for c in table.columns if c not in IDS)]]
    out = output_dir / "group_basalganglia.tsv"
    sidecar = json.loads(paths[0].with_suffix(".json").read_text())
    ds.write_json(out.with_suffix(".json"), {**IDS, **sidecar})
    ds.write_tsv(out, table)
    return out
