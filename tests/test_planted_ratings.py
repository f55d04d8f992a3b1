"""Ratings and scores measured by the pipeline's code on the generator's truth masks and
tables equal what the generator planted (issue 5), on every subject of a 20-subject dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import RESOLUTION_MM
from helpers import ratings_on_truth

from csvd_bids.synth import generate_dataset
from csvd_bids.synth.planted import PLANTED_COLUMNS

N_SUBJECTS = 20


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("cohort") / "bids", N_SUBJECTS, 1, seed=7, resolution=RESOLUTION_MM
    )


def test_ratings_and_scores_on_the_truth_equal_the_planted_ones(cohort):
    truth = cohort / "derivatives" / "groundtruth"
    planted_scores = []
    for index in range(1, N_SUBJECTS + 1):
        subject = f"{index:02d}"
        planted = pd.read_csv(
            truth / f"sub-{subject}" / "anat" / f"sub-{subject}_desc-ratings_stats.tsv", sep="\t"
        ).iloc[0]
        measured = ratings_on_truth(truth, subject)
        differ = {
            c: (planted[c], measured[c]) for c in PLANTED_COLUMNS if planted[c] != measured[c]
        }
        assert not differ, f"sub-{subject}: (planted, measured) {differ}"
        planted_scores.append(int(planted["svd_score"]))
    # the check means something only if the cohort spans the scales
    assert len(set(planted_scores)) >= 3
