"""Saving a session's outputs (kept apart from the processing, as in fMRIPrep's init_ds_*_wf)."""

from __future__ import annotations

import json

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.derivatives import WriteSessionDerivatives


def init_ds_session_wf(
    *,
    plan: dict,
    config: RunConfig,
    modalities: list[str],
    markers: list[str],
    name: str = "ds_session_wf",
) -> pe.Workflow:
    """Inputs: preprocessed modalities, brain_mask, transform, and per marker
    ``<marker>_score``, ``<marker>_mask``, ``<marker>_lesions``."""
    wf = pe.Workflow(name=name)
    marker_fields = [f"{m}_{kind}" for m in markers for kind in ("score", "mask", "lesions")]
    inputnode = pe.Node(
        niu.IdentityInterface(fields=[*modalities, "brain_mask", "transform", *marker_fields]),
        name="inputnode",
    )
    write = pe.Node(
        WriteSessionDerivatives(
            plan=json.dumps(plan, sort_keys=True),
            output_dir=str(config.output_dir),
            bids_dir=str(config.bids_dir),
            preproc_modalities=modalities,
            marker_keys=markers,
        ),
        name="write_derivatives",
        run_without_submitting=True,
    )
    merge_preproc = pe.Node(
        niu.Merge(len(modalities)), name="merge_preproc", run_without_submitting=True
    )
    for index, modality in enumerate(modalities, start=1):
        wf.connect(inputnode, modality, merge_preproc, f"in{index}")
    wf.connect(
        [
            (merge_preproc, write, [("out", "preproc_files")]),
            (inputnode, write, [("brain_mask", "brain_mask"), ("transform", "transform")]),
        ]
    )
    for kind in ("score", "mask", "lesions") if markers else ():
        merge = pe.Node(niu.Merge(len(markers)), name=f"merge_{kind}", run_without_submitting=True)
        for index, marker in enumerate(markers, start=1):
            wf.connect(inputnode, f"{marker}_{kind}", merge, f"in{index}")
        target = "lesion_files" if kind == "lesions" else f"{kind}_files"
        wf.connect(merge, "out", write, target)
    return wf
