"""Every marker on both generators' held-out seeds and on the real scans, in one table.

    python benchmarks/generator_agreement.py [--template-seeds 401 402 403 404]
        [--physics-seeds 601 602] [--clinical-seeds 611] [--subjects 2] [--resolution 1]
        [--real /work/shared/data/real-bids] [--keep DIR] [--nprocs N]

For each held-out seed (never tune on them: template seeds >= 400, physics seeds >= 600) it
generates a dataset with ``python -m csvd_bids.synth`` (``--engine template`` or ``--engine
physics``; ``--clinical-seeds``: physics engine, clinical profile: FLAIR only, 5-8 mm
slices, WMH up to 150 mL), runs ``run.py BIDS OUT participant`` through the command line and
``csvd-bids-eval`` against the planted truth, and compares each session's summary
(``*_desc-summary_stats.tsv``) with its planted ratings (``*_desc-ratings_stats.tsv``).
With ``--real`` it also runs the real dataset: WMH against its manual masks, and every
marker's detections per scan (no other real labels exist: look at them in the report).

Printed: one table, per marker and per generator, of pooled Dice, lesion-wise F1, false
positives per image, sessions without a planted microbleed that have none found, and the
Fazekas, Potter and Staals agreement. ``--keep DIR`` keeps datasets and outputs in DIR and
reuses what is already there (generation and runs are the slow part: about 2.5 min and 3 min
per 1 mm physics subject on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from common import csvd_bids, run_measured, synth
from marker_evaluation import MANUAL, TRUTH, run_evaluation

from csvd_bids.evaluate.metrics import summarise

RATINGS = {  # column: allowed difference for "agrees"
    "fazekas_pv": 0,
    "fazekas_deep": 0,
    "PVS_BG_grade": 0,
    "PVS_CSO_grade": 0,
    "svd_score": 0,
}
MARKER_ROWS = (
    ("WMH", "dice_pooled", "WMH Dice (pooled)"),
    ("WMH", "dice_median", "WMH Dice (median)"),
    ("WMH", "dice_min", "WMH Dice (min)"),
    ("CMB", "f1_pooled", "CMB lesion F1"),
    ("CMB", "fp_per_image", "CMB false positives / image"),
    ("PVS", "f1_pooled", "PVS lesion F1"),
    ("LAC", "f1_pooled", "lacune lesion F1"),
    ("RSSI", "dice_pooled", "RSSI Dice (pooled)"),
)


def _participant(bids: Path, out: Path, work: Path, nprocs: int | None, extra: list[str]) -> None:
    if any(out.glob("sub-*")):
        print(f"reusing the outputs in {out}")
        return
    command = csvd_bids(str(bids), str(out), "participant", "-w", str(work), *extra)
    command += ["--nprocs", str(nprocs)] if nprocs else []
    seconds, peak_gb, code = run_measured(command)
    print(f"participant level on {bids}: {seconds:.0f} s, peak {peak_gb:.2f} GB, exit {code}")


def ratings_agreement(bids: Path, out: Path) -> pd.DataFrame:
    """One row per session: planted and found value of each RATINGS column."""
    rows = []
    for planted_file in sorted((bids / TRUTH).rglob("*_desc-ratings_stats.tsv")):
        prefix = planted_file.name.removesuffix("_desc-ratings_stats.tsv")
        found_file = out / planted_file.parent.relative_to(bids / TRUTH)
        found_file = found_file / f"{prefix}_desc-summary_stats.tsv"
        planted = pd.read_csv(planted_file, sep="\t").iloc[0]
        found = pd.read_csv(found_file, sep="\t").iloc[0] if found_file.is_file() else None
        row = {"session": prefix}
        for column in RATINGS:
            row[f"{column}_planted"] = planted.get(column)
            row[f"{column}_found"] = None if found is None else found.get(column)
        rows.append(row)
    return pd.DataFrame(rows)


def _agreement(ratings: pd.DataFrame, column: str, tolerance: int) -> str:
    """Agreeing / rated sessions ("n/a" where the pipeline rated none: marker not assessed)."""
    planted = pd.to_numeric(ratings[f"{column}_planted"], errors="coerce")
    found = pd.to_numeric(ratings[f"{column}_found"], errors="coerce")
    rated = found.notna()
    if not rated.any():
        return "n/a"
    ok = (planted[rated] - found[rated]).abs() <= tolerance
    return f"{int(ok.sum())}/{int(rated.sum())}"


def _cmb_clean(sessions: pd.DataFrame) -> str:
    cmb = sessions[(sessions["marker"] == "CMB") & (sessions["status"] == "evaluated")]
    none = cmb[cmb["reference_lesions"] == 0]
    return f"{int((none['false_positives'] == 0).sum())}/{len(none)}" if len(none) else "n/a"


def column_for(sessions: pd.DataFrame, ratings: pd.DataFrame | None) -> dict[str, str]:
    """The table's cells of one generator (or the real set)."""
    summary = summarise(sessions).set_index("marker")
    cells = {}
    for marker, stat, title in MARKER_ROWS:
        value = summary[stat].get(marker) if marker in summary.index else None
        cells[title] = "n/a" if value is None or pd.isna(value) else f"{value:.2f}"
    cells["sessions without CMB, none found"] = _cmb_clean(sessions)
    if ratings is not None and len(ratings):
        cells["Fazekas PV within one"] = _agreement(ratings, "fazekas_pv", 1)
        cells["Fazekas deep within one"] = _agreement(ratings, "fazekas_deep", 1)
        cells["Potter BG exact"] = _agreement(ratings, "PVS_BG_grade", 0)
        cells["Potter CSO exact"] = _agreement(ratings, "PVS_CSO_grade", 0)
        cells["Staals SVD score exact"] = _agreement(ratings, "svd_score", 0)
    return cells


