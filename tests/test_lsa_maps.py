"""The lenticulostriate-territory maps: CBF by the white paper's model, the tensor fit's
direction rule, and the basal-ganglia table's hemispheres, coverage and "not assessed"."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from csvd_bids.preproc.asl import (
    ASLError,
    ASLParameters,
    m0_image,
    prepare_asl,
    quantify_cbf,
    read_context,
)
from csvd_bids.preproc.dti import DWIError, distinct_directions, dti_volumes
from csvd_bids.preproc.lsa_inputs import asl_plan, tensor_plan
from csvd_bids.quant.basal_ganglia import NA, roi_table

P = ASLParameters()
PCASL = {
    "ArterialSpinLabelingType": "PCASL",
    "PostLabelingDelay": 1.8,
    "LabelingDuration": 1.8,
    "MagneticFieldStrength": 3,
    "M0Type": "Separate",
    "BackgroundSuppression": False,
}


def test_pcasl_cbf_is_the_white_papers_number():
    """Alsop et al. 2015, eq. 1 worked by hand: dM/M0 = 0.0085 at PLD = tau = 1.8 s, 3 T
    (T1b 1.65 s, alpha 0.85, lambda 0.9) is 73.4 mL/100 g/min."""
    m0 = np.full((4, 4, 3), 1000.0, np.float32)
    cbf, used = quantify_cbf(0.0085 * m0, m0, PCASL, "asl.nii.gz")
    assert cbf == pytest.approx(73.4, abs=0.1)
    assert used["BloodT1"] == 1.65 and used["LabelingEfficiency"] == 0.85
    at_15t, _ = quantify_cbf(0.0085 * m0, m0, {**PCASL, "MagneticFieldStrength": 1.5}, "x")
    assert at_15t[0, 0, 0] > cbf[0, 0, 0]  # shorter blood T1: more decay to allow for


def test_pasl_uses_the_bolus_duration_and_needs_it():
    meta = {
        "ArterialSpinLabelingType": "PASL",
        "PostLabelingDelay": 1.8,
        "BolusCutOffFlag": True,
        "BolusCutOffDelayTime": 0.8,
        "MagneticFieldStrength": 3,
    }
    m0 = np.full((2, 2, 2), 1000.0, np.float32)
    cbf, _ = quantify_cbf(0.01 * m0, m0, meta, "x")
    expected = 6000 * 0.9 * 0.01 * np.exp(1.8 / 1.65) / (2 * 0.98 * 0.8)
    assert cbf[0, 0, 0] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ASLError, match="bolus cut-off"):
        quantify_cbf(0.01 * m0, m0, {**meta, "BolusCutOffFlag": False}, "asl.nii.gz")


def test_later_slices_of_a_2d_readout_have_a_longer_delay():
    m0 = np.full((2, 2, 4), 1000.0, np.float32)
    meta = {**PCASL, "MRAcquisitionType": "2D", "SliceTiming": [0.0, 0.1, 0.2, 0.3]}
    cbf, _ = quantify_cbf(0.01 * m0, m0, meta, "x")
    ratio = cbf[0, 0, 3] / cbf[0, 0, 0]
    assert ratio == pytest.approx(np.exp(0.3 / 1.65), rel=1e-4)
    flat, _ = quantify_cbf(0.01 * m0, m0, {**PCASL, "MRAcquisitionType": "3D"}, "x")
    assert np.allclose(flat, flat[0, 0, 0])
    with pytest.raises(ASLError, match="SliceTiming"):
        quantify_cbf(0.01 * m0, m0, {**meta, "SliceTiming": [0.0, 0.1]}, "x")


def test_no_cbf_where_m0_has_no_brain_signal():
    m0 = np.zeros((4, 4, 4), np.float32)
    m0[1:3, 1:3, 1:3] = 1000.0
    cbf, _ = quantify_cbf(0.01 * np.ones_like(m0), m0, PCASL, "x")
    assert (cbf[m0 == 0] == 0).all() and (cbf[m0 > 0] > 0).all()


def test_m0_with_a_short_tr_is_corrected_for_recovery(tmp_path):
    series = np.ones((4, 4, 4, 2), np.float32)
    m0_file = tmp_path / "m0scan.nii.gz"
    m0 = np.full((4, 4, 4), 500.0, np.float32)
    m0[0] = 0.0  # outside the head
    nib.save(nib.Nifti1Image(m0, np.eye(4)), m0_file)
    types = ["control", "label"]
    long_tr, notes = m0_image(series, types, PCASL, m0_file, {"RepetitionTime": 6.0}, "x", P)
    assert np.allclose(long_tr, m0) and not notes
    short, notes = m0_image(series, types, PCASL, m0_file, {"RepetitionTime": 2.0}, "x", P)
    assert np.allclose(short, m0 / (1 - np.exp(-2.0 / 1.4)))
    assert "incomplete recovery" in notes[0]
    with pytest.raises(ASLError, match="no m0scan file"):
        m0_image(series, types, PCASL, None, {}, "asl.nii.gz", P)
    absent = {**PCASL, "M0Type": "Absent", "BackgroundSuppression": True}
    with pytest.raises(ASLError, match="background suppression"):
        m0_image(series, types, absent, None, {}, "asl.nii.gz", P)


def test_an_included_m0_uses_the_tr_of_its_own_volumes():
    """RepetitionTimePreparation per volume: the M0 volumes' TR decides the correction."""
    series = np.ones((4, 4, 4, 4), np.float32)
    series[..., :2] = 500.0
    types = ["m0scan", "m0scan", "control", "label"]
    included = {**PCASL, "M0Type": "Included"}
    short = {**included, "RepetitionTimePreparation": [2.0, 2.0, 6.0, 6.0]}
    m0, notes = m0_image(series, types, short, None, None, "x", P)
    assert np.allclose(m0, 500.0 / (1 - np.exp(-2.0 / 1.4))) and "TR 2 s" in notes[0]
    long = {**included, "RepetitionTimePreparation": [6.0, 6.0, 2.0, 2.0]}
    m0, notes = m0_image(series, types, long, None, None, "x", P)
    assert np.allclose(m0, 500.0) and not notes


