"""Who may use a work dir, one run per session in it, selections that leave nothing, and the
code of a run of both levels.

The lock between two real runs is tested in test_interruptions (the chain); here are the
cases that need no graph."""

from __future__ import annotations

import json
import os
import time

import pytest
from helpers import participant_args

from csvd_bids.cli.run import main
from csvd_bids.cli.workdir import session_locks
from csvd_bids.errors import ExitCode, WorkDirBusyError
from csvd_bids.workflows.base import WORKFLOW_NAME

OTHER_USER = 65534  # nobody


def _owned_by_another_user(folder):
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, OTHER_USER, OTHER_USER)
    return folder


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder away needs root")


@needs_root
@pytest.mark.parametrize("inside", ["", WORKFLOW_NAME])
def test_work_dir_of_another_user_is_refused(single_bids, tmp_path, capsys, inside):
    """Its pickled node results would be loaded on resume: another user's code, run by us."""
    foreign = _owned_by_another_user(tmp_path / "work" / inside)
    started = time.monotonic()
    assert main(participant_args(single_bids, tmp_path)) == ExitCode.USAGE
    error = capsys.readouterr().err
    assert f"{foreign}: owned by user id {OTHER_USER}" in error
    assert time.monotonic() - started < 30  # before the graph


def test_own_work_dir_is_accepted_and_locks_are_released(tmp_path):
    with session_locks(tmp_path, ["sub-01", "sub-02_ses-1"]):
        pass
    with session_locks(tmp_path, ["sub-01"]):  # released when the block ended
        pass


def test_a_held_session_lock_refuses_the_whole_run_and_names_the_holder(tmp_path):
    busy = r"processing sub-01 \(pid \d+"
    with (
        session_locks(tmp_path, ["sub-01"]),
        pytest.raises(WorkDirBusyError, match=busy) as caught,
        session_locks(tmp_path, ["sub-02", "sub-01"]),
    ):
        pass
    assert caught.value.exit_code == ExitCode.WORK_DIR_BUSY == 75
    with session_locks(tmp_path, ["sub-02"]):  # sub-02's lock was let go with the refusal
        pass


def test_filters_that_select_no_reference_exit_18_said_once(single_bids, tmp_path, capsys):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"t1w": {"acquisition": "nope"}, "flair": {"run": 9}}))
    args = participant_args(single_bids, tmp_path, "--bids-filter-file", str(filters))
    assert main(args) == ExitCode.NO_SELECTION
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert said.count("selected neither a T1w nor a FLAIR image") == 1, said
    assert "--bids-filter-file (flair, t1w)" in said


def test_a_session_without_reference_names_it_once(single_bids, tmp_path, capsys):
    """No filters: the data's problem (65), the session named once per line."""
    for path in (single_bids / "sub-02" / "anat").glob("sub-02_*"):
        if "_T1w." in path.name or "_FLAIR." in path.name:
            path.unlink()
    args = participant_args(single_bids, tmp_path, "--participant-label", "02")
    assert main(args) == ExitCode.INPUT_DATA
    captured = capsys.readouterr()
    assert "sub-02: neither a T1w nor a FLAIR image" in captured.out
    assert "sub-02: sub-02" not in captured.out + captured.err


def test_both_levels_return_the_participant_levels_failure(single_bids, tmp_path):
    """sub-02's FLAIR is truncated (65); the group level then finds no summary (66): the run's
    code is the participant level's, the first thing that went wrong."""
    flair = single_bids / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz"
    flair.write_bytes(flair.read_bytes()[:2000])
    args = participant_args(single_bids, tmp_path, "--participant-label", "02")
    args.insert(3, "group")  # bids out participant group -w ...
    assert main(args) == ExitCode.INPUT_DATA
