"""A clinical session as stroke and memory clinics have them (the generator's clinical profile:
a skull-stripped 2D FLAIR only, 8 mm slices) holding 134 ml of confluent WMH, through the real
participant graph with ``--markers wmh``. Before the NAWM reference and the tissue classes
were made to hold when lesions are most of the white matter, this session was reported with
0 ml of WMH and Fazekas 0, silently."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from csvd_bids.cli.run import main
from csvd_bids.synth import generate_dataset

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("clinical_wmh")

SEED = 6  # subject 1: 134 ml of confluent WMH, 8 mm slices (seeds >= 400 are for benchmarks)
# The shipped model is not the default (README, Models: it loses to the detector on held-out
# data); this floor guards against a broken bundle or inference path, not its accuracy.
MODEL_DICE_FLOOR = 0.75  # measured 0.92 (the detector: 0.90; the first shipped model: 0.55)


def _mask(path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj) > 0


@pytest.fixture(scope="module")
def clinical_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clinical")
    bids = generate_dataset(root / "bids", 1, 1, SEED, 1.0, profile="clinical")
    code = main(participant_args(bids, root, "--markers", "wmh", "--nprocs", "2"))
    return {"bids": bids, "out": root / "out", "code": code}


def test_confluent_wmh_of_a_flair_only_thick_slice_session(clinical_run):
    bids, out = clinical_run["bids"], clinical_run["out"]
    assert clinical_run["code"] == 0
    sidecar = json.loads((bids / "sub-01" / "anat" / "sub-01_FLAIR.json").read_text())
    assert sidecar["SliceThickness"] == 8.0 and not list((bids / "sub-01").rglob("*T1w*"))
    truth_dir = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    truth = _mask(truth_dir / "sub-01_space-FLAIR_label-WMH_mask.nii.gz")
    found_path = out / "sub-01" / "anat" / "sub-01_space-FLAIR_label-WMH_mask.nii.gz"
    found = _mask(found_path)  # the same grid: the FLAIR is the reference
    voxel_ml = float(np.prod(nib.load(found_path).header.get_zooms()[:3])) / 1000
    assert truth.sum() * voxel_ml > 120.0
    dice = 2 * (truth & found).sum() / (truth.sum() + found.sum())
    assert dice > 0.85
    assert abs(found.sum() / truth.sum() - 1) < 0.15

    summary = pd.read_csv(out / "sub-01" / "anat" / "sub-01_desc-summary_stats.tsv", sep="\t")
    planted = pd.read_csv(truth_dir / "sub-01_desc-ratings_stats.tsv", sep="\t")
    assert summary.loc[0, "WMH_status"] == "assessed"
    for grade in ("fazekas_pv", "fazekas_deep"):
        assert abs(int(summary.loc[0, grade]) - int(planted.loc[0, grade])) <= 1
    assert "WMH:" not in str(summary.loc[0, "qc_warnings"])  # no plausibility warning


def test_the_shipped_model_on_the_same_session(clinical_run):
    """``--wmh-method model``: the shipped FLAIR-only UNet replaces the detector on the same
    session (the preprocessing comes from the cache); it was not trained on this seed."""
    bids, root = clinical_run["bids"], clinical_run["out"].parent
    args = participant_args(bids, root, "--markers", "wmh", "--wmh-method", "model")
    args[1] = str(root / "out_model")
    assert main([*args, "--device", "cpu"]) == 0
    anat = root / "out_model" / "sub-01" / "anat"
    sidecar = json.loads((anat / "sub-01_space-FLAIR_label-WMH_mask.json").read_text())
    assert sidecar["Method"].startswith("MONAI model bundle csvd-bids-wmh-unet")
    assert "inputs flair;" in sidecar["Method"]
    truth_dir = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    truth = _mask(truth_dir / "sub-01_space-FLAIR_label-WMH_mask.nii.gz")
    found = _mask(anat / "sub-01_space-FLAIR_label-WMH_mask.nii.gz")
    dice = 2 * (truth & found).sum() / (truth.sum() + found.sum())
    assert dice > MODEL_DICE_FLOOR
