"""Tests of the synthetic dataset generator (fast: 3 mm grid, two subjects, two sessions)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from csvd_bids.labels import MARKER_LABELS
from csvd_bids.preproc.regions import REGION_LABELS
from csvd_bids.synth import SynthUsageError, generate_dataset
from csvd_bids.synth.__main__ import EX_USAGE, main
from csvd_bids.synth.anatomy import make_anatomy
from csvd_bids.synth.measure import component_stats, label_components
from csvd_bids.synth.participants import burden, draw_participant

SEED, SUBJECTS, SESSIONS, RES = 0, 2, 2, 3.0  # seed 0 plants all five markers at 3 mm
SIZE_RULES_MM = {"CMB": (2.0, 10.0), "LAC": (3.0, 15.0), "RSSI": (0.0, 20.0)}
LABELS = [m.label for m in MARKER_LABELS]
MODALITIES = ("T1w", "FLAIR", "T2w", "acq-swi_T2starw")
MISALIGN = (20.0, 20.0)
MOVED = {"FLAIR": "anat/{}_FLAIR", "T2w": "anat/{}_T2w", "T2starw": "anat/{}_acq-swi_T2starw"}
MOVED["dwi"] = "dwi/{}_dwi"
_LPS = np.array([-1.0, -1.0, 1.0])  # ITK points are LPS, nibabel's RAS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("a") / "ds", SUBJECTS, SESSIONS, SEED, RES)


@pytest.fixture(scope="module")
def misaligned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("m") / "ds"
    return generate_dataset(root, SUBJECTS, SESSIONS, SEED, RES, misalign=MISALIGN)


def _sessions():
    for sub in ("01", "02"):
        for ses in ("1", "2"):
            yield sub, ses, f"sub-{sub}_ses-{ses}"


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _truth(root: Path, sub: str, ses: str, name: str) -> Path:
    anat = root / "derivatives" / "groundtruth" / f"sub-{sub}" / f"ses-{ses}" / "anat"
    return anat / f"sub-{sub}_ses-{ses}_space-T1w_{name}"


def _on_t1_grid(root: Path, sub: str, ses: str, name: str) -> np.ndarray:
    """A raw image resampled (nearest voxel) onto the T1w/truth grid."""
    folder = root / f"sub-{sub}" / f"ses-{ses}"
    ref = nib.load(folder / "anat" / f"sub-{sub}_ses-{ses}_T1w.nii.gz")
    kind = "dwi" if name == "dwi" else "anat"
    img = nib.load(folder / kind / f"sub-{sub}_ses-{ses}_{name}.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)
    ijk = np.indices(ref.shape).reshape(3, -1)
    vox = np.linalg.inv(img.affine) @ ref.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    idx = tuple(np.clip(np.rint(vox[a]).astype(int), 0, img.shape[a] - 1) for a in range(3))
    return data[idx].reshape(ref.shape + data.shape[3:])


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes(dataset, tmp_path):
    again = generate_dataset(tmp_path / "ds", SUBJECTS, SESSIONS, SEED, RES)
    first, second = _files(dataset), _files(again)
    assert first.keys() == second.keys()
    assert "derivatives/groundtruth/seg-regions_dseg.tsv" in first
    assert sum(k.endswith("_seg-regions_dseg.nii.gz") for k in first) == SUBJECTS * SESSIONS
    assert all(filecmp.cmp(first[k], second[k], shallow=False) for k in first)


def test_subject_does_not_change_when_cohort_grows(dataset, tmp_path):
    small = _files(generate_dataset(tmp_path / "one", 1, SESSIONS, SEED, RES))
    subject_files = [k for k in small if "sub-01" in k]
    assert subject_files and not any("sub-02" in k for k in small)
    full = _files(dataset)
    assert all(filecmp.cmp(small[k], full[k], shallow=False) for k in subject_files)


def test_refuses_non_empty_output(dataset, tmp_path, capsys):
    with pytest.raises(SynthUsageError):
        generate_dataset(dataset, 1, 1, SEED, RES)
    assert main([str(dataset), "--subjects", "1", "--resolution", "3"]) == EX_USAGE
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "x"), "--subjects", "many"])
    assert exit_info.value.code == EX_USAGE
    assert not list(tmp_path.glob(".*partial*"))


def test_bids_layout_indexes_raw_and_truth(dataset):
    bids = pytest.importorskip("bids")
    raw = bids.BIDSLayout(dataset)
    assert raw.get_subjects() == ["01", "02"]
    assert raw.get_sessions() == ["1", "2"]
    for suffix in ("T1w", "FLAIR", "T2w", "T2starw", "dwi"):
        assert len(raw.get(suffix=suffix, extension=".nii.gz")) == SUBJECTS * SESSIONS
    assert len(raw.get(suffix="T2starw", acquisition="swi", extension=".nii.gz")) == 4
    assert len(raw.get(suffix="dwi", extension=".bval")) == SUBJECTS * SESSIONS
    truth = bids.BIDSLayout(
        dataset / "derivatives" / "groundtruth", validate=False, is_derivative=True
    )
    for label in LABELS:
        masks = truth.get(suffix="mask", label=label, space="T1w", extension=".nii.gz")
        assert len(masks) == SUBJECTS * SESSIONS
    assert len(truth.get(suffix="mask", desc="brain", extension=".nii.gz")) == 4
    for segmentation in ("csvd", "regions"):
        found = truth.get(suffix="dseg", segmentation=segmentation, extension=".nii.gz")
        assert len(found) == SUBJECTS * SESSIONS
    assert len(truth.get(suffix="stats", desc="lesions", extension=".tsv")) == 4


def test_dataset_metadata(dataset):
    description = json.loads((dataset / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["BIDSVersion"] == "1.10.0"
    truth = json.loads((dataset / "derivatives/groundtruth/dataset_description.json").read_text())
    assert truth["DatasetType"] == "derivative" and truth["GeneratedBy"]
    participants = pd.read_csv(dataset / "participants.tsv", sep="\t")
    assert list(participants.columns) == [
        "participant_id", "age", "sex", "systolic_bp", "total_cholesterol", "group",
    ]  # fmt: skip
    assert participants["sex"].isin(["M", "F"]).all()
    assert participants["group"].isin(["lacunar_stroke", "control"]).all()
    assert participants["age"].between(50, 85).all()
    sessions = pd.read_csv(dataset / "sub-01" / "sub-01_sessions.tsv", sep="\t")
    assert list(sessions["session_id"]) == ["ses-1", "ses-2"]


def test_grids_share_world_space(dataset):
    t1 = nib.load(dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    assert np.allclose(t1.header.get_zooms(), RES)
    for name in (*MODALITIES[1:], "dwi"):
        kind = "dwi" if name == "dwi" else "anat"
        img = nib.load(dataset / f"sub-01/ses-1/{kind}/sub-01_ses-1_{name}.nii.gz")
        corner = img.affine @ [-0.5, -0.5, -0.5, 1]  # field of view starts at the same corner
        assert np.allclose(corner, t1.affine @ [-0.5, -0.5, -0.5, 1])
    dwi = nib.load(dataset / "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz")
    bvals = (dataset / "sub-01/ses-1/dwi/sub-01_ses-1_dwi.bval").read_text().split()
    assert dwi.shape[3] == len(bvals) >= 4 and bvals[0] == "0"
    for sub, ses, _ in _sessions():
        for label in LABELS:
            mask = nib.load(_truth(dataset, sub, ses, f"label-{label}_mask.nii.gz"))
            assert mask.shape == t1.shape and np.allclose(mask.affine, t1.affine)


def test_truth_masks_match_tables_and_stay_in_brain(dataset):
    planted = set()
    for sub, ses, _ in _sessions():
        brain = _load(_truth(dataset, sub, ses, "desc-brain_mask.nii.gz")) > 0
        table = pd.read_csv(_truth(dataset, sub, ses, "desc-lesions_stats.tsv"), sep="\t")
        assert list(table.columns[:10]) == [
            "lesion_id", "marker", "region", "lobe", "volume_mm3", "max_diameter_mm",
            "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "n_voxels",
        ]  # fmt: skip
        dseg = _load(_truth(dataset, sub, ses, "seg-csvd_dseg.nii.gz"))
        for marker in MARKER_LABELS:
            mask = _load(_truth(dataset, sub, ses, f"label-{marker.label}_mask.nii.gz")) > 0
            rows = table[table["marker"] == marker.label]
            assert mask.sum() == rows["n_voxels"].sum()
            assert label_components(mask)[1] == len(rows)
            assert not (mask & ~brain).any()
            assert (dseg[mask] == marker.index).all()  # masks are disjoint
            if len(rows):
                planted.add(marker.label)
    assert planted == set(LABELS)


def test_lesion_sizes_follow_the_rules(dataset):
    for sub, ses, _ in _sessions():
        ref = nib.load(_truth(dataset, sub, ses, "label-CMB_mask.nii.gz"))
        for label, (low, high) in SIZE_RULES_MM.items():
            mask = _load(_truth(dataset, sub, ses, f"label-{label}_mask.nii.gz")) > 0
            for stat in component_stats(*label_components(mask), ref.affine):
                assert low <= stat.max_diameter_mm <= high, (label, stat)
        pvs = _load(_truth(dataset, sub, ses, "label-PVS_mask.nii.gz")) > 0
        labels, n = label_components(pvs)
        for stat in component_stats(labels, n, ref.affine):
            in_plane = (labels[stat.box] == stat.label).any(axis=2).sum(axis=(0, 1))
            assert in_plane <= 4  # at most 2x2 voxels across: thin at any resolution
            assert stat.max_diameter_mm >= 2 * RES  # elongated


def test_lesions_show_the_expected_contrast(dataset):
    for sub, ses, _ in _sessions():
        masks = {
            label: _load(_truth(dataset, sub, ses, f"label-{label}_mask.nii.gz")) > 0
            for label in LABELS
        }
        lesion = np.any(list(masks.values()), axis=0)
        brain = _load(_truth(dataset, sub, ses, "desc-brain_mask.nii.gz")) > 0
        t1 = _on_t1_grid(dataset, sub, ses, "T1w")
        wm = brain & ~ndi.binary_dilation(lesion, iterations=2) & (t1 > 800)
        flair = _on_t1_grid(dataset, sub, ses, "FLAIR")
        t2 = _on_t1_grid(dataset, sub, ses, "T2w")
        swi = _on_t1_grid(dataset, sub, ses, "acq-swi_T2starw")
        dwi = _on_t1_grid(dataset, sub, ses, "dwi")
        assert flair[masks["WMH"]].mean() > 1.3 * flair[wm].mean()
        assert t1[masks["WMH"]].mean() < t1[wm].mean()
        if masks["CMB"].any():
            ring = ndi.binary_dilation(masks["CMB"], iterations=2) & ~lesion & brain
            assert swi[masks["CMB"]].mean() < 0.5 * swi[ring].mean()
        if masks["PVS"].any():
            assert t2[masks["PVS"]].mean() > t2[wm].mean()
            assert t1[masks["PVS"]].mean() < t1[wm].mean()
        if masks["LAC"].any():
            assert t1[masks["LAC"]].mean() < t1[wm].mean()
            assert t2[masks["LAC"]].mean() > 1.5 * t2[wm].mean()
        if masks["RSSI"].any():
            b1000 = dwi[..., 1:].mean(axis=-1)
            assert b1000[masks["RSSI"]].mean() > 1.5 * b1000[wm].mean()


def test_longitudinal_persistence(dataset):
    for sub in ("01", "02"):
        first, second = (
            {
                label: _load(_truth(dataset, sub, ses, f"label-{label}_mask.nii.gz")) > 0
                for label in LABELS
            }
            for ses in ("1", "2")
        )
        for label in ("WMH", "CMB", "PVS", "LAC"):  # old lesions stay (WMH grow)
            assert not (first[label] & ~second[label]).any()
        assert second["WMH"].sum() >= first["WMH"].sum()
        assert not (first["RSSI"].any() and second["RSSI"].any())


def test_burden_rises_with_age_and_blood_pressure():
    rng = np.random.default_rng(7)
    people = [draw_participant(rng) for _ in range(40)]
    age = np.array([p.age for p in people])
    sbp = np.array([p.systolic_bp for p in people])
    b = np.array([p.burden for p in people])
    design = np.column_stack([np.ones_like(age), (age - age.mean()) / 10, (sbp - sbp.mean()) / 10])
    coef = np.linalg.lstsq(design, b, rcond=None)[0]
    assert coef[1] > 0.3 and coef[2] > 0.2
    assert burden(80.0, 150.0, 0.0) > burden(55.0, 120.0, 0.0)


def test_single_session_has_no_session_level(tmp_path):
    root = generate_dataset(tmp_path / "ds", 1, 1, SEED, RES)
    names = [p.name for p in root.rglob("*") if p.is_file()]
    assert "sub-01_T1w.nii.gz" in names and "sub-01_dwi.bvec" in names
    assert not any("ses-" in name for name in names)
    assert (
        root / "derivatives/groundtruth/sub-01/anat/sub-01_space-T1w_label-WMH_mask.nii.gz"
    ).exists()


REGION_TRUTH = {1: "lateral_ventricles", 5: "basal_ganglia", 6: "thalamus", 9: "brainstem"}
REGION_TRUTH[10] = "cerebellum"


def _anatomy(sub: str):
    """The generator's anatomy of a subject, redrawn from its documented stream."""
    stream = np.random.SeedSequence([SEED, int(sub)]).spawn(5)[1]
    return make_anatomy(np.random.default_rng(stream), RES)


