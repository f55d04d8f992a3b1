"""Tests of the synthetic dataset generator (fast: 3 mm grid, two subjects, two sessions; the
clinical profile on a 2 mm grid, where its slabs can be 6 or 8 mm)."""

from __future__ import annotations

import dataclasses
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
from csvd_bids.synth.contrasts import AcqGrid, occupied, thick_slice_grid, to_grid
from csvd_bids.synth.lesions import plan_lesions
from csvd_bids.synth.measure import component_stats, label_components
from csvd_bids.synth.participants import (
    CAPS,
    CLINICAL_WMH_ML,
    LesionLoad,
    burden,
    draw_load,
    draw_participant,
)
from csvd_bids.synth.regions import make_regions
from csvd_bids.synth.truth import block_majority

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("synth_dataset")

SEED, SUBJECTS, SESSIONS, RES = 0, 2, 2, 3.0  # seed 0 plants all five markers at 3 mm
SIZE_RULES_MM = {"CMB": (2.0, 10.0), "LAC": (3.0, 15.0), "RSSI": (0.0, 20.0)}
LABELS = [m.label for m in MARKER_LABELS]
MODALITIES = ("T1w", "FLAIR", "T2w", "acq-swi_T2starw")
MISALIGN = (20.0, 20.0)
MOVED = {"FLAIR": "anat/{}_FLAIR", "T2w": "anat/{}_T2w", "T2starw": "anat/{}_acq-swi_T2starw"}
MOVED["dwi"] = "dwi/{}_dwi"
MOVED["asl"] = "perf/{}_asl"  # with its M0 scan (same grid, no transform of its own)
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
    """... and the research profile is the default (the fixture names none)."""
    small = _files(generate_dataset(tmp_path / "one", 1, SESSIONS, SEED, RES, profile="research"))
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


