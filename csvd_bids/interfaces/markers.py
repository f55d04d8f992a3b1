"""nipype interface that runs one marker's detector (or model bundle) through the marker
interface: one node per marker and session, whose mask the markers that exclude it receive."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from csvd_bids.bids.discovery import ANAT_MODALITIES
from csvd_bids.config import DEVICES
from csvd_bids.interfaces.inputs import listed, read_json
from csvd_bids.markers import REGISTRY, SessionImages
from csvd_bids.markers.base import (
    DWI_IMAGES,
    LEFT_OUT,
    Detection,
    NotAssessableError,
    image_fields,
)
from csvd_bids.markers.size_rules import SIZE_RULES, apply_size_rule
from csvd_bids.preproc.images import new_like

LOGGER = logging.getLogger("csvd_bids")


class _DetectInputSpec(BaseInterfaceInputSpec):
    marker = traits.Str(mandatory=True, desc="a key of csvd_bids.markers.REGISTRY")
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
    regions = File(exists=True, mandatory=True, desc="region map (preproc.regions.REGION_LABELS)")
    excluded_keys = traits.List(traits.Str, value=[], usedefault=True)
    excluded_mask_files = InputMultiObject(File(exists=True), desc="their masks, in that order")
    excluded_status_files = InputMultiObject(File(exists=True), desc="their status JSON files")
    bundle = traits.Str(desc="model bundle folder; when set, it replaces the detector")
    bundle_sha256 = traits.Str(desc="the bundle's weights checksum (part of the cache key)")
    threshold = traits.Float(desc="probability a voxel needs (the plan's; default the bundle's)")
    tta = traits.Bool(False, usedefault=True, desc="left-right flip test-time augmentation")
    # where and how fast a model runs does not change what it finds: not part of the cache key
    device = traits.Enum(*DEVICES, usedefault=True, nohash=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class _DetectOutputSpec(TraitedSpec):
    score = File(exists=True, desc="lesion belief in [0, 1]")
    mask = File(exists=True, desc="binary lesion mask, STRIVE size rule applied")
    located = File(exists=True, desc="the marker's location classes per voxel (status names)")
    status = File(
        exists=True,
        desc="JSON: assessed, reason (why not), notes (degraded modes), region_names, excluded "
        "(per excluded marker: 'left out' or why not)",
    )


def _bool_image(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj) > 0


class DetectMarker(SimpleInterface):
    input_spec = _DetectInputSpec
    output_spec = _DetectOutputSpec

    def _run_interface(self, runtime):
        if self.inputs.marker not in REGISTRY:  # a plugin marker not loaded in this process?
            raise ValueError(f"unknown marker {self.inputs.marker!r}: not in {sorted(REGISTRY)}")
        spec = REGISTRY[self.inputs.marker]
        session, excluded = self._session()
        status: dict = {"assessed": True, "reason": "", "notes": [], "excluded": excluded}
        try:
            detection = self._detect(spec, session)
        except NotAssessableError as exc:
            # this marker only: the session's other outputs go on, the marker is not assessed
            LOGGER.warning("%s not assessed: %s", spec.key, exc)
            shape = session.brain_mask.shape
            detection = Detection(np.zeros(shape, np.float32), np.zeros(shape, bool))
            status.update(assessed=False, reason=f"cannot be assessed on these images: {exc}")
        mask, score = detection.mask, detection.score
        if spec.key in SIZE_RULES:  # once, whoever made the mask (detector or model bundle)
            mask = apply_size_rule(mask, session.reference.affine, spec.key)
            # a lesion the rule removed keeps a belief below 0.5: probseg >= 0.5 is the mask
            score = np.where(detection.mask & ~mask, np.minimum(score, 0.49), score)
        status["notes"] = list(detection.notes)
        status["region_names"] = {str(k): v for k, v in detection.region_names.items()}
        located = detection.regions if detection.regions is not None else np.zeros_like(mask)
        outputs = {
            "score": score.astype(np.float32),
            "mask": mask.astype(np.uint8),
            "located": np.where(mask, located, 0).astype(np.uint8),
        }
        for key, data in outputs.items():
            self._results[key] = os.path.join(runtime.cwd, f"{key}.nii.gz")
            nib.save(new_like(data, session.reference), self._results[key])
        self._results["status"] = os.path.join(runtime.cwd, "status.json")
        Path(self._results["status"]).write_text(json.dumps(status, indent=2, sort_keys=True))
        return runtime

    def _session(self) -> tuple[SessionImages, dict[str, str]]:
        """The detector's view of the session, and per excluded marker whether it is left out."""
        inputs = self.inputs
        spec = REGISTRY[inputs.marker]
        images = {
            m: nib.load(getattr(inputs, m))
            for m in (*ANAT_MODALITIES, *DWI_IMAGES)
            if getattr(inputs, m)
        }
        missing = [m for m in spec.required if not set(image_fields(m)) <= set(images)]
        if missing:
            raise ValueError(f"marker {spec.key} needs {', '.join(missing)}")

        def _array(name: str) -> np.ndarray:
            return np.asanyarray(nib.load(getattr(inputs, name)).dataobj, dtype=np.float32)

        masks, excluded = {}, {}
        files = zip(
            inputs.excluded_keys,
            listed(inputs.excluded_mask_files),
            listed(inputs.excluded_status_files),
            strict=True,
        )
        for key, mask_file, status_file in files:
            other = read_json(status_file)
            if other["assessed"]:
                masks[key] = _bool_image(mask_file)
                excluded[key] = LEFT_OUT
            else:
                excluded[key] = f"not left out: {other['reason']}"
        session = SessionImages(
            images=images,
            brain_mask=_array("brain_mask") > 0.5,
            priors={name: _array(name) for name in ("wm", "gm", "csf", "ventricles")},
            regions=_array("regions").astype(np.uint8),
            excluded=masks,
        )
        return session, excluded

    def _detect(self, spec, session: SessionImages) -> Detection:
        if not (isdefined(self.inputs.bundle) and self.inputs.bundle):
            return spec.detect(session)
        from csvd_bids.models.bundle import load_bundle
        from csvd_bids.models.detect import detect_with_bundle

        return detect_with_bundle(
            load_bundle(Path(self.inputs.bundle)),
            spec,
            session,
            self.inputs.device,
            self.inputs.tta,
            self.inputs.num_threads,
            self.inputs.threshold if isdefined(self.inputs.threshold) else None,
        )


