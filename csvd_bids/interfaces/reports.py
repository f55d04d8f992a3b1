"""nipype interface that renders a session's QC mosaics (in a worker, not the main process)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.markers import REGISTRY
from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.reports.mosaic import Overlay, edges, plot_mosaic

_R = REGION_INDEX
REGION_COLOURS = (
    ((_R["lateral_ventricles"],), "deepskyblue"),
    ((_R["periventricular_wm"],), "yellow"),
    ((_R["centrum_semiovale"],), "cyan"),
    ((_R["basal_ganglia"],), "lime"),
    ((_R["thalamus"],), "orange"),
    ((_R["internal_capsule"], _R["external_capsule"]), "magenta"),
    ((_R["brainstem"], _R["cerebellum"]), "red"),
)


class _QCInputSpec(BaseInterfaceInputSpec):
    reference = traits.Str(mandatory=True, desc="modality key of the reference")
    modalities = traits.List(traits.Str, mandatory=True)
    preproc_files = InputMultiObject(File(exists=True), mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    regions = File(exists=True, desc="region map (preproc.regions.REGION_LABELS)")
    dwi_b0 = File(exists=True, desc="the DWI's b0 on the reference grid")
    marker_keys = traits.List(traits.Str, value=[], usedefault=True)
    mask_files = InputMultiObject(File(exists=True))


class _QCOutputSpec(TraitedSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNGs named <desc>_<suffix>.png")


class RenderQC(SimpleInterface):
    """Brain mask on the reference, each modality's edges on the reference, each marker's
    detections on its main modality."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        images = {
            m: nib.load(f) for m, f in zip(inputs.modalities, inputs.preproc_files, strict=True)
        }
        data = {m: np.asanyarray(img.dataobj, dtype=np.float32) for m, img in images.items()}
        reference = images[inputs.reference]
        zooms = tuple(float(z) for z in reference.header.get_zooms()[:3])
        brain = np.asanyarray(nib.load(inputs.brain_mask).dataobj) > 0
        ref_suffix = SUFFIXES[inputs.reference]
        figures = []

        def save(name: str, background: str, overlays: list[Overlay], title: str) -> None:
            path = Path(runtime.cwd) / f"{name}_{SUFFIXES[background]}.png"
            figures.append(str(plot_mosaic(data[background], zooms, brain, overlays, path, title)))

        save(
            "desc-brainmask",
            inputs.reference,
            [Overlay(brain, "red")],
            f"brain mask on the preprocessed {ref_suffix}",
        )
        for modality in inputs.modalities:
            if modality != inputs.reference:
                save(
                    f"desc-coreg{SUFFIXES[modality]}",
                    inputs.reference,
                    [Overlay(edges(data[modality], brain), "yellow", outline=False)],
                    f"{SUFFIXES[modality]} edges (yellow) on {ref_suffix}: coregistration",
                )
        if isdefined(inputs.dwi_b0):
            data["dwi"] = np.asanyarray(nib.load(inputs.dwi_b0).dataobj, dtype=np.float32)
            save(
                "desc-coregdwi",
                inputs.reference,
                [Overlay(edges(data["dwi"], brain), "yellow", outline=False)],
                f"DWI b0 edges (yellow) on {ref_suffix}: coregistration",
            )
        if isdefined(inputs.regions):
            regions = np.asanyarray(nib.load(inputs.regions).dataobj)
            save(
                "desc-regions",
                inputs.reference,
                [Overlay(np.isin(regions, ids), color) for ids, color in REGION_COLOURS],
                "regions: ventricles (blue), periventricular (yellow), CSO (cyan), BG (green), "
                "thalamus (orange), capsules (magenta), brainstem/cerebellum (red)",
            )
        masks = inputs.mask_files if isdefined(inputs.mask_files) else []
        for key, mask_file in zip(inputs.marker_keys, masks, strict=True):
            spec = REGISTRY[key]
            lesions = np.asanyarray(nib.load(mask_file).dataobj) > 0
            save(
                f"desc-{spec.label.label}",
                spec.required[0],
                [Overlay(lesions, "red")],
                f"{spec.label.label} detections (red) on {SUFFIXES[spec.required[0]]}",
            )
        self._results["figures"] = figures
        return runtime
