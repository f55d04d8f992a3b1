"""Every marker's agreement with the truth: runs the participant level, then ``csvd-bids-eval``
against the generator's planted truth (or, with --real, the manual WMH masks), and prints the
per-marker table (Dice, AVD, HD95, lesion-wise recall / precision / F1, false positives per
image and per true lesion, count correlation).

    python benchmarks/marker_evaluation.py [--seeds 401 402] [--subjects 2] [--sessions 1]
        [--resolution 1] [--markers wmh cmb ...] [--nprocs N]
    python benchmarks/marker_evaluation.py --bids DIR [--out DIR] [--rerun]
    python benchmarks/marker_evaluation.py --real /work/shared/data/real-bids [--out DIR]

By default, generates one synthetic dataset per seed (seeds >= 400 are held out: never tune on
them), runs ``csvd-bids BIDS OUT participant`` through the real command line, then
``csvd-bids-eval BIDS/derivatives/groundtruth OUT`` (results in ``OUT/eval``), and prints each
dataset's table and, with several datasets, the table pooled over all their sessions.
``--bids DIR`` uses an existing dataset (its truth in ``derivatives/groundtruth``); with
``--out DIR`` the outputs go there and outputs already in it are reused (no run) unless
``--rerun``. ``--real DIR`` evaluates WMH against ``DIR/derivatives/manual`` (and skips the
BIDS validator). Matching rule and empty-mask conventions: see csvd_bids/evaluate/metrics.py
(CONVENTIONS), also written into each ``eval.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from common import csvd_bids, run_measured, synth

from csvd_bids.evaluate.metrics import format_summary, summarise

TRUTH = Path("derivatives") / "groundtruth"
MANUAL = Path("derivatives") / "manual"


def run_participant(bids: Path, out: Path, work: Path, args, extra: list[str]) -> None:
    command = csvd_bids(str(bids), str(out), "participant", "-w", str(work), *extra)
    if args.markers:
        command += ["--markers", *args.markers]
    if args.nprocs:
        command += ["--nprocs", str(args.nprocs)]
    seconds, peak_gb, code = run_measured(command)
    print(f"participant level on {bids.name}: {seconds:.1f} s, peak {peak_gb:.2f} GB, exit {code}")


def run_evaluation(reference: Path, out: Path, labels: list[str] | None) -> pd.DataFrame | None:
    """csvd-bids-eval through its command line; its session table, or None on failure."""
    command = [sys.executable, "-m", "csvd_bids.evaluate.cli", str(reference), str(out)]
    command += ["--out", str(out / "eval")]
    if labels:
        command += ["--markers", *labels]
    print(
        f"$ csvd-bids-eval {reference} {out}" + (f" --markers {' '.join(labels)}" if labels else "")
    )
    code = subprocess.run(command, check=False).returncode
    table = out / "eval" / "eval_sessions.tsv"
    if code not in (0, 65) or not table.is_file():
        print(f"csvd-bids-eval exited with {code}: no results for {out}")
        return None
    sessions = pd.read_csv(table, sep="\t")
    print_sessions(sessions)
    return sessions


def print_sessions(sessions: pd.DataFrame) -> None:
    """One line per session and marker (n/a where a metric is undefined)."""

    def cell(value, fmt: str) -> str:
        return "n/a" if pd.isna(value) else fmt.format(value)

    for _, row in sessions.iterrows():
        where = f"{row['participant_id']} {'' if pd.isna(row['session_id']) else row['session_id']}"
        if row["status"] != "evaluated":
            print(f"  {where:22s} {row['marker']:5s} {row['status']}: {row['reason']}")
            continue
        print(
            f"  {where:22s} {row['marker']:5s} Dice {cell(row['dice'], '{:.3f}')} "
            f"HD95 {cell(row['hd95_mm'], '{:.1f}')} mm  "
            f"lesions ref {int(row['reference_lesions'])} out {int(row['output_lesions'])} "
            f"detected {int(row['detected_lesions'])} "
            f"FP {int(row['false_positives'])}  recall {cell(row['recall'], '{:.2f}')} "
            f"precision {cell(row['precision'], '{:.2f}')} F1 {cell(row['f1'], '{:.2f}')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[401, 402])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--markers", nargs="+", help="passed to csvd-bids (default all)")
    parser.add_argument("--nprocs", type=int, help="passed to csvd-bids")
    parser.add_argument("--bids", type=Path, help="an existing synthetic dataset (no generation)")
    parser.add_argument("--out", type=Path, help="with --bids/--real: the output folder to reuse")
    parser.add_argument("--rerun", action="store_true", help="run even if --out has outputs")
    parser.add_argument("--real", type=Path, help="a dataset with manual WMH masks")
    args = parser.parse_args()
    if args.out and not (args.bids or args.real):
        parser.error("--out needs --bids or --real")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []  # (dataset, output folder, reference root, labels, extra csvd-bids arguments)
        if args.real:
            bids = args.real.absolute()
            out = (args.out or tmp / "out").absolute()
            runs.append((bids, out, bids / MANUAL, ["WMH"], ["--skip-bids-validation"]))
        elif args.bids:
            bids = args.bids.absolute()
            runs.append((bids, (args.out or tmp / "out").absolute(), bids / TRUTH, None, []))
        else:
            for seed in args.seeds:
                bids = tmp / f"seed-{seed}"
                command = synth(bids, args.subjects, args.sessions, seed, args.resolution)
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                runs.append((bids, tmp / f"out-{seed}", bids / TRUTH, None, []))
        tables = []
        for number, (bids, out, reference, labels, extra) in enumerate(runs):
            if args.rerun or not any(out.glob("sub-*")):
                run_participant(bids, out, tmp / f"work-{number}", args, extra)
            else:
                print(f"reusing the outputs in {out}")
            table = run_evaluation(reference, out, labels)
            if table is not None:
                tables.append(table.assign(dataset=bids.name))
        if len(tables) > 1:
            pooled = pd.concat(tables, ignore_index=True)
            print(f"\npooled over {len(tables)} datasets ({len(pooled)} session-marker rows):")
            print(format_summary(summarise(pooled)))


if __name__ == "__main__":
    main()
