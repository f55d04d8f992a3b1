"""DWI preprocessing: b-value split, trace, ADC against the generator's planted values,
coregistration against its known misalignment, clear errors, and the nipype interface."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nipype import Node

from csvd_bids.errors import ExitCode, InputImageError
from csvd_bids.interfaces.dwi import PrepareDWI
from csvd_bids.preproc.dwi import (
    ADC_MAX,
    DWIError,
    compute_adc,
    geometric_mean,
    load_4d,
    prepare_dwi,
    split_dwi,
)
from csvd_bids.synth import generate_dataset
from csvd_bids.synth.anatomy import make_anatomy

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("dwi_case")

SEED = 3
RESOLUTION_MM = 3.0  # the DWI grid is then the T1w grid (block factor 1)
MISALIGN = (20.0, 20.0)  # degrees, mm: the registration benchmark's default
# Planted ADCs (csvd_bids.synth.contrasts), in 1e-6 mm2/s
PLANTED = {"wm": 750.0, "gm": 850.0, "csf": 3000.0}
_LPS = np.array([-1.0, -1.0, 1.0])  # ITK points are LPS, nibabel's RAS


@pytest.fixture(scope="module")
def dwi_case(tmp_path_factory) -> dict:
    """One misaligned synthetic session, its true tissues, and one PrepareDWI node run."""
    root = tmp_path_factory.mktemp("dwi")
    bids = generate_dataset(root / "bids", 1, 1, SEED, RESOLUTION_MM, misalign=MISALIGN)
    truth = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    # The subject's anatomy, from the generator's documented stream layout (subject 1's
    # SeedSequence([seed, 1]) split five ways, anatomy second); checked against the truth.
    anat = make_anatomy(
        np.random.default_rng(np.random.SeedSequence([SEED, 1]).spawn(5)[1]), RESOLUTION_MM
    )
    brain = np.asanyarray(nib.load(truth / "sub-01_space-T1w_desc-brain_mask.nii.gz").dataobj)
    assert np.array_equal(brain > 0, anat.brain_mask), "generator streams changed"
    lesions = np.asanyarray(nib.load(truth / "sub-01_space-T1w_seg-csvd_dseg.nii.gz").dataobj)
    pure = {
        name: (fraction > 0.95) & (lesions == 0)
        for name, fraction in (("wm", anat.wm), ("gm", anat.gm), ("csf", anat.csf))
    }
    dwi = bids / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    node = Node(PrepareDWI(), name="prepare_dwi", base_dir=str(root / "work"))
    node.inputs.in_file = str(dwi)
    node.inputs.bval = str(dwi.with_name("sub-01_dwi.bval"))
    node.inputs.reference = str(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    node.inputs.num_threads = 2
    result = node.run()
    return {"bids": bids, "truth": truth, "pure": pure, "brain": brain > 0, "result": result}


def _median_adc(adc: np.ndarray, pure: dict) -> dict[str, float]:
    return {name: float(np.median(adc[mask])) for name, mask in pure.items()}


def test_native_adc_matches_planted_values(dwi_case):
    """On the DWI's own grid (no resampling), pure-tissue ADC within 5 % of the planted."""
    dwi = nib.load(dwi_case["bids"] / "sub-01" / "dwi" / "sub-01_dwi.nii.gz")
    data = np.asanyarray(dwi.dataobj).astype(np.float32)  # voxel order of the working grid
    adc = compute_adc(data[..., 0], geometric_mean(data[..., 1:]), 1000.0)
    for name, value in _median_adc(adc, dwi_case["pure"]).items():
        assert abs(value / PLANTED[name] - 1) < 0.05, (name, value)


def test_adc_on_reference_grid_matches_planted_values(dwi_case):
    """After coregistration and resampling: WM, GM and CSF within 15 % of the planted ADC."""
    outputs = dwi_case["result"].outputs
    adc = np.asanyarray(nib.load(outputs.adc).dataobj)
    medians = _median_adc(adc, dwi_case["pure"])
    for name, value in medians.items():
        assert abs(value / PLANTED[name] - 1) < 0.15, (name, value)
    assert medians["wm"] < medians["gm"] < medians["csf"]
    assert float(adc.min()) >= 0.0 and float(adc.max()) <= ADC_MAX


