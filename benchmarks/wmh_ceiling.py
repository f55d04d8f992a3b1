"""How far a WMH mask is from the best any FLAIR threshold could do, per session: tells a
detector's shortfall from truth the image does not show.

    csvd-bids DATASET/bids DATASET/out participant -w DATASET/work --markers wmh   (once)
    python benchmarks/wmh_ceiling.py DATASET[=TRUTH_DIR] [...] [--margin-voxels 3]

Each DATASET holds ``bids/``, ``out/`` and ``work/`` (as for detector_cached.py; the truth is
the generator's or the manual labels). Per session it prints the truth and the pipeline's
WMH volume, their Dice, and the ceiling: the best Dice of a single threshold on the prepared
FLAIR (a ratio to the median FLAIR of the template's white matter outside the truth, 1.02 to
2.5), kept within ``--margin-voxels`` of the truth. The ceiling is an oracle: it knows where the
lesions are and picks the session's best threshold. It is a yardstick, not a bound: a
detector that smooths the FLAIR and grows lesions from seeds can pass it a little. Where it is
low, the truth's edges are not where the image's are (partial volume of thick slices, truth
drawn on another grid, raters). A session whose truth holds no WMH is listed, not pooled. Then the
pooled Dice and the pooled ceiling (over all voxels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import data_on_grid, load_session_images
from detector_cached import session_name, truth_dir
from scipy import ndimage

from csvd_bids.evaluate.pairing import find_masks

RATIOS = np.round(np.arange(1.02, 2.5, 0.01), 2)  # FLAIR / NAWM thresholds tried


def ceiling(
    flair: np.ndarray, truth: np.ndarray, wm: np.ndarray, margin: int
) -> tuple[float, float, float]:
    """(voxels of 2 x overlap, voxels of truth + mask, ratio) of the best single threshold;
    ``truth`` is not empty."""
    level = float(np.median(flair[wm & ~truth]))
    near = ndimage.binary_dilation(truth, iterations=margin) if margin else np.ones_like(truth)
    values, in_truth = flair[near], truth[near]
    best, best_dice = (0.0, float(truth.sum()), float("nan")), 0.0
    for ratio in RATIOS:
        above = values >= ratio * level
        overlap, total = 2.0 * (above & in_truth).sum(), float(above.sum() + truth.sum())
        if overlap / total > best_dice:
            best, best_dice = (overlap, total, float(ratio)), overlap / total
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", metavar="DATASET[=TRUTH_DIR]")
    parser.add_argument("--margin-voxels", type=int, default=3)
    args = parser.parse_args()
    sums = np.zeros(4)  # found: overlap, total; ceiling: overlap, total
    for argument in args.datasets:
        name, _, given = argument.partition("=")
        dataset = Path(name)
        outputs = find_masks(dataset / "out", labels=("WMH",))
        for key, mask in sorted(find_masks(truth_dir(dataset, given), labels=("WMH",)).items()):
            label = session_name(dataset, mask.subject, mask.session)
            if key not in outputs:
                print(f"{label}: no WMH mask written")
                continue
            images = load_session_images(dataset / "work", mask.subject, mask.session)
            grid = images.images["flair"]
            truth = data_on_grid(mask.path, grid) > 0.5
            found = data_on_grid(outputs[key].path, grid) > 0.5
            ml = float(np.prod(images.zooms)) / 1000
            if not truth.any():  # Dice and its ceiling are undefined: not pooled
                print(f"{label}: no WMH in the truth, found {found.sum() * ml:6.2f} ml")
                continue
            wm = images.brain_mask & (images.priors["wm"] >= 0.95)
            overlap, total, ratio = ceiling(images.data("flair"), truth, wm, args.margin_voxels)
            found_overlap = 2.0 * (truth & found).sum()
            found_total = float(truth.sum() + found.sum())
            sums += (found_overlap, found_total, overlap, total)
            print(
                f"{label}: truth {truth.sum() * ml:6.2f} ml, found {found.sum() * ml:6.2f} ml, "
                f"Dice {found_overlap / found_total:.2f}, ceiling "
                f"{overlap / total:.2f} (FLAIR >= {ratio:.2f} x NAWM)"
            )
    if sums[1]:
        print(f"pooled Dice {sums[0] / sums[1]:.3f}, pooled ceiling {sums[2] / sums[3]:.3f}")


if __name__ == "__main__":
    main()
