"""Target registration error of the rigid coregistration against the generator's known
misalignments (``python -m csvd_bids.synth --misalign``).

    python benchmarks/registration_tre.py [--seeds 301 302] [--subjects 2] [--sessions 1]
        [--resolutions 1] [--misalign 20 20]

For every session and modality, the TRE is the distance between where our transform
(``<out>/.../sub-XX[_ses-Y]_from-<SUFFIX>_to-T1w_mode-image_xfm.txt``) and the truth
(the same name in derivatives/groundtruth) send the centres of the true brain mask's voxels.
Prints one line per session and modality (with the header alignment's error for scale) and,
per resolution and modality, the median of the mean TREs against the issue's bar: 1 mm, or
half the slice thickness for thick-slice images.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from common import csvd_bids, synth

_LPS = np.array([-1.0, -1.0, 1.0])  # ITK points are LPS, nibabel's RAS
RAW_NAME = {"FLAIR": "anat/{}_FLAIR", "T2w": "anat/{}_T2w", "T2starw": "anat/{}_acq-swi_T2starw"}
RAW_NAME["dwi"] = "dwi/{}_dwi"
RAW_NAME["asl"] = "perf/{}_asl"


def brain_points(truth_anat: Path, prefix: str) -> np.ndarray:
    """World (RAS mm) centres of the voxels of the true brain mask."""
    img = nib.load(truth_anat / f"{prefix}_space-T1w_desc-brain_mask.nii.gz")
    ijk = np.argwhere(np.asanyarray(img.dataobj) > 0)
    return nib.affines.apply_affine(img.affine, ijk)


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """RAS points through an ITK (LPS) transform."""
    return np.array([transform.TransformPoint(tuple(p * _LPS)) for p in points]) * _LPS


def tre(ours: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(transform_points(ours, points) - transform_points(truth, points), axis=1)


def slice_thickness(raw: Path) -> float:
    return float(max(nib.load(raw).header.get_zooms()[:3]))


def evaluate(bids: Path, work: Path, resolution: float, results: dict) -> None:
    out = work / "out"
    command = csvd_bids(
        str(bids), str(out), "participant", "-w", str(work / "work"), "--markers", "wmh"
    )
    subprocess.run(command, check=False)
    truth_root = bids / "derivatives" / "groundtruth"
    rng = np.random.default_rng(0)
    for truth_file in sorted(truth_root.glob("sub-*/**/anat/*_to-T1w_mode-image_xfm.txt")):
        prefix, rest = truth_file.name.split("_from-")
        modality = rest.split("_")[0]
        relative = truth_file.parent.relative_to(truth_root)
        points = brain_points(truth_file.parent, prefix)
        points = points[rng.choice(len(points), min(len(points), 20000), replace=False)]
        truth = sitk.ReadTransform(str(truth_file))
        raw = bids / relative.parent / (RAW_NAME[modality].format(prefix) + ".nii.gz")
        thickness = slice_thickness(raw)
        header = tre(sitk.Euler3DTransform(), truth, points).mean()  # before registration
        line = f"{prefix:18s} {modality:8s} {thickness:4.1f} mm slices  header {header:6.2f} mm"
        # ours lie beside the image they move (anat/, dwi/, perf/), the truth's all in anat/
        ours = sorted((out / relative.parent).glob(f"*/{truth_file.name}"))
        if not ours:
            print(f"{line}  no output transform (not coregistered by the pipeline)")
            continue
        error = tre(sitk.ReadTransform(str(ours[0])), truth, points)
        results.setdefault((resolution, modality, thickness), []).append(float(error.mean()))
        print(f"{line}  TRE mean {error.mean():.3f} max {error.max():.3f} mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[301, 302])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--resolutions", type=float, nargs="+", default=[1.0])
    parser.add_argument("--misalign", type=float, nargs=2, default=[20.0, 20.0])
    args = parser.parse_args()
    results: dict[tuple[float, str, float], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.resolutions:
            for seed in args.seeds:
                bids = Path(tmp) / f"res-{resolution}_seed-{seed}"
                command = synth(bids, args.subjects, args.sessions, seed, resolution)
                subprocess.run(
                    [*command, "--misalign", *(str(v) for v in args.misalign)], check=True
                )
                evaluate(bids, Path(tmp) / f"run-{resolution}-{seed}", resolution, results)
    failed = False
    for (resolution, modality, thickness), means in sorted(results.items()):
        bar = max(1.0, thickness / 2)  # 1 mm for 1 mm images, half a thick slice otherwise
        value = median(means)
        failed |= value >= bar
        print(
            f"{resolution:g} mm grid  {modality:8s} ({thickness:g} mm slices): median of "
            f"{len(means)} mean TRE(s) {value:.3f} mm  (bar {bar:g} mm: "
            f"{'pass' if value < bar else 'FAIL'})"
        )
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