def test_recent_infarcts_stay_out_of_the_cortex():
    """An RSSI is subcortical: planted around a basal-ganglia, thalamic or periventricular
    centre, its body never reaches cortical grey matter (it did in 19 of 40 draws when any
    tissue was allowed, up to 95 of 171 voxels)."""
    anat = make_anatomy(np.random.default_rng(3), 2.0)
    regions = make_regions(anat)
    caps = dict.fromkeys(CAPS, 0)
    load = LesionLoad(2.0, {k: 0.0 for k in CAPS}, caps, rssi_session=0)
    infarcts = [
        x
        for seed in range(10)
        for x in plan_lesions(np.random.default_rng(seed), anat, regions, load, 1)
        if x.marker == "RSSI"
    ]
    assert len(infarcts) == 10
    assert not any(regions.cortex.flat[x.index].any() for x in infarcts)


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
    images |= {
        f"sub-{sub}/ses-{ses}/perf/{prefix}_m0scan.nii.gz" for sub, ses, prefix in _sessions()
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


# --- the clinical profile -------------------------------------------------------------------

CLINICAL_RES = 2.0  # slabs of 3 or 4 voxels: 6 or 8 mm
BRAIN_TRUTHS = ("desc-brain_mask", "seg-csvd_dseg", "seg-regions_dseg")


@pytest.fixture(scope="module")
def clinical(tmp_path_factory) -> Path:
    """Made through the command line, which must pass the profile on."""
    root = tmp_path_factory.mktemp("c") / "ds"
    args = ["--subjects", "2", "--sessions", "2", "--seed", str(SEED)]
    assert main([str(root), *args, "--resolution", str(CLINICAL_RES), "--profile", "clinical"]) == 0
    return root


def _clinical_truth(root: Path, sub: str, ses: str, name: str) -> Path:
    anat = root / "derivatives" / "groundtruth" / f"sub-{sub}" / f"ses-{ses}" / "anat"
    return anat / f"sub-{sub}_ses-{ses}_space-FLAIR_{name}"


def _flair(root: Path, sub: str, ses: str) -> Path:
    return root / f"sub-{sub}" / f"ses-{ses}" / "anat" / f"sub-{sub}_ses-{ses}_FLAIR.nii.gz"


def test_clinical_sessions_are_a_skull_stripped_thick_slice_flair(clinical):
    raw = {k for k in _files(clinical) if k.startswith("sub-") and "sessions" not in k}
    assert raw == {
        f"sub-{sub}/ses-{ses}/anat/{prefix}_FLAIR.{ext}"
        for sub, ses, prefix in _sessions()
        for ext in ("nii.gz", "json")
    }
    for sub, ses, _ in _sessions():
        img = nib.load(_flair(clinical, sub, ses))
        zooms = img.header.get_zooms()
        assert np.allclose(zooms[:2], CLINICAL_RES) and 5.0 <= zooms[2] <= 8.0
        sidecar = json.loads(
            _flair(clinical, sub, ses).with_suffix("").with_suffix(".json").read_text()
        )
        assert sidecar["SliceThickness"] == pytest.approx(zooms[2])
        flair = np.asarray(img.dataobj)
        brain = _load(_clinical_truth(clinical, sub, ses, "desc-brain_mask.nii.gz")) > 0
        assert brain.shape == flair.shape and brain.sum() > 1000
        assert not flair[~brain].any()  # skull, scalp and noise outside the brain are gone
        assert (flair[brain] > 0).mean() > 0.99


def test_clinical_truth_is_on_the_flair_grid(clinical):
    for sub, ses, _ in _sessions():
        flair = nib.load(_flair(clinical, sub, ses))
        names = [f"label-{label}_mask" for label in LABELS] + list(BRAIN_TRUTHS)
        for name in names:
            img = nib.load(_clinical_truth(clinical, sub, ses, f"{name}.nii.gz"))
            assert img.shape == flair.shape and np.allclose(img.affine, flair.affine), name
        brain = _load(_clinical_truth(clinical, sub, ses, "desc-brain_mask.nii.gz")) > 0
        regions = _load(_clinical_truth(clinical, sub, ses, "seg-regions_dseg.nii.gz"))
        assert (regions == 1).any() and not regions[~brain].any()
        table = pd.read_csv(_clinical_truth(clinical, sub, ses, "desc-lesions_stats.tsv"), sep="\t")
        dseg = _load(_clinical_truth(clinical, sub, ses, "seg-csvd_dseg.nii.gz"))
        voxel_mm3 = float(np.prod(flair.header.get_zooms()))
        for marker in MARKER_LABELS:
            mask = _load(_clinical_truth(clinical, sub, ses, f"label-{marker.label}_mask.nii.gz"))
            rows = table[table["marker"] == marker.label]
            assert mask.sum() == rows["n_voxels"].sum()
            assert rows["volume_mm3"].to_numpy() == pytest.approx(rows["n_voxels"] * voxel_mm3)
            assert not (mask.astype(bool) & ~brain).any()
            assert (dseg[mask > 0] == marker.index).all()
        wmh = _load(_clinical_truth(clinical, sub, ses, "label-WMH_mask.nii.gz")) > 0
        flair_data = np.asarray(flair.dataobj, dtype=np.float32)
        assert flair_data[wmh].mean() > 1.3 * np.median(flair_data[brain & ~wmh])


def test_clinical_readme_and_refusals(clinical, tmp_path):
    assert "clinical profile" in (clinical / "README").read_text()
    with pytest.raises(SynthUsageError, match="profile"):
        generate_dataset(tmp_path / "x", 1, 1, SEED, RES, profile="hospital")
    with pytest.raises(SynthUsageError, match="T1w"):
        generate_dataset(tmp_path / "x", 1, 1, SEED, RES, misalign=(5.0, 5.0), profile="clinical")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "x"), "--profile", "hospital"])
    assert exit_info.value.code == EX_USAGE


@pytest.mark.parametrize("resolution", [1.0, 1.5, 2.0, 2.5, 3.0, 4.0])
def test_thick_slices_are_5_to_8_mm(resolution):
    shape, affine = (40, 40, 40), np.diag([resolution] * 3 + [1.0])
    for thickness in np.linspace(5.0, 8.0, 13):
        grid = thick_slice_grid(shape, affine, resolution, thickness, (5.0, 8.0))
        assert grid.factors[:2] == (1, 1) and grid.factors[2] >= 2
        assert 5.0 <= grid.factors[2] * resolution <= 8.0
        assert abs(np.linalg.norm(grid.affine[:3, 2]) - grid.factors[2] * resolution) < 1e-9
        if resolution == 1.0:
            assert grid.factors[2] == round(thickness)


