"""Brain-coverage QC: a field of view that misses part of the brain is flagged, not hidden."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import UNREAD_BY_WMH_TESTS, flair_path, participant_args, remove_images, summary_path

from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode
from csvd_bids.quant.qc import (
    brain_coverage,
    coverage_warnings,
    reference_coverage,
    same_subject_warnings,
)


def test_brain_coverage_counts_brain_voxels_with_signal():
    brain = np.zeros((10, 10, 10), bool)
    brain[2:8, 2:8, 2:8] = True
    image = np.ones(brain.shape)
    assert brain_coverage(image, brain) == 1.0
    image[:, :, 5:] = 0.0  # the slab stops half-way up the brain
    assert brain_coverage(image, brain) == 0.5
    assert brain_coverage(image, np.zeros_like(brain)) == 0.0


def test_reference_coverage_uses_the_registration_scale():
    # A template 1.2 x larger per axis than the subject: its brain shrinks by 1.2^3 here.
    scale = np.diag([1.2, 1.2, 1.2])
    assert reference_coverage(1000.0 / 1.2**3, 1000.0, scale) == 1.0
    assert np.isclose(reference_coverage(0.5 * 1000.0 / 1.2**3, 1000.0, scale), 0.5)


def test_warnings_name_the_image():
    assert coverage_warnings({"T1w": 0.99, "FLAIR": 0.5}) == [
        "FLAIR covers only 50% of the brain (field of view)"
    ]


@pytest.fixture(scope="module")
def damaged_run(_single_bids, tmp_path_factory) -> Path:
    """One participant run (WMH only) of a copy of the 2-subject dataset in which sub-01's FLAIR
    is cropped to the upper half of the brain and sub-02's FLAIR is sub-01's (another
    subject's); both are coregistered, and each is flagged, not failed."""
    root = tmp_path_factory.mktemp("qc")
    bids = root / "bids"
    shutil.copytree(_single_bids, bids)
    # the T2w stays (the lacunes WMH leaves out read it) and may not be flagged; the SWI is
    # not read by a WMH-only run
    remove_images(bids, *UNREAD_BY_WMH_TESTS)
    flair = flair_path(bids, "01")
    flair_path(bids, "02").write_bytes(flair.read_bytes())
    img = nib.load(flair)
    top = img.shape[2] // 2
    shift = np.eye(4)
    shift[2, 3] = top  # keep the upper half of the slab where it was in the world
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, top:], img.affine @ shift), flair)
    assert main(participant_args(bids, root, "--markers", "wmh")) == ExitCode.OK
    return root / "out"


def _warnings(out: Path, subject: str) -> str:
    return str(pd.read_csv(summary_path(out, subject), sep="\t").loc[0, "qc_warnings"])


@pytest.mark.xdist_group("qc_run")
def test_cropped_flair_is_flagged(damaged_run):
    warnings = _warnings(damaged_run, "01")
    assert "FLAIR covers only" in warnings and "T1w" not in warnings


@pytest.mark.xdist_group("qc_run")
def test_flair_of_another_subject_is_flagged(damaged_run):
    """sub-01's FLAIR put in sub-02's folder: coregistered, but flagged as another subject."""
    warnings = _warnings(damaged_run, "02")
    assert "FLAIR may show another subject" in warnings
    assert "T2w" not in warnings and "T2starw" not in warnings


def test_same_subject_warnings_name_the_image():
    checks = {
        "FLAIR": {"score": 0.1, "threshold": 0.3, "different_subject_suspected": True},
        "T2w": {"score": 0.6, "threshold": 0.3, "different_subject_suspected": False},
        "dwi": {"error": "blank", "different_subject_suspected": None},
    }
    (warning,) = same_subject_warnings(checks)
    assert warning.startswith("FLAIR may show another subject") and "0.10 < 0.30" in warning
