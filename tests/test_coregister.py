"""Rigid coregistration recovers known misalignments of real (synthetic-anatomy) images."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import run_interface
from scipy.spatial.transform import Rotation

from csvd_bids.interfaces.preproc import BiasCorrect, PrepareImage
from csvd_bids.preproc import coregister as registration
from csvd_bids.preproc.coregister import coregister, resample_with
from csvd_bids.preproc.images import load_3d, load_in_memory, to_sitk
from csvd_bids.preproc.registration import downsample, set_random_sampling

_LPS = np.array([-1.0, -1.0, 1.0])  # ITK points are LPS, nibabel's RAS


def _moved(img: nib.Nifti1Image, degrees: float, mm: float) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The same voxels placed elsewhere in the world: a known rigid misalignment."""
    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_euler(
        "xyz", [degrees, -degrees / 2, degrees / 3], degrees=True
    ).as_matrix()
    motion[:3, 3] = [mm, -mm / 2, mm / 3]
    return nib.Nifti1Image(
        np.asanyarray(img.dataobj, dtype=np.float32), motion @ img.affine
    ), motion


def _target_error_mm(transform, motion: np.ndarray, reference: nib.Nifti1Image) -> float:
    """Mean distance between where the transform and the truth send brain-sized points."""
    centre = (
        reference.affine[:3, :3] @ (np.array(reference.shape[:3]) / 2) + reference.affine[:3, 3]
    )
    points = centre + np.random.default_rng(0).uniform(-50, 50, (500, 3))
    found = np.array([np.array(transform.TransformPoint(tuple(p * _LPS))) * _LPS for p in points])
    truth = points @ motion[:3, :3].T + motion[:3, 3]
    return float(np.linalg.norm(found - truth, axis=1).mean())


@pytest.mark.parametrize(("degrees", "mm"), [(0.0, 0.0), (10.0, 10.0), (20.0, 20.0)])
def test_recovers_rigid_misalignment(_single_bids, degrees, mm):
    anat = _single_bids / "sub-01" / "anat"
    reference = load_3d(anat / "sub-01_T1w.nii.gz")
    flair = nib.as_closest_canonical(nib.load(anat / "sub-01_FLAIR.nii.gz"))
    moving, motion = _moved(flair, degrees, mm)
    result = coregister(moving, reference)
    # The tests' images are 3 mm with 6 mm FLAIR slices: half a slice is the issue's bar.
    assert _target_error_mm(result.transform, motion, reference) < 1.5
    assert result.metric_after <= result.metric_before + 1e-3
    assert result.initialisation in ("header", "moments")  # the start whose end was better
    assert result.optimised[0] == "header" and result.initialisation in result.optimised


def _downsampled(anat: Path, modality: str) -> sitk.Image:
    return downsample(to_sitk(load_3d(anat / f"sub-01_{modality}.nii.gz")), 2.0)


def test_a_start_that_ends_where_another_did_is_not_refined(_single_bids):
    """With aligned headers the moments start's coarse end lies within a voxel of the header's
    end, so it is not optimised in full; optimised in full it would have ended there anyway
    (within 0.05 mm, an equal metric), so skipping it changes nothing."""
    anat = _single_bids / "sub-01" / "anat"
    fixed, moving = _downsampled(anat, "T1w"), _downsampled(anat, "FLAIR")
    result = registration.coregister_downsampled(moving, fixed)
    assert result.optimised == ("header",) and result.initialisation == "header"
    moments = registration.moments_start(fixed, moving)
    registration._optimise(fixed, moving, moments, registration.SAMPLING_SEED)
    assert registration._largest_shift_mm(moments, result.transform, fixed) < 0.05
    metric = registration.mattes_metric(fixed, moving, moments)
    assert metric >= result.metric_after - registration.METRIC_TIE


def test_a_start_that_ends_somewhere_new_is_refined(_single_bids):
    """The rule must not skip a start whose coarse end is an optimum not yet reached: against
    an end 6 mm off (two voxels), the moments start's coarse end is new; against the true
    end it is not."""
    anat = _single_bids / "sub-01" / "anat"
    fixed, moving = _downsampled(anat, "T1w"), _downsampled(anat, "FLAIR")
    result = registration.coregister_downsampled(moving, fixed)
    moments = registration.moments_start(fixed, moving)
    seed = registration.SAMPLING_SEED
    known = {"header": (result.transform, result.metric_after)}
    assert registration._lands_on_known_end(fixed, moving, moments, known, seed)
    off = registration._copy(result.transform)
    off.SetTranslation(np.add(off.GetTranslation(), (6.0, 0.0, 0.0)))
    assert registration._largest_shift_mm(off, result.transform, fixed) > max(fixed.GetSpacing())
    assert not registration._lands_on_known_end(fixed, moving, moments, {"header": (off, 0)}, seed)


@pytest.fixture
def itk_threads():
    """Set SimpleITK's thread count for one test, then restore it (it is process-wide)."""
    default = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    yield sitk.ProcessObject.SetGlobalDefaultNumberOfThreads
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(default)


