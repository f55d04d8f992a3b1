"""The WMH second opinion on finished runs: the detector's, the shipped model's and the kept
mask, each against a reference.

    python benchmarks/second_opinion.py --run OUT WORK REFERENCE [--run OUT2 WORK2 REF2 ...]

OUT and WORK are a ``csvd-bids participant`` run's output and work folders (with the second
opinion on, the default); REFERENCE a derivatives folder of reference masks
(``derivatives/groundtruth`` of a generated dataset, ``derivatives/manual`` of real scans).
For every finished session the detector's and the model's masks come from the session's
``wmh_wf/detect`` and ``wmh_wf/second_opinion`` nodes in WORK, the kept one from OUT
(``csvd_bids.models.second_opinion`` chose it); each is written under the pipeline's name into a
scratch folder and ``csvd-bids-eval`` compares it with REFERENCE. Prints per session the
reference, detector and model volumes (ml), the detector / model ratio, whether the model's
mask was kept, and the Dice of each; then per run and method the pooled Dice, median, lowest
and mean lesion-wise F1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from common import evaluate_masks, pooled_summary

from csvd_bids.reports.session import finished_sessions
from csvd_bids.workflows.base import WORKFLOW_NAME, session_wf_name

NODES = {"detector": "detect", "model": "second_opinion"}


def _entities(prefix: str) -> dict[str, str | None]:
    """``sub-01_ses-1`` -> {"subject": "01", "session": "1"} (session None without one)."""
    parts = dict(part.split("-", 1) for part in prefix.split("_"))
    return {"subject": parts["sub"], "session": parts.get("ses")}


def _scratch_folders(outputs: Path, work: Path, scratch: Path) -> dict[str, Path]:
    """method -> an outputs-like folder holding that method's WMH masks (``kept``: OUT)."""
    folders = {"kept": outputs}
    for files in finished_sessions(outputs):
        anat = files.folder / "anat"
        kept = next(anat.glob(f"{files.prefix}_space-*_label-WMH_mask.nii.gz"), None)
        if kept is None:  # WMH not assessed (no FLAIR: a T1w-only session of a real dataset)
            continue
        wmh_wf = work / WORKFLOW_NAME / session_wf_name(_entities(files.prefix)) / "wmh_wf"
        for method, node in NODES.items():
            target = scratch / method / kept.relative_to(outputs)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wmh_wf / node / "mask.nii.gz", target)
            folders[method] = scratch / method
    return folders


def _used(outputs: Path) -> pd.DataFrame:
    """participant_id, session_id, model's volume and whether its mask was kept (sidecars)."""
    rows = []
    for files in finished_sessions(outputs):
        sidecar = next(
            (files.folder / "anat").glob(f"{files.prefix}_space-*_label-WMH_mask.json"), None
        )
        if sidecar is None:
            continue
        opinion = json.loads(sidecar.read_text()).get("SecondOpinion", {})
        entities = _entities(files.prefix)
        rows.append(
            {
                "participant_id": f"sub-{entities['subject']}",
                "session_id": f"ses-{entities['session']}" if entities["session"] else "n/a",
                "used": opinion.get("used"),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, type=Path, action="append", required=True,
                        metavar=("OUT", "WORK", "REFERENCE"))  # fmt: skip
    args = parser.parse_args()
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (outputs, work, reference) in enumerate(args.run):
            scratch = Path(tmp) / str(index)
            for method, folder in _scratch_folders(outputs, work, scratch).items():
                table = evaluate_masks(reference, folder, "WMH", scratch / f"eval-{method}")
                tables.append(table.assign(method=method, run=str(outputs)))
    results = pd.concat(tables, ignore_index=True)
    results["session_id"] = results["session_id"].astype("string").fillna("n/a")
    keys = ["run", "participant_id", "session_id"]
    wide = results.pivot_table(index=keys, columns="method", values=["dice", "output_volume_mm3"])
    table = pd.DataFrame(
        {
            "reference_ml": results.groupby(keys)["reference_volume_mm3"].first() / 1000,
            **{f"{m}_ml": wide[("output_volume_mm3", m)] / 1000 for m in NODES},
            **{f"dice_{m}": wide[("dice", m)] for m in (*NODES, "kept")},
        }
    ).reset_index()
    table["ratio"] = table["detector_ml"] / table["model_ml"]
    used = pd.concat([_used(out).assign(run=str(out)) for out, _, _ in args.run])
    table = table.merge(used, on=keys, how="left")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nrun | method | sessions | pooled Dice | median Dice | lowest | mean lesion F1")
    for (run, method), part in results.groupby(["run", "method"], sort=False):
        print(f"{run} | {method} | {pooled_summary(part)}")
    for method, part in results.groupby("method", sort=False):
        print(f"all | {method} | {pooled_summary(part)}")


if __name__ == "__main__":
    main()
