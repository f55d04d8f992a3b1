"""Small helpers shared by the tests that run the app on the synthetic datasets."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def participant_args(bids: Path, tmp_path: Path, *extra: str) -> list[str]:
    """``bids out participant -w work --skip-bids-validation ...`` under ``tmp_path``."""
    return [
        str(bids),
        str(tmp_path / "out"),
        "participant",
        "-w",
        str(tmp_path / "work"),
        "--skip-bids-validation",
        *extra,
    ]


def run_py_command(bids: Path, out: Path, work: Path, subject: str, *extra: str) -> list[str]:
    """``python run.py bids out participant ...`` for one subject's WMH, as a user types it."""
    return [
        sys.executable,
        str(Path(__file__).resolve().parent.parent / "run.py"),
        str(bids),
        str(out),
        "participant",
        "-w",
        str(work),
        "--skip-bids-validation",
        "--markers",
        "wmh",
        "--participant-label",
        subject,
        *extra,
    ]


# What a WMH-only run does not need to show its behaviour (failure, resumption, QC flags), and
# whose preparation (DWI, tensor fit, ASL) is a large share of a 3 mm session's time.
UNREAD_BY_WMH_TESTS = ("dwi", "perf")


def remove_images(bids: Path, *patterns: str) -> None:
    """Delete every file or folder matching ``patterns`` (globs) in every subject of ``bids``:
    images a test's run never reads."""
    for pattern in patterns:
        for path in sorted(bids.glob(f"sub-*/**/{pattern}")):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def flair_path(bids: Path, subject: str) -> Path:
    """The FLAIR of a session-less synthetic subject."""
    return bids / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz"


def summary_path(out: Path, subject: str) -> Path:
    """The summary TSV of a session-less subject in the outputs."""
    return out / f"sub-{subject}" / "anat" / f"sub-{subject}_desc-summary_stats.tsv"


def assert_located_as_detected(detection, located: tuple[np.ndarray, dict[int, str]]) -> None:
    """A model bundle's lesions are named by the marker's ``locate`` (models/detect.py): on
    the detector's own mask it must name every lesion voxel as the detector did."""
    regions, names = located
    mask = detection.mask
    assert mask.any(), "nothing detected: nothing to locate"
    found = [names[int(i)] for i in regions[mask]]
    expected = [detection.region_names[int(i)] for i in detection.regions[mask]]
    assert found == expected


def output_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every output's content below ``folder``: a NIfTI's data array (its header
    and gzip stamp aside), a table's or transform's bytes; JSON sidecars and HTML are left out
    (they record when and where the run happened)."""
    sums = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.name.endswith(".nii.gz"):
            data = np.ascontiguousarray(nib.load(path).get_fdata(dtype=np.float32))
            sums[name] = hashlib.sha256(data.tobytes()).hexdigest()
        elif path.suffix in (".tsv", ".h5", ".txt"):
            sums[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def run_interface(interface, base: Path, **inputs):
    """Run a nipype interface as a node under ``base`` with ``inputs``; its outputs."""
    from nipype import Node

    node = Node(interface, name=type(interface).__name__.lower(), base_dir=str(base))
    for name, value in inputs.items():
        setattr(node.inputs, name, value)
    return node.run().outputs


def ratings_on_truth(truth: Path, subject: str) -> dict:
    """What the pipeline's quantification gives on the generator's truth of one session
    (``truth``: a dataset's ``derivatives/groundtruth``)."""
    import pandas as pd

    from csvd_bids.labels import MARKER_LABELS
    from csvd_bids.preproc.regions import REGION_INDEX
    from csvd_bids.quant.ratings import rate_session
    from csvd_bids.quant.summary import marker_counts, session_scores

    base = truth / f"sub-{subject}" / "anat" / f"sub-{subject}_space-T1w"

    def image(suffix: str) -> nib.Nifti1Image:
        return nib.load(f"{base}_{suffix}.nii.gz")

    lesions = pd.read_csv(f"{base}_desc-lesions_stats.tsv", sep="\t", keep_default_na=False)
    lesions["volume_mm3"] = lesions["volume_mm3"].astype(float)
    masks = {
        m.label: np.asanyarray(image(f"label-{m.label}_mask").dataobj) > 0 for m in MARKER_LABELS
    }
    tables = {label: lesions[lesions["marker"] == label].reset_index(drop=True) for label in masks}
    regions = np.asanyarray(image("seg-regions_dseg").dataobj)
    brain = image("desc-brain_mask")
    ratings = rate_session(
        masks,
        tables,
        regions == REGION_INDEX["lateral_ventricles"],
        np.asanyarray(brain.dataobj) > 0,
        brain.header.get_zooms()[:3],
        icv_mm3=float(np.asanyarray(brain.dataobj).sum() * np.prod(brain.header.get_zooms()[:3])),
    )
    statuses = {m.label: (True, "") for m in MARKER_LABELS}
    counts: dict = {}
    for label in masks:
        counts.update(marker_counts(label, True, lesions))
    return {**counts, **ratings, **session_scores(counts, ratings, statuses)}
