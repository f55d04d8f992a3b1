"""``python -m csvd_bids.synth OUT_DIR --subjects N --sessions K --seed S [--resolution MM]
[--misalign DEG MM] [--profile {research,clinical}]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .dataset import SynthUsageError, generate_dataset
from .physics import DEFAULT_OVERSAMPLE
from .profiles import PROFILES

EX_USAGE = 64  # sysexits.h: command-line usage error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits with 2; BIDS Apps use 64
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m csvd_bids.synth",
        description="Write a synthetic BIDS dataset with planted CSVD lesions and the truth "
        "as derivatives/groundtruth.",
    )
    parser.add_argument("out_dir", type=Path, help="output dataset folder (new or empty)")
    parser.add_argument("--subjects", type=int, default=2, help="number of subjects (default 2)")
    parser.add_argument("--sessions", type=int, default=1, help="sessions per subject (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--resolution",
        type=float,
        default=1.0,
        metavar="MM",
        help="working voxel size in mm, 1-4 (default 1): the T1w's (research) or the FLAIR's "
        "in-plane (clinical)",
    )
    parser.add_argument(
        "--misalign",
        type=float,
        nargs=2,
        metavar=("DEG", "MM"),
        help="move every image but the T1w (FLAIR, T2w, SWI, DWI, ASL) of every session by its own "
        "random rigid motion about the brain centre: rotations uniform in [-DEG, DEG] about each "
        "axis, translations uniform in [-MM, MM] per axis; only the affines change. The truth is "
        "written to derivatives/groundtruth as <prefix>_from-<SUFFIX>_to-T1w_mode-image_xfm.txt "
        "(ITK text, T1w LPS points -> image LPS points, as the pipeline writes). Default: none",
    )
    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="research",
        help="research (default): T1w, FLAIR, T2w, SWI, DWI (31 directions, tensors) and PCASL "
        "with an M0 scan (template engine) with a skull, the truth on the "
        "T1w grid (space-T1w). clinical: a skull-stripped 2D FLAIR only (0 outside the brain), "
        "in-plane at --resolution, slices 5-8 mm thick drawn per session; baseline WMH volume "
        "0.5-20, 20-80 or 80-150 ml with equal probability, heavy burdens confluent around the "
        "ventricles; the truth on each session's FLAIR grid (space-FLAIR: a voxel is lesion when "
        "the planted lesion fills at least half of it); no --misalign",
    )
    parser.add_argument(
        "--engine",
        choices=("template", "physics"),
        default="template",
        help="template (default): hand-set tissue intensities. physics: tissue T1/T2/T2*/PD/"
        "susceptibility/ADC, signal equations with a protocol drawn per subject, the gradient "
        "echo from the dipole field of the susceptibility map, veins, calcifications, flow "
        "voids and air sinuses as mimics, atrophy, a random head pose, rendered --oversample "
        "times finer and integrated over each acquired voxel (its own held-out seeds)",
    )
    parser.add_argument(
        "--oversample",
        type=int,
        default=DEFAULT_OVERSAMPLE,
        help="physics: render grid this many times finer than --resolution (1-4, default 2)",
    )
    parser.add_argument(
        "--field-strength",
        type=float,
        metavar="T",
        help="physics: field strength for every subject, 1.5 or 3 (default: drawn, 30%% 1.5 T)",
    )
    parser.add_argument(
        "--gre-te",
        type=float,
        metavar="MS",
        help="physics: GRE/SWI echo time for every subject, 3-80 ms (default: drawn in 15-30)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        generate_dataset(
            args.out_dir,
            args.subjects,
            args.sessions,
            args.seed,
            args.resolution,
            overwrite=args.overwrite,
            misalign=tuple(args.misalign) if args.misalign else None,
            profile=args.profile,
            engine=args.engine,
            oversample=args.oversample,
            field_t=args.field_strength,
            gre_te=args.gre_te,
        )
    except SynthUsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EX_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
