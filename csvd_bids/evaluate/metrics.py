"""Voxel- and lesion-level agreement of an output mask with a reference mask, per session and
pooled per marker.

Voxel level: Dice (``monai.metrics.compute_dice``), absolute volume difference (AVD, % of the
reference volume) and the 95th-percentile Hausdorff distance in mm
(``monai.metrics.compute_hausdorff_distance`` with ``percentile=95`` and the reference voxel
spacing: the larger of the two directed 95th percentiles of the distances between the masks'
surface voxels). Lesion level (26-connected components, see ``CONVENTIONS``): recall, precision,
F1, false-positive components per image and per reference lesion, and the correlation of the
lesion counts over sessions (Pearson and Spearman, scipy).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.processing import resample_from_to
from scipy import stats

from csvd_bids.evaluate.pairing import EVALUATED, NOT_ASSESSED, MaskPair, marker_labels
from csvd_bids.morphology import label_lesions

LOGGER = logging.getLogger("csvd_bids.evaluate")
ERROR = "error"

CONVENTIONS: dict[str, str] = {
    "grid": "Metrics are computed on the reference mask's grid; an output on another grid is "
    "resampled onto it with nearest-neighbour interpolation (column 'resampled').",
    "lesion": "A lesion is a 26-connected component (face, edge and corner neighbours).",
    "matching_rule": "A reference lesion is detected when any output voxel overlaps it "
    "(recall = detected reference lesions / reference lesions). An output component is a true "
    "positive when it overlaps any reference voxel (precision = true-positive output components "
    "/ output components); the other output components are false positives. "
    "F1 = 2 * precision * recall / (precision + recall).",
    "empty_masks": "Both masks empty: Dice 1, HD95 n/a, AVD n/a, recall/precision/F1 n/a. "
    "Reference empty, output not: Dice 0, HD95 n/a, AVD n/a, recall n/a, precision 0, F1 0. "
    "Output empty, reference not: Dice 0, HD95 n/a, AVD 100, recall 0, precision n/a, F1 0.",
    "hd95": "95th-percentile Hausdorff distance in mm (MONAI, undirected): the larger of the "
    "two directed 95th percentiles of the distances from each mask's surface voxels to the "
    "other mask's surface, with the reference voxel spacing.",
    "avd": "Absolute volume difference: |V_output - V_reference| / V_reference * 100 (%).",
    "false_positives": "fp_per_image = false-positive output components in a session; "
    "fp_per_true_lesion = false positives / reference lesions (n/a without reference lesions). "
    "In the summary: fp_per_image is the mean over evaluated sessions, fp_per_true_lesion the "
    "pooled ratio.",
    "pooled": "Pooled recall / precision / F1 and pooled Dice sum the counts (lesions, voxels) "
    "over all evaluated sessions of a marker before dividing.",
    "count_correlation": "Pearson and Spearman correlation of reference vs output lesion "
    "counts over the evaluated sessions (n/a with fewer than 3 sessions or constant counts).",
    "not_assessed": "A reference mask whose session has no output mask for that marker (or "
    "whose pipeline summary says 'not assessed') is reported as 'not assessed' with the reason "
    "and n/a metrics, never as 0; it is left out of every summary statistic.",
}


@dataclass(frozen=True)
class MaskComparison:
    dice: float
    avd_percent: float
    hd95_mm: float
    reference_volume_mm3: float
    output_volume_mm3: float
    reference_lesions: int
    output_lesions: int
    detected_lesions: int  # reference lesions overlapped by the output
    true_positive_components: int  # output components overlapping the reference
    false_positives: int  # output components overlapping no reference voxel
    missed_lesions: int
    recall: float
    precision: float
    f1: float
    fp_per_true_lesion: float
    intersection_voxels: int
    reference_voxels: int
    output_voxels: int


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) and math.isnan(recall):
        return math.nan
    if math.isnan(precision) or math.isnan(recall):
        return 0.0  # lesions on one side only: nothing matched
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _crop_to_union(reference: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of their union plus one empty voxel on each side:
    every metric here is unchanged, and MONAI's tensors and distance maps stay small."""
    union = np.argwhere(reference | output)
    low = union.min(axis=0)
    high = union.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    return np.pad(reference[box], 1), np.pad(output[box], 1)


def _monai_dice_hd95(
    reference: np.ndarray, output: np.ndarray, spacing: tuple[float, ...]
) -> tuple[float, float]:
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    y = torch.from_numpy(reference[None, None].astype(np.float32))
    y_pred = torch.from_numpy(output[None, None].astype(np.float32))
    with warnings.catch_warnings():
        # MONAI's internal deprecation notices (get_mask_edges) are not the user's concern.
        warnings.simplefilter("ignore", FutureWarning)
        dice = float(compute_dice(y_pred, y, include_background=True, ignore_empty=False)[0, 0])
        hd95 = float(
            compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=95, spacing=list(spacing)
            )[0, 0]
        )
    return dice, hd95