@pytest.mark.parametrize("threads", [1, 2])
def test_runs_repeat(_single_bids, itk_threads, threads):
    """A fixed sampling seed (0 would mean the wall clock to SimpleITK): exact with one thread;
    with two, ITK sums the metric in a varying order, and the tie rule keeps the same end."""
    itk_threads(threads)
    anat = _single_bids / "sub-01" / "anat"
    reference = load_3d(anat / "sub-01_T1w.nii.gz")
    moving, _ = _moved(nib.as_closest_canonical(nib.load(anat / "sub-01_T2w.nii.gz")), 10, 10)
    runs = [np.array(coregister(moving, reference).transform.GetParameters()) for _ in range(3)]
    if threads == 1:
        assert all(np.array_equal(runs[0], run) for run in runs[1:])
    else:  # radians, then mm; before the tie rule two runs ended 1 mm apart
        assert all(np.allclose(runs[0][:3], run[:3], atol=1e-4) for run in runs[1:])
        assert all(np.allclose(runs[0][3:], run[3:], atol=1e-2) for run in runs[1:])


def test_resampling_lands_on_the_reference_grid(_single_bids):
    anat = _single_bids / "sub-01" / "anat"
    reference = load_3d(anat / "sub-01_T1w.nii.gz")
    flair = load_3d(anat / "sub-01_FLAIR.nii.gz")
    out = resample_with(flair, reference, coregister(flair, reference).transform)
    assert out.shape == reference.shape and np.allclose(out.affine, reference.affine)
    assert float(np.asanyarray(out.dataobj).min()) >= 0.0


def test_a_work_image_loaded_in_memory_reads_as_from_disk(tmp_path):
    """Nodes that read the reference several times (each registration, resampling and
    output) load it once: same float32 values, affine and header, and no file proxy left to
    decompress again."""
    data = np.random.default_rng(0).normal(100, 20, (12, 10, 8)).astype(np.float32)
    affine = np.diag([1.0, 1.2, 3.0, 1.0])
    path = tmp_path / "reference.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    loaded = load_in_memory(path)
    assert isinstance(loaded.dataobj, np.ndarray) and loaded.dataobj.dtype == np.float32
    on_disk = nib.load(path)  # the header stores the affine in float32
    assert np.array_equal(loaded.dataobj, data) and np.array_equal(loaded.affine, on_disk.affine)
    assert loaded.header.get_zooms() == on_disk.header.get_zooms()


def test_bias_correction_in_its_own_node_changes_nothing(_single_bids, tmp_path):
    """N4 runs in a node of its own (BiasCorrect), which starts before the reference is ready;
    PrepareImage then skips it. The result must be the one node's, to the bit, also for an
    oblique image stored in another orientation, whose affine is not float32-exact."""
    anat = _single_bids / "sub-01" / "anat"
    flair = nib.as_closest_canonical(nib.load(anat / "sub-01_FLAIR.nii.gz"))
    moved, _ = _moved(flair, 7.0, 3.3)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # the same image stored LPS: the loader
    flip[:2, 3] = np.array(flair.shape[:2]) - 1  # reorients it, computing its affine
    affine = moved.affine @ flip
    affine[:3, 3] += 0.1  # not float32-exact: a NIfTI-2 input keeps it in float64
    flipped = nib.Nifti2Image(np.asanyarray(moved.dataobj)[::-1, ::-1], affine)
    raw = tmp_path / "flair.nii.gz"
    nib.save(flipped, raw)
    reference = run_interface(
        PrepareImage(modality="t1w"), tmp_path / "t1w", in_file=str(anat / "sub-01_T1w.nii.gz")
    ).out_file
    one = run_interface(
        PrepareImage(modality="flair"), tmp_path / "one", in_file=str(raw), reference=reference
    )
    n4 = run_interface(BiasCorrect(modality="flair"), tmp_path / "n4", in_file=str(raw))
    # the reoriented grid itself, to the bit
    assert np.array_equal(load_3d(n4.out_file).affine, load_3d(raw).affine)
    two = run_interface(
        PrepareImage(modality="flair", corrected=True),
        tmp_path / "two",
        in_file=n4.out_file,
        reference=reference,
    )
    first, second = nib.load(one.out_file), nib.load(two.out_file)
    assert np.array_equal(first.get_fdata(), second.get_fdata())
    assert np.array_equal(first.affine, second.affine)
    reports = [json.loads(Path(r.report).read_text())["Registration"] for r in (one, two)]
    assert reports[0] == reports[1]


def test_the_metric_without_image_gradients_is_the_same_value(_single_bids):
    """mattes_metric skips the gradient images (the value does not use them): to the bit what
    the metric with them gives, at the header alignment and after a move."""
    anat = _single_bids / "sub-01" / "anat"
    fixed, moving = _downsampled(anat, "T1w"), _downsampled(anat, "T2w")
    moved = sitk.Euler3DTransform()
    moved.SetTranslation((2.5, -1.0, 4.0))
    for transform in (sitk.Euler3DTransform(), moved):
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        set_random_sampling(method, 0.2)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetInitialTransform(transform, inPlace=False)
        with_gradients = method.MetricEvaluate(fixed, moving)
        assert registration.mattes_metric(fixed, moving, transform) == with_gradients
