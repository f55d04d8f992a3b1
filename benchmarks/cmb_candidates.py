"""Microbleed detector against the truth on cached preprocessing, with the fate of every true
microbleed: found, or the reason its nearest candidate was rejected, and where each false
positive lies. For choosing detector rules without re-running the pipeline:

    csvd-bids DATASET/bids DATASET/out participant -w DATASET/work     (once per dataset)
    python benchmarks/cmb_candidates.py DATASET [DATASET ...] [--quiet] [--size-rule]
        [--set NAME=VALUE ...]

Each DATASET holds ``bids/`` (truth in ``bids/derivatives/groundtruth``) and ``work/``. The
detector is run on the detector inputs the work directory kept (common.load_session_images),
so a change of csvd_bids/markers/cmb.py is measured in seconds. Counts are of 26-connected
components of the detector's mask before the STRIVE size rule: a truth component is found
when a detected voxel overlaps it; a detected component that touches no truth is a false
positive. ``--size-rule`` counts after the rule instead (as the pipeline reports);
``--set min_cross_section_mm=0`` runs the detector with a parameter of ``CMBParams`` changed
(repeatable), to measure what a rule does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import data_on_grid, load_session_images, params_with
from scipy import ndimage

from csvd_bids.evaluate.metrics import compare_masks
from csvd_bids.evaluate.pairing import MaskFile, find_masks
from csvd_bids.markers.cmb import PARAMS, CandidateRecord, CMBParams, detect_cmb
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.regions import REGION_LABELS

# A candidate this near (mm) to a truth microbleed's centre is taken as its detection attempt.
NEAR_MM = 4.0


def nearest(
    centre_mm: np.ndarray, records: list[CandidateRecord], zooms: np.ndarray
) -> CandidateRecord | None:
    """The examined candidate nearest a point, if one lies within NEAR_MM."""
    if not records:
        return None
    peaks = np.array([r.peak for r in records]) * zooms
    distance = np.linalg.norm(peaks - centre_mm, axis=1)
    index = int(np.argmin(distance))
    return records[index] if distance[index] <= NEAR_MM else None


def fate(centre_mm: np.ndarray, records: list[CandidateRecord], zooms: np.ndarray) -> str:
    """The nearest candidate's outcome for a missed microbleed."""
    r = nearest(centre_mm, records, zooms)
    if r is None:
        return "no candidate"
    return f"{r.reason or 'accepted, lost to segmentation'} (contrast {r.contrast:.2f})"


def evaluate_session(
    dataset: Path, truth_mask: MaskFile, quiet: bool, params: CMBParams, size_rule: bool
):
    """(found, missed, false positives) of one session, or None without an SWI."""
    images = load_session_images(dataset / "work", truth_mask.subject, truth_mask.session)
    if "swi" not in images.images:
        return None
    truth = data_on_grid(truth_mask.path, images.images["swi"]) > 0.5
    records: list[CandidateRecord] = []
    found = detect_cmb(images, params, record=records).mask
    if size_rule:
        found = apply_size_rule(found, images.reference.affine, "cmb")
    zooms = np.array(images.zooms)
    counts = compare_masks(truth, found, tuple(zooms))
    name = f"{dataset.name} sub-{truth_mask.subject}"
    if truth_mask.session:
        name += f" ses-{truth_mask.session}"
    print(
        f"{name}: {counts.detected_lesions}/{counts.reference_lesions} found, "
        f"{counts.false_positives} false positive(s)"
    )
    if not quiet:
        truth_labels, n_truth = label_lesions(truth)
        centres = ndimage.center_of_mass(truth, truth_labels, range(1, n_truth + 1))
        for k, centre in enumerate(centres, start=1):
            if not found[truth_labels == k].any():
                outcome = fate(np.array(centre) * zooms, records, zooms)
                print(f"  missed at {np.round(centre).astype(int)}: {outcome}")
        found_labels, n_found = label_lesions(found)
        for k in range(1, n_found + 1):
            if not truth[found_labels == k].any():
                voxel = tuple(int(v) for v in np.argwhere(found_labels == k)[0])
                region = REGION_LABELS.get(int(images.regions[voxel]), "outside the region map")
                r = nearest(np.array(voxel) * zooms, records, zooms)
                measures = f" (contrast {r.contrast:.2f}, depth {r.depth:.2f})" if r else ""
                print(f"  false positive at {voxel}: {region}{measures}")
    return counts.detected_lesions, counts.missed_lesions, counts.false_positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--quiet", action="store_true", help="one line per session")
    parser.add_argument("--size-rule", action="store_true", help="count after the size rule")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a CMBParams field"
    )
    args = parser.parse_args()
    params = params_with(parser, PARAMS, args.set)
    found = missed = false = sessions = 0
    for dataset in args.datasets:
        truth_masks = find_masks(dataset / "bids/derivatives/groundtruth", labels=("CMB",))
        for key in sorted(truth_masks, key=str):
            counts = evaluate_session(dataset, truth_masks[key], args.quiet, params, args.size_rule)
            if counts is not None:
                found, missed, false = (
                    a + b for a, b in zip((found, missed, false), counts, strict=True)
                )
                sessions += 1
    f1 = 2 * found / max(2 * found + missed + false, 1)
    print(
        f"pooled over {sessions} sessions: {found}/{found + missed} found, {false} false "
        f"positives ({false / max(sessions, 1):.2f} per image), lesion F1 {f1:.2f}"
    )


if __name__ == "__main__":
    main()