class _SecondOpinionInputSpec(BaseInterfaceInputSpec):
    method = traits.Str(mandatory=True, desc="the model's description (sidecar Method)")
    detector_score = File(exists=True, mandatory=True)
    detector_mask = File(exists=True, mandatory=True)
    detector_located = File(exists=True, mandatory=True)
    detector_status = File(exists=True, mandatory=True)
    model_score = File(exists=True, mandatory=True)
    model_mask = File(exists=True, mandatory=True)
    model_located = File(exists=True, mandatory=True)
    model_status = File(exists=True, mandatory=True)


class SecondOpinion(SimpleInterface):
    """Keeps the detector's outputs or, where the shipped model's volume says the detector
    missed a large burden (``csvd_bids.models.second_opinion``), the model's; the status
    records the model's volume (``second_opinion``) either way."""

    input_spec = _SecondOpinionInputSpec
    output_spec = _DetectOutputSpec

    def _run_interface(self, runtime):
        from csvd_bids.models.second_opinion import DETECTOR, MODEL, note, verdict

        inputs = self.inputs
        detector, model = read_json(inputs.detector_status), read_json(inputs.model_status)
        image = nib.load(inputs.detector_mask)
        voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
        model_ml = float(_bool_image(inputs.model_mask).sum()) * voxel_ml
        found = None  # the detector's volume (ml), None where it did not assess the images
        if detector["assessed"]:
            found = float((np.asanyarray(image.dataobj) > 0).sum()) * voxel_ml
        choice = verdict(found, model_ml) if model["assessed"] else DETECTOR
        used = choice == MODEL
        status = dict(model if used else detector)
        status["second_opinion"] = {
            "method": inputs.method,
            "volume_mm3": round(model_ml * 1000.0, 1),
            "used": used,
        }
        if used:
            status["method"] = inputs.method
        text = note(choice, detector["reason"] if found is None else found, model_ml)
        if text:
            status["notes"] = [*status["notes"], text]
            LOGGER.warning("second opinion: %s", text)
        for kind in ("score", "mask", "located"):
            self._results[kind] = getattr(inputs, f"{'model' if used else 'detector'}_{kind}")
        self._results["status"] = os.path.join(runtime.cwd, "status.json")
        Path(self._results["status"]).write_text(json.dumps(status, indent=2, sort_keys=True))
        return runtime
