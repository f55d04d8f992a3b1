"""Failures inside the graph, resumption, a run as an unprivileged user, and a session with the
reference alone. (HOME and the cwd unwritable, and a dataset under folders named like entities:
reliability/test_interruptions.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import (
    UNREAD_BY_WMH_TESTS,
    flair_path,
    participant_args,
    remove_images,
    run_py_command,
    summary_path,
)

from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode
from csvd_bids.preproc.images import check_input_image
from csvd_bids.workflows.base import WORKFLOW_NAME

REPO = Path(__file__).resolve().parent.parent
UNWRITABLE = Path("/proc/csvd-bids-no-home")  # cannot be created, not even by root


def _args(bids: Path, tmp_path: Path, *extra: str) -> list[str]:
    return participant_args(bids, tmp_path, "--markers", "wmh", *extra)


def test_crash_inside_graph_then_resume(single_bids, tmp_path, capsys, monkeypatch):
    """A FLAIR that fails when a node reads it: that session fails, the other finishes; once the
    file is fixed, a re-run redoes only what is missing. (A constant image is refused up front
    since the planning checks values; here planning checks headers only, so that the node's
    own check, which stays, is what fails.)"""
    monkeypatch.setattr(
        "csvd_bids.planning.check_input_image", partial(check_input_image, values=False)
    )
    remove_images(single_bids, *UNREAD_BY_WMH_TESTS)
    flair = flair_path(single_bids, "02")
    original = flair.read_bytes()
    img = nib.load(flair)
    nib.save(nib.Nifti1Image(np.full(img.shape, 100, np.int16), img.affine), flair)

    assert main(_args(single_bids, tmp_path)) == ExitCode.INPUT_DATA
    printed = capsys.readouterr().out
    assert "FAILED  sub-02" in printed and "constant image" in printed
    assert "ok      sub-01" in printed
    assert summary_path(tmp_path / "out", "01").is_file()
    assert not (tmp_path / "out" / "sub-02").exists()
    crash_files = list((tmp_path / "work" / "crash").rglob("crash-*"))
    assert crash_files

    cached = (
        tmp_path / "work" / WORKFLOW_NAME / "sub_01_wf" / "wmh_wf" / "detect" / "result_detect.pklz"
    )
    before = cached.stat().st_mtime_ns
    flair.write_bytes(original)
    assert main(_args(single_bids, tmp_path)) == ExitCode.OK
    assert summary_path(tmp_path / "out", "02").is_file()
    assert cached.stat().st_mtime_ns == before  # sub-01 came from the cache


def test_stop_on_first_crash(single_bids, tmp_path):
    flair = flair_path(single_bids, "02")
    flair.write_bytes(flair.read_bytes()[:2000])
    code = main(_args(single_bids, tmp_path, "--stop-on-first-crash"))
    assert code == ExitCode.INPUT_DATA
    assert not (tmp_path / "out" / "sub-01").exists()


def _environment(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "MPL", "TORCH_", "NIPYPE_", "NUMBA_"))
    }
    env["HOME"] = str(home)
    return env


def _run_app(bids: Path, out: Path, work: Path, **popen) -> subprocess.CompletedProcess:
    """run.py in a fresh process, HOME unwritable, library cache variables unset."""
    command = run_py_command(bids, out, work, "01")
    return subprocess.run(
        command, env=_environment(UNWRITABLE), capture_output=True, text=True, check=False, **popen
    )


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import csvd_bids"],
            user=65534,
            group=65534,
            capture_output=True,
            check=False,
        )
    except PermissionError:  # the interpreter itself is out of reach
        return False
    return probe.returncode == 0


@pytest.mark.skipif(
    not _nobody_can_run_python(),
    reason="needs root, and an interpreter an unprivileged user can run "
    "(here it lives under a 0700 home); the Docker CI job runs as a non-root user",
)
def test_runs_as_unprivileged_user(single_bids):
    shared = Path(shutil.copytree(single_bids, Path("/tmp") / f"csvd-nonroot-{os.getpid()}"))
    try:
        os.chmod(shared, 0o755)
        out = shared.parent / f"{shared.name}-out"
        work = shared.parent / f"{shared.name}-work"
        for folder in (out, work):
            folder.mkdir()
            os.chown(folder, 65534, 65534)
        result = _run_app(shared, out, work, user=65534, group=65534, cwd="/")
        assert result.returncode == 0, result.stderr[-2000:]
        assert summary_path(out, "01").is_file()
    finally:
        for folder in shared.parent.glob(f"{shared.name}*"):
            shutil.rmtree(folder, ignore_errors=True)


def test_a_session_with_the_reference_alone(single_bids, tmp_path):
    """A T1w alone among the anatomical images, with its ASL series (as sub-chris and sub-asl01
    of the real data): every marker not assessed, and the session's outputs all written, the
    lesion table with its header and no row."""
    anat = single_bids / "sub-01" / "anat"
    for path in [*anat.iterdir(), *(single_bids / "sub-01" / "dwi").iterdir()]:
        if "_T1w." not in path.name:
            path.unlink()
    args = participant_args(single_bids, tmp_path, "--participant-label", "01")
    assert main(args) == ExitCode.OK
    out = tmp_path / "out" / "sub-01" / "anat"
    summary = pd.read_csv(summary_path(tmp_path / "out", "01"), sep="\t").iloc[0]
    assert all(summary[f"{label}_status"] == "not assessed" for label in ("WMH", "CMB", "LAC"))
    lesions = pd.read_csv(out / "sub-01_desc-lesions_stats.tsv", sep="\t")
    assert lesions.empty and "volume_mm3" in lesions.columns