def test_coregistration_recovers_the_true_misalignment(dwi_case):
    outputs = dwi_case["result"].outputs
    report = json.loads(Path(outputs.report).read_text())
    assert report["TransformFile"] == outputs.transform
    ours = sitk.ReadTransform(outputs.transform)
    truth = sitk.ReadTransform(str(dwi_case["truth"] / "sub-01_from-dwi_to-T1w_mode-image_xfm.txt"))
    reference = nib.load(dwi_case["bids"] / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    points = nib.affines.apply_affine(reference.affine, np.argwhere(dwi_case["brain"]))

    def moved(transform):
        return np.array([transform.TransformPoint(tuple(p * _LPS)) for p in points]) * _LPS

    target = moved(truth)
    assert np.linalg.norm(points - target, axis=1).mean() > 5.0  # really misaligned
    assert np.linalg.norm(moved(ours) - target, axis=1).mean() < 1.0


def test_interface_outputs_and_report(dwi_case):
    outputs = dwi_case["result"].outputs
    reference = nib.load(dwi_case["bids"] / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    for name in ("b0", "trace", "adc"):
        img = nib.load(getattr(outputs, name))
        assert img.shape == reference.shape and np.allclose(img.affine, reference.affine)
    b0 = np.asanyarray(nib.load(outputs.b0).dataobj)
    trace = np.asanyarray(nib.load(outputs.trace).dataobj)
    csf, wm = dwi_case["pure"]["csf"], dwi_case["pure"]["wm"]
    assert np.median(b0[csf]) > np.median(b0[wm])  # T2-weighted b0
    assert np.median(trace[csf]) < np.median(trace[wm])  # free water is dark at b = 1000
    report = json.loads(Path(outputs.report).read_text())
    assert report["Reference"] is False
    assert report["BValue"] == 1000.0
    assert report["ADCUnits"] == "1e-6 mm2/s"
    assert (report["NumberOfVolumes"], report["NumberOfB0Volumes"]) == (32, 1)
    assert report["NumberOfTraceVolumes"] == 31
    registration = report["Registration"]
    assert registration["MutualInformationAfter"] < registration["MutualInformationBefore"]
    assert registration["RegisteredImage"] in ("b0", "trace")


def _series(tmp_path: Path, bvals, volumes: np.ndarray | None = None) -> tuple[Path, Path]:
    """A small 4D series and its .bval; volumes default to one random volume per b-value."""
    if volumes is None:
        volumes = np.random.default_rng(0).uniform(100, 1000, (6, 5, 4, len(bvals)))
    dwi, bval = tmp_path / "sub-01_dwi.nii.gz", tmp_path / "sub-01_dwi.bval"
    nib.save(nib.Nifti1Image(volumes.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), dwi)
    bval.write_text(" ".join(str(b) for b in bvals) + "\n")
    return dwi, bval


def test_split_by_b_value(tmp_path):
    """b0 = mean of b <= 50; trace = geometric mean of b within 10 % of the largest b."""
    bvals = [5, 0, 990, 1000, 500, 1010]
    volumes = np.random.default_rng(1).uniform(100, 1000, (6, 5, 4, len(bvals)))
    split = split_dwi(*_series(tmp_path, bvals, volumes))
    assert np.allclose(split.b0.get_fdata(), volumes[..., :2].mean(-1), rtol=1e-5)
    expected = np.exp(np.log(volumes[..., [2, 3, 5]]).mean(-1))
    assert np.allclose(split.trace.get_fdata(), expected, rtol=1e-5)
    assert split.b_value == pytest.approx(1000.0)
    assert (split.n_volumes, split.n_b0, split.n_trace) == (6, 2, 3)


def test_non_finite_values_read_as_zero(tmp_path):
    """NaN and infinite voxels of a float series read as 0 (the b0 and trace of such a voxel
    are then background), every other value as stored."""
    bvals = [0, 1000, 1000]
    volumes = np.random.default_rng(3).uniform(100, 1000, (6, 5, 4, 3)).astype(np.float32)
    bad = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2)]
    for index, value in zip(bad, (np.nan, np.inf, -np.inf), strict=True):
        volumes[index] = value
    dwi, _ = _series(tmp_path, bvals, volumes)
    data, _ = load_4d(dwi)
    expected = volumes.copy()
    for index in bad:
        expected[index] = 0.0
    assert data.dtype == np.float32 and np.array_equal(data, expected)


def test_adc_units_clipping_and_background():
    s0 = np.array([1000.0, 1000.0, 1000.0, 1000.0, 0.0, 1000.0], np.float32)
    sb = np.array([1000 * np.exp(-0.8), 1000 * np.exp(-3.0), 1e-3, 1200.0, 5.0, 0.0], np.float32)
    adc = compute_adc(s0, sb, 1000.0)
    # 0.8e-3 and 3.0e-3 mm2/s; the 5000 cap; no negative ADC; background and zero trace -> 0
    assert np.allclose(adc, [800.0, 3000.0, ADC_MAX, 0.0, 0.0, 0.0], atol=0.5)


@pytest.mark.parametrize(
    ("bvals", "n_volumes", "culprit", "words"),
    [
        ([1000] * 4, 4, "dwi.nii.gz", "no b0 volume"),
        ([0, 10, 0, 0], 4, "dwi.nii.gz", "no diffusion-weighted volume"),
        ([0, 1000, 1000], 4, "dwi.bval", "3 b-values for a DWI series of 4 volumes"),
    ],
)
def test_clear_errors(tmp_path, bvals, n_volumes, culprit, words):
    volumes = np.random.default_rng(2).uniform(100, 1000, (6, 5, 4, n_volumes))
    dwi, bval = _series(tmp_path, bvals, volumes)
    reference = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=words) as caught:
        prepare_dwi(dwi, bval, reference)
    assert culprit in str(caught.value)
    assert isinstance(caught.value, DWIError) and isinstance(caught.value, InputImageError)
    assert caught.value.exit_code == ExitCode.INPUT_DATA
