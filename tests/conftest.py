"""Shared fixtures: small synthetic datasets made by the project's generator (3 mm, fixed seeds),
one full participant + group run that several tests inspect, and one 1.5 mm participant run of
the small-lesion markers (PVS, lacunes, RSSI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Three pytest workers share two cores (Makefile). A library's own thread pool in each of them
# oversubscribes the cores, and OpenMP threads spin while they wait: the LSA-model test took
# 208 s instead of 36 s beside two busy processes (measured). One thread per library, unless
# the caller says otherwise; set before torch or numpy start their pools, and inherited by the
# pipeline's worker processes. Nodes that take threads (--omp-nthreads) still set their own.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# As the app sets it for its workers (csvd_bids/cli/environment.py), for the tests' own numpy:
# huge-page advice stalls in the kernel's memory compaction on machines like CI's.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from helpers import remove_images  # noqa: E402

from csvd_bids.cli.run import main  # noqa: E402
from csvd_bids.synth import generate_dataset  # noqa: E402

RESOLUTION_MM = 3.0

# Grouping (`make test` runs --dist loadgroup): a module whose tests share a module-scoped
# dataset sets `pytestmark = pytest.mark.xdist_group(...)`; ungrouped, its tests spread over
# the workers and each worker built the dataset again (about 250 s of CPU per suite run).


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


# The small-lesion run: one subject, one session, on the coarsest grid at which the detectors
# find PVS and lacunes (c43165b, seed 185: at 2 mm 0 of 45 PVS and 2 of 6 lacunes; at 1.5 mm
# 43 and 5). Seed 185's subject is a lacunar-stroke case that plants 45 PVS, 6 lacunes of
# 7.6-12.6 mm and one recent small subcortical infarct (seeds >= 400 are for benchmarks).
SMALL_LESIONS_SEED = 185
SMALL_LESIONS_RESOLUTION_MM = 1.5
SMALL_LESIONS_MARKERS = ("pvs", "lacunes", "rssi")
# The ASL series (perfusion of the basal ganglia), removed before the run: none of the three
# markers reads it, but the maps of the lenticulostriate territory would. The SWI stays: no
# marker of the run reads it, so the run neither checks nor prepares it (tested).
SMALL_LESIONS_UNUSED = ("perf",)


@pytest.fixture(scope="session")
def small_lesions_run(tmp_path_factory) -> dict:
    """PVS, lacunes and RSSI segmented where they can be judged (the 3 mm demo shows no PVS or
    lacunes and plants no RSSI): participant level only, those three markers only."""
    root = tmp_path_factory.mktemp("small_lesions")
    bids = generate_dataset(
        root / "bids",
        n_subjects=1,
        n_sessions=1,
        seed=SMALL_LESIONS_SEED,
        resolution=SMALL_LESIONS_RESOLUTION_MM,
    )
    remove_images(bids, *SMALL_LESIONS_UNUSED)
    out, work = root / "out", root / "work"
    participant = main(
        [
            str(bids),
            str(out),
            "participant",
            "-w",
            str(work),
            "--nprocs",
            "2",
            "--skip-bids-validation",
            "--markers",
            *SMALL_LESIONS_MARKERS,
        ]
    )
    return {"bids": bids, "out": out, "work": work, "participant": participant}


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