def test_anatomical_truth_files(dataset):
    table = pd.read_csv(dataset / "derivatives/groundtruth/seg-regions_dseg.tsv", sep="\t")
    assert list(table.columns) == ["index", "name"]
    assert dict(zip(table["index"], table["name"], strict=True)) == REGION_TRUTH
    assert all(REGION_LABELS[i] == name for i, name in REGION_TRUTH.items())
    t1 = nib.load(dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    for sub, ses, _ in _sessions():
        for name in ("desc-brain_mask.nii.gz", "seg-regions_dseg.nii.gz"):
            img = nib.load(_truth(dataset, sub, ses, name))
            assert img.get_data_dtype() == np.uint8
            assert img.shape == t1.shape and np.allclose(img.affine, t1.affine)
        regions = _load(_truth(dataset, sub, ses, "seg-regions_dseg.nii.gz"))
        assert set(np.unique(regions)) <= {0, *REGION_TRUTH}
        brain = _load(_truth(dataset, sub, ses, "desc-brain_mask.nii.gz"))
        assert set(np.unique(brain)) == {0, 1}
        assert not (regions[brain == 0]).any()  # structures lie within the brain mask
        if ses == "2":  # one anatomy per subject: every session has the same truth
            first = _truth(dataset, sub, "1", "seg-regions_dseg.nii.gz")
            assert filecmp.cmp(first, _truth(dataset, sub, ses, "seg-regions_dseg.nii.gz"))


@pytest.mark.parametrize("sub", ["01", "02"])
def test_anatomical_truth_follows_the_generated_anatomy(dataset, sub):
    anat = _anatomy(sub)
    brain = _load(_truth(dataset, sub, "1", "desc-brain_mask.nii.gz")) > 0
    regions = _load(_truth(dataset, sub, "1", "seg-regions_dseg.nii.gz"))
    assert np.array_equal(brain, anat.brain_mask)
    assert np.array_equal(regions == 1, anat.ventricles)  # the generator's own ventricles
    # The brain mask is the deformed template's (ICBM152 2009, 1.89 l with sulcal CSF) scaled
    # by at most 7% per axis: larger than a typical adult brain, hence the upper bound.
    litres = brain.sum() * RES**3 / 1e6
    assert 1.4 <= litres <= 2.3, litres
    x = anat.mni[0]
    for index in (5, 6):  # basal ganglia and thalamus: present on both sides of the midline
        voxels = regions == index
        left, right = (voxels & (x < 0)).sum(), (voxels & (x > 0)).sum()
        assert left > 0 and right > 0 and 0.5 < left / right < 2.0, (index, left, right)
        assert (np.abs(x[voxels]) < 40).all()  # deep grey matter, not cortex
    for index in (9, 10):  # infratentorial structures lie below the ventricles
        assert (regions == index).sum() > 0
        assert np.median(anat.mni[2][regions == index]) < -15
    assert np.median(anat.mni[2][regions == 6]) > np.median(anat.mni[2][regions == 9])


def _xfm(root: Path, sub: str, ses: str, modality: str) -> Path:
    folder = root / "derivatives" / "groundtruth" / f"sub-{sub}" / f"ses-{ses}" / "anat"
    return folder / f"sub-{sub}_ses-{ses}_from-{modality}_to-T1w_mode-image_xfm.txt"


def test_misalignment_moves_only_the_affines(dataset, misaligned):
    """Same files as the default run but the moved images' affines, README and truth xfms."""
    plain, moved = _files(dataset), _files(misaligned)
    added = {k for k in moved if k.endswith("_mode-image_xfm.txt")}
    assert len(added) == SUBJECTS * SESSIONS * len(MOVED)
    assert moved.keys() - added == plain.keys()
    changed = {k for k in plain if not filecmp.cmp(plain[k], moved[k], shallow=False)}
    images = {
        f"sub-{sub}/ses-{ses}/{MOVED[m].format(prefix)}.nii.gz"
        for sub, ses, prefix in _sessions()
        for m in MOVED
    }
    assert changed == images | {"README"}
    for name in images:
        before, after = nib.load(plain[name]), nib.load(moved[name])
        assert np.array_equal(np.asarray(before.dataobj), np.asarray(after.dataobj))
        assert not np.allclose(before.affine, after.affine, atol=1e-3)


def test_truth_transform_is_the_affine_change(dataset, misaligned):
    """T1w points sent through the truth transform land where the moved image now puts the
    voxels that the unmoved image had at those points (ITK convention, as the pipeline)."""
    max_rad, max_mm = np.deg2rad(MISALIGN[0]), MISALIGN[1]
    ijk = np.random.default_rng(0).uniform(0, 40, (50, 3))
    for sub, ses, prefix in _sessions():
        for modality, name in MOVED.items():
            path = f"sub-{sub}/ses-{ses}/{name.format(prefix)}.nii.gz"
            before, after = nib.load(dataset / path).affine, nib.load(misaligned / path).affine
            transform = sitk.ReadTransform(str(_xfm(misaligned, sub, ses, modality))).Downcast()
            assert isinstance(transform, sitk.Euler3DTransform)
            angles, translation = np.split(np.array(transform.GetParameters()), 2)
            assert (np.abs(angles) <= max_rad).all() and (np.abs(translation) <= max_mm).all()
            reference = nib.affines.apply_affine(before, ijk)  # T1w world = unmoved world
            sent = [transform.TransformPoint(tuple(p * _LPS)) for p in reference]
            assert np.allclose(
                np.array(sent) * _LPS, nib.affines.apply_affine(after, ijk), atol=1e-3
            )


def test_misalignment_is_deterministic_per_subject(misaligned, tmp_path):
    """Same arguments, same bytes; and a subject's motions do not depend on the cohort size."""
    small = _files(generate_dataset(tmp_path / "ds", 1, SESSIONS, SEED, RES, misalign=MISALIGN))
    full = _files(misaligned)
    assert all(filecmp.cmp(small[k], full[k], shallow=False) for k in small if "sub-01" in k)
    first = _xfm(misaligned, "01", "1", "FLAIR").read_text()
    assert first != _xfm(misaligned, "01", "2", "FLAIR").read_text()  # one motion per session
    assert first != _xfm(misaligned, "01", "1", "T2w").read_text()


@pytest.mark.parametrize("misalign", [(-1.0, 5.0), (10.0, -1.0), (200.0, 5.0), (5.0, np.inf)])
def test_rejects_bad_misalignment(tmp_path, misalign):
    with pytest.raises(SynthUsageError):
        generate_dataset(tmp_path / "ds", 1, 1, SEED, RES, misalign=misalign)


def test_misalign_option_on_the_command_line(tmp_path):
    out = tmp_path / "ds"
    args = [str(out), "--subjects", "1", "--resolution", "4", "--misalign", "5", "2"]
    assert main(args) == 0
    truth = out / "derivatives" / "groundtruth" / "sub-01" / "anat"
    transform = sitk.ReadTransform(str(truth / "sub-01_from-T2starw_to-T1w_mode-image_xfm.txt"))
    assert np.abs(transform.GetParameters()[:3]).max() <= np.deg2rad(5.0)
    assert "+-5.0 degrees" in (out / "README").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "x"), "--misalign", "5"])
    assert exit_info.value.code == EX_USAGE
