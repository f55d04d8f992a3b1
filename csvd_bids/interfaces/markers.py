"""nipype interface that runs one marker detector through the marker interface."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.bids.discovery import ANAT_MODALITIES
from csvd_bids.config import DEVICES
from csvd_bids.markers import REGISTRY, SessionImages
from csvd_bids.markers.base import DWI_IMAGES, image_fields
from csvd_bids.preproc.images import new_like
from csvd_bids.quant.lesions import lesion_table


class _DetectInputSpec(BaseInterfaceInputSpec):
    marker = traits.Enum(*sorted(REGISTRY), mandatory=True)
    t1w = File(exists=True)
    flair = File(exists=True)
    t2w = File(exists=True)
    swi = File(exists=True)
    dwi_b0 = File(exists=True, desc="DWI b0 on the reference grid")
    dwi_trace = File(exists=True, desc="DWI trace (b ~ 1000) on the reference grid")
    dwi_adc = File(exists=True, desc="ADC (1e-6 mm2/s) on the reference grid")
    brain_mask = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    gm = File(exists=True, mandatory=True)
    csf = File(exists=True, mandatory=True)
    ventricles = File(exists=True, mandatory=True)
    regions = File(exists=True, desc="region map (preproc.regions.REGION_LABELS)")
    bundle = traits.Str(desc="model bundle folder; when set, it replaces the detector")
    bundle_sha256 = traits.Str(desc="the bundle's weights checksum (part of the cache key)")
    tta = traits.Bool(False, usedefault=True, desc="left-right flip test-time augmentation")
    # where and how fast a model runs does not change what it finds: not part of the cache key
    device = traits.Enum(*DEVICES, usedefault=True, nohash=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _DetectOutputSpec(TraitedSpec):
    score = File(exists=True, desc="lesion belief in [0, 1]")
    mask = File(exists=True, desc="binary lesion mask")
    lesions = File(exists=True, desc="per-lesion table (TSV)")


class DetectMarker(SimpleInterface):
    input_spec = _DetectInputSpec
    output_spec = _DetectOutputSpec

    def _run_interface(self, runtime):
        spec = REGISTRY[self.inputs.marker]
        images = {
            m: nib.load(getattr(self.inputs, m))
            for m in (*ANAT_MODALITIES, *DWI_IMAGES)
            if getattr(self.inputs, m)
        }
        missing = [m for m in spec.required if not set(image_fields(m)) <= set(images)]
        if missing:
            raise ValueError(f"marker {spec.key} needs {', '.join(missing)}")

        def _array(name: str) -> np.ndarray:
            return np.asanyarray(nib.load(getattr(self.inputs, name)).dataobj, dtype=np.float32)

        session = SessionImages(
            images=images,
            brain_mask=_array("brain_mask") > 0.5,
            priors={name: _array(name) for name in ("wm", "gm", "csf", "ventricles")},
            regions=_array("regions").astype(np.uint8) if self.inputs.regions else None,
        )
        if isdefined(self.inputs.bundle) and self.inputs.bundle:
            from csvd_bids.models.bundle import load_bundle
            from csvd_bids.models.detect import detect_with_bundle

            bundle = load_bundle(Path(self.inputs.bundle))
            detection = detect_with_bundle(
                bundle,
                spec,
                session,
                self.inputs.device,
                self.inputs.tta,
                self.inputs.num_threads,
            )
        else:
            detection = spec.detect(session)
        reference = session.reference
        table = lesion_table(
            detection.mask,
            reference.affine,
            spec.label.label,
            detection.regions,
            detection.region_names,
            intensities={m: session.data(m) for m in images},
            anatomy=session.regions,
        )
        outputs = {
            "score": (detection.score.astype(np.float32), "score.nii.gz"),
            "mask": (detection.mask.astype(np.uint8), "mask.nii.gz"),
        }
        for key, (data, name) in outputs.items():
            self._results[key] = os.path.join(runtime.cwd, name)
            nib.save(new_like(data, reference), self._results[key])
        self._results["lesions"] = os.path.join(runtime.cwd, "lesions.tsv")
        table.to_csv(self._results["lesions"], sep="\t", index=False, na_rep="n/a")
        return runtime
