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
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.preproc.atlas import load_atlas
from csvd_bids.preproc.bias import n4_correct
from csvd_bids.preproc.brain import extract_brain
from csvd_bids.preproc.coregister import coregister, resample_with
from csvd_bids.preproc.identity import prepare_reference, score_against
from csvd_bids.preproc.image_files import save_image
from csvd_bids.preproc.images import load_3d, load_in_memory, new_like
from csvd_bids.preproc.regions import region_map, region_volumes_mm3
from csvd_bids.preproc.template import (
    deformable_refine,
    load_template,
    register_template,
    warp_labels_to_subject,
    warp_to_subject,
)
from csvd_bids.preproc.template_cache import read_template_cache, write_template_cache
from csvd_bids.preproc.tissues import segment_tissues


def _set_threads(n: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(n)))


class _BiasCorrectInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw image (any orientation)")
    modality = traits.Str(mandatory=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _BiasCorrectOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image on its own grid (RAS)")


class BiasCorrect(SimpleInterface):
    """Load and check, reorient to RAS and N4 bias correction, on the image's own grid.

    It needs no reference, so a session's modalities are corrected while the reference is
    being prepared (one core was otherwise idle then). The image is written uncompressed: it
    is read once, by the coregistration, which sees exactly the image it saw when both steps
    were one node (load_3d's affine is already the float32 one a NIfTI-1 header holds).
    """

    input_spec = _BiasCorrectInputSpec
    output_spec = _BiasCorrectOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        img = n4_correct(load_3d(self.inputs.in_file))
        out = os.path.join(runtime.cwd, f"{self.inputs.modality}_n4.nii")
        nib.save(img, out)
        self._results["out_file"] = out
        return runtime


class _PrepareImageInputSpec(_BiasCorrectInputSpec):
    reference = File(exists=True, desc="reference grid; when absent, in_file is the reference")
    corrected = traits.Bool(
        False, usedefault=True, desc="in_file is BiasCorrect's output: N4 is not run again"
    )


class _PrepareImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image on the reference grid (RAS)")
    report = File(
        exists=True,
        desc="JSON: how the image was brought onto the reference grid "
        "(registration metrics and the ITK transform file, reference -> modality)",
    )


class PrepareImage(SimpleInterface):
    """Load and check, reorient to RAS, N4 bias correction (unless BiasCorrect did it), rigid
    coregistration to the reference and a single resampling onto its grid."""

    input_spec = _PrepareImageInputSpec
    output_spec = _PrepareImageOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        img = load_3d(self.inputs.in_file)
        if not self.inputs.corrected:
            img = n4_correct(img)
        report: dict = {"Reference": True}
        if self.inputs.reference:
            reference = load_in_memory(self.inputs.reference)
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
        save_image(img, out)
        self._results["out_file"] = out
        self._results["report"] = os.path.join(runtime.cwd, "report.json")
        Path(self._results["report"]).write_text(json.dumps(report, indent=2))
        return runtime


class _BrainInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the preprocessed reference (RAS)")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _BrainOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="intracranial (brain) mask, uint8")
    report = File(exists=True, desc="JSON: Method, Warning, IntracranialVolume_mm3")


class BrainExtraction(SimpleInterface):
    """deepbet, or the input's own mask when it is already skull-stripped (preproc.brain)."""

    input_spec = _BrainInputSpec
    output_spec = _BrainOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        img = nib.load(self.inputs.in_file)

        def template_mask() -> np.ndarray:  # only computed when deepbet's mask is implausible
            transform, _ = register_template(img)
            brain = warp_to_subject(load_template().priors["brain"], transform, img)
            return brain >= 0.5

        result = extract_brain(img, fallback=template_mask)
        self._results["out_mask"] = os.path.join(runtime.cwd, "brain_mask.nii.gz")
        nib.save(new_like(result.mask.astype(np.uint8), img), self._results["out_mask"])
        report = {
            "Method": result.method,
            "Warning": result.warning,
            "IntracranialVolume_mm3": round(result.volume_ml(img) * 1000.0, 1),
        }
        self._results["report"] = os.path.join(runtime.cwd, "brain_report.json")
        Path(self._results["report"]).write_text(json.dumps(report, indent=2))
        return runtime


class _SameSubjectInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    names = traits.List(traits.Str, mandatory=True, desc="suffix of each image (FLAIR, dwi...)")
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="on the reference grid")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _SameSubjectOutputSpec(TraitedSpec):
    report = File(exists=True, desc="JSON: name -> same_subject_score() result")


