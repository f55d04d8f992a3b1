"""nipype interfaces for anatomical preprocessing (thin wrappers of csvd_bids.preproc)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from csvd_bids.preproc.bias import n4_correct
from csvd_bids.preproc.coregister import coregister, resample_with
from csvd_bids.preproc.images import load_3d, new_like
from csvd_bids.preproc.template import PRIORS, load_template, register_template, warp_to_subject


def _set_threads(n: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(n)))


class _PrepareImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw image (any orientation)")
    reference = File(exists=True, desc="reference grid; when absent, in_file is the reference")
    modality = traits.Str(mandatory=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _PrepareImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image on the reference grid (RAS)")
    report = File(
        exists=True,
        desc="JSON: how the image was brought onto the reference grid "
        "(registration metrics and the ITK transform file, reference -> modality)",
    )


class PrepareImage(SimpleInterface):
    """Load and check, reorient to RAS, N4 bias correction, rigid coregistration to the
    reference and a single resampling onto its grid."""

    input_spec = _PrepareImageInputSpec
    output_spec = _PrepareImageOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        img = n4_correct(load_3d(self.inputs.in_file))
        report: dict = {"Reference": True}
        if self.inputs.reference:
            reference = nib.load(self.inputs.reference)
            registration = coregister(img, reference)
            img = resample_with(img, reference, registration.transform)
            transform = os.path.join(runtime.cwd, "to_reference_xfm.txt")
            sitk.WriteTransform(registration.transform, transform)
            report = {
                "Reference": False,
                "Registration": registration.as_dict(),
                "TransformFile": transform,
            }
        out = os.path.join(runtime.cwd, f"{self.inputs.modality}_preproc.nii.gz")
        nib.save(img, out)
        self._results["out_file"] = out
        self._results["report"] = os.path.join(runtime.cwd, "report.json")
        Path(self._results["report"]).write_text(json.dumps(report, indent=2))
        return runtime


class _TemplateInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _TemplateOutputSpec(TraitedSpec):
    transform = File(exists=True, desc="ITK affine: reference (subject) points -> template")
    brain_mask = File(exists=True)
    wm = File(exists=True)
    gm = File(exists=True)
    csf = File(exists=True)
    ventricles = File(exists=True)
    metric = traits.Float(desc="final Mattes mutual information (lower is better)")


class TemplatePriors(SimpleInterface):
    """Affine registration of the MNI template, and its priors warped into subject space."""

    input_spec = _TemplateInputSpec
    output_spec = _TemplateOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        reference = nib.load(self.inputs.reference)
        transform, metric = register_template(reference)
        self._results["transform"] = os.path.join(runtime.cwd, "template_to_subject_xfm.txt")
        sitk.WriteTransform(transform, self._results["transform"])
        self._results["metric"] = metric
        template = load_template()
        for name in PRIORS:
            warped = warp_to_subject(template.priors[name], transform, reference)
            if name in ("brain", "ventricles"):
                warped = (warped >= 0.5).astype(np.uint8)
            key = "brain_mask" if name == "brain" else name
            self._results[key] = os.path.join(runtime.cwd, f"{key}.nii.gz")
            nib.save(new_like(warped, reference), self._results[key])
        return runtime
