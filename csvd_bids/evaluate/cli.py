"""``csvd-bids-eval REFERENCE_DERIVATIVES OUTPUT_DERIVATIVES [--markers ...] [--out DIR]``."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from csvd_bids.errors import ExitCode
from csvd_bids.evaluate.metrics import (
    CONVENTIONS,
    ERROR,
    evaluate_pairs,
    format_summary,
    summarise,
)
from csvd_bids.evaluate.pairing import EVALUATED, marker_labels, pair_masks
from csvd_bids.labels import BY_KEY

LOGGER = logging.getLogger("csvd_bids.evaluate")

SESSIONS_TSV = "eval_sessions.tsv"
SUMMARY_TSV = "eval_summary.tsv"
RESULTS_JSON = "eval.json"

DESCRIPTION = """\
Compare csvd-bids marker masks with reference masks (synthetic truth or manual).

Masks named sub-<X>[_ses-<Y>][_...]_label-<LABEL>_mask.nii[.gz] (LABEL: WMH, CMB, PVS, LAC,
RSSI) are paired by subject, session and label anywhere below each root; other entities
(space, desc) are ignored. An output on another grid is resampled onto the reference grid
(nearest neighbour). Per session and marker: Dice, AVD %, HD95 (mm), lesion-wise recall,
precision, F1 and false positives; per marker: means, medians, pooled lesion counts, false
positives per image and per true lesion, and count correlations (Pearson, Spearman).
"""

EPILOG = f"""\
lesion matching: lesions are 26-connected components. A reference lesion is detected when any
output voxel overlaps it; an output component is a true positive when it overlaps any
reference voxel.
empty masks: both empty: Dice 1, HD95 n/a; one empty: Dice 0, HD95 n/a.
not assessed: a reference mask whose session has no output mask for the marker (or whose
summary says "not assessed") is reported as "not assessed" with the reason, never as 0.

outputs (in --out, default OUTPUT_DERIVATIVES/eval): {SESSIONS_TSV} (one row per session and
marker), {SUMMARY_TSV} (one row per marker), {RESULTS_JSON} (both tables and the conventions).

exit codes:
  0   success
  64  usage error (bad option, unknown marker, --out inside REFERENCE_DERIVATIVES)
  65  some masks could not be read (their rows say "error"; the others are evaluated)
  66  a root does not exist, or no pairs found (no reference mask, or no output mask for any
      of them); nothing is written
  73  --out cannot be created or written
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 64, not argparse's 2
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="csvd-bids-eval",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reference", type=Path, metavar="REFERENCE_DERIVATIVES")
    parser.add_argument("output", type=Path, metavar="OUTPUT_DERIVATIVES")
    parser.add_argument(
        "--markers",
        nargs="+",
        metavar="MARKER",
        help="markers to evaluate, as labels (WMH CMB PVS LAC RSSI) or csvd-bids keys "
        "(wmh cmb pvs lacunes rssi); default all",
    )
    parser.add_argument("--out", type=Path, help="results folder (default OUTPUT_DERIVATIVES/eval)")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    return parser


def _labels(names: list[str] | None) -> tuple[str, ...] | str:
    """The selected labels in the canonical order, or the first unknown name."""
    labels = marker_labels()
    if not names:
        return labels
    chosen = set()
    for name in names:
        if name.upper() in labels:
            chosen.add(name.upper())
        elif name.lower() in BY_KEY:
            chosen.add(BY_KEY[name.lower()].label)
        else:
            return name
    return tuple(label for label in labels if label in chosen)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows for JSON: NaN -> null, numpy scalars -> Python."""
    records = []
    for row in table.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            clean[key] = value
        records.append(clean)
    return records


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.DEBUG if verbose else logging.INFO)
    LOGGER.propagate = False


def run(
    reference: Path, output: Path, labels: tuple[str, ...], out: Path
) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """Evaluate and write the results; (exit code, session table, summary table)."""
    from csvd_bids.bids.derivatives import write_json, write_tsv

    pairs = pair_masks(reference, output, labels, exclude=(out,))
    if not pairs:
        LOGGER.error(
            "%s: no reference masks (*_label-{%s}_mask.nii[.gz]) found",
            reference,
            ",".join(labels),
        )
        return ExitCode.NO_INPUT, pd.DataFrame(), pd.DataFrame()
    if not any(pair.status == EVALUATED for pair in pairs):
        LOGGER.error(
            "no pairs found: none of the %d reference mask(s) in %s has an output mask in %s "
            "(e.g. %s: %s)",
            len(pairs),
            reference,
            output,
            pairs[0].reference.name,
            pairs[0].reason,
        )
        return ExitCode.NO_INPUT, pd.DataFrame(), pd.DataFrame()
    sessions = evaluate_pairs(pairs)
    summary = summarise(sessions)
    write_tsv(out / SESSIONS_TSV, sessions)
    write_tsv(out / SUMMARY_TSV, summary)
    write_json(
        out / RESULTS_JSON,
        {
            "reference": str(reference.resolve()),
            "output": str(output.resolve()),
            "markers": list(labels),
            "conventions": CONVENTIONS,
            "summary": _records(summary),
            "sessions": _records(sessions),
        },
    )
    errors = int((sessions["status"] == ERROR).sum())
    return (ExitCode.INPUT_DATA if errors else ExitCode.OK), sessions, summary


def main(argv: list[str] | None = None) -> int:
    import csvd_bids.markers  # noqa: F401  (markers of CSVD_BIDS_MARKER_PLUGINS join the table)

    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    labels = _labels(args.markers)
    if isinstance(labels, str):
        print(
            f"csvd-bids-eval: error: unknown marker {labels!r} "
            f"(use {' '.join(marker_labels())} or {' '.join(BY_KEY)})",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    for name, folder in (
        ("REFERENCE_DERIVATIVES", args.reference),
        ("OUTPUT_DERIVATIVES", args.output),
    ):
        if not folder.is_dir():
            LOGGER.error("%s: %s does not exist or is not a folder", folder, name)
            return ExitCode.NO_INPUT
    out = args.out if args.out is not None else args.output / "eval"
    if _inside(out, args.reference):
        LOGGER.error("%s: --out must not be inside REFERENCE_DERIVATIVES (%s)", out, args.reference)
        return ExitCode.USAGE
    try:
        code, sessions, summary = run(args.reference, args.output, labels, out)
    except OSError as exc:
        LOGGER.error("%s: the results cannot be written (%s)", out, exc.strerror or exc)
        return ExitCode.CANNOT_WRITE
    if code in (ExitCode.OK, ExitCode.INPUT_DATA):
        print(format_summary(summary))
        not_assessed = sessions[sessions["status"] != EVALUATED]
        for _, row in not_assessed.iterrows():
            LOGGER.info(
                "%s %s %s: %s (%s)",
                row["participant_id"],
                row["session_id"],
                row["marker"],
                row["status"],
                row["reason"],
            )
        LOGGER.info("results in %s (%s, %s, %s)", out, SESSIONS_TSV, SUMMARY_TSV, RESULTS_JSON)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
