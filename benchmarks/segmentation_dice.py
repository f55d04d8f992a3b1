"""Dice of the participant level's masks against the generator's planted truth (WMH and brain
mask), or, with --real, against the manual WMH masks of ../shared/data/real-bids.

    python benchmarks/segmentation_dice.py [--seeds 201 202] [--subjects 2] [--sessions 1]
                                           [--resolution 1]
    python benchmarks/segmentation_dice.py --real ../shared/data/real-bids

Prints one line per session and mask, and the median per mask. Pick seeds you did not tune on.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

import nibabel as nib
from common import csvd_bids, dice, mask_on_grid, synth

# mask name -> the end of the file name, in our outputs and in the reference derivatives alike
MASKS = {"WMH": "label-WMH_mask.nii.gz", "brain": "desc-brain_mask.nii.gz"}


def session_pairs(out: Path, reference_root: Path, ending: str) -> list[tuple[str, Path, Path]]:
    """(session, our mask, reference mask) for every session that has both."""
    pairs = []
    for ours in sorted(out.glob(f"sub-*/**/anat/*_space-*_{ending}")):
        prefix = ours.name.split("_space-")[0]
        folder = reference_root.joinpath(*prefix.split("_"), "anat")
        matches = sorted(folder.glob(f"{prefix}*{ending}"))
        if matches:
            pairs.append((prefix, ours, matches[0]))
    return pairs


def evaluate(
    bids: Path, reference_root: Path, masks: list[str], work: Path, extra: list[str]
) -> dict[str, list[float]]:
    out = work / "out"
    subprocess.run(
        csvd_bids(
            str(bids), str(out), "participant", "-w", str(work / "work"), "--markers", "wmh", *extra
        ),
        check=False,
    )
    scores: dict[str, list[float]] = {name: [] for name in masks}
    for name in masks:
        for prefix, ours, reference in session_pairs(out, reference_root, MASKS[name]):
            grid = nib.load(reference)
            score = dice(mask_on_grid(reference, grid), mask_on_grid(ours, grid))
            scores[name].append(score)
            print(f"{prefix:24s} {name:6s} Dice {score:.3f}")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[201, 202])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--real", type=Path, help="a BIDS dataset with derivatives/manual masks")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.real:
            runs = [
                (
                    args.real,
                    args.real / "derivatives" / "manual",
                    ["WMH"],
                    tmp / "real",
                    ["--skip-bids-validation"],
                )
            ]
        else:
            runs = []
            for seed in args.seeds:
                bids = tmp / f"seed-{seed}"
                subprocess.run(
                    synth(bids, args.subjects, args.sessions, seed, args.resolution), check=True
                )
                runs.append(
                    (
                        bids,
                        bids / "derivatives" / "groundtruth",
                        list(MASKS),
                        tmp / f"run-{seed}",
                        [],
                    )
                )
        for bids, reference_root, masks, work, extra in runs:
            for name, scores in evaluate(bids, reference_root, masks, work, extra).items():
                results.setdefault(name, []).extend(scores)
    for name, scores in results.items():
        if scores:
            print(
                f"median {name} Dice over {len(scores)} session(s): {median(scores):.3f} "
                f"(min {min(scores):.3f}, max {max(scores):.3f})"
            )


if __name__ == "__main__":
    main()