def _not_compared(error: ValueError) -> dict:
    return {"error": str(error), "different_subject_suspected": None}


class CheckSameSubject(SimpleInterface):
    """QC: does each coregistered image show the reference's subject? (preproc.identity)"""

    input_spec = _SameSubjectInputSpec
    output_spec = _SameSubjectOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        # each score read its images' data two or three times (4 s of gzip in 17 s at 1 mm)
        reference = load_in_memory(self.inputs.reference)
        brain = np.asanyarray(nib.load(self.inputs.brain_mask).dataobj) > 0
        try:
            prepared = prepare_reference(reference, brain)
        except ValueError as exc:  # no comparison possible: each image says why
            report = {name: _not_compared(exc) for name in self.inputs.names}
        else:
            report = {}
            for name, path in zip(self.inputs.names, self.inputs.in_files, strict=True):
                try:
                    report[name] = score_against(prepared, load_in_memory(path))
                except ValueError as exc:  # e.g. an image blank inside the brain: go on
                    report[name] = _not_compared(exc)
        self._results["report"] = os.path.join(runtime.cwd, "same_subject.json")
        Path(self._results["report"]).write_text(json.dumps(report, indent=2))
        return runtime


class _TemplateCacheInputSpec(BaseInterfaceInputSpec):
    source_digest = traits.Str(
        mandatory=True, desc="template_cache.source_digest(): new rules rerun the node"
    )


class _TemplateCacheOutputSpec(TraitedSpec):
    folder = Directory(exists=True, desc="the template and atlas maps (template_cache)")


class TemplateCache(SimpleInterface):
    """The template's priors and the atlas maps, derived once per run (preproc.template_cache)."""

    input_spec = _TemplateCacheInputSpec
    output_spec = _TemplateCacheOutputSpec

    def _run_interface(self, runtime):
        folder = write_template_cache(Path(runtime.cwd) / "template_maps")
        self._results["folder"] = str(folder)
        return runtime


class _TemplateInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    template_cache = Directory(
        exists=True, desc="TemplateCache's folder; without it the maps are derived here"
    )
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _TemplateOutputSpec(TraitedSpec):
    transform = File(exists=True, desc="ITK composite (HDF5): subject points -> template")
    affine = File(exists=True, desc="ITK affine part alone (text)")
    wm = File(exists=True)
    gm = File(exists=True)
    csf = File(exists=True)
    ventricles = File(exists=True)
    structures = File(exists=True, desc="atlas structures (preproc.atlas.STRUCTURES)")
    lobes = File(exists=True, desc="atlas lobes (preproc.atlas.LOBES)")
    cortex = File(exists=True, desc="atlas cortex")
    supraventricular = File(exists=True, desc="above the template's lateral ventricles")
    metric = traits.Float(desc="final Mattes mutual information of the affine stage")