def test_truth_voxels_are_at_least_half_filled():
    grid = AcqGrid((1, 1, 4), (1, 1, 2), np.eye(4))
    mask = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool).reshape(1, 1, 8)
    assert occupied(mask, grid).ravel().tolist() == [True, False]
    labels = np.array([5, 5, 0, 0, 6, 0, 0, 1], dtype=np.uint8).reshape(1, 1, 8)
    assert block_majority(labels, grid).ravel().tolist() == [5, 0]  # tie -> the structure


def test_clinical_wmh_volumes_span_light_to_confluent():
    """A third each of light, moderate and heavy (80-150 ml) burdens; the other draws are the
    research profile's."""
    rng = np.random.default_rng(3)
    loads = [draw_load(rng, draw_participant(rng), 1, clinical=True) for _ in range(600)]
    volumes = np.array([load.wmh_ml for load in loads])
    assert volumes.min() >= 0.5 and volumes.max() <= 150.0
    thirds = [np.mean((volumes >= a) & (volumes < b)) for a, b in CLINICAL_WMH_ML]
    assert all(0.27 < share < 0.4 for share in thirds), thirds
    person = draw_participant(np.random.default_rng(4))
    research, clinic = (draw_load(np.random.default_rng(5), person, 2, c) for c in (False, True))
    assert research.counts == clinic.counts and research.rssi_session == clinic.rssi_session


def _planted_wmh(sub: str, wmh_ml: float):
    """(anatomy, regions, WMH mask) of a subject planted with a forced clinical WMH volume."""
    anat = _anatomy(sub)
    regions = make_regions(anat)
    person = draw_participant(np.random.default_rng(int(sub)))
    rng = np.random.default_rng(int(sub) + 100)
    load = dataclasses.replace(draw_load(rng, person, 1, clinical=True), wmh_ml=wmh_ml)
    lesions = plan_lesions(rng, anat, regions, load, 1, confluent_wmh=True)
    mask = np.zeros(anat.shape, dtype=bool)
    for lesion in lesions:
        if lesion.marker == "WMH":
            mask.flat[lesion.index] = True
    return anat, regions, mask


@pytest.mark.parametrize(("sub", "wmh_ml"), [("01", 130.0), ("02", 130.0), ("01", 350.0)])
def test_heavy_clinical_wmh_fill_the_drawn_volume_and_are_confluent(sub, wmh_ml):
    """350 ml (150 ml grown over four later sessions) is more than the WM within 25 mm of the
    ventricles holds: the halo must reach further."""
    anat, regions, wmh = _planted_wmh(sub, wmh_ml)
    assert wmh.sum() * RES**3 / 1000 == pytest.approx(wmh_ml, rel=0.1)
    labels, _ = label_components(wmh)
    assert np.bincount(labels[wmh]).max() >= 0.8 * wmh.sum()  # one confluent region
    near = regions.wm & (anat.dist_ventricles <= 20.0)
    assert (wmh & near).sum() >= 0.4 * near.sum()  # it replaces most periventricular WM


@pytest.mark.parametrize("sub", ["01", "02"])
def test_clinical_wmh_line_the_ventricles_two_voxels_thick(sub):
    """A lining one voxel thick would average away in thick slices: nearly every WMH voxel
    next to the ventricles has a WMH voxel behind it (not where grey matter is behind)."""
    anat, _, wmh = _planted_wmh(sub, 25.0)
    wall = wmh & (anat.dist_ventricles <= 1.5 * RES)
    behind = wmh & (anat.dist_ventricles > 1.5 * RES)
    backed = wall & ndi.binary_dilation(behind, np.ones((3, 3, 3), dtype=bool))
    assert wall.sum() > 50 and backed.sum() >= 0.85 * wall.sum()


# --- DWI tensors and PCASL (csvd_bids.synth.diffusion, csvd_bids.synth.asl) ---------------------
# The rules as the issue states them, written here independently of the generator's code.
ALSOP = {"alpha": 0.85, "lambda": 0.9, "t1b": 1.65}  # 3 T
PLANTED_MD = {"wm": 0.75, "gm": 0.85}  # 1e-3 mm2/s: the ADCs before tensors
PLANTED_CBF = {"gm": 60.0, "wm": 22.0, "csf": 0.0}  # mL/100 g/min
PD = {"gm": 0.85, "wm": 0.70, "csf": 1.0}


