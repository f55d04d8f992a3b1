"""nipype interface that writes a session's derivatives (the last node of its graph)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.bids.derivatives import publish_folder
from csvd_bids.bids.discovery import session_prefix
from csvd_bids.interfaces.inputs import listed, read_json
from csvd_bids.outputs.lsa import LSAFiles
from csvd_bids.outputs.session import (
    SessionAnatomy,
    SessionQuantFiles,
    staging_folder,
    write_session_outputs,
)


class _WriteInputSpec(BaseInterfaceInputSpec):
    plan = traits.Str(mandatory=True, desc="the session plan as JSON")
    output_dir = traits.Str(mandatory=True)
    bids_dir = traits.Str(mandatory=True)
    preproc_modalities = traits.List(traits.Str, mandatory=True)
    preproc_files = InputMultiObject(File(exists=True), mandatory=True)
    preproc_reports = InputMultiObject(File(exists=True), mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    brain_report = File(exists=True, mandatory=True)
    transform = File(exists=True, mandatory=True, desc="template -> subject, composite (HDF5)")
    gm_probseg = File(exists=True, mandatory=True)
    wm_probseg = File(exists=True, mandatory=True)
    csf_probseg = File(exists=True, mandatory=True)
    regions = File(exists=True, mandatory=True)
    volumes = File(exists=True, mandatory=True)
    same_subject = File(exists=True, desc="JSON: same-subject QC per coregistered image")
    dwi_b0 = File(exists=True)
    dwi_trace = File(exists=True)
    dwi_adc = File(exists=True)
    dwi_report = File(exists=True)
    marker_keys = traits.List(traits.Str, value=[], usedefault=True)
    score_files = InputMultiObject(File(exists=True))
    mask_files = InputMultiObject(File(exists=True))
    # the quantification node's outputs (csvd_bids.interfaces.quant.QuantifySession)
    lesions = File(exists=True, mandatory=True, desc="every lesion of the session (TSV)")
    summary = File(exists=True, mandatory=True, desc="the summary row (TSV)")
    dseg = File(exists=True, mandatory=True)
    coverage = File(exists=True, mandatory=True)
    markers = File(exists=True, mandatory=True)
    figure_files = InputMultiObject(File(exists=True), desc="QC PNGs named <desc>_<suffix>.png")
    methods = traits.Str("[]", usedefault=True, desc="JSON: the workflows' methods sections")
    # the lenticulostriate-territory maps (csvd_bids.workflows.lsa)
    lsa_table = File(exists=True, desc="TSV: the basal-ganglia regions of interest")
    patches = InputMultiObject(File(exists=True), desc="T1w patches, named <roi>.nii.gz")
    fa = File(exists=True)
    md = File(exists=True)
    dti_report = File(exists=True)
    cbf = File(exists=True)
    m0 = File(exists=True)
    asl_transform = File(exists=True)
    asl_report = File(exists=True)


def _lsa(inputs) -> LSAFiles | None:
    if not isdefined(inputs.lsa_table):
        return None

    def given(name: str) -> str | None:
        value = getattr(inputs, name)
        return value if isdefined(value) else None

    def report(name: str) -> dict | None:
        return read_json(given(name)) if given(name) else None

    return LSAFiles(
        table=inputs.lsa_table,
        patches=tuple(listed(inputs.patches)),
        fa=given("fa"),
        md=given("md"),
        dti_report=report("dti_report"),
        cbf=given("cbf"),
        m0=given("m0"),
        asl_transform=given("asl_transform"),
        asl_report=report("asl_report"),
    )


def _dwi(inputs) -> dict | None:
    """{"b0", "trace", "adc": files, "report": dict} when the session has a DWI."""
    if not isdefined(inputs.dwi_b0):
        return None
    return {
        "b0": inputs.dwi_b0,
        "trace": inputs.dwi_trace,
        "adc": inputs.dwi_adc,
        "report": read_json(inputs.dwi_report),
    }


class _WriteOutputSpec(TraitedSpec):
    summary = File(exists=True)


class WriteSessionDerivatives(SimpleInterface):
    input_spec = _WriteInputSpec
    output_spec = _WriteOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs

        def _files(name: str) -> list[str]:
            return listed(getattr(inputs, name))

        detections = {
            key: {"score": score, "mask": mask}
            for key, score, mask in zip(
                inputs.marker_keys, _files("score_files"), _files("mask_files"), strict=True
            )
        }
        plan, output_dir = json.loads(inputs.plan), Path(inputs.output_dir)
        prefix = session_prefix(plan["subject"], plan["session"])
        with staging_folder(output_dir, prefix) as staging:
            summary = write_session_outputs(
                plan=plan,
                output_dir=staging,
                bids_dir=Path(inputs.bids_dir),
                preproc=dict(zip(inputs.preproc_modalities, inputs.preproc_files, strict=True)),
                reports={
                    modality: read_json(report)
                    for modality, report in zip(
                        inputs.preproc_modalities, inputs.preproc_reports, strict=True
                    )
                },
                anatomy=SessionAnatomy(
                    brain_mask=inputs.brain_mask,
                    brain_report=read_json(inputs.brain_report),
                    transform=inputs.transform,
                    tissues={
                        "GM": inputs.gm_probseg,
                        "WM": inputs.wm_probseg,
                        "CSF": inputs.csf_probseg,
                    },
                    regions=inputs.regions,
                    volumes=read_json(inputs.volumes),
                    same_subject=(
                        read_json(inputs.same_subject) if isdefined(inputs.same_subject) else {}
                    ),
                ),
                dwi=_dwi(inputs),
                detections=detections,
                quantities=SessionQuantFiles(
                    lesions=inputs.lesions,
                    summary=inputs.summary,
                    dseg=inputs.dseg,
                    coverage=read_json(inputs.coverage),
                    markers=read_json(inputs.markers),
                ),
                figures=_files("figure_files"),
                methods=json.loads(inputs.methods),
                lsa=_lsa(inputs),
            )
            self._results["summary"] = str(publish_folder(staging, output_dir, last=summary))
        return runtime
