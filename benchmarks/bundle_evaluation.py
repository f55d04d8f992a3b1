"""A model bundle against its marker's detector, on finished runs with reference masks.

    python benchmarks/bundle_evaluation.py --bundle models/wmh \\
        --pair OUT_401 BIDS_401/derivatives/groundtruth --pair OUT_REAL REAL/derivatives/manual

For every session of each output folder, the bundle segments the marker from the outputs'
preprocessed images exactly as the pipeline's model node does
(``csvd_bids.models.detect.detect_with_bundle``); its masks are written, under the pipeline's
names, into a scratch derivatives folder, and ``csvd-bids-eval`` compares both that folder and
the original outputs (the detector) with the reference. Prints the per-session table (Dice,
lesion-wise F1, volumes) and, per dataset and method, the pooled Dice (every session's lesion
volume counted once), the median and lowest session Dice and the mean lesion-wise F1. Decide
with held-out data only (seeds >= 400, real masks).

``--second-opinion``: also the bundle at the second opinion's threshold
(``csvd_bids.models.second_opinion.THRESHOLD``; "second opinion") and the mask the pipeline
would keep with it (``verdict`` on the detector's and that mask's volumes; "kept"), for
choosing a second-opinion model. The outputs must then hold the detector's masks (a run with
``--no-second-opinion``).

``--region-shares 0.3 0.7``: also the marker's region rule (``MarkerSpec.lesion_regions``,
``csvd_bids.morphology.keep_mostly_within``) at other shares than the pipeline's 0.5, the
bundle without it ("bundle, no region rule"), and the detector's masks with it at 0.5.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from common import evaluate_masks, pooled_summary

from csvd_bids.markers import REGISTRY
from csvd_bids.markers.base import SessionImages
from csvd_bids.models.bundle import load_bundle
from csvd_bids.models.detect import detect_with_bundle
from csvd_bids.models.second_opinion import MODEL, THRESHOLD, verdict
from csvd_bids.models.train import channel_file
from csvd_bids.morphology import keep_mostly_within
from csvd_bids.reports.session import finished_sessions


def _session_images(anat: Path, prefix: str, channels: tuple[str, ...]) -> SessionImages:
    def one(pattern: str) -> np.ndarray:
        return np.asanyarray(nib.load(next(anat.glob(f"{prefix}_{pattern}"))).dataobj)

    images = {c: nib.load(channel_file(anat, prefix, c)) for c in channels}
    priors = {
        name: one(f"space-*_label-{name.upper()}_probseg.nii.gz").astype(np.float32)
        for name in ("wm", "gm", "csf")
    }
    regions = one("space-*_seg-regions_dseg.nii.gz").astype(np.uint8)
    priors["ventricles"] = (regions == 1).astype(np.float32)
    return SessionImages(
        images=images,
        brain_mask=one("space-*_desc-brain_mask.nii.gz") > 0,
        priors=priors,
        regions=regions,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--pair", nargs=2, type=Path, action="append", required=True,
                        metavar=("OUTPUTS", "REFERENCE"))  # fmt: skip
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--region-shares", type=float, nargs="*", default=[], metavar="S")
    parser.add_argument("--second-opinion", action="store_true")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    spec = REGISTRY[bundle.marker]
    label = spec.label.label
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (outputs, reference) in enumerate(args.pair):
            folders = {"detector": outputs}
            for files in finished_sessions(outputs):
                anat = files.folder / "anat"
                if any(channel_file(anat, files.prefix, c) is None for c in bundle.inputs):
                    print(f"{files.prefix}: skipped, lacks an input of the bundle")
                    continue
                session = _session_images(anat, files.prefix, bundle.inputs)
                mask_file = next(anat.glob(f"{files.prefix}_space-*_label-{label}_mask.nii.gz"))
                found = detect_with_bundle(bundle, spec, session, "cpu", args.tta, threads=2)
                masks = {"bundle": found.mask}
                if args.second_opinion:  # as the pipeline runs it
                    opinion = detect_with_bundle(
                        bundle, spec, session, "cpu", args.tta, threads=2, threshold=THRESHOLD
                    ).mask
                    masks.update({"second opinion": opinion, "kept": _kept(mask_file, opinion)})
                if args.region_shares:
                    masks.update(_region_rule_variants(bundle, spec, session, mask_file, args))
                for method, mask in masks.items():
                    folder = folders.setdefault(method, Path(tmp) / f"{_slug(method)}-{index}")
                    target = folder / mask_file.relative_to(outputs)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    image = nib.Nifti1Image(mask.astype(np.uint8), session.reference.affine)
                    nib.save(image, target)
            for method, folder in folders.items():
                scratch = Path(tmp) / f"eval-{index}-{_slug(method)}"
                table = evaluate_masks(reference, folder, label, scratch)
                rows.append(table.assign(method=method, dataset=str(outputs)))
    results = pd.concat(rows, ignore_index=True)
    results["reference_ml"] = results["reference_volume_mm3"] / 1000.0
    results["found_ml"] = results["output_volume_mm3"] / 1000.0
    columns = ["dataset", "method", "participant_id", "session_id", "dice", "f1",
               "reference_ml", "found_ml"]  # fmt: skip
    print(results[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ndataset | method | sessions | pooled Dice | median Dice | lowest | mean lesion F1")
    for (dataset, method), part in results.groupby(["dataset", "method"], sort=False):
        print(f"{dataset} | {method} | {pooled_summary(part)}")
    for method, part in results.groupby("method"):
        print(f"all | {method} | {pooled_summary(part)}")


def _slug(method: str) -> str:
    return method.replace(", ", "-").replace(" ", "_")


def _kept(mask_file: Path, bundle_mask: np.ndarray) -> np.ndarray:
    """The second opinion's choice between the detector's mask (``mask_file``) and the
    bundle's, by their volumes."""
    image = nib.load(mask_file)
    detector = np.asanyarray(image.dataobj) > 0
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    choice = verdict(float(detector.sum()) * voxel_ml, float(bundle_mask.sum()) * voxel_ml)
    return bundle_mask if choice == MODEL else detector


def _region_rule_variants(bundle, spec, session, mask_file: Path, args) -> dict[str, np.ndarray]:
    """The bundle without the region rule and with it at each of ``args.region_shares``, and
    the detector's mask (``mask_file``) with it at the pipeline's share."""
    without = dataclasses.replace(spec, lesion_regions=())
    raw = detect_with_bundle(bundle, without, session, "cpu", args.tta, threads=2).mask
    region = np.isin(session.regions, spec.lesion_regions)
    detector = np.asanyarray(nib.load(mask_file).dataobj) > 0
    return {
        "bundle, no region rule": raw,
        **{f"bundle, share {s:g}": keep_mostly_within(raw, region, s) for s in args.region_shares},
        "detector, region rule": keep_mostly_within(detector, region),
    }


if __name__ == "__main__":
    main()
