"""The process environment for read-only containers: caches and the temporary folder go to the
work directory when their usual places cannot be written."""

from __future__ import annotations

import multiprocessing
import os
import tempfile

import pytest

from csvd_bids.cli import environment
from csvd_bids.cli.environment import configure_environment

UNUSABLE = "/proc/csvd-bids-no-tmp"  # cannot be created, not even by root


@pytest.fixture
def clean_environment(monkeypatch):
    """Every variable configure_environment may set is restored after the test."""
    names = ("HOME", "TMPDIR", "NIPYPE_NO_ET", "LOGNAME", "NUMPY_MADVISE_HUGEPAGE")
    for name in (*environment._CACHE_VARIABLES, *names):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    return monkeypatch


def test_an_unusable_tmpdir_moves_into_the_work_dir(clean_environment, tmp_path):
    """As ``apptainer --containall`` may leave it: a host $TMPDIR that does not exist inside."""
    clean_environment.setenv("TMPDIR", UNUSABLE)
    configure_environment(tmp_path)
    moved = tmp_path / ".cache" / "tmp"
    assert os.environ["TMPDIR"] == str(moved) and moved.is_dir()
    with tempfile.NamedTemporaryFile() as handle:
        assert handle.name.startswith(str(moved))


def test_a_usable_tmpdir_is_kept(clean_environment, tmp_path):
    mine = tmp_path / "scratch"
    mine.mkdir()
    clean_environment.setenv("TMPDIR", str(mine))
    configure_environment(tmp_path / "work")
    assert os.environ["TMPDIR"] == str(mine)
    assert not (tmp_path / "work" / ".cache" / "tmp").exists()


def test_no_usable_temporary_folder_anywhere(clean_environment, tmp_path):
    """As ``docker run --read-only`` without a tmpfs leaves it: ``tempfile`` finds nothing."""
    clean_environment.delenv("TMPDIR", raising=False)

    def nowhere() -> str:
        raise FileNotFoundError("No usable temporary directory found")

    clean_environment.setattr(tempfile, "gettempdir", nowhere)
    configure_environment(tmp_path)
    assert os.environ["TMPDIR"] == str(tmp_path / ".cache" / "tmp")


def test_logname_is_set_when_missing(clean_environment, tmp_path):
    """nipype's SLURM plugin names every job after $LOGNAME (a KeyError at the first sbatch
    without it); ``apptainer --cleanenv``, cron and ``env -i`` leave it unset."""
    clean_environment.delenv("LOGNAME", raising=False)
    configure_environment(tmp_path)
    assert os.environ["LOGNAME"]
    clean_environment.setenv("LOGNAME", "someone")
    configure_environment(tmp_path)
    assert os.environ["LOGNAME"] == "someone"


def _numpy_hugepage_advice() -> bool:
    """What numpy decided at import (it has no public reader of this setting)."""
    import numpy

    return bool(numpy._core.multiarray._get_madvise_hugepage())


def test_workers_start_without_numpy_huge_page_advice(clean_environment, tmp_path):
    """The pipeline's workers are fresh interpreters (forkserver) that import numpy after the
    run has configured the environment: they start with the advice off (the kernel's page
    compaction cost more than the computing in memory-heavy nodes), unless the user set it."""
    clean_environment.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    configure_environment(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        assert pool.apply(_numpy_hugepage_advice) is False
    clean_environment.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    configure_environment(tmp_path)
    with spawn.Pool(1) as pool:
        assert pool.apply(_numpy_hugepage_advice) is True
