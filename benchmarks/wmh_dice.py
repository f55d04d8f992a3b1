"""WMH Dice of the participant level against the generator's planted truth (and, with --real,
against the manual masks of ../shared/data/real-bids).

    python benchmarks/wmh_dice.py [--seeds 201 202] [--subjects 2] [--sessions 1] [--resolution 1]
    python benchmarks/wmh_dice.py --real ../shared/data/real-bids

Prints one line per session and the median. Pick seeds you did not tune on.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

import nibabel as nib
from common import csvd_bids, dice, mask_on_grid, synth


def session_pairs(
    out: Path, reference_root: Path, reference_name: str
) -> list[tuple[str, Path, Path]]:
    """(session, our WMH mask, reference mask) for every session with both."""
    pairs = []
    for ours in sorted(out.glob("sub-*/**/anat/*_space-*_label-WMH_mask.nii.gz")):
        prefix = ours.name.split("_space-")[0]
        parts = prefix.split("_")
        folder = (
            reference_root.joinpath(*parts, "anat")
            if len(parts) > 1
            else reference_root / parts[0] / "anat"
        )
        matches = sorted(folder.glob(f"{prefix}*{reference_name}"))
        if matches:
            pairs.append((prefix, ours, matches[0]))
    return pairs


def evaluate(
    bids: Path, reference_root: Path, reference_name: str, work: Path, extra: list[str]
) -> list[float]:
    out = work / "out"
    subprocess.run(
        csvd_bids(
            str(bids), str(out), "participant", "-w", str(work / "work"), "--markers", "wmh", *extra
        ),
        check=False,
    )
    scores = []
    for prefix, ours, reference in session_pairs(out, reference_root, reference_name):
        grid = nib.load(reference)
        score = dice(mask_on_grid(reference, grid), mask_on_grid(ours, grid))
        scores.append(score)
        print(f"{prefix:24s} WMH Dice {score:.3f}")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[201, 202])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--real", type=Path, help="a BIDS dataset with derivatives/manual masks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scores = []
        if args.real:
            scores += evaluate(
                args.real,
                args.real / "derivatives" / "manual",
                "label-WMH_mask.nii.gz",
                tmp / "real",
                ["--skip-bids-validation"],
            )
        else:
            for seed in args.seeds:
                bids = tmp / f"seed-{seed}"
                subprocess.run(
                    synth(bids, args.subjects, args.sessions, seed, args.resolution), check=True
                )
                scores += evaluate(
                    bids,
                    bids / "derivatives" / "groundtruth",
                    "label-WMH_mask.nii.gz",
                    tmp / f"run-{seed}",
                    [],
                )
    if scores:
        print(
            f"median WMH Dice over {len(scores)} session(s): {median(scores):.3f} "
            f"(min {min(scores):.3f}, max {max(scores):.3f})"
        )


if __name__ == "__main__":
    main()
