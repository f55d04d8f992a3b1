"""Quantification of one session: its own cached node between the markers and the writer."""

from __future__ import annotations

import json

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.quant import QuantifySession
from csvd_bids.markers.base import DWI_IMAGES
from csvd_bids.workflows.graph import connect_merged

QUANT_OUTPUTS = ("lesions", "summary", "dseg", "coverage", "markers")
# what each marker node gives the quantification
MARKER_FIELDS = ("mask", "located", "status")
ANATOMY_FIELDS = ("brain_mask", "brain_report", "affine", "regions", "volumes", "same_subject")


QUANT_METHODS = (
    "Visual ratings were estimated from the segmentations: Fazekas periventricular and deep "
    "grades [@fazekas], PVS grades in the basal ganglia and centrum semiovale [@potter] and "
    "microbleed counts by MARS region [@mars]; the total SVD score [@staals], the "
    "hypertensive-arteriopathy score [@lau] and the CAA-SVD score [@charidimou] were computed "
    "from them."
)


def init_quant_wf(
    *,
    plan: dict,
    config: RunConfig,
    modalities: list[str],
    markers: list[str],
    name: str = "quant_wf",
) -> pe.Workflow:
    """Inputs: the preprocessed ``<modality>`` images, ``ANATOMY_FIELDS``, the DWI images when
    the plan processes the DWI, and ``<marker>_<field>`` for ``MARKER_FIELDS``; outputs:
    ``QUANT_OUTPUTS`` (csvd_bids.interfaces.quant)."""
    wf = pe.Workflow(name=name)
    wf.__desc__ = QUANT_METHODS
    dwi = list(DWI_IMAGES) if "dwi_bval" in plan else []
    marker_fields = [f"{m}_{f}" for m in markers for f in MARKER_FIELDS]
    inputnode = pe.Node(
        niu.IdentityInterface(fields=[*modalities, *ANATOMY_FIELDS, *dwi, *marker_fields]),
        name="inputnode",
    )
    quantify = pe.Node(
        QuantifySession(
            plan=json.dumps(plan, sort_keys=True),
            bids_dir=str(config.bids_dir),
            preproc_modalities=modalities,
            marker_keys=markers,
        ),
        name="quantify",
        mem_gb=1.5,
    )
    # same_subject stays unset for a session with the reference alone (nothing to compare)
    wf.connect([(inputnode, quantify, [(f, f) for f in (*ANATOMY_FIELDS, *dwi)])])
    connect_merged(wf, inputnode, modalities, [(quantify, "preproc_files")], "merge_preproc")
    for field in MARKER_FIELDS if markers else ():
        fields = [f"{m}_{field}" for m in markers]
        connect_merged(wf, inputnode, fields, [(quantify, f"{field}_files")], f"merge_{field}")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(QUANT_OUTPUTS)), name="outputnode")
    wf.connect([(quantify, outputnode, [(f, f) for f in QUANT_OUTPUTS])])
    return wf
