"""Group level: gather every session's summary into ``group_csvd.tsv``, joined with the
dataset's ``participants.tsv`` and ``sessions.tsv``, then the group analyses.

Reads the participant-level derivatives and those two phenotype tables (never the images
or the work dir).

Damaged summaries (empty, cut short, not UTF-8, without the session's ids...): the session is
left out with a warning naming the file and the problem, the group tables are written for the
other sessions, the problems are listed in ``group_stats.json`` ("InputProblems", and its
"Warnings" for the report), and the run ends with exit code 1 (ExitCode.SESSION_FAILED). A
summary that lacks columns other summaries have is kept, with a warning naming the columns
(their values are n/a in the group table). No usable summary at all: exit code 65, nothing
written. A damaged ``participants.tsv`` or ``sessions.tsv`` (the covariates of every
session): exit code 65 naming the file and the problem, nothing written. Sessions of the
dataset without any summary (not run yet, failed, e.g. one task of a cluster array, or without
the images csvd-bids needs) are named in a warning and in ``group_stats.json``
("SessionsWithoutOutputs"); the exit code stays 0.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.errors import CsvdBidsError, ExitCode, InputFileError, NoInputError
from csvd_bids.group.analysis import write_group_analyses
from csvd_bids.group.basal_ganglia import write_basal_ganglia_table

if TYPE_CHECKING:
    from csvd_bids.group.lsa_model import TrainSettings

LOGGER = logging.getLogger("csvd_bids.group")
KEYS = ("participant_id", "session_id")
SUMMARY_GLOBS = ("sub-*/anat/*_desc-summary_stats.tsv", "sub-*/ses-*/anat/*_desc-summary_stats.tsv")


def find_summaries(output_dir: Path) -> list[Path]:
    return sorted(p for pattern in SUMMARY_GLOBS for p in output_dir.glob(pattern))


def sessions_without_outputs(bids_dir: Path, summaries: list[Path]) -> list[str]:
    """The dataset's sessions (``sub-X`` or ``sub-X/ses-Y``) that have no summary file."""
    written = {
        (p.parent.parent.parent.name, p.parent.parent.name)
        if p.parent.parent.name.startswith("ses-")
        else (p.parent.parent.name, None)
        for p in summaries
    }
    missing = []
    for subject in sorted(d for d in bids_dir.glob("sub-*") if d.is_dir()):
        sessions = sorted(d.name for d in subject.glob("ses-*") if d.is_dir())
        for session in sessions or [None]:
            if (subject.name, session) not in written:
                missing.append(f"{subject.name}/{session}" if session else subject.name)
    return missing


class SkippedSummariesError(CsvdBidsError):
    """Raised after the group tables were written without the sessions named in it."""

    exit_code = ExitCode.SESSION_FAILED


def read_text(path: Path) -> str:
    """A table's text; InputFileError naming the file when it is not UTF-8 or unreadable."""
    try:
        # utf-8-sig: a byte-order mark (a spreadsheet's save) would rename the first column
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        raise InputFileError(str(path), problem) from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc.strerror})") from None


def read_summary(path: Path) -> tuple[str, str] | str:
    """(header line, data line) of one session's summary, or why it cannot be used."""
    try:
        text = read_text(path)
    except InputFileError as exc:
        return exc.problem
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "empty file"
    header, rows = lines[0].split("\t"), lines[1:]
    if not rows:  # a file cut inside its header, or a header alone
        return "no data row (file cut short?)"
    if len(rows) > 1:  # one summary, one session
        return f"{len(rows)} data rows instead of 1"
    fields = rows[0].split("\t")
    if len(fields) != len(header):  # pandas would pad a short row with n/a, silently
        return f"{len(fields)} values for {len(header)} columns (file cut short?)"
    missing = [key for key in KEYS if key not in header]
    if missing:
        return f"no {' or '.join(missing)} column"
    # the ids must be the file's own: a blank or foreign id would merge or misname sessions
    values = dict(zip(header, fields, strict=True))
    entities = path.name.split("_")
    expected = {
        "participant_id": entities[0],
        "session_id": next((e for e in entities if e.startswith("ses-")), "n/a"),
    }
    wrong = [
        f"{key} {values[key]!r} is not the file name's {expected[key]!r}"
        for key in KEYS
        if values[key] != expected[key]
    ]
    if wrong:
        return ", ".join(wrong)
    return lines[0], rows[0]


