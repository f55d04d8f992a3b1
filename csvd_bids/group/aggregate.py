"""Group level: gather every session's summary into ``group_csvd.tsv``, joined with the
dataset's ``participants.tsv`` and ``sessions.tsv``, then the group analyses.

Reads the participant-level derivatives and those two phenotype tables (never the images
or the work dir).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.errors import NoInputError
from csvd_bids.group.analysis import write_group_analyses

LOGGER = logging.getLogger("csvd_bids.group")
KEYS = ("participant_id", "session_id")
SUMMARY_GLOBS = ("sub-*/anat/*_desc-summary_stats.tsv", "sub-*/ses-*/anat/*_desc-summary_stats.tsv")


def find_summaries(output_dir: Path) -> list[Path]:
    return sorted(p for pattern in SUMMARY_GLOBS for p in output_dir.glob(pattern))


def collect_summaries(paths: list[Path]) -> pd.DataFrame:
    """Every summary in one table. Files with the same header are parsed together (one
    ``read_csv`` per header instead of one per session: 1,000 sessions in well under 1 s)."""
    by_header: dict[str, list[str]] = {}
    for path in paths:
        header, *rows = path.read_text().splitlines()
        by_header.setdefault(header, []).extend(r for r in rows if r.strip())
    tables = [
        _read_tsv(io.StringIO("\n".join([header, *rows]))) for header, rows in by_header.items()
    ]
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


def _read_tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def join_phenotypes(table: pd.DataFrame, bids_dir: Path | None) -> tuple[pd.DataFrame, dict]:
    """The table joined with ``participants.tsv`` and each subject's ``sessions.tsv`` (when
    present; their columns come after the summaries'), and their data dictionaries."""
    dictionary: dict = {}
    if bids_dir is None:
        return table, dictionary
    participants = bids_dir / "participants.tsv"
    if participants.is_file():
        extra = _read_tsv(participants).drop_duplicates("participant_id")
        extra = extra[[c for c in extra.columns if c == "participant_id" or c not in table]]
        table = table.merge(extra, on="participant_id", how="left")
        if participants.with_suffix(".json").is_file():
            dictionary.update(json.loads(participants.with_suffix(".json").read_text()))
    sessions = [
        _read_tsv(p).assign(participant_id=p.parent.name)
        for p in sorted(bids_dir.glob("sub-*/sub-*_sessions.tsv"))
    ]
    if sessions:
        extra = pd.concat(sessions, ignore_index=True)
        extra = extra[[c for c in extra.columns if c in KEYS or c not in table]]
        table = table.merge(extra, on=list(KEYS), how="left")
    return table, dictionary


def run_group_level(
    output_dir: Path,
    bids_dir: Path | None = None,
    outcome: str | None = None,
    covariates: tuple[str, ...] | None = None,
) -> Path:
    paths = find_summaries(output_dir)
    if not paths:
        raise NoInputError(
            f"{output_dir}: no participant-level outputs (*_desc-summary_stats.tsv) to aggregate; "
            "run the participant level first"
        )
    table, phenotype_dictionary = join_phenotypes(collect_summaries(paths), bids_dir)
    out = output_dir / "group_csvd.tsv"
    ds.write_json(out.with_suffix(".json"), {**_dictionary(paths), **phenotype_dictionary})
    ds.write_tsv(out, table)
    write_group_analyses(table, output_dir, outcome, covariates)
    LOGGER.info(
        "group level: %d sessions of %d subjects -> %s",
        len(table),
        table["participant_id"].nunique(),
        out,
    )
    return out