def detections(out: Path) -> pd.DataFrame:
    """Per scan: every marker's count and WMH volume from its summary (the real-scan audit)."""
    rows = []
    for summary in sorted(out.rglob("*_desc-summary_stats.tsv")):
        row = pd.read_csv(summary, sep="\t").iloc[0]
        rows.append(
            {
                "session": summary.name.removesuffix("_desc-summary_stats.tsv"),
                "WMH_ml": row.get("WMH_volume_mm3", float("nan")) / 1000,
                **{f"{m}_count": row.get(f"{m}_count") for m in ("CMB", "PVS", "LAC", "RSSI")},
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template-seeds", type=int, nargs="*", default=[401, 402, 403, 404])
    parser.add_argument("--physics-seeds", type=int, nargs="*", default=[601, 602])
    parser.add_argument("--clinical-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--real", type=Path, help="a BIDS dataset with manual WMH masks")
    parser.add_argument("--keep", type=Path, help="keep and reuse datasets and outputs here")
    parser.add_argument("--nprocs", type=int, help="passed to csvd-bids")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)).absolute()
        plans = [
            *(("template", s, []) for s in args.template_seeds),
            *(("physics", s, ["--engine", "physics"]) for s in args.physics_seeds),
            *(
                ("physics clinical", s, ["--engine", "physics", "--profile", "clinical"])
                for s in args.clinical_seeds
            ),
        ]
        tables: dict[str, list[pd.DataFrame]] = {}
        ratings: dict[str, list[pd.DataFrame]] = {}
        for generator, seed, options in plans:
            name = f"{generator.replace(' ', '-')}-{seed}"
            bids, out = root / name / "bids", root / name / "out"
            if not (bids / "participants.tsv").is_file():
                command = synth(bids, args.subjects, 1, seed, args.resolution) + options
                subprocess.run([*command, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
            _participant(bids, out, root / name / "work", args.nprocs, [])
            sessions = run_evaluation(bids / TRUTH, out, None)
            if sessions is not None:
                tables.setdefault(generator, []).append(sessions)
                ratings.setdefault(generator, []).append(ratings_agreement(bids, out))
        columns = {
            g: column_for(pd.concat(t, ignore_index=True), pd.concat(ratings[g]))
            for g, t in tables.items()
        }
        audit = None
        if args.real:
            out = root / "real" / "out"
            _participant(
                args.real, out, root / "real" / "work", args.nprocs, ["--skip-bids-validation"]
            )
            sessions = run_evaluation(args.real / MANUAL, out, ["WMH"])
            if sessions is not None:
                columns["real (WMH only)"] = column_for(sessions, None)
            audit = detections(out)
        table = pd.DataFrame(columns).fillna("n/a")
        print("\n" + table.to_string())
        if audit is not None:
            print("\nreal scans, detections per scan (look at each in the report):")
            print(audit.to_string(index=False))


if __name__ == "__main__":
    main()
