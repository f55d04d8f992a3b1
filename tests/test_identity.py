"""The same-subject check tells a subject's own images from another's, after coregistration."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nipype import Node
from scipy import ndimage

from csvd_bids.interfaces.preproc import CheckSameSubject
from csvd_bids.preproc import identity
from csvd_bids.preproc.coregister import coregister, resample_with
from csvd_bids.preproc.identity import THRESHOLD, same_subject_score
from csvd_bids.preproc.images import load_3d


def _reference(bids: Path, subject: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A subject's T1w and its true brain mask (what the template priors approximate)."""
    reference = load_3d(bids / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz")
    truth = bids / "derivatives" / "groundtruth" / f"sub-{subject}" / "anat"
    mask = nib.load(truth / f"sub-{subject}_space-T1w_desc-brain_mask.nii.gz")
    return reference, np.asanyarray(mask.dataobj) > 0


def _on_reference(bids: Path, subject: str, suffix: str, reference) -> nib.Nifti1Image:
    moving = load_3d(bids / f"sub-{subject}" / "anat" / f"sub-{subject}_{suffix}.nii.gz")
    return resample_with(moving, reference, coregister(moving, reference).transform)


@pytest.mark.parametrize("suffix", ["FLAIR", "T2w"])
def test_same_subject_is_not_flagged(_single_bids, suffix):
    reference, mask = _reference(_single_bids, "01")
    result = same_subject_score(
        reference, _on_reference(_single_bids, "01", suffix, reference), mask
    )
    assert result["threshold"] == THRESHOLD
    assert result["score"] >= THRESHOLD + 0.05, result
    assert not result["different_subject_suspected"]


def test_other_subject_is_flagged(_single_bids):
    reference, mask = _reference(_single_bids, "01")
    result = same_subject_score(
        reference, _on_reference(_single_bids, "02", "FLAIR", reference), mask
    )
    assert result["score"] < THRESHOLD - 0.1, result
    assert result["different_subject_suspected"]


def test_misaligned_by_a_centimetre_is_flagged(_single_bids):
    """A failed coregistration looks like another subject: also worth the warning."""
    reference, mask = _reference(_single_bids, "01")
    moving = load_3d(_single_bids / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    shifted = moving.affine.copy()
    shifted[:3, 3] += [10.0, 0.0, 0.0]
    moved = nib.Nifti1Image(np.asanyarray(moving.dataobj), shifted)
    on_reference = resample_with(moved, reference, coregister(moving, reference).transform)
    assert same_subject_score(reference, on_reference, mask)["different_subject_suspected"]


def test_blank_images_and_bad_masks_raise(_single_bids):
    reference, mask = _reference(_single_bids, "01")
    data = np.asanyarray(reference.dataobj)
    blank = nib.Nifti1Image(np.zeros_like(data), reference.affine)
    constant = nib.Nifti1Image(np.full_like(data, 7.0), reference.affine)
    with pytest.raises(ValueError, match="moving image is constant"):
        same_subject_score(reference, blank, mask)
    with pytest.raises(ValueError, match="reference image is constant"):
        same_subject_score(constant, reference, mask)
    with pytest.raises(ValueError, match="brain mask is empty"):
        same_subject_score(reference, reference, np.zeros_like(mask))
    tiny = np.zeros_like(mask)
    tiny[30:33, 35:38, 30:33] = True  # 27 voxels of 3 mm, about 90 of the 2 mm grid
    with pytest.raises(ValueError, match="too small"):
        same_subject_score(reference, reference, tiny)
    with pytest.raises(ValueError, match="one grid"):
        same_subject_score(reference, reference, mask[:-1])
    nan = data.copy()
    nan[mask] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        same_subject_score(reference, nib.Nifti1Image(nan, reference.affine), mask)


def test_the_node_scores_each_image_against_one_prepared_reference(_single_bids, tmp_path):
    """CheckSameSubject: each image gets its own score or its own error; a reference that
    cannot be compared gives every image that reason."""
    reference, mask = _reference(_single_bids, "01")
    files = {}
    for name, img in (
        ("FLAIR", _on_reference(_single_bids, "01", "FLAIR", reference)),
        ("T2w", _on_reference(_single_bids, "02", "T2w", reference)),
        ("blank", nib.Nifti1Image(np.zeros(reference.shape, np.float32), reference.affine)),
        ("reference", reference),
    ):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(img, files[name])
    for name, brain in (("mask", mask), ("empty", np.zeros_like(mask))):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), reference.affine), files[name])

    def run(mask_name: str) -> dict:
        node = Node(CheckSameSubject(), name=f"check_{mask_name}", base_dir=str(tmp_path))
        node.inputs.reference = str(files["reference"])
        node.inputs.brain_mask = str(files[mask_name])
        node.inputs.names = ["FLAIR", "T2w", "blank"]
        node.inputs.in_files = [str(files[n]) for n in node.inputs.names]
        return json.loads(Path(node.run().outputs.report).read_text())

    report = run("mask")
    for name, other_subject in (("FLAIR", False), ("T2w", True)):
        expected = same_subject_score(reference, nib.load(files[name]), mask)
        assert report[name] == expected
        assert report[name]["different_subject_suspected"] is other_subject
    assert "moving image is constant" in report["blank"]["error"]
    report = run("empty")
    assert all("brain mask is empty" in report[n]["error"] for n in ("FLAIR", "T2w", "blank"))


@pytest.mark.parametrize(
    "shift_mm", [(0.0, 0.0, 0.0), (4.0, 0.0, 0.0), (0.0, -4.0, 0.0), (1.3, 0.0, -2.7)]
)
def test_local_correlation_is_itks_ants_metric(shift_mm):
    """The box-sum local correlation gives SimpleITK's ANTSNeighborhoodCorrelation value
    (translation, linear interpolation, fixed mask) on an oblique grid, for whole-voxel and
    fractional shifts, with masked neighbours, a flat patch and shifts past the grid edge."""
    rng = np.random.default_rng(3)
    shape = (18, 22, 20)  # k, j, i
    fixed = ndimage.gaussian_filter(rng.normal(size=shape), 1.0)
    moving = 0.6 * fixed + ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    fixed[2:7, 5:10, 2:7] = 0.0  # a flat patch: an undefined correlation counts as 1
    mask = np.zeros(shape, dtype=bool)
    mask[1:-1, 3:-2, 1:-1] = True
    mask[8:10, 8:10, :] = False  # a hole: neighbours outside the mask do not count
    spacing = identity.WORKING_SPACING_MM
    direction = sitk.VersorTransform((0.2, 0.1, 1.0), 0.3).GetMatrix()  # oblique axes

    def image(data: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(data)
        img.SetSpacing((spacing,) * 3)
        img.SetDirection(direction)
        img.SetOrigin((-10.0, 4.0, 2.0))
        return img

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsANTSNeighborhoodCorrelation(identity.WINDOW_RADIUS_VOXELS)
    method.SetMetricFixedMask(image(mask.astype(np.uint8)))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(sitk.TranslationTransform(3, shift_mm))
    expected = -method.MetricEvaluate(image(fixed), image(moving))

    voxels = (np.reshape(direction, (3, 3)).T @ np.asarray(shift_mm) / spacing)[::-1]
    found = identity._local_correlation(fixed, moving, mask, voxels)
    assert found == pytest.approx(expected, abs=1e-9)
