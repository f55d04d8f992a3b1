"""nipype interface for DWI preprocessing (a thin wrapper of csvd_bids.preproc.dwi)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import SimpleITK as sitk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from csvd_bids.preproc.dwi import ADC_UNITS, prepare
from csvd_bids.preproc.image_files import save_image
from csvd_bids.preproc.images import load_in_memory


class _PrepareDWIInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4D DWI series (any orientation)")
    bval = File(exists=True, mandatory=True, desc="FSL-style .bval: one b-value per volume")
    reference = File(exists=True, mandatory=True, desc="reference grid (the prepared reference)")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _PrepareDWIOutputSpec(TraitedSpec):
    b0 = File(exists=True, desc="mean b0, N4 bias-corrected, on the reference grid")
    trace = File(
        exists=True,
        desc="trace image (geometric mean of the highest shell), bias-corrected with the b0's "
        "field, on the reference grid",
    )
    adc = File(exists=True, desc=f"apparent diffusion coefficient ({ADC_UNITS}), reference grid")
    transform = File(
        exists=True,
        desc="ITK rigid transform, reference points -> DWI points (also named in the report; "
        "an output of its own so that nipype's clean-up keeps it under any configuration)",
    )
    report = File(
        exists=True,
        desc="JSON: b-value, numbers of volumes, how the DWI was brought onto the reference "
        "grid (registration metrics and the ITK transform file, reference -> DWI)",
    )


class PrepareDWI(SimpleInterface):
    """b0, trace and ADC of a DWI series: split by b-value, ADC on the DWI grid, N4 field of
    the b0 divided out of b0 and trace, rigid coregistration to the reference and a single
    resampling of each image onto its grid."""

    input_spec = _PrepareDWIInputSpec
    output_spec = _PrepareDWIOutputSpec

    def _run_interface(self, runtime):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(self.inputs.num_threads)))
        reference = load_in_memory(self.inputs.reference)
        prepared = prepare(self.inputs.in_file, self.inputs.bval, reference)
        for name, img in prepared.images.items():
            self._results[name] = os.path.join(runtime.cwd, f"dwi_{name}.nii.gz")
            save_image(img, self._results[name])
        transform = os.path.join(runtime.cwd, "to_reference_xfm.txt")
        sitk.WriteTransform(prepared.transform, transform)
        self._results["transform"] = transform
        report = {"Reference": False, **prepared.report, "TransformFile": transform}
        self._results["report"] = os.path.join(runtime.cwd, "report.json")
        Path(self._results["report"]).write_text(json.dumps(report, indent=2))
        return runtime
