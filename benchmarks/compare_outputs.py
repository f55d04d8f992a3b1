"""Compare two participant-level output folders file by file: did a change keep the outputs?

    python benchmarks/compare_outputs.py OLD_DERIVATIVES NEW_DERIVATIVES [--tolerance 1e-5]

For every file of either folder (HTML reports and figures left out), prints one line when the
two differ: images by voxels that differ (and Dice for masks and label maps), TSV tables by
cells and columns that differ, JSON sidecars by keys that differ. Ends with the number of
files compared, identical and different, so a refactor that must keep outputs can be checked
on the demo dataset and on the real scans; and, for a change that may move outputs a little
(issue 20's tolerance: masks Dice >= 0.98, region maps >= 0.97, summaries within 2 %), the
lowest Dice of the masks and of the label maps (voxels of the same label only) and the largest
relative difference of a summary figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from common import dice, label_dice

SKIPPED = (".html", ".png", ".svg")


# lowest Dice of a mask / a label map, largest relative difference of a summary figure
WORST: dict[str, tuple[float, str]] = {}


def _note(kind: str, value: float, where: Path, lowest: bool = True) -> None:
    known = WORST.get(kind)
    if known is None or (value < known[0] if lowest else value > known[0]):
        WORST[kind] = (value, str(where))


def compare_images(old: Path, new: Path, tolerance: float) -> str:
    a = np.asanyarray(nib.load(old).dataobj)
    b = np.asanyarray(nib.load(new).dataobj)
    if a.shape != b.shape:
        return f"shape {a.shape} -> {b.shape}"
    differ = int((np.abs(a.astype(np.float64) - b.astype(np.float64)) > tolerance).sum())
    if not differ:
        return ""
    text = f"{differ} voxels differ"
    if new.name.endswith("_dseg.nii.gz"):
        value = label_dice(a, b)
        _note("label map Dice (same label)", value, new)
        text += f" (Dice of the voxels of the same label {value:.4f})"
    elif a.dtype.kind in "iub" and b.dtype.kind in "iub":
        value = dice(a, b)
        _note("mask Dice", value, new)
        text += f" (Dice of the non-zero voxels {value:.4f})"
    return text


def _summary_difference(old: Path, new: Path) -> None:
    a, b = _table(old), _table(new)
    for column in [c for c in b.columns if c in a.columns]:
        x = pd.to_numeric(a[column], errors="coerce")
        y = pd.to_numeric(b[column], errors="coerce")
        scale = np.maximum(x.abs(), y.abs())
        relative = ((x - y).abs() / scale)[scale > 0].dropna()
        if len(relative):
            _note("summary figure, relative difference", float(relative.max()), new, lowest=False)


def _table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    except pd.errors.EmptyDataError:  # an empty file: no column, no row
        return pd.DataFrame()


def compare_tables(old: Path, new: Path, tolerance: float) -> str:
    a, b = _table(old), _table(new)
    notes = []
    if set(a.columns) != set(b.columns):
        gone, added = (
            sorted(set(a.columns) - set(b.columns)),
            sorted(set(b.columns) - set(a.columns)),
        )
        notes.append(f"columns removed {gone} added {added}")
    if len(a) != len(b):
        return "; ".join([*notes, f"{len(a)} -> {len(b)} rows"])
    changed = []
    for column in [c for c in a.columns if c in b.columns]:
        x, y = a[column], b[column]
        nx, ny = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
        numeric = nx.notna() & ny.notna()
        same = (x == y) | (numeric & ((nx - ny).abs() <= tolerance * np.maximum(1, nx.abs())))
        if not same.all():
            changed.append(f"{column} ({int((~same).sum())} rows)")
    if changed:
        notes.append("cells differ in " + ", ".join(changed))
    return "; ".join(notes)


def compare_json(old: Path, new: Path) -> str:
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "" if a == b else "content differs"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f"keys differ: {keys}" if keys else ""


def compare(old: Path, new: Path, tolerance: float) -> str:
    name = new.name
    if name.endswith((".nii", ".nii.gz")):
        return compare_images(old, new, tolerance)
    if name.endswith(".tsv"):
        if name.endswith("_desc-summary_stats.tsv"):
            _summary_difference(old, new)
        return compare_tables(old, new, tolerance)
    if name.endswith(".json"):
        return compare_json(old, new)
    return "" if old.read_bytes() == new.read_bytes() else "bytes differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-5, help="numbers this close agree")
    args = parser.parse_args()
    files = sorted(
        {
            p.relative_to(root)
            for root in (args.old, args.new)
            for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(SKIPPED)
        }
    )
    identical = different = 0
    for relative in files:
        old, new = args.old / relative, args.new / relative
        if not old.exists() or not new.exists():
            print(f"{relative}: only in {'new' if new.exists() else 'old'}")
            different += 1
            continue
        verdict = compare(old, new, args.tolerance)
        if verdict:
            print(f"{relative}: {verdict}")
            different += 1
        else:
            identical += 1
    print(f"\n{len(files)} files: {identical} identical, {different} different")
    for kind, (value, where) in WORST.items():
        print(f"{kind}: {value:.4f} ({where})")


if __name__ == "__main__":
    main()
