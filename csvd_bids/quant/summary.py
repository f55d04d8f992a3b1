"""The per-session summary row and the data dictionaries of the stats TSVs.

A marker that was not assessed (missing modality, no detector) has status "not assessed", its
reason, and n/a counts and volumes: never zero.
"""

from __future__ import annotations

import pandas as pd

from csvd_bids.bids.discovery import MODALITIES, SUFFIXES
from csvd_bids.labels import BY_LABEL, MARKER_LABELS
from csvd_bids.markers import REGISTRY
from csvd_bids.preproc.atlas import LOBES
from csvd_bids.quant.ratings import RATING_COLUMNS, RULES
from csvd_bids.quant.scores import SCORE_RANGES, SCORE_TITLES, SCORES, compute_scores

NA = "n/a"


# markers whose shipped model may run beside the detector (csvd_bids.models.builtin): a column
# of its volume in every session, n/a where it did not run
SECOND_OPINION_LABELS = ("WMH",)


def summary_row(
    plan: dict,
    lesions: pd.DataFrame,
    volumes: dict,
    sources: dict[str, str],
    qc_warnings: tuple[str, ...] | list[str] = (),
    ratings: dict | None = None,
) -> dict:
    """One summary row: volumes, per marker status, counts and volumes (by region), the
    rating estimates (csvd_bids.quant.ratings) and the total scores (csvd_bids.quant.scores)."""
    row: dict = {
        "participant_id": f"sub-{plan['subject']}",
        "session_id": f"ses-{plan['session']}" if plan["session"] else NA,
        "reference": SUFFIXES[plan["reference"]],
        "icv_mm3": round(volumes["intracranial"], 1),
        "brain_volume_mm3": round(volumes["gm"] + volumes["wm"], 1),
        "gm_volume_mm3": round(volumes["gm"], 1),
        "wm_volume_mm3": round(volumes["wm"], 1),
        "csf_volume_mm3": round(volumes["csf"], 1),
        "lateral_ventricles_volume_mm3": round(volumes["regions"]["lateral_ventricles"], 1),
        "qc_warnings": "; ".join(qc_warnings) or NA,
    }
    statuses = {
        m.label: (plan["markers"][m.key]["assessed"], plan["markers"][m.key]["reason"])
        for m in MARKER_LABELS
    }
    for label, (assessed, reason) in statuses.items():
        status = plan["markers"][BY_LABEL[label].key]
        row[f"{label}_status"] = "assessed" if assessed else "not assessed"
        row[f"{label}_reason"] = reason or NA
        # a model bundle's description in the status: it made the mask (csvd_bids.models)
        method = "model" if status.get("method") else "detector"
        row[f"{label}_method"] = method if assessed else NA
        if label in SECOND_OPINION_LABELS:
            opinion = status.get("second_opinion", {})
            row[f"{label}_second_opinion_mm3"] = opinion.get("volume_mm3", NA)
        row.update(
            {k: NA if v is None else v for k, v in marker_counts(label, assessed, lesions).items()}
        )
    ratings = ratings or dict.fromkeys(RATING_COLUMNS)
    row.update({k: NA if v is None else v for k, v in ratings.items()})
    for name, value in session_scores(row, ratings, statuses).items():
        row[name] = NA if value is None or value == "" else value
    for modality in MODALITIES:
        row[f"source_{modality}"] = sources.get(modality, NA)
    return row


def marker_counts(label: str, assessed: bool, lesions: pd.DataFrame) -> dict:
    """``<label>[_<region>]_count`` and ``_volume_mm3`` of one marker (None: not assessed)
    from the session's lesion table (all markers; columns marker, region, volume_mm3)."""
    mine = lesions[lesions["marker"] == label] if not lesions.empty else lesions
    groups = [("", mine)] + [
        (f"_{region}", mine[mine["region"] == region] if len(mine) else mine)
        for region in REGISTRY[BY_LABEL[label].key].regions
    ]
    out: dict = {}
    for suffix, part in groups:
        out[f"{label}{suffix}_count"] = len(part) if assessed else None
        volume = round(float(part["volume_mm3"].sum()), 3) if len(part) else 0.0
        out[f"{label}{suffix}_volume_mm3"] = volume if assessed else None
    return out


def session_scores(counts: dict, ratings: dict, statuses: dict[str, tuple[bool, str]]) -> dict:
    """The total scores (csvd_bids.quant.scores) from a session's counts and ratings; n/a
    figures (None or "n/a") are left out, so a score that needs them is n/a with its reason."""
    figures = {k: v for k, v in {**counts, **ratings}.items() if v is not None and v != NA}
    return compute_scores(figures, statuses)


def _score_description(name: str) -> str:
    terms = "; ".join(c.name for c in SCORES.get(name, ()))
    if name == "caa_svd_score":
        return "CAA-SVD score (0-6): n/a, cortical superficial siderosis is not segmented"
    return f"{SCORE_TITLES[name]} (0-{SCORE_RANGES[name]}), one point per term: {terms}"


