"""Issue 16: the group level on damaged participant-level summaries (*_desc-summary_stats.tsv).

The rule (csvd_bids/group/aggregate.py): a summary that cannot be used leaves its session out
with a warning naming the file and the problem; the group tables are written for the other
sessions, the problem is listed in group_stats.json, and the exit code is 1. A summary that
lacks columns the others have is kept, with a warning naming the file and the columns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode

# These tests copy the session-scoped demo run: keeping them on one xdist worker (make test
# uses --dist loadgroup) runs the 2 x 2 demo once instead of once per worker.
pytestmark = pytest.mark.xdist_group("demo_run")

SESSIONS = {("sub-01", "ses-1"), ("sub-01", "ses-2"), ("sub-02", "ses-1"), ("sub-02", "ses-2")}
DAMAGED = ("sub-01", "ses-2")


@pytest.fixture
def out(demo_run, tmp_path) -> Path:
    """A copy of the demo's participant-level outputs (the demo run is shared)."""
    copy = tmp_path / "out"
    shutil.copytree(demo_run["out"], copy)
    return copy


def _summary(out: Path, subject: str = DAMAGED[0], session: str = DAMAGED[1]) -> Path:
    return out / subject / session / "anat" / f"{subject}_{session}_desc-summary_stats.tsv"


