"""Time the group level on many sessions of participant-level outputs.

    python benchmarks/group_level.py [--subjects 500] [--sessions 2] [--repeats 3]

Writes one summary TSV and data dictionary per session (made by the participant level's own
``summary_row`` from random lesion figures) and a ``participants.tsv`` drawn by the generator's
burden model into a temporary dataset, then runs ``run_group_level`` (aggregation, joins,
regressions, descriptives, change table) and prints the median wall time over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.group.aggregate import run_group_level
from csvd_bids.markers import REGISTRY
from csvd_bids.quant.ratings import RATING_COLUMNS
from csvd_bids.quant.summary import describe_summary_column, summary_row
from csvd_bids.synth.dataset import draw_cohort

MARKERS = {spec.label.label: spec for spec in REGISTRY.values()}


def _lesions(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for label, spec in MARKERS.items():
        for _ in range(rng.poisson(4)):
            region = spec.regions[rng.integers(len(spec.regions))] if spec.regions else "n/a"
            rows.append({"marker": label, "region": region, "volume_mm3": rng.gamma(2, 50)})
    return pd.DataFrame(rows)


def _ratings(rng: np.random.Generator) -> dict:
    ratings = {c: int(rng.integers(0, 4)) for c in RATING_COLUMNS}
    ratings["WMH_icv_fraction"] = float(rng.uniform(0, 0.02))
    return ratings


def write_outputs(out: Path, bids: Path, n_subjects: int, n_sessions: int) -> int:
    rng = np.random.default_rng(0)
    people = draw_cohort(n_subjects, seed=0)
    bids.mkdir(parents=True)
    pd.DataFrame(
        {
            "participant_id": [f"sub-{i:04d}" for i in range(1, n_subjects + 1)],
            "age": [p.age for p in people],
            "sex": [p.sex for p in people],
            "systolic_bp": [p.systolic_bp for p in people],
            "total_cholesterol": [p.total_cholesterol for p in people],
            "group": [p.group for p in people],
        }
    ).to_csv(bids / "participants.tsv", sep="\t", index=False)
    volumes = {"intracranial": 1.5e6, "gm": 6e5, "wm": 5e5, "csf": 3e5}
    volumes["regions"] = {"lateral_ventricles": 2e4}
    statuses = {key: {"assessed": True, "reason": ""} for key in REGISTRY}
    dictionary = None
    for subject in range(1, n_subjects + 1):
        for session in range(1, n_sessions + 1):
            plan = {
                "subject": f"{subject:04d}",
                "session": str(session),
                "reference": "t1w",
                "markers": statuses,
            }
            row = summary_row(plan, _lesions(rng), volumes, {}, [], _ratings(rng))
            folder = out / f"sub-{subject:04d}" / f"ses-{session}" / "anat"
            folder.mkdir(parents=True)
            path = folder / f"sub-{subject:04d}_ses-{session}_desc-summary_stats.tsv"
            ds.write_tsv(path, pd.DataFrame([row]))
            dictionary = dictionary or {c: describe_summary_column(c) for c in row}
            ds.write_json(path.with_suffix(".json"), dictionary)
    return n_subjects * n_sessions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out, bids = Path(tmp) / "out", Path(tmp) / "bids"
        n = write_outputs(out, bids, args.subjects, args.sessions)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_group_level(out, bids)
            times.append(time.perf_counter() - start)
        stats = pd.read_csv(out / "group_stats.tsv", sep="\t")
        print(f"group level on {n} sessions of {args.subjects} subjects:")
        print(
            f"  wall time median {statistics.median(times):.2f} s over {args.repeats} runs "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )
        print(stats.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
