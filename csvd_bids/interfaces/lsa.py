"""nipype interfaces of the lenticulostriate-territory maps: the DTI fit (FA, MD), CBF from
ASL, maps other apps made (resampled), and the table of the basal-ganglia regions (thin
wrappers of csvd_bids.preproc.dti, csvd_bids.preproc.asl and csvd_bids.quant.basal_ganglia)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.preproc.asl import prepare_asl
from csvd_bids.preproc.coregister import Coregistration, coregister, coverage_on, resample_linear
from csvd_bids.preproc.dti import fit_tensor, tensor_maps_on_reference
from csvd_bids.preproc.image_files import save_image
from csvd_bids.preproc.images import load_3d, load_in_memory
from csvd_bids.preproc.template_cache import read_atlas_structures
from csvd_bids.quant.basal_ganglia import roi_table
from csvd_bids.quant.roi_patches import centres_of, roi_patches


def _save(runtime, results: dict, name: str, img: nib.Nifti1Image) -> None:
    results[name] = os.path.join(runtime.cwd, f"{name}.nii.gz")
    save_image(img, results[name])


def _save_json(runtime, results: dict, data: dict) -> None:
    results["report"] = os.path.join(runtime.cwd, "report.json")
    Path(results["report"]).write_text(json.dumps(data, indent=2))


class _FitDTIInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4D DWI series")
    bval = File(exists=True, mandatory=True)
    bvec = File(exists=True, mandatory=True)
    reference = File(exists=True, mandatory=True, desc="reference grid")
    transform = File(exists=True, mandatory=True, desc="ITK rigid, reference -> DWI points")
    brain_mask = File(exists=True, desc="on the reference grid: fit only near the brain")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _FitDTIOutputSpec(TraitedSpec):
    fa = File(exists=True, desc="fractional anisotropy on the reference grid")
    md = File(exists=True, desc="mean diffusivity (1e-6 mm2/s) on the reference grid")
    coverage = File(exists=True, desc="uint8: where FA and MD were fitted")
    report = File(exists=True, desc="JSON: volumes fitted, directions, b-values")


class FitDTI(SimpleInterface):
    """Tensor fit on the DWI grid (dipy), FA and MD resampled once onto the reference grid."""

    input_spec = _FitDTIInputSpec
    output_spec = _FitDTIOutputSpec

    def _run_interface(self, runtime):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(self.inputs.num_threads)))
        transform = sitk.ReadTransform(self.inputs.transform)
        near_brain = None
        if isdefined(self.inputs.brain_mask):
            near_brain = (nib.load(self.inputs.brain_mask), transform)
        maps = fit_tensor(self.inputs.in_file, self.inputs.bval, self.inputs.bvec, near_brain)
        reference = load_in_memory(self.inputs.reference)
        for name, img in tensor_maps_on_reference(maps, reference, transform).items():
            _save(runtime, self._results, name, img)
        _save_json(runtime, self._results, maps.report)
        return runtime


class _PrepareASLInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4D ASL series")
    aslcontext = File(exists=True, mandatory=True)
    metadata = traits.Str(mandatory=True, desc="the series' sidecar metadata, JSON")
    m0scan = File(exists=True, desc="separate M0 scan (M0Type Separate)")
    m0_metadata = traits.Str("{}", usedefault=True, desc="the M0 scan's metadata, JSON")
    reference = File(exists=True, mandatory=True, desc="reference grid")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _PrepareASLOutputSpec(TraitedSpec):
    cbf = File(exists=True, desc="CBF (mL/100 g/min) on the reference grid")
    m0 = File(exists=True, desc="M0 on the reference grid")
    coverage = File(exists=True, desc="uint8: where CBF was measured (brain, field of view)")
    transform = File(exists=True, desc="ITK rigid, reference -> ASL points")
    report = File(exists=True, desc="JSON: model parameters, M0, registration, notes")


class PrepareASL(SimpleInterface):
    """CBF by the white paper's single-compartment model on the ASL grid, the M0 registered
    rigidly to the reference, CBF and M0 resampled once onto its grid."""

    input_spec = _PrepareASLInputSpec
    output_spec = _PrepareASLOutputSpec

    def _run_interface(self, runtime):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(self.inputs.num_threads)))
        m0 = self.inputs.m0scan if isdefined(self.inputs.m0scan) else None
        prepared = prepare_asl(
            self.inputs.in_file,
            self.inputs.aslcontext,
            json.loads(self.inputs.metadata),
            m0,
            json.loads(self.inputs.m0_metadata),
            load_in_memory(self.inputs.reference),
        )
        _save(runtime, self._results, "cbf", prepared.cbf)
        _save(runtime, self._results, "m0", prepared.m0)
        _save(runtime, self._results, "coverage", prepared.coverage)
        self._results["transform"] = os.path.join(runtime.cwd, "to_reference_xfm.txt")
        sitk.WriteTransform(prepared.transform, self._results["transform"])
        _save_json(runtime, self._results, prepared.report)
        return runtime


class _ResampleMapsInputSpec(BaseInterfaceInputSpec):
    maps = traits.Str(mandatory=True, desc='JSON: {"fa"|"md"|"cbf": path in a subject space}')
    scales = traits.Str("{}", usedefault=True, desc="JSON: map -> factor to this app's units")
    registered = traits.Str(
        "{}",
        usedefault=True,
        desc='JSON: map -> {"space", "t1w"} of a map not in T1w space, registered through that T1w',
    )
    reference = File(exists=True, mandatory=True, desc="reference grid")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _ResampleMapsOutputSpec(TraitedSpec):
    fa = File(exists=True)
    md = File(exists=True)
    cbf = File(exists=True)
    coverage = File(exists=True, desc="uint8: where the first map has values")
    report = File(exists=True, desc="JSON: each map's source file and scale (and registration)")


def _transform(
    via: dict | None, reference: nib.Nifti1Image, done: dict[str, Coregistration]
) -> tuple[sitk.Transform, dict]:
    """(reference points -> map points, the report's entry) of one map: the identity from T1w
    space (that app's T1w space is the T1w's scanner space); else the rigid registration of
    that app's T1w in the map's space to the reference, as a FLAIR is registered
    (csvd_bids.preproc.coregister), each T1w once (FA and MD share it). No N4 first: that app
    corrected its T1w already, and mutual information does not need it."""
    if not via:
        return sitk.Euler3DTransform(), {}
    if via["t1w"] not in done:
        done[via["t1w"]] = coregister(load_3d(via["t1w"]), reference)
    registration = done[via["t1w"]]
    entry = {"Space": via["space"], "RegisteredThrough": via["t1w"], **registration.as_dict()}
    return registration.transform, {"Registration": entry}


class ResampleMaps(SimpleInterface):
    """Maps another app made (``--derivatives``) onto the reference grid, linearly, scaled to
    our units: from that app's T1w space by world coordinates, from another subject space
    (QSIPrep's ACPC) through the registration of that app's T1w in the same space."""

    input_spec = _ResampleMapsInputSpec
    output_spec = _ResampleMapsOutputSpec

    def _run_interface(self, runtime):
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(self.inputs.num_threads)))
        maps, scales = json.loads(self.inputs.maps), json.loads(self.inputs.scales)
        registered = json.loads(self.inputs.registered)
        reference = load_in_memory(self.inputs.reference)
        done: dict[str, Coregistration] = {}
        report = {}
        for name, path in maps.items():
            transform, registration = _transform(registered.get(name), reference, done)
            img = load_in_memory(path)
            data = np.asanyarray(img.dataobj)
            measured = np.isfinite(data) & (data != 0)
            scale = float(scales.get(name, 1.0))
            moved = nib.Nifti1Image(np.where(measured, data * scale, 0.0), img.affine)
            _save(runtime, self._results, name, resample_linear(moved, reference, transform))
            if "coverage" not in self._results:
                coverage = coverage_on(measured, moved, reference, transform)
                _save(runtime, self._results, "coverage", coverage)
            report[name] = {"PrecomputedFrom": path, "Scale": scale, **registration}
        _save_json(runtime, self._results, {"Precomputed": report})
        return runtime


class _BasalGangliaInputSpec(BaseInterfaceInputSpec):
    structures = File(exists=True, mandatory=True, desc="warped atlas structures")
    affine = File(exists=True, mandatory=True, desc="template registration, affine part")
    fa = File(exists=True)
    md = File(exists=True)
    cbf = File(exists=True)
    dti_coverage = File(exists=True, desc="where FA and MD were fitted")
    cbf_coverage = File(exists=True, desc="where CBF was measured")
    sources = traits.Str(mandatory=True, desc="JSON: map -> source, or why it is missing")
    t1w = File(exists=True, desc="preprocessed T1w: its region patches (none without it)")
    brain_mask = File(exists=True, desc="for the patches' intensity normalisation")
    template_cache = Directory(
        exists=True, desc="TemplateCache's folder: the atlas centroids from its structures"
    )


class _BasalGangliaOutputSpec(TraitedSpec):
    table = File(exists=True, desc="TSV: one row per basal-ganglia region of interest")
    patches = traits.List(File(exists=True), desc="T1w patches, named <roi>.nii.gz")


class BasalGangliaStats(SimpleInterface):
    """FA, MD and CBF per caudate, putamen and pallidum, per hemisphere."""

    input_spec = _BasalGangliaInputSpec
    output_spec = _BasalGangliaOutputSpec

    def _run_interface(self, runtime):
        def given(name: str) -> str | None:
            value = getattr(self.inputs, name)
            return value if isdefined(value) else None

        maps = {name: given(name) for name in ("fa", "md", "cbf")}
        dti, cbf = given("dti_coverage"), given("cbf_coverage")
        table = roi_table(
            self.inputs.structures,
            self.inputs.affine,
            maps,
            json.loads(self.inputs.sources),
            coverage={"fa": dti, "md": dti, "cbf": cbf},
        )
        self._results["table"] = os.path.join(runtime.cwd, "basal_ganglia.tsv")
        table.to_csv(self._results["table"], sep="\t", index=False)
        self._results["patches"] = []
        if given("t1w"):
            mask = np.asanyarray(nib.load(self.inputs.brain_mask).dataobj) > 0
            cache = given("template_cache")
            # the run's cached atlas, not the atlas derived again (1 GB, 3 s in this node)
            centres = centres_of(*read_atlas_structures(Path(cache))) if cache else None
            patches = roi_patches(
                load_in_memory(self.inputs.t1w), mask, self.inputs.affine, centres
            )
            for roi, img in patches.items():
                _save(runtime, self._results, roi, img)
                self._results["patches"].append(self._results.pop(roi))
        return runtime
