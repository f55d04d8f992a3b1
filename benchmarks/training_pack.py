"""A compact copy of a model's training inputs, to carry to a GPU node (csvd-bids-train there
needs no preprocessing stack, only these files).

    python benchmarks/training_pack.py DEST NAME=OUTPUTS:LABELS [NAME=OUTPUTS:LABELS ...]
        [--channel flair] [--levels 1000]

For every session of a csvd-bids output folder that has the channel's preprocessed image (found
as csvd-bids-train finds it, ``csvd_bids.models.train.channel_file``), a brain mask and a WMH
reference mask in LABELS: the image and the brain mask cropped to the brain's bounding box
(plus 2 voxels; the affine moved with the crop), the image 0 outside the brain (training
multiplies by the brain mask anyway) and stored as int16 with a scale factor, ``--levels``
steps up to its maximum (far finer than the noise); the reference mask as uint8, uncropped
(training resamples it to the image's grid by its affine). Written as ``DEST/NAME/out`` and
``DEST/NAME/gt``, which ``csvd-bids-train --outputs DEST/NAME/out --labels DEST/NAME/gt`` reads.
A 1 mm research session's FLAIR shrinks from 31 MB to 2.8 MB, a clinical one's from 1.2 MB to
0.5 MB. The shipped WMH model was trained on such a pack (its TRAINING.md).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from csvd_bids.models.train import channel_file

MARGIN = 2  # voxels kept around the brain


def _brain_box(brain: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(brain)
    low = np.maximum(where.min(axis=0) - MARGIN, 0)
    high = np.minimum(where.max(axis=0) + MARGIN + 1, brain.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def pack_session(
    image_file: Path, brain_file: Path, mask_file: Path, out: Path, gt: Path, levels: int
) -> None:
    brain_img = nib.load(brain_file)
    box = _brain_box(np.asanyarray(brain_img.dataobj) > 0)
    brain = brain_img.slicer[box]
    inside = np.asanyarray(brain.dataobj) > 0
    image = nib.load(image_file).slicer[box]
    data = np.asanyarray(image.dataobj, dtype=np.float32) * inside
    scale = float(np.abs(data).max()) / levels or 1.0
    packed = nib.Nifti1Image(np.round(data / scale).astype(np.int16), image.affine)
    packed.header.set_slope_inter(scale, 0.0)
    nib.save(packed, out / image_file.name)
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), brain.affine), out / brain_file.name)
    mask = nib.load(mask_file)
    reference = (np.asanyarray(mask.dataobj) > 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(reference, mask.affine), gt / mask_file.name)


def pack(name: str, outputs: Path, labels: Path, dest: Path, channel: str, levels: int) -> int:
    count = 0
    for summary in sorted(outputs.glob("sub-*/**/anat/*_desc-summary_stats.tsv")):
        anat, relative = summary.parent, summary.parent.relative_to(outputs)
        prefix = summary.name.removesuffix("_desc-summary_stats.tsv")
        image = channel_file(anat, prefix, channel)
        brain = next(iter(anat.glob(f"{prefix}_space-*_desc-brain_mask.nii.gz")), None)
        masks = sorted((labels / relative).glob(f"{prefix}_*label-WMH_mask.nii.gz"))
        mask = masks[0] if masks else None
        if image is None or brain is None or mask is None:
            print(f"{name}/{prefix}: skipped (an image, brain mask or reference mask is missing)")
            continue
        out, gt = dest / name / "out" / relative, dest / name / "gt" / relative
        out.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        shutil.copy(summary, out / summary.name)  # csvd-bids-train finds sessions by it
        pack_session(image, brain, mask, out, gt, levels)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("sources", nargs="+", metavar="NAME=OUTPUTS:LABELS")
    parser.add_argument("--channel", default="flair", help="an input channel of csvd-bids-train")
    parser.add_argument("--levels", type=int, default=1000)
    args = parser.parse_args()
    for source in args.sources:
        name, folders = source.split("=", 1)
        outputs, labels = (Path(p) for p in folders.split(":", 1))
        n = pack(name, outputs, labels, args.dest, args.channel, args.levels)
        print(f"{name}: {n} sessions")


if __name__ == "__main__":
    main()
