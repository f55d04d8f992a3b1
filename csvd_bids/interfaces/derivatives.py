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

from csvd_bids.bids.session_outputs import SessionAnatomy, write_session_outputs


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
    affine = File(exists=True, mandatory=True, desc="its affine part (text)")
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
    lesion_files = InputMultiObject(File(exists=True))
    figure_files = InputMultiObject(File(exists=True), desc="QC PNGs named <desc>_<suffix>.png")


def _dwi(inputs) -> dict | None:
    """{"b0", "trace", "adc": files, "report": dict} when the session has a DWI."""
    if not isdefined(inputs.dwi_b0):
        return None
    return {
        "b0": inputs.dwi_b0,
        "trace": inputs.dwi_trace,
        "adc": inputs.dwi_adc,
        "report": json.loads(Path(inputs.dwi_report).read_text()),
    }


class _WriteOutputSpec(TraitedSpec):
    summary = File(exists=True)


class WriteSessionDerivatives(SimpleInterface):
    input_spec = _WriteInputSpec
    output_spec = _WriteOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs

        def _files(name: str) -> list[str]:
            # Unconnected when the session has no assessable marker.
            value = getattr(inputs, name)
            return list(value) if isdefined(value) else []

        detections = {
            key: {"score": score, "mask": mask, "lesions": lesions}
            for key, score, mask, lesions in zip(
                inputs.marker_keys,
                _files("score_files"),
                _files("mask_files"),
                _files("lesion_files"),
                strict=True,
            )
        }
        self._results["summary"] = str(
            write_session_outputs(
                plan=json.loads(inputs.plan),
                output_dir=Path(inputs.output_dir),
                bids_dir=Path(inputs.bids_dir),
                preproc=dict(zip(inputs.preproc_modalities, inputs.preproc_files, strict=True)),
                reports={
                    modality: json.loads(Path(report).read_text())
                    for modality, report in zip(
                        inputs.preproc_modalities, inputs.preproc_reports, strict=True
                    )
                },
                anatomy=SessionAnatomy(
                    brain_mask=inputs.brain_mask,
                    brain_report=json.loads(Path(inputs.brain_report).read_text()),
                    transform=inputs.transform,
                    affine=inputs.affine,
                    tissues={
                        "GM": inputs.gm_probseg,
                        "WM": inputs.wm_probseg,
                        "CSF": inputs.csf_probseg,
                    },
                    regions=inputs.regions,
                    volumes=json.loads(Path(inputs.volumes).read_text()),
                    same_subject=(
                        json.loads(Path(inputs.same_subject).read_text())
                        if isdefined(inputs.same_subject)
                        else {}
                    ),
                ),
                dwi=_dwi(inputs),
                detections=detections,
                figures=_files("figure_files"),
            )
        )
        return runtime