_RATING_DESCRIPTIONS = {
    "WMH_icv_fraction": ("WMH volume / intracranial volume (n/a when not assessed)", None),
    "fazekas_pv": (f"Estimated periventricular Fazekas grade: {RULES['fazekas_pv']}", None),
    "fazekas_deep": (f"Estimated deep Fazekas grade: {RULES['fazekas_deep']}", None),
    **{
        f"PVS_{r}_max_slice_count": (
            f"PVS in the {r} crossing one axial slice of one hemisphere, the most over "
            "slices and sides (n/a when not assessed)",
            None,
        )
        for r in ("BG", "CSO")
    },
    **{
        f"PVS_{r}_grade": (f"Estimated {r}-PVS grade (Potter): {RULES['pvs_grade']}", None)
        for r in ("BG", "CSO")
    },
    **{
        f"CMB_lobar_{lobe}_count": (
            f"MARS: microbleeds in the {lobe} lobe (n/a when not assessed)",
            None,
        )
        for lobe in (*LOBES.values(), "unknown")
    },
    **{name: (_score_description(name), None) for name in SCORE_RANGES},
    **{
        f"{name}_reason": (f"Why {name} is n/a (n/a when it is not)", None) for name in SCORE_RANGES
    },
}


_LESION_DESCRIPTIONS = {
    "lesion_id": ("Lesion number within this session (1..N)", None),
    "marker": ("Marker label (WMH, CMB, PVS, LAC, RSSI); see seg-csvd_dseg.tsv", None),
    "region": (
        "Region of the lesion: the lowest-numbered region of its marker that it touches",
        None,
    ),
    "lobe": (
        "Lobe most of the lesion's cortical and juxtacortical voxels lie in (seg-regions); "
        "n/a when it touches none",
        None,
    ),
    "volume_mm3": ("Lesion volume", "mm^3"),
    "max_diameter_mm": (
        "Largest distance between two voxel centres of the lesion plus the mean voxel edge",
        "mm",
    ),
    "centroid_x_mm": ("Centre of mass, x (scanner RAS coordinates)", "mm"),
    "centroid_y_mm": ("Centre of mass, y (scanner RAS coordinates)", "mm"),
    "centroid_z_mm": ("Centre of mass, z (scanner RAS coordinates)", "mm"),
    "n_voxels": ("Number of voxels (26-connected component on the reference grid)", None),
}


def _entry(description: str, units: str | None) -> dict:
    return {"Description": description, **({"Units": units} if units else {})}


def describe_lesion_column(column: str) -> dict:
    if column in _LESION_DESCRIPTIONS:
        return _entry(*_LESION_DESCRIPTIONS[column])
    if column.startswith("mean_"):
        return _entry(
            f"Mean intensity of the lesion on the preprocessed {column[5:]} image", "arbitrary"
        )
    raise KeyError(column)


def describe_summary_column(column: str) -> dict:
    fixed = {
        "participant_id": ("Subject label, sub-<label>", None),
        "session_id": ("Session label, ses-<label> (n/a for datasets without sessions)", None),
        "reference": ("Modality whose grid all outputs use (T1w when present, else FLAIR)", None),
        "icv_mm3": ("Intracranial volume: the volume of the brain mask (brain and CSF)", "mm^3"),
        "brain_volume_mm3": ("Brain parenchyma: GM + WM volumes", "mm^3"),
        "gm_volume_mm3": ("Grey matter: sum of the GM probabilities x voxel volume", "mm^3"),
        "wm_volume_mm3": ("White matter (lesions on it included as far as they look WM)", "mm^3"),
        "csf_volume_mm3": ("CSF inside the brain mask", "mm^3"),
        "lateral_ventricles_volume_mm3": ("Lateral ventricles (seg-regions)", "mm^3"),
        "qc_warnings": (
            "Quality-control warnings, separated by '; ' (n/a: none), e.g. an image "
            "whose field of view misses part of the brain",
            None,
        ),
    }
    if column in fixed:
        return _entry(*fixed[column])
    if column in _RATING_DESCRIPTIONS:
        return _entry(*_RATING_DESCRIPTIONS[column])
    if column.startswith("source_"):
        return _entry(f"BIDS URI of the {column[7:]} image used (n/a: none found)", None)
    label, _, rest = column.partition("_")
    marker = BY_LABEL[label]
    if rest == "status":
        return {
            "Description": f"Whether {marker.name} was assessed in this session",
            "Levels": {"assessed": "segmented", "not assessed": "see the reason column"},
        }
    if rest == "reason":
        return _entry(f"Why {marker.name} was not assessed (n/a when it was)", None)
    if rest == "method":
        return {
            "Description": f"What made the {marker.name} mask (n/a when not assessed)",
            "Levels": {
                "detector": "the unsupervised detector",
                "model": "a model bundle: --wmh-method model, --models-dir, or the shipped "
                "model's second opinion (the mask's sidecar and qc_warnings say which)",
            },
        }
    if rest == "second_opinion_mm3":
        return _entry(
            f"Volume of {marker.name} the shipped model finds beside the detector (n/a: it "
            "did not run)",
            "mm^3",
        )
    measure = "count" if rest.endswith("count") else "volume_mm3"
    region = rest[: -len(measure)].strip("_")
    where = f" in the {region} region" if region else ""
    if measure == "count":
        return _entry(f"Number of {marker.name} lesions{where} (n/a when not assessed)", None)
    return _entry(f"Total {marker.name} volume{where} (n/a when not assessed)", "mm^3")