def test_aslcontext_must_match_the_series(tmp_path):
    context = tmp_path / "sub-1_aslcontext.tsv"
    context.write_text("volume_type\ncontrol\nlabel\n")
    assert read_context(context, 2) == ["control", "label"]
    with pytest.raises(ASLError, match="2 rows for an ASL series of 4 volumes") as err:
        read_context(context, 4)
    assert str(context) in str(err.value)
    context.write_text("volume_type\ncontrol\ntag\n")
    with pytest.raises(ASLError, match="unknown volume_type 'tag'"):
        read_context(context, 2)


def test_cbf_reaches_the_reference_grid_through_the_m0_registration(tmp_path):
    """A 3 x 3 x 6 mm ASL series of a box brain, quantified and brought onto a 1 mm grid."""
    rng = np.random.default_rng(3)
    shape = (24, 24, 12)
    brain = np.zeros(shape, bool)
    brain[6:18, 5:19, 3:9] = True
    m0 = np.where(brain, 1000.0, 0.0) * (1 + 0.05 * rng.standard_normal(shape))
    m0 = np.clip(m0, 0, None).astype(np.float32)
    delta = np.where(brain, 10.0, 0.0).astype(np.float32)
    affine = np.diag([3.0, 3.0, 6.0, 1.0])
    series = np.stack([m0, m0 - delta] * 3, axis=-1)
    asl, m0_file, context = (tmp_path / n for n in ("asl.nii.gz", "m0.nii.gz", "ctx.tsv"))
    nib.save(nib.Nifti1Image(series, affine), asl)
    nib.save(nib.Nifti1Image(m0, affine), m0_file)
    context.write_text("volume_type\n" + "control\nlabel\n" * 3)
    fine = np.kron(brain, np.ones((3, 3, 6), bool))
    reference = nib.Nifti1Image((fine * 800.0).astype(np.float32), np.diag([1, 1, 1, 1.0]))
    reference.affine[:3, 3] = -1.0, -1.0, -2.5  # voxel centres of the same field of view
    reference = nib.Nifti1Image(np.asanyarray(reference.dataobj), reference.affine)
    out = prepare_asl(asl, context, PCASL, m0_file, {"RepetitionTime": 6.0}, reference)
    cbf = np.asanyarray(out.cbf.dataobj)
    core = fine.copy()
    for axis, step in ((0, 3), (1, 3), (2, 6)):
        core &= np.roll(fine, step, axis) & np.roll(fine, -step, axis)
    tau = 1 - np.exp(-1.8 / 1.65)
    expected = 0.01 * 6000 * 0.9 * np.exp(1.8 / 1.65) / (2 * 0.85 * 1.65 * tau)
    assert np.median(cbf[core]) == pytest.approx(expected, rel=0.1)
    assert np.median(np.abs(cbf[~fine])) < 1.0
    coverage = np.asanyarray(out.coverage.dataobj) > 0
    assert coverage[core].all() and not coverage[~fine].any()
    assert out.report["VolumeTypes"] == {"control": 3, "label": 3}


def test_a_tensor_needs_six_directions():
    bvals = np.array([0, 1000, 1000, 1000, 1000])
    axes = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]], float)
    assert distinct_directions(axes[1:]) == 3  # an antipode is the same direction
    with pytest.raises(DWIError, match="3 distinct gradient direction"):
        dti_volumes(bvals, axes, "dwi.nii.gz")
    six = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], float)
    used = dti_volumes(np.r_[0, [1000] * 6, 3000], np.r_[[[0, 0, 0]], six, [[1, 0, 0]]], "x")
    assert used.tolist() == list(range(7))  # b = 3000 is above the DTI range