def _group(demo_run, out: Path, capsys, *extra: str) -> tuple[int, str]:
    """The group level through the command line: (exit code, stdout + stderr)."""
    work = out.parent / "work"
    code = main([str(demo_run["bids"]), str(out), "group", "-w", str(work), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _group_sessions(out: Path) -> set[tuple[str, str]]:
    table = pd.read_csv(out / "group_csvd.tsv", sep="\t", keep_default_na=False)
    return set(zip(table["participant_id"], table["session_id"], strict=True))


def _assert_left_out(out: Path, code: int, log: str, damaged: Path, problem: str) -> None:
    """Exit 1; the file and its problem in the log and group_stats.json; the others kept."""
    assert code == ExitCode.SESSION_FAILED
    assert "Traceback" not in log
    assert f"{damaged}: {problem}" in log
    assert "session left out of the group tables" in log  # the warning, besides the error
    assert _group_sessions(out) == SESSIONS - {DAMAGED}
    meta = json.loads((out / "group_stats.json").read_text())
    entry = {"file": str(damaged.relative_to(out)), "problem": problem, "session_left_out": True}
    assert meta["InputProblems"] == [entry]
    assert f"{entry['file']}: {problem}; session left out" in meta["Warnings"]
    # the report is rebuilt from the new tables, and names the file left out
    assert entry["file"] in (out / "group_csvd.html").read_text()


def test_empty_summary(demo_run, out, capsys):
    damaged = _summary(out)
    damaged.write_bytes(b"")
    code, log = _group(demo_run, out, capsys)
    _assert_left_out(out, code, log, damaged, "empty file")


def test_summary_missing_a_column_is_kept_with_a_warning(demo_run, out, capsys):
    damaged = _summary(out)
    table = pd.read_csv(damaged, sep="\t", dtype=str, keep_default_na=False)
    table.drop(columns=["CMB_count", "WMH_volume_mm3"]).to_csv(damaged, sep="\t", index=False)
    code, log = _group(demo_run, out, capsys)
    assert code == ExitCode.OK
    assert "Traceback" not in log
    problem = "no column WMH_volume_mm3, CMB_count"
    assert f"{damaged}: {problem} (other summaries have it" in log
    assert _group_sessions(out) == SESSIONS
    group = pd.read_csv(out / "group_csvd.tsv", sep="\t", na_values=["n/a"])
    row = group[(group["participant_id"] == "sub-01") & (group["session_id"] == "ses-2")]
    assert row[["CMB_count", "WMH_volume_mm3"]].isna().all(axis=None)
    meta = json.loads((out / "group_stats.json").read_text())
    file = str(damaged.relative_to(out))
    assert meta["InputProblems"] == [{"file": file, "problem": problem, "session_left_out": False}]
    assert (out / "group_csvd.html").is_file()


def test_summary_without_participant_id(demo_run, out, capsys):
    damaged = _summary(out)
    table = pd.read_csv(damaged, sep="\t", dtype=str, keep_default_na=False)
    table.drop(columns=["participant_id"]).to_csv(damaged, sep="\t", index=False)
    code, log = _group(demo_run, out, capsys)
    _assert_left_out(out, code, log, damaged, "no participant_id column")
    # --reports-only rebuilds the same report from the tables
    code, log = _group(demo_run, out, capsys, "--reports-only")
    assert code == ExitCode.OK, log
    assert str(damaged.relative_to(out)) in (out / "group_csvd.html").read_text()


@pytest.mark.parametrize(
    "participant_id",
    ["n/a", "sub-02"],  # blank; another subject's (its session would be there twice)
)
def test_summary_whose_ids_are_not_the_files(demo_run, out, capsys, participant_id):
    damaged = _summary(out)
    table = pd.read_csv(damaged, sep="\t", dtype=str, keep_default_na=False)
    table.assign(participant_id=participant_id).to_csv(damaged, sep="\t", index=False)
    code, log = _group(demo_run, out, capsys)
    problem = f"participant_id {participant_id!r} is not the file name's 'sub-01'"
    _assert_left_out(out, code, log, damaged, problem)


def test_summary_cut_inside_its_header(demo_run, out, capsys):
    damaged = _summary(out)
    damaged.write_bytes(damaged.read_bytes()[:100])
    code, log = _group(demo_run, out, capsys)
    _assert_left_out(out, code, log, damaged, "no data row (file cut short?)")


def test_summary_cut_inside_its_data_row(demo_run, out, capsys):
    damaged = _summary(out)
    header, row = damaged.read_text().splitlines()[:2]
    damaged.write_text(header + "\n" + row[: len(row) // 2])
    columns, values = len(header.split("\t")), len(row[: len(row) // 2].split("\t"))
    code, log = _group(demo_run, out, capsys)
    problem = f"{values} values for {columns} columns (file cut short?)"
    _assert_left_out(out, code, log, damaged, problem)


def test_summary_with_two_data_rows(demo_run, out, capsys):
    damaged = _summary(out)
    header, row = damaged.read_text().splitlines()[:2]
    damaged.write_text(f"{header}\n{row}\n{row}\n")
    code, log = _group(demo_run, out, capsys)
    _assert_left_out(out, code, log, damaged, "2 data rows instead of 1")


def test_non_utf8_summary(demo_run, out, capsys):
    damaged = _summary(out)
    text = damaged.read_text()
    assert "\tn/a" in text
    latin1 = text.replace("\tn/a", "\tcontr\u00f4le", 1).encode("latin-1")
    damaged.write_bytes(latin1)
    code, log = _group(demo_run, out, capsys)
    offset = latin1.index(b"\xf4")
    _assert_left_out(out, code, log, damaged, f"not UTF-8 text (byte 0xf4 at offset {offset})")


def test_no_usable_summary_is_an_error_naming_every_file(demo_run, out, capsys):
    damaged = [_summary(out, subject, session) for subject, session in sorted(SESSIONS)]
    for path in damaged:
        path.write_bytes(b"")
    before = (out / "group_csvd.tsv").read_bytes()
    code, log = _group(demo_run, out, capsys)
    assert code == ExitCode.INPUT_DATA
    assert "Traceback" not in log
    assert "no usable participant-level summary" in log
    assert all(f"{path}: empty file" in log for path in damaged)
    assert (out / "group_csvd.tsv").read_bytes() == before  # nothing written


# --- the dataset's phenotype tables: refused (65), naming the file, nothing written ---


@pytest.fixture
def bids(demo_run, tmp_path) -> Path:
    """A copy of the demo dataset whose phenotype tables a test may damage."""
    return Path(shutil.copytree(demo_run["bids"], tmp_path / "bids"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"participant_id\tage\nsub-01\t7\xff\n", "not UTF-8 text (byte 0xff"),
        (b"participant_id\tage\nsub-01\t70\t1\n", "line 2 has 3 tab-separated fields, its"),
        (b"participant_id\tage\tsex\nsub-01\t70\n", "line 2 has 2 tab-separated fields"),
        (b"subject\tage\nsub-01\t70\n", "no participant_id column (its columns: subject, age)"),
    ],
    ids=["empty", "not-utf8", "long-row", "short-row", "no-id"],
)
def test_damaged_participants_tsv(bids, out, capsys, content, problem):
    damaged = bids / "participants.tsv"
    damaged.write_bytes(content)
    before = (out / "group_csvd.tsv").read_bytes()  # the demo run's
    code = main([str(bids), str(out), "group", "-w", str(out.parent / "work")])
    log = capsys.readouterr().err
    assert code == ExitCode.INPUT_DATA
    assert f"{damaged}: {problem}" in log and "Traceback" not in log
    assert (out / "group_csvd.tsv").read_bytes() == before


def test_sessions_tsv_without_session_id(bids, out, capsys):
    damaged = bids / "sub-02" / "sub-02_sessions.tsv"
    damaged.write_text("visit\tage\nses-1\t70\n")
    code = main([str(bids), str(out), "group", "-w", str(out.parent / "work")])
    assert code == ExitCode.INPUT_DATA
    assert f"{damaged}: no session_id column" in capsys.readouterr().err


def test_sessions_without_outputs_are_named(demo_run, out, capsys):
    """As after a cluster array where one task failed: the session has no outputs at all.
    The group tables hold the others, the warning names it, and the exit code stays 0 (its
    own task already failed with the subject's code)."""
    shutil.rmtree(out / "sub-02" / "ses-2")
    code, log = _group(demo_run, out, capsys)
    assert code == ExitCode.OK, log
    assert "1 session(s) of the dataset have no participant-level outputs" in log
    assert _group_sessions(out) == SESSIONS - {("sub-02", "ses-2")}
    meta = json.loads((out / "group_stats.json").read_text())
    assert meta["SessionsWithoutOutputs"] == ["sub-02/ses-2"]
    assert "InputProblems" not in meta
    assert "not in the group tables: sub-02/ses-2" in (out / "group_csvd.html").read_text()
