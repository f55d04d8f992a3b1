"""The WMH plausibility check (csvd_bids/quant/plausibility.py): its figures on finished runs,
and what it says when confluent WMH is missed.

    python benchmarks/wmh_plausibility.py OUTPUT_DIR [OUTPUT_DIR ...] [--paint WORK_DIR]

For every session of each output folder: the WMH volume found, the median FLAIR of the white
matter outside the mask against the cortex's, the FLAIR-bright white matter outside the mask,
and the warnings (none is expected on scans whose WMH were found). With ``--paint WORK_DIR``
(a participant run's work dir): for each WMH node, confluent WMH at 1.4-1.5 x the cortex FLAIR
is painted into the white matter within 10, 20 and 30 mm of the ventricles, the WMH detector
is run on that FLAIR, and the found volume, Dice and the check's figures are printed: the
failure mode of relative-to-normal-white-matter methods when lesions are most of the white
matter, and whether the check catches it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.utils.filemanip import loadpkl

from csvd_bids.markers import REGISTRY, SessionImages
from csvd_bids.markers.base import DWI_IMAGES
from csvd_bids.preproc.images import voxel_volume_mm3
from csvd_bids.preproc.regions import distance_mm
from csvd_bids.quant.plausibility import wmh_figures, wmh_plausibility
from csvd_bids.region_sets import CORTEX_REGIONS, LATERAL_VENTRICLES, NAWM_REGIONS

PAINTED = ((10.0, 1.4), (20.0, 1.4), (30.0, 1.5))  # (mm from the ventricles, x cortex)


def _data(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj, dtype=np.float32)


def _line(name: str, flair: np.ndarray, regions: np.ndarray, wmh: np.ndarray, voxel: float):
    figures = wmh_figures(flair, regions, wmh, voxel)
    warnings = wmh_plausibility(flair, regions, wmh, voxel)
    if figures is None:
        print(f"{name:32s} too little white matter or cortex to judge")
        return
    print(
        f"{name:32s} found {figures['found_ml']:6.1f} ml  rest/cortex "
        f"{figures['rest_to_cortex']:.3f}  bright outside {figures['missed_ml']:6.1f} ml  "
        f"warnings {len(warnings)}"
    )


def finished_runs(output_dirs: list[Path]) -> None:
    for out in output_dirs:
        for mask in sorted(out.glob("sub-*/**/anat/*_label-WMH_mask.nii.gz")):
            anat, prefix = mask.parent, mask.name.split("_space-")[0]
            flair = next(anat.glob(f"{prefix}_*desc-preproc_FLAIR.nii.gz"))
            regions = next(anat.glob(f"{prefix}_*seg-regions_dseg.nii.gz"))
            img = nib.load(flair)
            wmh = _data(mask) > 0
            _line(prefix, _data(flair), _data(regions).astype(int), wmh, voxel_volume_mm3(img))


def painted(work_dir: Path) -> None:
    for node in sorted(work_dir.rglob("wmh_wf/detect/_inputs.pklz")):
        inputs = loadpkl(node)
        images = {m: nib.load(inputs[m]) for m in ("t1w", "flair", *DWI_IMAGES) if inputs.get(m)}
        regions = _data(inputs["regions"]).astype(np.uint8)
        flair_img = images["flair"]
        flair = _data(inputs["flair"])
        zooms = flair_img.header.get_zooms()[:3]
        voxel = voxel_volume_mm3(flair_img)
        cortex_level = float(np.median(flair[np.isin(regions, CORTEX_REGIONS)]))
        near = distance_mm(regions == LATERAL_VENTRICLES, zooms)
        white_matter = np.isin(regions, NAWM_REGIONS)
        rng = np.random.default_rng(0)
        for reach, gain in PAINTED:
            lesion = white_matter & (near <= reach)
            heavy = flair.copy()
            noise = 1 + 0.05 * rng.standard_normal(int(lesion.sum()))
            heavy[lesion] = cortex_level * gain * noise
            session = SessionImages(
                images={**images, "flair": nib.Nifti1Image(heavy, flair_img.affine)},
                brain_mask=_data(inputs["brain_mask"]) > 0.5,
                priors={n: _data(inputs[n]) for n in ("wm", "gm", "csf", "ventricles")},
                regions=regions,
            )
            found = REGISTRY["wmh"].detect(session).mask
            dice = 2 * (found & lesion).sum() / max(found.sum() + lesion.sum(), 1)
            planted = f"{node.parent.parent.parent.name}: {lesion.sum() * voxel / 1000:.0f} ml"
            _line(f"{planted} Dice {dice:.2f}", heavy, regions, found, voxel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="*", type=Path)
    parser.add_argument("--paint", type=Path, help="a participant run's work dir")
    args = parser.parse_args()
    finished_runs(args.outputs)
    if args.paint:
        painted(args.paint)


if __name__ == "__main__":
    main()