def _subject_anatomy(seed: int, subject: int):
    """A subject's anatomy from the generator's documented streams (anatomy second of five)."""
    stream = np.random.SeedSequence([seed, subject]).spawn(5)[1]
    return make_anatomy(np.random.default_rng(stream), RES)


def _tensor_fit(dwi: np.ndarray, bvecs: np.ndarray, bval: float) -> tuple[np.ndarray, ...]:
    """(MD in 1e-3 mm2/s, FA) per voxel of (n, volumes) data, b0 first: least squares of the
    log signal on the b-matrix."""
    g = bvecs[1:]
    design = bval * np.column_stack(
        [g[:, 0] ** 2, g[:, 1] ** 2, g[:, 2] ** 2, 2 * g[:, 0] * g[:, 1],
         2 * g[:, 0] * g[:, 2], 2 * g[:, 1] * g[:, 2]]
    )  # fmt: skip
    y = -np.log(np.maximum(dwi[:, 1:], 1.0) / np.maximum(dwi[:, :1], 1.0))
    d = np.linalg.lstsq(design, y.T, rcond=None)[0].T
    tensors = d[:, [0, 3, 4, 3, 1, 5, 4, 5, 2]].reshape(-1, 3, 3)
    eig = np.linalg.eigvalsh(tensors)
    md = eig.mean(axis=1)
    fa = np.sqrt(1.5 * ((eig - md[:, None]) ** 2).sum(1) / (eig**2).sum(1))
    return md * 1e3, fa


def _perf(root: Path, sub: str, ses: str, suffix: str) -> Path:
    return root / f"sub-{sub}" / f"ses-{ses}" / "perf" / f"sub-{sub}_ses-{ses}_{suffix}"


def _tissue_truth(root: Path, sub: str, ses: str) -> dict:
    name = f"sub-{sub}_ses-{ses}_desc-tissue_stats.json"
    return json.loads(_truth(root, sub, ses, "x").with_name(name).read_text())


def test_dwi_directions_are_many_spread_and_balanced(dataset):
    folder = dataset / "sub-01" / "ses-1" / "dwi"
    bvals = np.array((folder / "sub-01_ses-1_dwi.bval").read_text().split(), dtype=float)
    bvecs = np.loadtxt(folder / "sub-01_ses-1_dwi.bvec").T
    assert bvals[0] == 0 and (bvals[1:] == 1000).all() and len(bvals) >= 31
    g = bvecs[1:]
    assert np.allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-5)
    cosines = np.abs(g @ g.T)[~np.eye(len(g), dtype=bool)]
    assert np.degrees(np.arccos(cosines.max())) > 20.0  # antipodally unique and spread
    assert np.allclose(g.T @ g / len(g), np.eye(3) / 3, atol=1e-5)  # ADC = MD for any tensor
    assert nib.load(folder / "sub-01_ses-1_dwi.nii.gz").shape[3] == len(bvals)


def test_dwi_tensor_fit_gives_the_planted_md_and_fa(dataset):
    anat = _subject_anatomy(SEED, 1)
    folder = dataset / "sub-01" / "ses-1" / "dwi"
    dwi = np.asarray(nib.load(folder / "sub-01_ses-1_dwi.nii.gz").dataobj, dtype=np.float64)
    bvecs = np.loadtxt(folder / "sub-01_ses-1_dwi.bvec").T
    lesions = _load(_truth(dataset, "01", "1", "seg-csvd_dseg.nii.gz")) > 0
    regions = _load(_truth(dataset, "01", "1", "seg-regions_dseg.nii.gz"))
    outside_bg = ~lesions & (regions != 5)
    fit = {}
    for name in ("wm", "gm"):
        pure = (getattr(anat, name) > 0.95) & outside_bg
        assert pure.sum() > 50, name
        md, fa = _tensor_fit(dwi[pure], bvecs, 1000.0)
        fit[name] = (float(np.median(md)), float(np.median(fa)))
        assert abs(fit[name][0] / PLANTED_MD[name] - 1) < 0.05, (name, fit[name])
    assert 0.42 < fit["wm"][1] < 0.58 and 0.08 < fit["gm"][1] < 0.22, fit
    # the trace (geometric mean of the directions) gives the ADC the pipeline computes
    pure = (anat.wm > 0.95) & outside_bg
    adc = np.log(dwi[pure][:, 0] / np.exp(np.log(dwi[pure][:, 1:]).mean(axis=1))) / 1000.0
    assert abs(np.median(adc) * 1e3 / PLANTED_MD["wm"] - 1) < 0.05


