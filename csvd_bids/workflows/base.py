"""The participant-level graph: one sub-workflow per subject and session."""

from __future__ import annotations

from nipype.pipeline import engine as pe

from csvd_bids.bids.discovery import ANAT_MODALITIES
from csvd_bids.config import RunConfig
from csvd_bids.markers import REGISTRY
from csvd_bids.markers.base import image_fields
from csvd_bids.workflows.markers import init_marker_wf
from csvd_bids.workflows.outputs import init_ds_session_wf
from csvd_bids.workflows.preproc import DS_ANATOMY, DWI_OUTPUTS, MARKER_INPUTS, init_preproc_wf

WORKFLOW_NAME = "csvd_bids_wf"


def session_wf_name(plan: dict) -> str:
    name = f"sub_{plan['subject']}"
    if plan["session"]:
        name += f"_ses_{plan['session']}"
    return f"{name}_wf"


def init_session_wf(*, plan: dict, config: RunConfig, name: str | None = None) -> pe.Workflow:
    """Preprocess, run every assessable marker, and save the outputs of one session."""
    wf = pe.Workflow(name=name or session_wf_name(plan))
    modalities = [m for m in ANAT_MODALITIES if m in plan["files"]]
    markers = [key for key, status in plan["markers"].items() if status["assessed"]]

    dwi_bval = plan.get("dwi_bval")
    preproc_wf = init_preproc_wf(
        modalities=modalities,
        reference=plan["reference"],
        dwi_bval=dwi_bval,
        omp_nthreads=config.omp_nthreads,
    )
    for modality in modalities + (["dwi"] if dwi_bval else []):
        setattr(preproc_wf.inputs.inputnode, modality, plan["files"][modality])
    ds_wf = init_ds_session_wf(plan=plan, config=config, modalities=modalities, markers=markers)
    dwi_fields = DWI_OUTPUTS if dwi_bval else ()
    checked = len(modalities) > 1 or dwi_bval  # else there is no same-subject check
    anatomy = [f for f in DS_ANATOMY if checked or f != "same_subject"]
    for field in (*modalities, *(f"{m}_report" for m in modalities), *anatomy, *dwi_fields):
        wf.connect(preproc_wf, f"outputnode.{field}", ds_wf, f"inputnode.{field}")

    for key in markers:
        status = plan["markers"][key]
        used = tuple(f for m in REGISTRY[key].modalities(plan["files"]) for f in image_fields(m))
        used = tuple(dict.fromkeys([*used, *status.get("channels", ())]))
        marker_wf = init_marker_wf(marker=key, modalities=used, model=status, config=config)
        for field in (*used, *MARKER_INPUTS):
            wf.connect(preproc_wf, f"outputnode.{field}", marker_wf, f"inputnode.{field}")
        for kind in ("score", "mask", "lesions"):
            wf.connect(marker_wf, f"outputnode.{kind}", ds_wf, f"inputnode.{key}_{kind}")
    return wf


def init_csvd_wf(plans: list[dict], config: RunConfig) -> pe.Workflow:
    wf = pe.Workflow(name=WORKFLOW_NAME, base_dir=str(config.work_dir))
    wf.add_nodes([init_session_wf(plan=plan, config=config) for plan in plans])
    return wf
