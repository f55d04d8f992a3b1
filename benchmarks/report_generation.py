"""Time to make one session's report: its QC mosaics and its HTML page; and the group report.

    python benchmarks/report_generation.py [--repeats 5] [--resolution 1] [--outputs OUT]

Without ``--outputs``, a 1-subject, 1-session synthetic dataset is made and run through the
participant and group levels first (not timed). Each repeat then re-renders, from the outputs,
the session's mosaics (the RenderQC node's work: brain mask, coregistration edges, regions,
one per marker) and its HTML report, and the group report. Prints every repeat and the medians.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import median

from common import csvd_bids, synth

from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.interfaces.reports import RenderQC
from csvd_bids.labels import BY_LABEL
from csvd_bids.reports.group import write_group_report
from csvd_bids.reports.session import SessionFiles, finished_sessions, write_session_report

MODALITY_OF_SUFFIX = {suffix: key for key, suffix in SUFFIXES.items()}


def render_mosaics(files: SessionFiles, work: Path) -> int:
    """Run the RenderQC interface on a finished session's outputs; returns the figure count."""
    anat = files.folder / "anat"
    preproc = sorted(anat.glob(f"{files.prefix}_*space-*_desc-preproc_*.nii.gz"))
    modalities = [
        MODALITY_OF_SUFFIX[p.name.split("_")[-1].removesuffix(".nii.gz")] for p in preproc
    ]
    masks = sorted(anat.glob(f"{files.prefix}_space-*_label-*_mask.nii.gz"))
    labels = [p.name.split("label-")[1].split("_")[0] for p in masks]
    node = RenderQC(
        reference="t1w" if "t1w" in modalities else "flair",
        modalities=modalities,
        preproc_files=[str(p) for p in preproc],
        brain_mask=str(next(anat.glob(f"{files.prefix}_space-*_desc-brain_mask.nii.gz"))),
        regions=str(next(anat.glob(f"{files.prefix}_space-*_seg-regions_dseg.nii.gz"))),
        marker_keys=[BY_LABEL[label].key for label in labels if label in BY_LABEL],
        mask_files=[str(p) for p, label in zip(masks, labels, strict=True) if label in BY_LABEL],
    )
    b0 = sorted((files.folder / "dwi").glob(f"{files.prefix}_space-*_desc-b0_dwi.nii.gz"))
    if b0:
        node.inputs.dwi_b0 = str(b0[0])
    work.mkdir(parents=True, exist_ok=True)
    result = node.run(cwd=str(work))
    return len(result.outputs.figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--outputs", type=Path, help="an output dir of a finished run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.outputs
        if out is None:
            bids, out = Path(tmp) / "bids", Path(tmp) / "out"
            subprocess.run(synth(bids, 1, 1, 11, args.resolution), check=True)
            for level in ("participant", "group"):
                subprocess.run(
                    csvd_bids(str(bids), str(out), level, "-w", str(Path(tmp) / "work")),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
        files = finished_sessions(out)[0]
        timings: dict[str, list[float]] = {"mosaics": [], "session html": [], "group html": []}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            n = render_mosaics(files, Path(tmp) / f"qc-{repeat}")
            timings["mosaics"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_session_report(files)
            timings["session html"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_group_report(out)
            timings["group html"].append(time.perf_counter() - start)
            print(
                f"repeat {repeat + 1}: {n} mosaics "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in timings.items())
            )
        total = [sum(t) for t in zip(timings["mosaics"], timings["session html"], strict=True)]
        print(
            f"{files.prefix}: median "
            + ", ".join(f"{k} {median(v):.2f} s" for k, v in timings.items())
            + f"; one session's report (mosaics + html) {median(total):.2f} s (target < 15 s)"
        )


if __name__ == "__main__":
    main()