def test_plans_say_why_a_map_is_missing(tmp_path):
    assert tensor_plan(None, None, None, None) == {"reason": "no DWI series"}
    assert asl_plan(None, None, None) == {"reason": "no ASL series"}
    assert "no aslcontext" in asl_plan("sub-1_asl.nii.gz", {"aslcontext": None}, None)["reason"]
    bval, bvec = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    bval.write_text("0 1000 1000 1000\n")
    bvec.write_text("0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    reason = tensor_plan("dwi.nii.gz", str(bval), str(bvec), None)["reason"]
    assert "needs at least 6" in reason


def test_asl_metadata_is_checked_at_planning(tmp_path):
    """A sidecar that cannot be quantified is found before the graph runs, naming the file."""
    asl, context = tmp_path / "sub-1_asl.nii.gz", tmp_path / "sub-1_aslcontext.tsv"
    series = np.random.default_rng(0).uniform(900, 1000, (4, 4, 4, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(series, np.eye(4)), asl)
    context.write_text("volume_type\ncontrol\nlabel\ncontrol\nlabel\n")
    usable = {"aslcontext": str(context), "m0scan": None, "metadata": {**PCASL, "M0Type": "Absent"}}
    assert asl_plan(str(asl), usable, None)["asl"] == str(asl)
    for change, expected in (
        ({"PostLabelingDelay": None}, "PostLabelingDelay"),
        ({"M0Type": "Separate"}, "no m0scan file"),
        ({"ArterialSpinLabelingType": "VSASL"}, "PCASL, CASL or PASL"),
        ({"MRAcquisitionType": "2D", "SliceTiming": [0.0, 0.1, 0.2]}, "SliceTiming"),
    ):
        companions = {**usable, "metadata": {**usable["metadata"], **change}}
        reason = asl_plan(str(asl), companions, None)["reason"]
        assert str(asl) in reason and expected in reason, reason


def _structures(tmp_path):
    """Caudate (2), putamen (3), pallidum (4) on both sides of x = 0 (RAS: left is x < 0)."""
    labels = np.zeros((20, 6, 6), np.uint8)
    labels[2:5, 1:5, 1:5], labels[15:18, 1:5, 1:5] = 3, 3  # putamen, 48 voxels each side
    labels[6:8, 1:5, 1:5], labels[12:14, 1:5, 1:5] = 4, 4
    labels[8, 1:3, 1:3], labels[11, 1:3, 1:3] = 2, 2
    affine = np.eye(4)
    affine[0, 3] = -9.5  # voxel 9.5 is x = 0
    path = tmp_path / "structures.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), path)
    xfm = tmp_path / "affine.txt"
    sitk.WriteTransform(sitk.AffineTransform(3), str(xfm))
    return path, xfm, labels, affine


def test_regions_split_by_hemisphere_and_missing_maps_are_not_assessed(tmp_path):
    path, xfm, labels, affine = _structures(tmp_path)
    fa = np.where(np.arange(20)[:, None, None] < 10, 0.2, 0.4) * np.ones(labels.shape)
    fa_file = tmp_path / "fa.nii.gz"
    nib.save(nib.Nifti1Image(fa.astype(np.float32), affine), fa_file)
    sources = {"fa": "bids:raw:dwi", "md": "not assessed: x", "cbf": "not assessed: no ASL series"}
    table = roi_table(path, xfm, {"fa": str(fa_file), "md": None, "cbf": None}, sources)
    rows = table.set_index("roi")
    assert rows.loc["putamen_left", "fa_mean"] == pytest.approx(0.2)
    assert rows.loc["putamen_right", "fa_mean"] == pytest.approx(0.4)
    assert rows.loc["putamen_left", "volume_mm3"] == 48.0
    assert (rows["cbf_mean"] == NA).all() and (rows["cbf_source"] == sources["cbf"]).all()
    # a mirrored template registration swaps the sides
    flip = sitk.AffineTransform(3)
    flip.SetMatrix([-1, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteTransform(flip, str(xfm))
    swapped = roi_table(path, xfm, {"fa": str(fa_file)}, sources).set_index("roi")
    assert swapped.loc["putamen_left", "fa_mean"] == pytest.approx(0.4)


def test_a_region_the_map_did_not_cover_is_not_assessed(tmp_path):
    path, xfm, labels, affine = _structures(tmp_path)
    cbf, covered = tmp_path / "cbf.nii.gz", tmp_path / "covered.nii.gz"
    nib.save(nib.Nifti1Image(np.full(labels.shape, 50.0, np.float32), affine), cbf)
    mask = np.ones(labels.shape, np.uint8)
    mask[:10, :, 3:] = 0  # the left putamen half outside the slab: its mean leaves them out
    mask[:8, :, :] = np.where(np.arange(20)[:8, None, None] >= 6, 0, mask[:8])  # left pallidum
    nib.save(nib.Nifti1Image(mask, affine), covered)
    table = roi_table(
        path, xfm, {"cbf": str(cbf)}, {"cbf": "bids:raw:asl"}, coverage={"cbf": str(covered)}
    ).set_index("roi")
    assert table.loc["putamen_left", "cbf_mean"] == pytest.approx(50.0)
    assert table.loc["pallidum_left", "cbf_mean"] == NA
    assert "covers 0%" in table.loc["pallidum_left", "cbf_source"]
    assert table.loc["pallidum_right", "cbf_source"] == "bids:raw:asl"
    assert json.dumps(table.reset_index().to_dict())  # JSON-able for the writer
