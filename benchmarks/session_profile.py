"""Where one session's time goes, against another commit, in the same run on the same machine.

    python benchmarks/session_profile.py [--against REV] [--repeats 2] [--resolution 1]
        [--nprocs 2] [--seed 401] [--markers KEY ...] [--cprofile NODE ...] [--keep DIR]

Generates one session with T1w, FLAIR, T2w, SWI and DWI, then runs the participant level (every
marker, or ``--markers``) with this checkout and with REV (default: HEAD~1, checked out in a
temporary git worktree), alternating A B A B so that a noisy machine hits both alike. Prints
per node the median seconds of each (nipype's result files), their sum (the CPU work, steadier
than the wall time on a noisy machine), the wall time and peak memory of the whole process
tree, and how far REV's outputs are from this checkout's (Dice of every mask, Dice of every
label map counting only voxels of the same label, largest relative difference of the summary's
figures). With ``--cprofile NODE``, re-runs that node of this checkout's last run (e.g.
``template_priors``) under cProfile and prints its costliest calls.

Machines are noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import nibabel as nib
import numpy as np
import pandas as pd
from common import REPO, dice, label_dice, run_measured, synth
from node_times import node_times

MASK_SUFFIXES = ("_mask.nii.gz", "_dseg.nii.gz")


def worktree(rev: str, folder: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), rev],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


def command(
    source: Path, bids: Path, run: Path, nprocs: int, markers: list[str] | None = None
) -> list[str]:
    """run.py of ``source``: its own csvd_bids package comes first on sys.path."""
    return [
        sys.executable, str(source / "run.py"), str(bids), str(run / "out"), "participant",
        "-w", str(run / "work"), "--nprocs", str(nprocs), "--skip-bids-validation",
        *(["--markers", *markers] if markers else []),
    ]  # fmt: skip


def output_agreement(old: Path, new: Path) -> tuple[float, str, float, str]:
    """(lowest Dice of a mask or label map (same label: common.label_dice), its file, largest
    relative difference of a summary figure, its column) between two output folders."""
    worst_dice, worst_file = 1.0, "-"
    for path in sorted(new.rglob("*.nii.gz")):
        other = old / path.relative_to(new)
        if path.name.endswith(MASK_SUFFIXES) and other.is_file():
            a = np.asanyarray(nib.load(other).dataobj)
            b = np.asanyarray(nib.load(path).dataobj)
            same_labels = label_dice if path.name.endswith("_dseg.nii.gz") else dice
            value = same_labels(a, b) if a.shape == b.shape else 0.0
            if value < worst_dice:
                worst_dice, worst_file = value, path.name
    worst_diff, worst_column = 0.0, "-"
    for path in sorted(new.rglob("*_desc-summary_stats.tsv")):
        a = pd.read_csv(old / path.relative_to(new), sep="\t").iloc[0]
        b = pd.read_csv(path, sep="\t").iloc[0]
        for column in b.index.intersection(a.index):
            x = pd.to_numeric(a[column], errors="coerce")
            y = pd.to_numeric(b[column], errors="coerce")
            if pd.notna(x) and pd.notna(y) and max(abs(x), abs(y)) > 0:
                diff = abs(x - y) / max(abs(x), abs(y))
                if diff > worst_diff:
                    worst_diff, worst_column = diff, column
    return worst_dice, worst_file, worst_diff, worst_column


def profile_node(work: Path, name: str, top: int = 25) -> None:
    """Re-run one node of a finished run under cProfile (in a scratch copy of its folder)."""
    from nipype.utils.filemanip import loadpkl

    # "pvs_wf.detect" as the table prints it; a bare "detect" matches five nodes
    found = sorted(work.rglob(f"{name.replace('.', '/')}/_node.pklz"))
    if not found:
        print(f"no node {name!r} in {work}")
        return
    if len(found) > 1:
        print(f"{name!r} is {len(found)} nodes; the first is profiled (name its workflow too)")
    node = loadpkl(found[0])
    profiler = cProfile.Profile()
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as scratch:
        # the interface itself, in a scratch folder: the node would find its cached result
        os.chdir(scratch)
        try:
            profiler.runcall(node.interface.run)
        finally:
            os.chdir(here)
    print(f"\n== cProfile of {name} ({found[0].parent.relative_to(work)})")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="the other commit (default HEAD~1)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=401, help="generator seed (>= 400: unseen)")
    parser.add_argument("--markers", nargs="+", metavar="KEY", help="default: every marker")
    parser.add_argument(
        "--cprofile", nargs="*", default=[], metavar="NODE", help="e.g. pvs_wf.detect"
    )
    parser.add_argument("--keep", type=Path, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        bids = root / "bids"
        subprocess.run(synth(bids, 1, 1, args.seed, args.resolution), check=True)
        sources = {"this": REPO, args.against: worktree(args.against, Path(tmp) / "against")}
        runs: dict[str, list[dict]] = {label: [] for label in sources}
        try:
            for repeat in range(args.repeats):
                for label, source in sources.items():
                    run = root / f"{'this' if source == REPO else 'against'}-{repeat}"
                    seconds, peak, code = run_measured(
                        command(source, bids, run, args.nprocs, args.markers)
                    )
                    if code != 0:
                        sys.exit(f"{label}: exit {code}")
                    runs[label].append({"wall": seconds, "peak": peak, "run": run,
                                        "nodes": node_times(run / "work")})  # fmt: skip
                    print(f"{label:>10s} run {repeat + 1}: {seconds:6.1f} s, peak {peak:.2f} GB")
        finally:
            remove = ["worktree", "remove", "--force", str(sources[args.against])]
            subprocess.run(["git", "-C", str(REPO), *remove], check=False, capture_output=True)
        report(runs, args.against)
        for name in args.cprofile:
            profile_node(runs["this"][-1]["run"] / "work", name)


def report(runs: dict[str, list[dict]], against: str) -> None:
    this, other = runs["this"], runs[against]
    names = sorted({n for r in this + other for n in r["nodes"]})

    def node_median(rs: list[dict], name: str) -> float:
        return median(sum(r["nodes"].get(name, [0.0])) for r in rs)

    rows = sorted(names, key=lambda n: -node_median(this, n))
    print(f"\n{'node (median s over repeats)':45s} {'this':>8s} {against:>10s} {'ratio':>7s}")
    for name in rows:
        a, b = node_median(this, name), node_median(other, name)
        print(f"{name:45s} {a:8.1f} {b:10.1f} {a / b if b else float('nan'):7.2f}")
    figures = {  # the node seconds' sum: CPU work, steadier than the wall on a noisy machine
        "node seconds (s)": lambda r: sum(sum(times) for times in r["nodes"].values()),
        "wall (s)": lambda r: r["wall"],
        "peak (GB)": lambda r: r["peak"],
    }
    for key, figure in figures.items():
        a, b = median(map(figure, this)), median(map(figure, other))
        print(f"{'whole run: ' + key:45s} {a:8.2f} {b:10.2f} {a / b:7.2f}")
    outputs = (other[-1]["run"] / "out", this[-1]["run"] / "out")
    low, low_file, diff, column = output_agreement(*outputs)
    print(f"\noutputs against {against}: lowest mask/label-map Dice {low:.4f} ({low_file}); "
          f"largest summary difference {100 * diff:.2f} % ({column})")  # fmt: skip


if __name__ == "__main__":
    main()
