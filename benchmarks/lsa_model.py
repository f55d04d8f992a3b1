"""Time the group level's lenticulostriate-territory model (--lsa-model) on 100 subjects x 6
basal-ganglia patches (600 patches) with a planted relation (csvd_bids/group/lsa_planted.py: a blob
whose brightness encodes FA, another CBF; the group follows the subject's FA), and print its
cross-validated figures.

    python benchmarks/lsa_model.py [--subjects 100] [--epochs 4] [--folds 5] [--repeats 1]
                                   [--bf16] [--stem-stride 2]

The budget (issue 18): at most 10 minutes on 2 CPU cores for 100 subjects.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from csvd_bids.group.aggregate import run_group_level
from csvd_bids.group.lsa_model import TrainSettings
from csvd_bids.group.lsa_planted import write_planted_outputs
from csvd_bids.group.lsa_run import write_lsa_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--folds", type=int, default=TrainSettings.folds)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    parser.add_argument("--stem-stride", type=int, default=TrainSettings.stem_stride)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bids, out = write_planted_outputs(Path(tmp), args.subjects, seed=1)
        run_group_level(out, bids)
        table = pd.read_csv(out / "group_csvd.tsv", sep="\t", na_values=["n/a"])
        for bf16 in (False, True) if args.bf16 else (False,):
            settings = TrainSettings(
                folds=args.folds, epochs=args.epochs, bf16=bf16, stem_stride=args.stem_stride
            )
            walls = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                write_lsa_model(out, table, settings=settings, n_permutations=args.permutations)
                walls.append(time.perf_counter() - started)
            summary = json.loads((out / "group_lsa_model.json").read_text())
            cv = pd.read_csv(out / "group_lsa_cv.tsv", sep="\t")
            print(
                f"\n{args.subjects} subjects, {summary['NPatches']} patches, {args.folds} folds, "
                f"{args.epochs} epochs, bf16 {bf16}: wall {statistics.median(walls):.0f} s "
                f"(median of {len(walls)}: {', '.join(f'{w:.0f}' for w in walls)} s; "
                "the last run's training incl. features and occlusion maps "
                f"{summary['TrainingSeconds']:.0f} s)"
            )
            columns = ["target", "fold", "n", "rmse_model", "rmse_training_mean"]
            columns += ["rmse_linear_volume", "relative_rmse_model"]
            print(cv[columns].to_string(index=False))
            c = summary.get("Classification") or {}
            if c:
                print(
                    f"classification: accuracy {c['accuracy']:.3f} (95 % CI "
                    f"{c['accuracy_ci_low']:.3f}-{c['accuracy_ci_high']:.3f}, chance "
                    f"{c['chance_level']:.3f}), balanced {c['balanced_accuracy']:.3f}, AUC "
                    f"{c['roc_auc']:.3f}, permutation p {c['permutation_p_accuracy']:.4f}"
                )
            for warning in summary["Warnings"]:
                print("warning:", warning)
    return 0


if __name__ == "__main__":
    sys.exit(main())
