"""A clinical WMH test bed from real labelled scans: FLAIR only, skull-stripped, thick slices,
with confluent WMH of any burden painted in.

    python benchmarks/clinical_testbed.py REAL_BIDS REGIONS_OUT DEST [--thickness 7]
        [--burdens 0 40 80 130] [--seed 0] [--gain 1.25 1.6] [--in-plane 0.5] [--tilt 15]
    python benchmarks/marker_evaluation.py --real DEST --markers wmh

For each subject of REAL_BIDS with a manual WMH mask (``derivatives/manual``), and each
burden B (ml): WMH painted into the white matter nearest the ventricles until B ml are
lesion (0: the scan as it is), at 1.25-1.6 x the normal white matter's FLAIR (``--gain``;
the real MS lesions' median is 1.32 x, their 10th-90th centiles 1.19-1.45) with a smooth
texture and soft edges; then the FLAIR is averaged over blocks of ``--thickness`` slices along
the superior-inferior axis (a 2D clinical acquisition), and only the FLAIR is kept; with
``--in-plane MM`` the thick slices are then resampled in-plane onto MM voxels (cubic; the
truth by nearest neighbour), as scanners reconstruct 2D FLAIR onto 0.4-0.5 mm; with ``--tilt DEG``
the image's and the truth's affine are turned DEG about the left-right axis through the
volume's centre (an oblique acquisition: slices along the AC-PC line, the head pitched in the
scanner; the voxels are untouched). The truth
is the manual mask plus the painted lesions, a voxel being lesion where they fill at least
half of it. REGIONS_OUT is a csvd-bids output folder of REAL_BIDS (its region map and WM
probability say where the white matter and the ventricles are; the test bed's own run sees
the FLAIR alone). DEST is a BIDS dataset: ``sub-<subject>b<B>``, truth in
``derivatives/manual``.

The painting is this script's, not the generator's: a lesion model the detector was not
tuned on, on real anatomy, real noise and real normal-tissue contrast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from common import data_on_grid, mask_on_grid
from nibabel.processing import resample_from_to
from scipy import ndimage

from csvd_bids.preproc.regions import distance_mm
from csvd_bids.region_sets import LATERAL_VENTRICLES, NAWM_REGIONS
from csvd_bids.synth.contrasts import thick_slice_grid, to_grid
from csvd_bids.synth.writer import write_json, write_nifti, write_text

GAIN = (1.25, 1.6)  # painted FLAIR / normal white matter, low and high end of the texture


def _canonical(path: Path) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.load(path))


def paint(
    flair: np.ndarray,
    manual: np.ndarray,
    regions: np.ndarray,
    wm_prob: np.ndarray,
    zooms: tuple[float, float, float],
    burden_ml: float,
    rng: np.random.Generator,
    gain: tuple[float, float] = GAIN,
) -> tuple[np.ndarray, np.ndarray]:
    """(painted FLAIR, truth): ``burden_ml`` of WMH grown outwards from the ventricles, at
    ``gain`` (low, high) x the normal white matter."""
    white = np.isin(regions, NAWM_REGIONS) & (wm_prob >= 0.3)
    voxel_ml = float(np.prod(zooms)) / 1000.0
    if burden_ml <= 0:
        return flair, manual
    sigma = [6.0 / z for z in zooms]
    jitter = ndimage.gaussian_filter(rng.standard_normal(flair.shape), sigma)
    reach = distance_mm(regions == LATERAL_VENTRICLES, zooms) * np.exp(0.3 * jitter / jitter.std())
    order = np.argsort(np.where(white, reach, np.inf), axis=None)
    lesion = np.zeros(flair.shape, bool)
    lesion.flat[order[: int(burden_ml / voxel_ml)]] = True
    lesion = ndimage.binary_opening(lesion & white) | (lesion & manual)
    normal = float(np.median(flair[white & ~manual & (flair > 0)]))
    texture = ndimage.gaussian_filter(rng.standard_normal(flair.shape), [3.0 / z for z in zooms])
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    target = normal * (gain[0] + (gain[1] - gain[0]) * texture)
    target *= 1 + 0.04 * rng.standard_normal(flair.shape)  # the lesion's own noise
    weight = ndimage.gaussian_filter(lesion.astype(np.float32), [0.7 / z for z in zooms])
    painted = flair * (1 - weight) + weight * np.maximum(target, flair)
    return painted.astype(np.float32), manual | lesion


def thick_slices(image: nib.Nifti1Image, data: np.ndarray, factor: int) -> nib.Nifti1Image:
    """``data`` (on ``image``'s RAS grid) averaged over blocks of ``factor`` axial slices: the
    generator's own thick-slice grid and block average."""
    slice_mm = float(image.header.get_zooms()[2])
    thickness = factor * slice_mm
    grid = thick_slice_grid(data.shape, image.affine, slice_mm, thickness, (thickness, thickness))
    return nib.Nifti1Image(to_grid(data, grid), grid.affine)


def in_plane(image: nib.Nifti1Image, spacing_mm: float, order: int) -> nib.Nifti1Image:
    """``image`` resampled in-plane (its first two axes) onto ``spacing_mm`` voxels covering
    the same field of view; ``order`` 3 for images, 0 for masks."""
    zooms = image.header.get_zooms()[:3]
    step = np.array([spacing_mm / zooms[0], spacing_mm / zooms[1], 1.0])
    shape = [round(n / s) for n, s in zip(image.shape[:2], step[:2], strict=True)]
    scale = np.diag([*step, 1.0])
    scale[:3, 3] = step / 2 - 0.5  # voxel centres of the finer grid inside the coarse voxels
    grid = ([*shape, image.shape[2]], image.affine @ scale)
    resampled = resample_from_to(image, grid, order=order, mode="nearest")
    return nib.Nifti1Image(np.maximum(resampled.get_fdata(dtype=np.float32), 0), grid[1])


def tilted(image: nib.Nifti1Image, degrees: float) -> nib.Nifti1Image:
    """``image`` with its affine turned ``degrees`` about the world's left-right axis through
    the volume's centre (the voxels unchanged)."""
    angle = np.deg2rad(degrees)
    turn = np.eye(4)
    turn[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    centre = image.affine @ np.append((np.array(image.shape[:3]) - 1) / 2.0, 1.0)
    shift, back = np.eye(4), np.eye(4)
    shift[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    return nib.Nifti1Image(np.asanyarray(image.dataobj), back @ turn @ shift @ image.affine)


def build(
    real: Path,
    regions_out: Path,
    dest: Path,
    thickness: int,
    burdens,
    seed: int,
    gain: tuple[float, float] = GAIN,
    in_plane_mm: float | None = None,
    tilt_deg: float = 0.0,
) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"error: {dest} is not empty (the test bed is written into a new folder)")
    masks = sorted((real / "derivatives" / "manual").glob("sub-*/anat/*_label-WMH_mask.nii.gz"))
    if not masks:
        raise SystemExit(
            f"error: no derivatives/manual/sub-*/anat/*_label-WMH_mask.nii.gz in {real}"
        )
    rows = []
    for manual_path in masks:
        subject = manual_path.name.split("_")[0][4:]
        flair_img = _canonical(real / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz")
        flair = np.asanyarray(flair_img.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in flair_img.header.get_zooms()[:3])
        manual = mask_on_grid(manual_path, flair_img)
        anat = regions_out / f"sub-{subject}" / "anat"
        regions = data_on_grid(next(anat.glob("*_seg-regions_dseg.nii.gz")), flair_img)
        wm_prob = data_on_grid(next(anat.glob("*_label-WM_probseg.nii.gz")), flair_img)
        for burden in burdens:
            rng = np.random.default_rng([seed, int(burden)])
            painted, truth = paint(flair, manual, regions, wm_prob, zooms, burden, rng, gain)
            name = f"sub-{subject}b{int(burden)}"
            image = thick_slices(flair_img, painted, thickness)
            lesion_image = thick_slices(flair_img, truth.astype(np.float32), thickness)
            if in_plane_mm:
                image = in_plane(image, in_plane_mm, order=3)
                lesion_image = in_plane(lesion_image, in_plane_mm, order=0)
            if tilt_deg:
                image, lesion_image = tilted(image, tilt_deg), tilted(lesion_image, tilt_deg)
            anat_dir = dest / name / "anat"
            write_nifti(
                anat_dir / f"{name}_FLAIR.nii.gz", image.get_fdata(dtype=np.float32), image.affine
            )
            sidecar = {"SliceThickness": thickness * zooms[2], "MRAcquisitionType": "2D"}
            write_json(anat_dir / f"{name}_FLAIR.json", sidecar)
            lesion = lesion_image.get_fdata() >= 0.5
            manual_dir = dest / "derivatives" / "manual" / name / "anat"
            mask_path = manual_dir / f"{name}_label-WMH_mask.nii.gz"
            write_nifti(mask_path, lesion.astype(np.uint8), image.affine)
            volume = lesion.sum() * np.prod(image.header.get_zooms()[:3]) / 1000
            shape = "x".join(str(n) for n in image.shape)
            print(f"{name}: {volume:.1f} ml of WMH, {thickness * zooms[2]:.1f} mm slices, {shape}")
            rows.append(name)
    write_json(
        dest / "dataset_description.json",
        {"Name": "csvd-bids clinical WMH test bed", "BIDSVersion": "1.8.0"},
    )
    write_text(dest / "participants.tsv", "participant_id\n" + "\n".join(rows) + "\n")
    write_json(
        dest / "derivatives" / "manual" / "dataset_description.json",
        {
            "Name": "manual WMH plus painted confluent WMH",
            "BIDSVersion": "1.8.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "benchmarks/clinical_testbed.py"}],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path)
    parser.add_argument("regions_out", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--thickness", type=int, default=7, help="slices per thick slice")
    parser.add_argument("--burdens", type=float, nargs="+", default=[0, 40, 80, 130])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gain", type=float, nargs=2, default=GAIN, metavar=("LOW", "HIGH"))
    parser.add_argument("--in-plane", type=float, help="in-plane voxel (mm) after thick slices")
    parser.add_argument("--tilt", type=float, default=0.0, help="oblique affine (degrees)")
    args = parser.parse_args()
    build(
        args.real,
        args.regions_out,
        args.dest,
        args.thickness,
        args.burdens,
        args.seed,
        args.gain,
        args.in_plane,
        args.tilt,
    )


if __name__ == "__main__":
    main()
