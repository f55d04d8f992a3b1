"""The shipped WMH model beside the WMH detector: the detector's mask is kept unless it found
less than half of a model volume over 20 ml, less than a fifth of one over 10 ml (or could not
assess the images); then the model's mask is kept and a note says so. Less than half of a model
volume over 10 ml is otherwise a warning. The model's volume is recorded either way."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csvd_bids.interfaces.markers import SecondOpinion

SHAPE = (30, 30, 30)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm3 voxels: 2744 are 21.95 ml, 2400 are 19.2 ml


def _outputs(folder: Path, voxels: int, assessed: bool = True) -> dict[str, str]:
    """A marker node's four outputs: a mask of ``voxels`` voxels, its score, its regions and
    its status."""
    folder.mkdir()
    mask = np.zeros(SHAPE, np.uint8)
    mask.flat[:voxels] = 1
    files = {}
    for kind, data in (("score", mask * 0.9), ("mask", mask), ("located", mask * 2)):
        files[kind] = str(folder / f"{kind}.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), files[kind])
    status = {
        "assessed": assessed,
        "reason": "" if assessed else "cannot be assessed on these images: too little NAWM",
        "notes": [],
        "region_names": {"1": "periventricular", "2": "deep"},
        "excluded": {"lacunes": "left out"},
    }
    files["status"] = str(folder / "status.json")
    Path(files["status"]).write_text(json.dumps(status))
    return files


def _choose(tmp_path: Path, detector: dict, model: dict) -> tuple[dict, dict]:
    inputs = {f"detector_{k}": v for k, v in detector.items()}
    inputs.update({f"model_{k}": v for k, v in model.items()})
    (tmp_path / "choose").mkdir()
    result = SecondOpinion(method="UNet", **inputs).run(cwd=str(tmp_path / "choose"))
    outputs = result.outputs.get()
    return outputs, json.loads(Path(outputs["status"]).read_text())


@pytest.mark.parametrize(
    ("detector_voxels", "model_voxels", "choice"),
    [
        (0, 2744, "model"),  # 0 of 21.95 ml
        (1300, 2744, "model"),  # 10.4 of 21.95 ml
        (1400, 2744, "detector"),  # 11.2 of 21.95 ml: over half
        (0, 2400, "model"),  # 0 of 19.2 ml: under a fifth of a burden over 10 ml
        (470, 2400, "model"),  # 3.76 of 19.2 ml
        (490, 2400, "check"),  # 3.92 of 19.2 ml: a warning, the detector's mask kept
        (600, 1300, "check"),  # 4.8 of 10.4 ml
        (250, 1300, "model"),  # 2.0 of 10.4 ml
        (700, 1300, "detector"),  # 5.6 of 10.4 ml
        (0, 1200, "detector"),  # 0 of 9.6 ml: a small burden, the detector is the better
    ],
)
def test_the_models_mask_is_kept_where_the_detector_missed_most_of_a_large_burden(
    tmp_path, detector_voxels, model_voxels, choice
):
    detector = _outputs(tmp_path / "detector", detector_voxels)
    model = _outputs(tmp_path / "model", model_voxels)
    outputs, status = _choose(tmp_path, detector, model)
    kept = model if choice == "model" else detector
    assert all(outputs[kind] == kept[kind] for kind in ("score", "mask", "located"))
    assert status["second_opinion"] == {
        "method": "UNet",
        "volume_mm3": model_voxels * 8.0,
        "used": choice == "model",
    }
    assert (status.get("method") == "UNet") is (choice == "model")
    volumes = (
        f"the detector found {detector_voxels * 0.008:.1f} ml, the shipped WMH model "
        f"{model_voxels * 0.008:.1f} ml"
    )
    notes = {
        "model": [
            f"{volumes}: faint or confluent WMH, the model's mask is used (second opinion); "
            "check it"
        ],
        "check": [
            f"{volumes} (second opinion): faint WMH may have been missed; check the mask, and "
            "compare with --wmh-method model"
        ],
        "detector": [],
    }
    assert status["notes"] == notes[choice]
    assert status["excluded"] == {"lacunes": "left out"}


@pytest.mark.parametrize(("model_voxels", "used"), [(2744, True), (2400, False)])
def test_a_detector_that_could_not_assess_the_images_gives_way_to_a_large_model_burden(
    tmp_path, model_voxels, used
):
    """Too little normal-appearing white matter for the detector is the confluent case too."""
    detector = _outputs(tmp_path / "detector", 0, assessed=False)
    model = _outputs(tmp_path / "model", model_voxels)
    _, status = _choose(tmp_path, detector, model)
    assert status["assessed"] is used
    if used:
        assert "did not assess these images (cannot be assessed" in status["notes"][0]
    else:
        assert status["notes"] == []


def test_a_model_that_could_not_assess_the_images_leaves_the_detector(tmp_path):
    detector = _outputs(tmp_path / "detector", 0)
    model = _outputs(tmp_path / "model", 2744, assessed=False)
    outputs, status = _choose(tmp_path, detector, model)
    assert outputs["mask"] == detector["mask"] and status["second_opinion"]["used"] is False