def collect_summaries(
    paths: list[Path],
) -> tuple[pd.DataFrame | None, dict[Path, str], dict[Path, list[str]]]:
    """Every usable summary in one table (None: none usable), the skipped files with their
    problem, and the kept files that lack columns others have, with those columns.

    Files with the same header are parsed together (one ``read_csv`` per header instead of one
    per session: 1,000 sessions in well under 1 s)."""
    by_header: dict[str, list[str]] = {}
    header_of: dict[Path, str] = {}
    skipped: dict[Path, str] = {}
    for path in paths:
        summary = read_summary(path)
        if isinstance(summary, str):
            skipped[path] = summary
            LOGGER.warning("%s: %s; session left out of the group tables", path, summary)
            continue
        header, row = summary
        by_header.setdefault(header, []).append(row)
        header_of[path] = header
    if not by_header:
        return None, skipped, {}
    # a column some summaries have and this one lacks would be n/a for it in the group table
    columns = dict.fromkeys(c for header in by_header for c in header.split("\t"))
    absent_by_header = {h: [c for c in columns if c not in h.split("\t")] for h in by_header}
    incomplete: dict[Path, list[str]] = {}
    for path, header in header_of.items():
        absent = absent_by_header[header]
        if absent:
            incomplete[path] = absent
            LOGGER.warning(
                "%s: no column %s (other summaries have it; n/a in the group table)",
                path,
                ", ".join(absent),
            )
    tables = [
        _read_tsv(io.StringIO("\n".join([header, *rows]))) for header, rows in by_header.items()
    ]
    table = pd.concat(tables, ignore_index=True, sort=False)
    table = table.sort_values(
        ["participant_id", "session_id"], na_position="first", ignore_index=True
    )
    return table, skipped, incomplete


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


def read_phenotypes(path: Path, keys: tuple[str, ...]) -> pd.DataFrame:
    """``participants.tsv`` or a ``sessions.tsv``; InputFileError (exit 65) naming the file and
    the problem when it cannot be read as a table with the ``keys`` columns. A damaged one is
    refused rather than left out: the group statistics would silently lose their covariates."""
    text = read_text(path)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InputFileError(str(path), "empty file")
    # pandas would fill a short row with n/a and turn a long one's first fields into an index
    widths = [len(line.split("\t")) if line.strip() else None for line in lines]
    for number, width in enumerate(widths[1:], start=2):
        if width is not None and width != widths[0]:
            problem = f"line {number} has {width} tab-separated fields, its header {widths[0]}"
            raise InputFileError(str(path), problem)
    table = _read_tsv(io.StringIO(text))
    missing = [key for key in keys if key not in table.columns]
    if missing:
        raise InputFileError(
            str(path),
            f"no {', '.join(missing)} column (its columns: {', '.join(map(str, table.columns))})",
        )
    return table


