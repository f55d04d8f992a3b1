"""The participant-level graph: one sub-workflow per subject and session."""

from __future__ import annotations

import json

from nipype.pipeline import engine as pe

from csvd_bids import __version__
from csvd_bids.bids.discovery import ANAT_MODALITIES
from csvd_bids.config import RunConfig
from csvd_bids.interfaces.preproc import TemplateCache
from csvd_bids.labels import MARKER_LABELS
from csvd_bids.markers import REGISTRY
from csvd_bids.markers.base import DWI_IMAGES, image_fields
from csvd_bids.preproc.template_cache import source_digest
from csvd_bids.workflows.lsa import init_lsa_wf, lsa_outputs, lsa_plan
from csvd_bids.workflows.markers import init_marker_wf
from csvd_bids.workflows.outputs import init_ds_session_wf
from csvd_bids.workflows.preproc import DS_ANATOMY, DWI_OUTPUTS, MARKER_INPUTS, init_preproc_wf
from csvd_bids.workflows.quant import (
    ANATOMY_FIELDS,
    MARKER_FIELDS,
    QUANT_OUTPUTS,
    init_quant_wf,
)

# The top workflow, and its folder in the work dir, is named per major.minor version (as
# fMRIPrep does): nipype caches a node by its inputs alone, so a work dir reused after an
# upgrade would hand back what the older code computed.
WORKFLOW_NAME = "csvd_bids_{}_wf".format("_".join(__version__.split(".")[:2]))
SESSION_METHODS = (
    "MRI markers of cerebral small vessel disease, as defined by STRIVE and STRIVE-2 "
    f"[@strive1; @strive2], were measured with csvd-bids {__version__}, a nipype workflow "
    "[@nipype]."
)


def session_wf_name(plan: dict) -> str:
    name = f"sub_{plan['subject']}"
    if plan["session"]:
        name += f"_ses_{plan['session']}"
    return f"{name}_wf"


def init_session_wf(*, plan: dict, config: RunConfig, name: str | None = None) -> pe.Workflow:
    """Preprocess, run every marker node of the plan (each once, after the markers it
    excludes), quantify, and save the outputs of one session."""
    wf = pe.Workflow(name=name or session_wf_name(plan))
    wf.__desc__ = SESSION_METHODS
    modalities = [m for m in ANAT_MODALITIES if m in plan["files"]]
    # written: the assessed markers; run: those and the markers they exclude
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
    quant_wf = init_quant_wf(plan=plan, config=config, modalities=modalities, markers=markers)
    ds_wf = init_ds_session_wf(plan=plan, config=config, modalities=modalities, markers=markers)
    dwi_fields = DWI_OUTPUTS if dwi_bval else ()
    checked = len(modalities) > 1 or dwi_bval  # else there is no same-subject check
    anatomy = [f for f in DS_ANATOMY if checked or f != "same_subject"]
    for field in (*modalities, *(f"{m}_report" for m in modalities), *anatomy, *dwi_fields):
        wf.connect(preproc_wf, f"outputnode.{field}", ds_wf, f"inputnode.{field}")
    quant_inputs = [f for f in ANATOMY_FIELDS if checked or f != "same_subject"]
    for field in (*modalities, *quant_inputs, *(DWI_IMAGES if dwi_bval else ())):
        wf.connect(preproc_wf, f"outputnode.{field}", quant_wf, f"inputnode.{field}")
    for field in QUANT_OUTPUTS:
        wf.connect(quant_wf, f"outputnode.{field}", ds_wf, f"inputnode.{field}")
    lsa_wf = init_lsa_wf(plan=plan, config=config)
    wf.connect(preproc_wf, f"outputnode.{plan['reference']}", lsa_wf, "inputnode.reference")
    for field in ("structures", "affine", "brain_mask", *(["t1w"] if "t1w" in modalities else [])):
        wf.connect(preproc_wf, f"outputnode.{field}", lsa_wf, f"inputnode.{field}")
    if "dwi" in lsa_plan(plan)["dti"]:  # the tensor is fitted here
        wf.connect(preproc_wf, "outputnode.dwi_transform", lsa_wf, "inputnode.dwi_transform")
    for field in lsa_outputs(plan):
        target = "lsa_table" if field == "table" else field
        wf.connect(lsa_wf, f"outputnode.{field}", ds_wf, f"inputnode.{target}")

    marker_wfs: dict[str, pe.Workflow] = {}
    for key in plan["detectors"]:  # each after the markers it excludes
        status = plan["markers"][key]
        used = tuple(f for m in REGISTRY[key].modalities(plan["files"]) for f in image_fields(m))
        used = tuple(dict.fromkeys([*used, *status.get("channels", ())]))
        excludes = tuple(status.get("excludes", ()))
        marker_wf = init_marker_wf(
            marker=key, modalities=used, excludes=excludes, model=status, config=config
        )
        for field in (*used, *MARKER_INPUTS):
            wf.connect(preproc_wf, f"outputnode.{field}", marker_wf, f"inputnode.{field}")
        for other in excludes:
            for kind in ("mask", "status"):
                wf.connect(
                    marker_wfs[other], f"outputnode.{kind}", marker_wf, f"inputnode.{other}_{kind}"
                )
        if key in markers:
            for kind in ("score", "mask"):
                wf.connect(marker_wf, f"outputnode.{kind}", ds_wf, f"inputnode.{key}_{kind}")
            for kind in MARKER_FIELDS:
                wf.connect(marker_wf, f"outputnode.{kind}", quant_wf, f"inputnode.{key}_{kind}")
        marker_wfs[key] = marker_wf
    written = {m.key: marker_wfs[m.key] for m in MARKER_LABELS if m.key in markers}
    ds_wf.get_node("write_derivatives").inputs.methods = json.dumps(
        methods_sections(wf, preproc_wf, written, quant_wf, lsa_wf)
    )
    return wf


def methods_sections(
    session_wf: pe.Workflow,
    preproc_wf: pe.Workflow,
    marker_wfs: dict[str, pe.Workflow],
    quant_wf: pe.Workflow,
    lsa_wf: pe.Workflow | None = None,
) -> list[dict]:
    """The methods text each workflow carries beside its code (``__desc__``, as niworkflows'
    LiterateWorkflow), in reading order; the session report assembles it."""
    return [
        {"section": "session", "text": session_wf.__desc__},
        {"section": "preprocessing", "text": preproc_wf.__desc__},
        *([{"section": "lsa", "text": lsa_wf.__desc__}] if lsa_wf is not None else []),
        *({"section": "marker", "marker": k, "text": wf.__desc__} for k, wf in marker_wfs.items()),
        {"section": "ratings", "text": quant_wf.__desc__},
    ]


def init_csvd_wf(plans: list[dict], config: RunConfig) -> pe.Workflow:
    """Every session's workflow, and the template and atlas maps they share, derived once at
    the start of the run (preproc.template_cache)."""
    wf = pe.Workflow(name=WORKFLOW_NAME, base_dir=str(config.work_dir))
    sessions = [init_session_wf(plan=plan, config=config) for plan in plans]
    wf.add_nodes(sessions)
    if sessions:
        cache = pe.Node(
            TemplateCache(source_digest=source_digest()), name="template_cache", mem_gb=1.5
        )
        for session_wf in sessions:
            wf.connect(cache, "folder", session_wf, "preproc_wf.template_priors.template_cache")
            if session_wf.get_node("lsa_wf.basal_ganglia_stats") is not None:
                target = "lsa_wf.basal_ganglia_stats.template_cache"
                wf.connect(cache, "folder", session_wf, target)
    return wf