class TemplatePriors(SimpleInterface):
    """Affine then Demons registration of the MNI template; its priors (linear) and the atlas
    labels (nearest neighbour) resampled onto the subject's reference grid."""

    input_spec = _TemplateInputSpec
    output_spec = _TemplateOutputSpec

    def _run_interface(self, runtime):
        _set_threads(self.inputs.num_threads)
        reference = load_in_memory(self.inputs.reference)
        brain = np.asanyarray(nib.load(self.inputs.brain_mask).dataobj) > 0
        if isdefined(self.inputs.template_cache):
            template, atlas = read_template_cache(Path(self.inputs.template_cache))
        else:
            template, atlas = load_template(), load_atlas()
        affine, metric = register_template(reference, brain, template=template)
        transform = deformable_refine(reference, brain, affine, template)
        self._results["metric"] = metric
        for key, xfm, name in (
            ("affine", affine, "template_affine_xfm.txt"),
            ("transform", transform, "template_xfm.h5"),
        ):
            self._results[key] = os.path.join(runtime.cwd, name)
            sitk.WriteTransform(xfm, self._results[key])

        # Uncompressed: these maps are never published, and every detector reads them (a
        # compressed float map costs 0.1-0.2 s to read and more to write; all on the path
        # every marker waits for).
        def save(key: str, warped: np.ndarray, dtype: type) -> None:
            self._results[key] = os.path.join(runtime.cwd, f"{key}.nii")
            nib.save(new_like(warped.astype(dtype), reference), self._results[key])

        for name in ("wm", "gm", "csf", "ventricles"):
            save(name, warp_to_subject(template.priors[name], transform, reference), np.float32)
        labels = {name: atlas.image(name) for name in ("structures", "lobes", "cortex")}
        for name, warped in warp_labels_to_subject(labels, transform, reference).items():
            save(name, warped, np.uint8)
        supraventricular = warp_to_subject(
            template.supraventricular, transform, reference, sitk.sitkNearestNeighbor
        )
        save("supraventricular", supraventricular, np.uint8)
        return runtime


class _RegionsInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    gm = File(exists=True, mandatory=True)
    csf = File(exists=True, mandatory=True)
    ventricles = File(exists=True, mandatory=True)
    structures = File(exists=True, mandatory=True)
    lobes = File(exists=True, mandatory=True)
    cortex = File(exists=True, mandatory=True)
    supraventricular = File(exists=True, mandatory=True)


class _RegionsOutputSpec(TraitedSpec):
    gm_probseg = File(exists=True)
    wm_probseg = File(exists=True)
    csf_probseg = File(exists=True)
    regions = File(exists=True, desc="preproc.regions.REGION_LABELS map")
    volumes = File(exists=True, desc="JSON: tissue and region volumes (mm3)")


class SegmentRegions(SimpleInterface):
    """Tissue classes of the reference (EM with the warped priors) and the region map."""

    input_spec = _RegionsInputSpec
    output_spec = _RegionsOutputSpec

    def _run_interface(self, runtime):
        reference = nib.load(self.inputs.reference)  # its grid; its data is read by load()

        def load(name: str, dtype=np.float32) -> np.ndarray:
            return np.asanyarray(nib.load(getattr(self.inputs, name)).dataobj).astype(dtype)

        brain = load("brain_mask") > 0
        priors = {name: load(name) for name in ("wm", "gm", "csf")}
        tissues = segment_tissues(load("reference"), brain, priors)
        zooms = tuple(float(z) for z in reference.header.get_zooms()[:3])
        regions = region_map(
            brain=brain,
            tissues=tissues,
            structures=load("structures", np.uint8),
            lobes=load("lobes", np.uint8),
            atlas_cortex=load("cortex") > 0,
            ventricle_prior=load("ventricles"),
            supraventricular=load("supraventricular") > 0,
            zooms=zooms,
        )
        for tissue, posterior in tissues.items():
            key = f"{tissue}_probseg"
            self._results[key] = os.path.join(runtime.cwd, f"{key}.nii.gz")
            nib.save(new_like(posterior, reference), self._results[key])
        self._results["regions"] = os.path.join(runtime.cwd, "regions.nii.gz")
        nib.save(new_like(regions, reference), self._results["regions"])
        voxel_mm3 = float(np.prod(zooms))
        volumes = {
            "intracranial": float(brain.sum()) * voxel_mm3,
            **{tissue: float(p.sum()) * voxel_mm3 for tissue, p in tissues.items()},
            "regions": region_volumes_mm3(regions, voxel_mm3),
        }
        self._results["volumes"] = os.path.join(runtime.cwd, "volumes.json")
        Path(self._results["volumes"]).write_text(json.dumps(volumes, indent=2))
        return runtime
