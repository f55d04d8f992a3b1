"""A clinical WMH test bed from real labelled scans: FLAIR only, skull-stripped, thick slices,
with confluent WMH of any burden painted in.

    python benchmarks/clinical_testbed.py REAL_BIDS REGIONS_OUT DEST [--thickness 7]
        [--burdens 0 40 80 130] [--seed 0]
    python benchmarks/marker_evaluation.py --real DEST --markers wmh

For each subject of REAL_BIDS with a manual WMH mask (``derivatives/manual``), and each
burden B (ml): WMH painted into the white matter nearest the ventricles until B ml are
lesion (0: the scan as it is), at 1.25-1.6 x the normal white matter's FLAIR with a smooth
texture and soft edges; then the FLAIR is averaged over blocks of ``--thickness`` slices along
the superior-inferior axis (a 2D clinical acquisition), and only the FLAIR is kept. The truth
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
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from common import data_on_grid, mask_on_grid
from scipy import ndimage

from csvd_bids.preproc.regions import distance_mm
from csvd_bids.region_sets import LATERAL_VENTRICLES, NAWM_REGIONS

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
) -> tuple[np.ndarray, np.ndarray]:
    """(painted FLAIR, truth): ``burden_ml`` of WMH grown outwards from the ventricles."""
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
    target = normal * (GAIN[0] + (GAIN[1] - GAIN[0]) * texture)
    target *= 1 + 0.04 * rng.standard_normal(flair.shape)  # the lesion's own noise
    weight = ndimage.gaussian_filter(lesion.astype(np.float32), [0.7 / z for z in zooms])
    painted = flair * (1 - weight) + weight * np.maximum(target, flair)
    return painted.astype(np.float32), manual | lesion


def thick_slices(image: nib.Nifti1Image, data: np.ndarray, factor: int) -> nib.Nifti1Image:
    """``data`` (on ``image``'s RAS grid) averaged over blocks of ``factor`` axial slices."""
    nz = data.shape[2] // factor * factor
    blocks = data[..., :nz].reshape(*data.shape[:2], nz // factor, factor).mean(axis=-1)
    scale = np.diag([1.0, 1.0, float(factor), 1.0])
    scale[2, 3] = (factor - 1) / 2.0  # a thick voxel's centre is its block's centre
    return nib.Nifti1Image(blocks.astype(np.float32), image.affine @ scale)


def _write(path: Path, img: nib.Nifti1Image, dtype) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(dtype), img.affine)
    out.header.set_xyzt_units("mm")
    nib.save(out, path)


def build(real: Path, regions_out: Path, dest: Path, thickness: int, burdens, seed: int) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    rows = []
    for manual_path in sorted(
        (real / "derivatives" / "manual").glob("sub-*/anat/*_label-WMH_mask.nii.gz")
    ):
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
            painted, truth = paint(flair, manual, regions, wm_prob, zooms, burden, rng)
            name = f"{subject}b{int(burden)}"
            folder = dest / f"sub-{name}" / "anat"
            image = thick_slices(flair_img, painted, thickness)
            _write(folder / f"sub-{name}_FLAIR.nii.gz", image, np.float32)
            sidecar = {"SliceThickness": thickness * zooms[2], "MRAcquisitionType": "2D"}
            (folder / f"sub-{name}_FLAIR.json").write_text(json.dumps(sidecar, indent=2))
            truth_img = thick_slices(flair_img, truth.astype(np.float32), thickness)
            truth_img = nib.Nifti1Image(
                (truth_img.get_fdata() >= 0.5).astype(np.uint8), image.affine
            )
            _write(
                dest
                / "derivatives"
                / "manual"
                / f"sub-{name}"
                / "anat"
                / f"sub-{name}_label-WMH_mask.nii.gz",
                truth_img,
                np.uint8,
            )
            volume = truth_img.get_fdata().sum() * np.prod(image.header.get_zooms()[:3]) / 1000
            print(f"sub-{name}: {volume:.1f} ml of WMH, {thickness * zooms[2]:.1f} mm slices")
            rows.append(f"sub-{name}")
    (dest / "dataset_description.json").write_text(
        json.dumps({"Name": "csvd-bids clinical WMH test bed", "BIDSVersion": "1.8.0"}, indent=2)
    )
    (dest / "participants.tsv").write_text("participant_id\n" + "\n".join(rows) + "\n")
    manual_root = dest / "derivatives" / "manual"
    (manual_root / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "manual WMH plus painted confluent WMH",
                "BIDSVersion": "1.8.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "benchmarks/clinical_testbed.py"}],
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path)
    parser.add_argument("regions_out", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--thickness", type=int, default=7, help="slices per thick slice")
    parser.add_argument("--burdens", type=float, nargs="+", default=[0, 40, 80, 130])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.real, args.regions_out, args.dest, args.thickness, args.burdens, args.seed)


if __name__ == "__main__":
    main()