def join_phenotypes(table: pd.DataFrame, bids_dir: Path | None) -> tuple[pd.DataFrame, dict]:
    """The table joined with ``participants.tsv`` and each subject's ``sessions.tsv`` (when
    present; their columns come after the summaries'), and their data dictionaries."""
    dictionary: dict = {}
    if bids_dir is None:
        return table, dictionary
    participants = bids_dir / "participants.tsv"
    if participants.is_file():
        extra = read_phenotypes(participants, KEYS[:1]).drop_duplicates("participant_id")
        extra = extra[[c for c in extra.columns if c == "participant_id" or c not in table]]
        table = table.merge(extra, on="participant_id", how="left")
        if participants.with_suffix(".json").is_file():
            dictionary.update(json.loads(participants.with_suffix(".json").read_text()))
    sessions = [
        read_phenotypes(p, KEYS[1:]).assign(participant_id=p.parent.name)
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
    lsa_model: TrainSettings | None = None,
    lsa_permutations: int = 200,
) -> Path:
    """``lsa_model``: also run the lenticulostriate-territory network with these settings."""
    paths = find_summaries(output_dir)
    if not paths:
        raise NoInputError(
            f"{output_dir}: no participant-level outputs (*_desc-summary_stats.tsv) to aggregate; "
            "run the participant level first"
        )
    summaries, skipped, incomplete = collect_summaries(paths)
    if summaries is None:
        raise CsvdBidsError(
            f"{output_dir}: no usable participant-level summary: "
            + "; ".join(f"{path}: {problem}" for path, problem in skipped.items()),
            ExitCode.INPUT_DATA,
        )
    table, phenotype_dictionary = join_phenotypes(summaries, bids_dir)
    out = output_dir / "group_csvd.tsv"
    kept = [path for path in paths if path not in skipped]
    ds.write_json(out.with_suffix(".json"), {**_dictionary(kept), **phenotype_dictionary})
    ds.write_tsv(out, table)
    write_basal_ganglia_table(output_dir, kept)
    write_group_analyses(table, output_dir, outcome, covariates)
    if lsa_model is not None:
        from csvd_bids.group.lsa_run import write_lsa_model  # torch and MONAI: only when asked

        write_lsa_model(output_dir, table, outcome, lsa_model, lsa_permutations)
    elif (output_dir / LSA_MODEL_JSON).exists():
        _mark_lsa_model_stale(output_dir / LSA_MODEL_JSON)
    without = sessions_without_outputs(bids_dir, paths) if bids_dir is not None else []
    if without:
        LOGGER.warning(
            "group level: %d session(s) of the dataset have no participant-level outputs and "
            "are not in the group tables (not run, failed, or without a T1w or FLAIR): %s",
            len(without),
            ", ".join(without),
        )
    _record_problems(output_dir, skipped, incomplete, without)
    LOGGER.info(
        "group level: %d sessions of %d subjects -> %s",
        len(table),
        table["participant_id"].nunique(),
        out,
    )
    if skipped:
        raise SkippedSummariesError(
            f"group level: {len(skipped)} of {len(paths)} session(s) left out, their summary "
            "is damaged: "
            + "; ".join(f"{path}: {problem}" for path, problem in skipped.items())
            + f". The group tables in {output_dir} hold the other {len(table)} session(s) "
            "(problems listed in group_stats.json and the report); re-run the participant level "
            "for the sessions left out"
        )
    return out


LSA_MODEL_JSON = "group_lsa_model.json"  # --lsa-model's summary (csvd_bids.group.lsa_run)
LSA_MODEL_STALE = (
    "not re-run by the latest group level (run without --lsa-model): these figures are from "
    "an earlier run"
)


def _mark_lsa_model_stale(path: Path) -> None:
    """An earlier --lsa-model result stays, but the report and its JSON say it is not this
    run's (the group table may hold other sessions now)."""
    meta = json.loads(path.read_text())
    note = f"{LSA_MODEL_STALE}, over {meta.get('NSessions', '?')} session(s)"
    meta["Warnings"] = [note, *(w for w in meta.get("Warnings", []) if w != note)]
    ds.write_json(path, meta)
    LOGGER.warning("group level: %s: %s", path.name, note)


def _record_problems(
    output_dir: Path,
    skipped: dict[Path, str],
    incomplete: dict[Path, list[str]],
    without_outputs: list[str],
) -> None:
    """The damaged summaries and the sessions without any in group_stats.json:
    "InputProblems" and "SessionsWithoutOutputs" for scripts, and its "Warnings", which the
    group report shows."""
    if not skipped and not incomplete and not without_outputs:
        return
    problems = [
        {"file": str(path.relative_to(output_dir)), "problem": problem, "session_left_out": True}
        for path, problem in skipped.items()
    ] + [
        {
            "file": str(path.relative_to(output_dir)),
            "problem": f"no column {', '.join(columns)}",
            "session_left_out": False,
        }
        for path, columns in incomplete.items()
    ]
    path = output_dir / "group_stats.json"
    meta = json.loads(path.read_text())
    notes = [
        f"{p['file']}: {p['problem']}"
        + ("; session left out" if p["session_left_out"] else "; n/a in the group table")
        for p in problems
    ]
    if without_outputs:
        notes.append(
            f"{len(without_outputs)} session(s) of the dataset without participant-level "
            f"outputs, not in the group tables: {', '.join(without_outputs)}"
        )
        meta["SessionsWithoutOutputs"] = without_outputs
    meta["Warnings"] = notes + meta.get("Warnings", [])
    if problems:
        meta["InputProblems"] = problems
    ds.write_json(path, meta)