def compare_masks(
    reference: np.ndarray, output: np.ndarray, zooms: tuple[float, ...]
) -> MaskComparison:
    """Every per-session metric of an output mask against a reference mask on the same grid."""
    reference, output = np.asarray(reference) > 0, np.asarray(output) > 0
    if reference.shape != output.shape:
        raise ValueError(f"masks on different grids: {reference.shape} vs {output.shape}")
    voxel_mm3 = float(np.prod(zooms[:3]))
    n_ref, n_out = int(reference.sum()), int(output.sum())
    inter = int(np.logical_and(reference, output).sum())
    if n_ref == 0 and n_out == 0:
        dice, hd95 = 1.0, math.nan
    elif n_ref == 0 or n_out == 0:
        dice, hd95 = 0.0, math.nan
    else:
        ref_crop, out_crop = _crop_to_union(reference, output)
        dice, hd95 = _monai_dice_hd95(ref_crop, out_crop, tuple(float(z) for z in zooms[:3]))
    ref_labels, ref_count = label_lesions(reference)
    out_labels, out_count = label_lesions(output)
    detected = int(np.unique(ref_labels[output & (ref_labels > 0)]).size)
    true_positive = int(np.unique(out_labels[reference & (out_labels > 0)]).size)
    false_positives = out_count - true_positive
    recall = _ratio(detected, ref_count)
    precision = _ratio(true_positive, out_count)
    ref_volume, out_volume = n_ref * voxel_mm3, n_out * voxel_mm3
    return MaskComparison(
        dice=dice,
        avd_percent=_ratio(abs(out_volume - ref_volume) * 100.0, ref_volume),
        hd95_mm=hd95,
        reference_volume_mm3=ref_volume,
        output_volume_mm3=out_volume,
        reference_lesions=ref_count,
        output_lesions=out_count,
        detected_lesions=detected,
        true_positive_components=true_positive,
        false_positives=false_positives,
        missed_lesions=ref_count - detected,
        recall=recall,
        precision=precision,
        f1=_f1(precision, recall),
        fp_per_true_lesion=_ratio(false_positives, ref_count),
        intersection_voxels=inter,
        reference_voxels=n_ref,
        output_voxels=n_out,
    )


