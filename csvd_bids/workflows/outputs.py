"""Saving a session's outputs (kept apart from the processing, as in fMRIPrep's init_ds_*_wf)."""

from __future__ import annotations

import json

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.derivatives import WriteSessionDerivatives
from csvd_bids.interfaces.reports import RenderQC
from csvd_bids.workflows.graph import connect_merged
from csvd_bids.workflows.lsa import lsa_outputs
from csvd_bids.workflows.preproc import DS_ANATOMY, DWI_OUTPUTS
from csvd_bids.workflows.quant import QUANT_OUTPUTS

# the lenticulostriate maps and table (csvd_bids.workflows.lsa), as the writer names them
LSA_FIELDS = (
    "lsa_table",
    "patches",
    "fa",
    "md",
    "dti_report",
    "cbf",
    "m0",
    "asl_transform",
    "asl_report",
)


def init_ds_session_wf(
    *,
    plan: dict,
    config: RunConfig,
    modalities: list[str],
    markers: list[str],
    name: str = "ds_session_wf",
) -> pe.Workflow:
    """Inputs: per modality ``<modality>`` (preprocessed) and ``<modality>_report``, the
    anatomy fields of ``DS_ANATOMY`` (brain mask, transforms, tissues, regions, volumes), per
    marker ``<marker>_score`` and ``<marker>_mask``, and the quantification's
    ``QUANT_OUTPUTS``."""
    wf = pe.Workflow(name=name)
    modality_fields = [*modalities, *(f"{m}_report" for m in modalities)]
    marker_fields = [f"{m}_{kind}" for m in markers for kind in ("score", "mask")]
    dwi_fields = list(DWI_OUTPUTS) if "dwi_bval" in plan else []
    inputnode = pe.Node(
        niu.IdentityInterface(
            fields=[
                *modality_fields,
                *DS_ANATOMY,
                *dwi_fields,
                *marker_fields,
                *QUANT_OUTPUTS,
                *LSA_FIELDS,
            ]
        ),
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
        # Always run: outputs deleted (or written elsewhere) since a cached run must reappear.
        # It only names and copies what the cached nodes computed, so this is cheap.
        overwrite=True,
    )
    lsa = ["lsa_table" if f == "table" else f for f in lsa_outputs(plan)]
    wf.connect([(inputnode, write, [(f, f) for f in lsa])])
    # same_subject stays unset for a session with the reference alone (nothing to compare).
    wf.connect([(inputnode, write, [(f, f) for f in (*DS_ANATOMY, *QUANT_OUTPUTS)])])

    qc = pe.Node(
        RenderQC(reference=plan["reference"], modalities=modalities, marker_keys=markers),
        name="render_qc",
        mem_gb=1.0,
    )
    wf.connect(inputnode, "brain_mask", qc, "brain_mask")
    wf.connect(inputnode, "regions", qc, "regions")
    if dwi_fields:
        wf.connect([(inputnode, write, [(field, field) for field in dwi_fields])])
        wf.connect(inputnode, "dwi_b0", qc, "dwi_b0")
    wf.connect(qc, "figures", write, "figure_files")

    def merge(fields: list[str], targets: list[tuple[pe.Node, str]]) -> None:
        connect_merged(wf, inputnode, fields, targets, f"merge_{targets[0][1]}")

    merge(modalities, [(write, "preproc_files"), (qc, "preproc_files")])
    merge([f"{m}_report" for m in modalities], [(write, "preproc_reports")])
    if markers:
        merge([f"{m}_score" for m in markers], [(write, "score_files")])
        merge([f"{m}_mask" for m in markers], [(write, "mask_files"), (qc, "mask_files")])
    return wf