def test_asl_files_follow_bids(dataset):
    for sub, ses, prefix in _sessions():
        series = nib.load(_perf(dataset, sub, ses, "asl.nii.gz"))
        m0 = nib.load(_perf(dataset, sub, ses, "m0scan.nii.gz"))
        context = pd.read_csv(_perf(dataset, sub, ses, "aslcontext.tsv"), sep="\t")
        assert list(context.columns) == ["volume_type"]
        assert len(context) == series.shape[3] >= 16 and series.ndim == 4 and m0.ndim == 3
        assert list(context["volume_type"]) == ["control", "label"] * (len(context) // 2)
        assert series.shape[:3] == m0.shape and np.allclose(series.affine, m0.affine)
        assert 2.5 <= series.header.get_zooms()[0] <= 3.5
        sidecar = json.loads(_perf(dataset, sub, ses, "asl.json").read_text())
        assert sidecar["ArterialSpinLabelingType"] == "PCASL" and sidecar["M0Type"] == "Separate"
        assert sidecar["BackgroundSuppression"] is False
        assert sidecar["TotalAcquiredPairs"] == len(context) // 2
        for key in ("PostLabelingDelay", "LabelingDuration", "RepetitionTimePreparation"):
            assert sidecar[key] > 0, key
        for key in ("MagneticFieldStrength", "MRAcquisitionType", "EchoTime"):
            assert key in sidecar, key
        m0_sidecar = json.loads(_perf(dataset, sub, ses, "m0scan.json").read_text())
        assert m0_sidecar["RepetitionTimePreparation"] > 0 and "EchoTime" in m0_sidecar
        assert m0_sidecar["IntendedFor"] == f"bids::sub-{sub}/ses-{ses}/perf/{prefix}_asl.nii.gz"


def test_asl_inverted_with_alsop_gives_the_planted_cbf(dataset):
    """deltaM / M0 through Alsop et al. 2015's formula, regressed on the tissue fractions
    (voxel CBF is the M0-weighted mean of its tissues'), away from lesions and basal ganglia."""
    anat = _subject_anatomy(SEED, 1)
    sidecar = json.loads(_perf(dataset, "01", "1", "asl.json").read_text())
    series = np.asarray(nib.load(_perf(dataset, "01", "1", "asl.nii.gz")).dataobj, np.float64)
    m0 = np.asarray(nib.load(_perf(dataset, "01", "1", "m0scan.nii.gz")).dataobj, np.float64)
    kind = pd.read_csv(_perf(dataset, "01", "1", "aslcontext.tsv"), sep="\t")["volume_type"]
    delta = series[..., (kind == "control").to_numpy()].mean(-1)
    delta -= series[..., (kind == "label").to_numpy()].mean(-1)
    t1b, tau, pld = ALSOP["t1b"], sidecar["LabelingDuration"], sidecar["PostLabelingDelay"]
    scale = 6000 * ALSOP["lambda"] * np.exp(pld / t1b)
    scale /= 2 * ALSOP["alpha"] * t1b * (1 - np.exp(-tau / t1b))
    zooms = nib.load(_perf(dataset, "01", "1", "m0scan.nii.gz")).header.get_zooms()
    grid = AcqGrid(tuple(round(z / RES) for z in zooms), m0.shape, np.eye(4))
    fractions = {name: to_grid(getattr(anat, name), grid) for name in PD}
    lesions = _load(_truth(dataset, "01", "1", "seg-csvd_dseg.nii.gz")) > 0
    regions = _load(_truth(dataset, "01", "1", "seg-regions_dseg.nii.gz")) == 5
    clean = (to_grid(lesions.astype(np.float32), grid) == 0) & (to_grid(regions, grid) == 0)
    brain = clean & (to_grid(anat.brain_mask, grid) == 1) & (m0 > 500)
    weights = np.column_stack([fractions[n][brain] * PD[n] for n in PD])
    cbf = scale * delta[brain] / m0[brain]
    fitted = np.linalg.lstsq(weights, cbf * weights.sum(1), rcond=None)[0]
    got = dict(zip(PD, fitted, strict=True))
    assert abs(got["gm"] / PLANTED_CBF["gm"] - 1) < 0.05, got
    assert abs(got["wm"] / PLANTED_CBF["wm"] - 1) < 0.08, got
    assert abs(got["csf"]) < 5.0, got


def test_truth_records_the_basal_ganglia_effects_of_the_burden(dataset):
    rows = []
    for sub, ses, _ in _sessions():
        truth = _tissue_truth(dataset, sub, ses)
        dwi, asl = truth["DWI"], truth["ASL"]
        severity = 1 / (1 + np.exp(-truth["LatentBurden"]))
        assert truth["Severity"] == pytest.approx(severity, abs=1e-5)
        assert dwi["Tissues"]["WM"]["FA"] == pytest.approx(0.5) and dwi["Tissues"]["CSF"]["FA"] == 0
        assert dwi["Tissues"]["GM"]["MD"] == 0.85 and dwi["Lesions"]["RSSI"]["MD"] == 0.35
        assert dwi["Lesions"]["WMH"]["FA"] < dwi["Tissues"]["WM"]["FA"]
        assert asl["Tissues"]["GM"]["CBF"] == 60 and asl["Tissues"]["WM"]["CBF"] == 22
        fa_factor = 1 - dwi["BasalGangliaFAStrength"] * severity
        cbf_factor = 1 - asl["BasalGangliaCBFStrength"] * severity
        assert dwi["BasalGangliaFAFactor"] == pytest.approx(fa_factor, abs=1e-5)
        assert asl["BasalGangliaCBFFactor"] == pytest.approx(cbf_factor, abs=1e-5)
        assert dwi["BasalGanglia"]["GM"]["FA"] == pytest.approx(0.15 * fa_factor, abs=1e-5)
        assert asl["BasalGanglia"]["GM"]["CBF"] == pytest.approx(60 * cbf_factor, abs=1e-4)
        assert 0 < asl["BasalGangliaMeanCBF"] < 60 * cbf_factor
        rows.append((truth["LatentBurden"], fa_factor, cbf_factor))
    burden, fa, cbf = np.array(rows).T
    assert len(set(burden)) == SUBJECTS  # per subject, the same in its sessions
    order = np.argsort(burden)
    assert (np.diff(fa[order]) <= 0).all() and (np.diff(cbf[order]) <= 0).all()
    assert np.ptp(fa) > 0 and np.ptp(cbf) > 0


def test_basal_ganglia_effects_show_in_the_images():
    """Noise-free: the ASL deltaM and the DWI FA of the basal ganglia fall with severity."""
    from csvd_bids.synth import asl, diffusion
    from csvd_bids.synth.truth import region_truth

    anat = make_anatomy(np.random.default_rng(4), 4.0)
    bg = region_truth(anat) == 5
    grid = AcqGrid((1, 1, 1), anat.shape, anat.affine)
    lighter, heavier = (asl.base_images(anat, bg, asl.severity_factor(s)) for s in (0.2, 0.9))
    assert (lighter["M0"] == heavier["M0"]).all()
    assert heavier["deltaM"][bg].sum() < lighter["deltaM"][bg].sum()
    assert (heavier["deltaM"][~bg] == lighter["deltaM"][~bg]).all()
    g = np.vstack([np.zeros(3), diffusion.DIRECTIONS])
    pure_gm = bg & (anat.gm > 0.95)
    fas = []
    for latent in (-2.0, 3.0):
        model = diffusion.DiffusionModel.make(anat, bg, latent)
        b0 = anat.gm * 750.0 + anat.wm * 600.0 + anat.csf * 1400.0  # the b0 intensities
        data = np.concatenate([b0[pure_gm][:, None], model.render([], grid)[pure_gm]], 1)
        fas.append(float(np.median(_tensor_fit(data, g, 1000.0)[1])))
        expected = 0.15 * (1 - diffusion.BG_FA_STRENGTH / (1 + np.exp(-latent)))
        assert fas[-1] == pytest.approx(expected, rel=0.1)
    assert fas[1] < fas[0]


def test_clinical_sessions_have_no_asl(tmp_path):
    root = generate_dataset(tmp_path / "c", 1, 1, SEED, 4.0, profile="clinical")
    assert not list(root.rglob("*perf*")) and not list(root.rglob("*desc-tissue_stats*"))
