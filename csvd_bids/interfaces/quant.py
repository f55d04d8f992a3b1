"""nipype interface that quantifies one session (csvd_bids.quant.session): a cached node
between the marker nodes and the derivatives writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.bids.derivatives import raw_uri
from csvd_bids.interfaces.inputs import listed, read_json
from csvd_bids.markers.base import DWI_IMAGES
from csvd_bids.preproc.images import new_like
from csvd_bids.quant.session import MarkerResult, quantify_session


class _QuantInputSpec(BaseInterfaceInputSpec):
    plan = traits.Str(mandatory=True, desc="the session plan as JSON")
    bids_dir = traits.Str(mandatory=True, desc="for the BIDS URIs of the sources")
    preproc_modalities = traits.List(traits.Str, mandatory=True)
    preproc_files = InputMultiObject(File(exists=True), mandatory=True)
    dwi_b0 = File(exists=True)
    dwi_trace = File(exists=True)
    dwi_adc = File(exists=True)
    brain_mask = File(exists=True, mandatory=True)
    brain_report = File(exists=True, mandatory=True)
    affine = File(exists=True, mandatory=True, desc="template -> subject, affine part (text)")
    regions = File(exists=True, mandatory=True)
    volumes = File(exists=True, mandatory=True)
    same_subject = File(exists=True, desc="JSON: same-subject QC per coregistered image")
    marker_keys = traits.List(traits.Str, value=[], usedefault=True)
    mask_files = InputMultiObject(File(exists=True))
    located_files = InputMultiObject(File(exists=True))
    status_files = InputMultiObject(File(exists=True))


class _QuantOutputSpec(TraitedSpec):
    lesions = File(exists=True, desc="every lesion of the session (TSV)")
    summary = File(exists=True, desc="the summary row (TSV)")
    dseg = File(exists=True, desc="seg-csvd label map")
    coverage = File(exists=True, desc="JSON: image suffix -> brain coverage")
    markers = File(exists=True, desc="JSON: marker key -> final status, notes, exclusions")


class QuantifySession(SimpleInterface):
    input_spec = _QuantInputSpec
    output_spec = _QuantOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        plan = json.loads(inputs.plan)
        images = {
            m: nib.load(f)
            for m, f in zip(inputs.preproc_modalities, inputs.preproc_files, strict=True)
        }
        intensities = dict(images)
        for name in DWI_IMAGES:
            if isdefined(getattr(inputs, name)):
                intensities[name] = nib.load(getattr(inputs, name))
        results = {
            key: MarkerResult(
                mask=np.asanyarray(nib.load(mask).dataobj) > 0,
                located=np.asanyarray(nib.load(located).dataobj),
                status=read_json(status),
            )
            for key, mask, located, status in zip(
                inputs.marker_keys,
                listed(inputs.mask_files),
                listed(inputs.located_files),
                listed(inputs.status_files),
                strict=True,
            )
        }
        brain = nib.load(inputs.brain_mask)
        quantities = quantify_session(
            plan,
            images,
            intensities,
            brain,
            read_json(inputs.brain_report),
            np.asanyarray(nib.load(inputs.regions).dataobj),
            read_json(inputs.volumes),
            inputs.affine,
            read_json(inputs.same_subject) if isdefined(inputs.same_subject) else {},
            results,
            {m: raw_uri(Path(inputs.bids_dir), f) for m, f in plan["files"].items()},
        )
        out = Path(runtime.cwd)
        quantities.lesions.to_csv(out / "lesions.tsv", sep="\t", index=False, na_rep="n/a")
        pd.DataFrame([quantities.summary]).to_csv(
            out / "summary.tsv", sep="\t", index=False, na_rep="n/a"
        )
        nib.save(new_like(quantities.dseg, brain, np.uint8), out / "dseg.nii.gz")
        (out / "coverage.json").write_text(json.dumps(quantities.coverage, indent=2))
        (out / "markers.json").write_text(json.dumps(quantities.markers, indent=2))
        for name, file in (
            ("lesions", "lesions.tsv"),
            ("summary", "summary.tsv"),
            ("dseg", "dseg.nii.gz"),
            ("coverage", "coverage.json"),
            ("markers", "markers.json"),
        ):
            self._results[name] = os.fspath(out / file)
        return runtime
