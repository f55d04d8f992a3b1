"""Helpers shared by the benchmark scripts (not part of the package, not run by the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.processing import resample_from_to

REPO = Path(__file__).resolve().parent.parent


def dice(reference: np.ndarray, found: np.ndarray) -> float:
    reference, found = reference > 0, found > 0
    total = reference.sum() + found.sum()
    return float(2 * np.logical_and(reference, found).sum() / total) if total else 1.0


def label_dice(reference: np.ndarray, found: np.ndarray) -> float:
    """Dice of two label maps counting a voxel as shared only where both give it the same
    label (the generalised Dice: every label weighted by its volume)."""
    total = np.count_nonzero(reference) + np.count_nonzero(found)
    same = np.count_nonzero((reference == found) & (reference > 0))
    return float(2 * same / total) if total else 1.0


def data_on_grid(path: Path, grid: nib.Nifti1Image) -> np.ndarray:
    """An image's data resampled (nearest neighbour) onto another image's grid."""
    img = nib.load(path)
    if img.shape[:3] != grid.shape[:3] or not np.allclose(img.affine, grid.affine, atol=1e-3):
        img = resample_from_to(img, (grid.shape[:3], grid.affine), order=0)
    return np.asanyarray(img.dataobj)


def mask_on_grid(path: Path, grid: nib.Nifti1Image) -> np.ndarray:
    """A mask resampled (nearest neighbour) onto another image's grid."""
    return data_on_grid(path, grid) > 0


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak resident memory of the whole process tree in GB, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    return time.perf_counter() - start, peak / 1024**3, proc.returncode


def csvd_bids(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), *args]


def synth(out: Path, subjects: int, sessions: int, seed: int, resolution: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "csvd_bids.synth",
        str(out),
        "--subjects",
        str(subjects),
        "--sessions",
        str(sessions),
        "--seed",
        str(seed),
        "--resolution",
        str(resolution),
    ]


def load_session_images(work: Path, subject: str, session: str | None = None):
    """A detector's input (csvd_bids.markers.SessionImages) rebuilt from a participant run's
    work directory, to develop and tune detectors without re-running preprocessing:
    ``csvd-bids BIDS OUT participant -w WORK`` once, then call ``detect(load_session_images(...))``.
    """
    from csvd_bids.markers.base import DWI_IMAGES, SessionImages
    from csvd_bids.workflows.base import WORKFLOW_NAME

    name = f"sub_{subject}" + (f"_ses_{session}" if session else "") + "_wf"
    preproc = Path(work) / WORKFLOW_NAME / name / "preproc_wf"
    if not preproc.is_dir():
        raise FileNotFoundError(f"no preprocessing of sub-{subject} ses-{session} in {work}")

    def array(path: Path) -> np.ndarray:
        return np.asanyarray(nib.load(path).dataobj, dtype=np.float32)

    images = {}
    for modality in ("t1w", "flair", "t2w", "swi"):
        found = sorted((preproc / f"prepare_{modality}").glob(f"{modality}_preproc.nii.gz"))
        if found:
            images[modality] = nib.load(found[0])
    for field in DWI_IMAGES:
        found = sorted((preproc / "prepare_dwi").glob(f"dwi_{field[4:]}.nii.gz"))
        if found:
            images[field] = nib.load(found[0])
    template = preproc / "template_priors"
    return SessionImages(
        images=images,
        brain_mask=array(preproc / "brain_extraction" / "brain_mask.nii.gz") > 0.5,
        # uncompressed since 371caca (.nii), compressed before
        priors={
            k: array(next(template.glob(f"{k}.nii*"))) for k in ("wm", "gm", "csf", "ventricles")
        },
        regions=array(preproc / "segment_regions" / "regions.nii.gz").astype(np.uint8),
    )


def params_with(parser, params, items: list[str]):
    """``params`` (a frozen dataclass) with each ``NAME=VALUE`` of ``items`` (``--set``)
    replaced; a name that is not a numeric field is a usage error."""
    import dataclasses

    for item in items:
        name, _, value = item.partition("=")
        current = getattr(params, name, None)
        if type(current) not in (int, float):
            parser.error(f"--set {item}: not a numeric field of {type(params).__name__}")
        params = dataclasses.replace(params, **{name: type(current)(value)})
    return params


def evaluate_masks(reference: Path, outputs: Path, label: str, results: Path) -> pd.DataFrame:
    """``csvd-bids-eval`` of the ``label`` masks of an outputs folder against a reference
    folder; its per-session table."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "csvd_bids.evaluate.cli",
            str(reference),
            str(outputs),
            "--markers",
            label,
            "--out",
            str(results),
        ],  # fmt: skip
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return pd.read_csv(results / "eval_sessions.tsv", sep="\t")


def pooled_summary(part: pd.DataFrame) -> str:
    """Sessions, pooled Dice (in mm3: grids differ between sessions), median and lowest
    session Dice, mean lesion-wise F1."""
    dice = pd.to_numeric(part["dice"], errors="coerce")
    voxel_mm3 = (part["reference_volume_mm3"] + part["output_volume_mm3"]) / (
        part["reference_voxels"] + part["output_voxels"]
    )
    overlap = (part["intersection_voxels"] * voxel_mm3.fillna(0.0)).sum()
    volumes = part["reference_volume_mm3"].sum() + part["output_volume_mm3"].sum()
    pooled = 2.0 * overlap / volumes if volumes else 1.0
    f1 = pd.to_numeric(part["f1"], errors="coerce").mean()
    return f"{len(part)} | {pooled:.3f} | {dice.median():.3f} | {dice.min():.3f} | {f1:.3f}"
