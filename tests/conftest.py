"""Shared fixtures: small synthetic datasets made by the project's generator (3 mm, fixed seeds)
and one full participant + group run that several tests inspect."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from csvd_bids.cli.run import main
from csvd_bids.synth import generate_dataset

RESOLUTION_MM = 3.0


@pytest.fixture(scope="session")
def demo_bids(tmp_path_factory) -> Path:
    """The issue's check dataset: 2 subjects x 2 sessions, seed 11, at 3 mm for speed."""
    return generate_dataset(
        tmp_path_factory.mktemp("demo") / "bids",
        n_subjects=2,
        n_sessions=2,
        seed=11,
        resolution=RESOLUTION_MM,
    )


@pytest.fixture(scope="session")
def demo_run(demo_bids, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("demo_run")
    out, work = root / "out", root / "work"
    before = snapshot(demo_bids)
    participant = main([str(demo_bids), str(out), "participant", "-w", str(work), "--nprocs", "2"])
    group = main([str(demo_bids), str(out), "group"])
    return {
        "bids": demo_bids,
        "out": out,
        "work": work,
        "participant": participant,
        "group": group,
        "bids_before": before,
        "bids_after": snapshot(demo_bids),
    }


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="session")
def _single_bids(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("single") / "bids",
        n_subjects=2,
        n_sessions=1,
        seed=5,
        resolution=RESOLUTION_MM,
    )


@pytest.fixture
def single_bids(_single_bids, tmp_path) -> Path:
    """A private copy of a 2-subject, session-less dataset that a test may damage."""
    copy = tmp_path / "bids"
    shutil.copytree(_single_bids, copy)
    return copy
