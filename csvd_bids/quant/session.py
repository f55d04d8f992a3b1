"""Quantification of one session: lesion tables, the csvd label map, brain coverage, rating
estimates and the summary row, from the masks of its marker nodes.

Runs as its own (cached) node of the session graph, before the derivatives writer, which only
names, copies and describes what this computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.labels import BY_KEY, paint_dseg
from csvd_bids.markers import REGISTRY
from csvd_bids.preproc.images import voxel_volume_mm3
from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.preproc.template import template_brain
from csvd_bids.quant.lesions import LESION_COLUMNS, lesion_table
from csvd_bids.quant.plausibility import wmh_plausibility
from csvd_bids.quant.qc import (
    brain_coverage,
    coverage_warnings,
    reference_coverage,
    same_subject_warnings,
)
from csvd_bids.quant.ratings import rate_session
from csvd_bids.quant.summary import summary_row


@dataclass(frozen=True)
class MarkerResult:
    """One marker node's outputs: its mask, where each lesion lies, and its status JSON."""

    mask: np.ndarray  # bool
    located: np.ndarray  # the marker's location classes (status["region_names"])
    status: dict  # assessed, reason, notes, region_names, excluded


@dataclass
class SessionQuantities:
    lesions: pd.DataFrame  # every marker's lesions, lesion_id 1..N over the session
    dseg: np.ndarray  # seg-csvd label map (uint8)
    coverage: dict[str, float]  # image suffix -> fraction of the brain in its field of view
    markers: dict[str, dict]  # marker key -> final status (plan and node), notes, exclusions
    summary: dict  # the summary row


def final_statuses(plan: dict, results: dict[str, MarkerResult]) -> dict[str, dict]:
    """Each marker's status for the outputs: the plan's, made "not assessed" where the node
    found the images could not be modelled, with the node's notes and what it left out."""
    statuses = {}
    for key, planned in plan["markers"].items():
        status = {"assessed": planned["assessed"], "reason": planned["reason"], "notes": []}
        if "method" in planned:  # a model bundle replaces the detector (the plan's)
            status["method"] = planned["method"]
        if planned["assessed"] and key in results:
            node = results[key].status
            status.update(assessed=node["assessed"], reason=node["reason"], notes=node["notes"])
            # which method made the mask, when a shipped model's second opinion chose it
            status.update({k: node[k] for k in ("method", "second_opinion") if k in node})
            excluded = dict(node.get("excluded", {}))
            excluded.update(
                {k: f"not left out: {why}" for k, why in planned.get("not_excluded", {}).items()}
            )
            if excluded:
                status["excluded"] = excluded
        statuses[key] = status
    return statuses


def marker_warnings(statuses: dict[str, dict], plan: dict) -> list[str]:
    """qc_warnings for what a user must know of a marker: degraded modes and markers that the
    plan expected to assess but whose images could not be modelled."""
    warnings = []
    for key, status in statuses.items():
        label = BY_KEY[key].label
        warnings += [f"{label}: {note}" for note in status["notes"]]
        if plan["markers"][key]["assessed"] and not status["assessed"]:
            warnings.append(f"{label} {status['reason']}")
    return warnings


def brain_coverages(
    reference: str,
    images: dict[str, nib.Nifti1Image],
    brain: np.ndarray,
    brain_volume_mm3: float,
    affine_transform: str,
) -> dict[str, float]:
    """Suffix -> fraction of the brain inside that image's field of view (csvd_bids.quant.qc);
    ``images``: modality -> preprocessed image; ``affine_transform``: template -> subject."""
    coverages = {
        SUFFIXES[m]: brain_coverage(np.asanyarray(img.dataobj), brain) for m, img in images.items()
    }
    template = template_brain()  # its volume only: not the whole template (3.5 s to load)
    template_mm3 = float(np.asanyarray(template.dataobj).sum()) * voxel_volume_mm3(template)
    linear = np.array(sitk.ReadTransform(affine_transform).GetParameters()[:9]).reshape(3, 3)
    suffix = SUFFIXES[reference]
    coverages[suffix] = min(
        coverages[suffix], reference_coverage(brain_volume_mm3, template_mm3, linear)
    )
    return coverages


def quantify_session(
    plan: dict,
    images: dict[str, nib.Nifti1Image],
    intensities: dict[str, nib.Nifti1Image],
    brain_img: nib.Nifti1Image,
    brain_report: dict,
    regions: np.ndarray,
    volumes: dict,
    affine_transform: str,
    same_subject: dict,
    results: dict[str, MarkerResult],
    sources: dict[str, str],
) -> SessionQuantities:
    """Everything the session's tables and label map hold.

    ``images``: modality -> preprocessed anatomical image (coverage); ``intensities``: every
    image whose mean per lesion the lesion table gives (anatomical and DWI-derived);
    ``results``: marker key -> its node's outputs, for the markers the plan assesses."""
    brain = np.asanyarray(brain_img.dataobj) > 0
    brain_volume = float(brain.sum()) * voxel_volume_mm3(brain_img)
    coverage = brain_coverages(plan["reference"], images, brain, brain_volume, affine_transform)
    statuses = final_statuses(plan, results)
    values = {
        name: np.asanyarray(img.dataobj, dtype=np.float32) for name, img in intensities.items()
    }
    masks, tables = {}, {}
    for key, result in results.items():
        if not statuses[key]["assessed"]:
            continue
        label = REGISTRY[key].label.label
        names = {int(k): v for k, v in result.status["region_names"].items()}
        masks[label] = result.mask
        tables[label] = lesion_table(
            result.mask,
            brain_img.affine,
            label,
            result.located,
            names,
            intensities=values,
            anatomy=regions,
        )
    # no marker assessed: a table with its header and no row (never an empty file)
    empty = pd.DataFrame(columns=[*LESION_COLUMNS, *(f"mean_{name}" for name in values)])
    lesions = pd.concat(tables.values(), ignore_index=True) if tables else empty
    lesions["lesion_id"] = np.arange(1, len(lesions) + 1)

    warnings = coverage_warnings(coverage) + same_subject_warnings(same_subject)
    if brain_report.get("Warning"):
        warnings.append(f"brain extraction: {brain_report['Warning']}")
    warnings += [f"{modality} {why}" for modality, why in plan.get("unusable", {}).items()]
    warnings += marker_warnings(statuses, plan)
    if "WMH" in masks and "flair" in values:  # a WMH mask that contradicts its FLAIR
        voxel_mm3 = voxel_volume_mm3(brain_img)
        warnings += wmh_plausibility(values["flair"], regions, masks["WMH"], voxel_mm3)
    ratings = rate_session(
        masks,
        tables,
        regions == REGION_INDEX["lateral_ventricles"],
        brain,
        brain_img.header.get_zooms()[:3],
        volumes["intracranial"],
    )
    final_plan = {**plan, "markers": statuses}
    return SessionQuantities(
        lesions=lesions,
        dseg=paint_dseg(masks, brain.shape),
        coverage=coverage,
        markers=statuses,
        summary=summary_row(final_plan, lesions, volumes, sources, warnings, ratings),
    )
