"""Ratings and scores measured by the pipeline's code on the generator's truth masks and
tables equal what the generator planted (issue 5), on every subject of a 20-subject dataset."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import RESOLUTION_MM

from csvd_bids.labels import MARKER_LABELS
from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.quant.ratings import rate_session
from csvd_bids.quant.summary import marker_counts, session_scores
from csvd_bids.synth import generate_dataset
from csvd_bids.synth.planted import PLANTED_COLUMNS

N_SUBJECTS = 20


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("cohort") / "bids", N_SUBJECTS, 1, seed=7, resolution=RESOLUTION_MM
    )


def _measured(truth: Path, subject: str) -> dict:
    """What the pipeline's quantification gives on the truth of one session."""
    base = truth / f"sub-{subject}" / "anat" / f"sub-{subject}_space-T1w"

    def image(suffix: str) -> nib.Nifti1Image:
        return nib.load(f"{base}_{suffix}.nii.gz")

    lesions = pd.read_csv(f"{base}_desc-lesions_stats.tsv", sep="\t", keep_default_na=False)
    lesions["volume_mm3"] = lesions["volume_mm3"].astype(float)
    masks = {
        m.label: np.asanyarray(image(f"label-{m.label}_mask").dataobj) > 0 for m in MARKER_LABELS
    }
    tables = {label: lesions[lesions["marker"] == label].reset_index(drop=True) for label in masks}
    regions = np.asanyarray(image("seg-regions_dseg").dataobj)
    brain = image("desc-brain_mask")
    ratings = rate_session(
        masks,
        tables,
        regions == REGION_INDEX["lateral_ventricles"],
        np.asanyarray(brain.dataobj) > 0,
        brain.header.get_zooms()[:3],
        icv_mm3=float(np.asanyarray(brain.dataobj).sum() * np.prod(brain.header.get_zooms()[:3])),
    )
    statuses = {m.label: (True, "") for m in MARKER_LABELS}
    counts: dict = {}
    for label in masks:
        counts.update(marker_counts(label, True, lesions))
    return {**counts, **ratings, **session_scores(counts, ratings, statuses)}


def test_ratings_and_scores_on_the_truth_equal_the_planted_ones(cohort):
    truth = cohort / "derivatives" / "groundtruth"
    planted_scores = []
    for index in range(1, N_SUBJECTS + 1):
        subject = f"{index:02d}"
        planted = pd.read_csv(
            truth / f"sub-{subject}" / "anat" / f"sub-{subject}_desc-ratings_stats.tsv", sep="\t"
        ).iloc[0]
        measured = _measured(truth, subject)
        differ = {
            c: (planted[c], measured[c]) for c in PLANTED_COLUMNS if planted[c] != measured[c]
        }
        assert not differ, f"sub-{subject}: (planted, measured) {differ}"
        planted_scores.append(int(planted["svd_score"]))
    # the check means something only if the cohort spans the scales
    assert len(set(planted_scores)) >= 3