def _mask_data(img: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: a mask must be 3D, this one has shape {data.shape}")
    return np.nan_to_num(data) > 0


def load_pair(reference: Path, output: Path) -> tuple[np.ndarray, np.ndarray, tuple, bool]:
    """(reference mask, output mask on the reference grid, reference zooms, resampled?)."""
    ref_img, out_img = nib.load(reference), nib.load(output)
    ref = _mask_data(ref_img, reference)
    out = _mask_data(out_img, output)
    same_grid = out.shape == ref.shape and np.allclose(out_img.affine, ref_img.affine, atol=1e-3)
    if not same_grid:
        # Nearest neighbour keeps the mask binary; voxels outside the output's field of view
        # become 0 (not found).
        moving = nib.Nifti1Image(out.astype(np.uint8), out_img.affine)
        out = np.asanyarray(resample_from_to(moving, (ref.shape, ref_img.affine), order=0).dataobj)
        out = out > 0
    zooms = tuple(float(z) for z in ref_img.header.get_zooms()[:3])
    return ref, out, zooms, not same_grid


SESSION_COLUMNS = [
    "participant_id",
    "session_id",
    "marker",
    "status",
    "reason",
    *MaskComparison.__dataclass_fields__,
    "resampled",
    "reference_file",
    "output_file",
]


def evaluate_pairs(pairs: list[MaskPair]) -> pd.DataFrame:
    """One row per pair (session and marker): SESSION_COLUMNS; NaN where a metric is n/a."""
    rows = []
    for pair in pairs:
        row: dict = {
            "participant_id": pair.participant_id,
            "session_id": pair.session_id,
            "marker": pair.label,
            "status": pair.status,
            "reason": pair.reason or math.nan,
            "resampled": math.nan,
            "reference_file": str(pair.reference),
            "output_file": str(pair.output) if pair.output else math.nan,
        }
        if pair.status == EVALUATED and pair.output is not None:
            try:
                ref, out, zooms, resampled = load_pair(pair.reference, pair.output)
                row.update(asdict(compare_masks(ref, out, zooms)))
                row["resampled"] = resampled
            except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
                LOGGER.error("%s vs %s: %s", pair.reference, pair.output, exc)
                row.update(status=ERROR, reason=f"unreadable or unusable mask: {exc}")
        rows.append(row)
    return pd.DataFrame(rows, columns=SESSION_COLUMNS)


def _stat(values: pd.Series, how: str) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(getattr(values, how)()) if len(values) else math.nan


def _correlations(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    result = dict.fromkeys(
        ("count_pearson_r", "count_pearson_p", "count_spearman_rho", "count_spearman_p"),
        math.nan,
    )
    if len(reference) < 3 or np.ptp(reference) == 0 or np.ptp(output) == 0:
        return result
    pearson = stats.pearsonr(reference, output)
    spearman = stats.spearmanr(reference, output)
    result.update(
        count_pearson_r=float(pearson[0]),
        count_pearson_p=float(pearson[1]),
        count_spearman_rho=float(spearman[0]),
        count_spearman_p=float(spearman[1]),
    )
    return result


SUMMARY_COLUMNS = [
    "marker",
    "status",
    "n_sessions",
    "n_evaluated",
    "n_not_assessed",
    "n_errors",
    "n_reference_empty",
    "dice_mean",
    "dice_median",
    "dice_min",
    "dice_max",
    "dice_pooled",
    "dice_mean_reference_nonempty",
    "avd_percent_mean",
    "avd_percent_median",
    "hd95_mm_mean",
    "hd95_mm_median",
    "reference_lesions",
    "output_lesions",
    "detected_lesions",
    "true_positive_components",
    "false_positives",
    "recall_pooled",
    "precision_pooled",
    "f1_pooled",
    "f1_mean",
    "fp_per_image",
    "fp_per_true_lesion",
    "count_pearson_r",
    "count_pearson_p",
    "count_spearman_rho",
    "count_spearman_p",
]


def summarise(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per marker present in the session table (SUMMARY_COLUMNS), over its evaluated
    sessions only; a marker with none is "not assessed" with n/a statistics."""
    rows = []
    markers = [m for m in marker_labels() if m in set(sessions["marker"])]
    for marker in markers:
        mine = sessions[sessions["marker"] == marker]
        done = mine[mine["status"] == EVALUATED]
        row: dict = {
            "marker": marker,
            "status": EVALUATED if len(done) else NOT_ASSESSED,
            "n_sessions": len(mine),
            "n_evaluated": len(done),
            "n_not_assessed": int((mine["status"] == NOT_ASSESSED).sum()),
            "n_errors": int((mine["status"] == ERROR).sum()),
        }
        if len(done):
            counts = {
                c: int(done[c].sum())
                for c in (
                    "reference_lesions",
                    "output_lesions",
                    "detected_lesions",
                    "true_positive_components",
                    "false_positives",
                )
            }
            recall = _ratio(counts["detected_lesions"], counts["reference_lesions"])
            precision = _ratio(counts["true_positive_components"], counts["output_lesions"])
            both = done["reference_voxels"].sum() + done["output_voxels"].sum()
            nonempty = done[done["reference_voxels"] > 0]
            row.update(
                n_reference_empty=int((done["reference_voxels"] == 0).sum()),
                dice_mean=_stat(done["dice"], "mean"),
                dice_median=_stat(done["dice"], "median"),
                dice_min=_stat(done["dice"], "min"),
                dice_max=_stat(done["dice"], "max"),
                dice_pooled=2 * done["intersection_voxels"].sum() / both if both else 1.0,
                dice_mean_reference_nonempty=_stat(nonempty["dice"], "mean"),
                avd_percent_mean=_stat(done["avd_percent"], "mean"),
                avd_percent_median=_stat(done["avd_percent"], "median"),
                hd95_mm_mean=_stat(done["hd95_mm"], "mean"),
                hd95_mm_median=_stat(done["hd95_mm"], "median"),
                **counts,
                recall_pooled=recall,
                precision_pooled=precision,
                f1_pooled=_f1(precision, recall),
                f1_mean=_stat(done["f1"], "mean"),
                fp_per_image=_stat(done["false_positives"], "mean"),
                fp_per_true_lesion=_ratio(counts["false_positives"], counts["reference_lesions"]),
                **_correlations(
                    done["reference_lesions"].to_numpy(float),
                    done["output_lesions"].to_numpy(float),
                ),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


_TABLE = [
    ("marker", "marker", "{}"),
    ("n_evaluated", "eval", "{:d}"),
    ("n_not_assessed", "n/a", "{:d}"),
    ("dice_mean", "Dice", "{:.3f}"),
    ("dice_median", "medDice", "{:.3f}"),
    ("avd_percent_median", "AVD%", "{:.1f}"),
    ("hd95_mm_median", "HD95mm", "{:.1f}"),
    ("reference_lesions", "ref", "{:d}"),
    ("output_lesions", "out", "{:d}"),
    ("recall_pooled", "recall", "{:.3f}"),
    ("precision_pooled", "prec", "{:.3f}"),
    ("f1_pooled", "F1", "{:.3f}"),
    ("fp_per_image", "FP/img", "{:.2f}"),
    ("fp_per_true_lesion", "FP/les", "{:.2f}"),
    ("count_pearson_r", "r", "{:.2f}"),
    ("count_spearman_rho", "rho", "{:.2f}"),
]


def format_summary(summary: pd.DataFrame) -> str:
    """The per-marker summary as a fixed-width text table ("n/a" where a statistic is
    undefined; a marker without any evaluated session is shown as "not assessed")."""
    lines = [" ".join(f"{title:>8s}" for _, title, _ in _TABLE)]
    for _, row in summary.iterrows():
        if row["status"] == NOT_ASSESSED:
            lines.append(f"{row['marker']:>8s} not assessed ({row['n_sessions']} session(s))")
            continue
        cells = []
        for column, _, fmt in _TABLE:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                text = "n/a"
            else:
                text = fmt.format(int(value) if fmt == "{:d}" else value)
            cells.append(f"{text:>8s}")
        lines.append(" ".join(cells))
    return "\n".join(lines)
