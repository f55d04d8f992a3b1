"""The issue's end-to-end check: participant + group on 2 subjects x 2 sessions."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids import BIDSLayout

from csvd_bids import __version__
from csvd_bids.preproc.regions import REGION_LABELS

# These tests read the session-scoped demo run: keeping them on one xdist worker (make test
# uses --dist loadgroup) runs the 2 x 2 demo once instead of once per worker.
pytestmark = pytest.mark.xdist_group("demo_run")


def test_levels_exit_zero(demo_run):
    assert demo_run["participant"] == 0
    assert demo_run["group"] == 0


def test_dataset_description(demo_run):
    description = json.loads((demo_run["out"] / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "csvd-bids"
    assert description["GeneratedBy"][0]["Version"] == __version__
    assert (demo_run["out"] / "seg-csvd_dseg.tsv").read_text().startswith("index\tname")


def test_pybids_indexes_outputs(demo_run):
    layout = BIDSLayout(demo_run["out"], validate=False, is_derivative=True)
    assert sorted(layout.get_subjects()) == ["01", "02"]
    assert sorted(layout.get_sessions()) == ["1", "2"]
    masks = layout.get(label="WMH", suffix="mask", extension=".nii.gz")
    assert len(masks) == 4
    for mask in masks:
        assert mask.entities["space"] == "T1w"
        sidecar = mask.get_metadata()
        assert sidecar["Type"] == "Lesion" and sidecar["Manual"] is False
        assert all(s.startswith("bids:raw:sub-") for s in sidecar["Sources"])
    assert len(layout.get(segmentation="csvd", suffix="dseg", extension=".nii.gz")) == 4
    assert len(layout.get(desc="brain", suffix="mask", extension=".nii.gz")) == 4
    assert len(layout.get(segmentation="regions", suffix="dseg", extension=".nii.gz")) == 4
    for label in ("GM", "WM", "CSF"):
        assert len(layout.get(label=label, suffix="probseg", extension=".nii.gz")) == 4
    adc = layout.get(desc="adc", suffix="dwi", datatype="dwi", extension=".nii.gz")
    assert len(adc) == 4 and adc[0].get_metadata()["Units"] == "1e-6 mm2/s"


def test_regions_and_volumes(demo_run):
    prefix = demo_run["out"] / "sub-02" / "ses-2" / "anat" / "sub-02_ses-2"
    regions = nib.load(f"{prefix}_space-T1w_seg-regions_dseg.nii.gz")
    brain = np.asanyarray(nib.load(f"{prefix}_space-T1w_desc-brain_mask.nii.gz").dataobj) > 0
    labels = np.asanyarray(regions.dataobj)
    assert set(np.unique(labels[brain])) == set(REGION_LABELS)  # every region found
    assert not labels[~brain].any()
    table = pd.read_csv(f"{prefix}_desc-regions_stats.tsv", sep="\t")
    voxel = float(np.prod(regions.header.get_zooms()))
    counts = np.bincount(labels.ravel(), minlength=len(REGION_LABELS) + 1)
    assert np.allclose(table["volume_mm3"], counts[table["index"]] * voxel)
    summary = pd.read_csv(f"{prefix}_desc-summary_stats.tsv", sep="\t").iloc[0]
    assert summary["icv_mm3"] == pytest.approx(brain.sum() * voxel, rel=1e-3)
    assert 0.6 < summary["brain_volume_mm3"] / summary["icv_mm3"] < 0.95
    lookup = pd.read_csv(demo_run["out"] / "seg-regions_dseg.tsv", sep="\t")
    assert dict(zip(lookup["index"], lookup["name"], strict=True)) == REGION_LABELS


def test_group_table(demo_run):
    table = pd.read_csv(demo_run["out"] / "group_csvd.tsv", sep="\t")
    assert list(table.columns[:2]) == ["participant_id", "session_id"]
    assert len(table) == 4
    assert set(table["participant_id"]) == {"sub-01", "sub-02"}
    for marker in ("WMH", "CMB", "PVS", "LAC", "RSSI"):  # every modality is there: all assessed
        assert (table[f"{marker}_status"] == "assessed").all()
        assert (table[f"{marker}_count"] >= 0).all()
    assert (table["WMH_count"] > 0).all()
    for region in ("lobar", "deep", "infratentorial"):  # MARS regions of the CMB
        assert table[f"CMB_{region}_count"].notna().all()
    dictionary = json.loads((demo_run["out"] / "group_csvd.json").read_text())
    assert set(table.columns) <= set(dictionary)


def test_group_joins_participants_and_writes_statistics(demo_run):
    out = demo_run["out"]
    table = pd.read_csv(out / "group_csvd.tsv", sep="\t")
    participants = pd.read_csv(demo_run["bids"] / "participants.tsv", sep="\t")
    joined = table.merge(participants, on="participant_id", suffixes=("", "_bids"))
    assert (joined["age"] == joined["age_bids"]).all()  # every session carries its subject's age
    stats = pd.read_csv(out / "group_stats.tsv", sep="\t")
    notes = json.loads((out / "group_stats.json").read_text())
    assert set(stats["model"]) <= {"logistic", "ordinal_logistic"}
    # two subjects of one group with one score: nothing to model, and the JSON says why
    assert any("skipped" in w or "too few" in w for w in notes["Warnings"])
    assert any("nothing to model" in w or "too few" in w for w in notes["Warnings"])
    change = pd.read_csv(out / "group_change.tsv", sep="\t")
    assert set(change["participant_id"]) == {"sub-01", "sub-02"}
    assert "WMH_volume_mm3_change" in change.columns
    assert (out / "group_descriptives.tsv").is_file()


def test_ratings_and_scores_in_the_summary(demo_run):
    table = pd.read_csv(demo_run["out"] / "group_csvd.tsv", sep="\t")
    assert table["fazekas_pv"].between(0, 3).all() and table["fazekas_deep"].between(0, 3).all()
    assert (table["fazekas_pv"] >= 1).all()  # every planted subject has periventricular WMH
    for region in ("BG", "CSO"):
        assert table[f"PVS_{region}_grade"].between(0, 4).all()
        assert (table[f"PVS_{region}_max_slice_count"] <= table[f"PVS_{region}_count"]).all()
    by_lobe = [c for c in table.columns if c.startswith("CMB_lobar_") and c.endswith("_count")]
    lobes = table[[c for c in by_lobe if c != "CMB_lobar_count"]]
    assert lobes.shape[1] == 6  # five lobes and "unknown"
    assert (lobes.sum(axis=1) == table["CMB_lobar_count"]).all()  # MARS by lobe adds up
    assert table["svd_score"].between(0, 4).all() and table["ha_score"].between(0, 4).all()
    assert table["caa_svd_score"].isna().all()  # siderosis is not segmented: n/a, never 0
    assert (table["caa_svd_score_reason"].str.contains("siderosis")).all()
    wmh = table["WMH_icv_fraction"] * table["icv_mm3"]
    assert np.allclose(wmh, table["WMH_volume_mm3"], atol=2.0)  # the fraction has 6 decimals


def test_lesion_table_matches_mask(demo_run):
    anat = demo_run["out"] / "sub-01" / "ses-1" / "anat"
    table = pd.read_csv(anat / "sub-01_ses-1_desc-lesions_stats.tsv", sep="\t")
    assert set(table["marker"]) <= {"WMH", "CMB", "PVS", "LAC", "RSSI"}
    lesions = table[table["marker"] == "WMH"]
    mask = nib.load(anat / "sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz")
    voxel = abs(np.linalg.det(mask.affine[:3, :3]))
    assert lesions["n_voxels"].sum() == int(np.asanyarray(mask.dataobj).sum())
    assert np.isclose(lesions["volume_mm3"].sum(), lesions["n_voxels"].sum() * voxel)
    assert set(lesions["region"]) <= {"periventricular", "deep"}
    summary = pd.read_csv(anat / "sub-01_ses-1_desc-summary_stats.tsv", sep="\t")
    assert summary.loc[0, "WMH_count"] == len(lesions)


def test_wmh_matches_planted_truth(demo_run):
    """A real detector: Dice against the generator's truth, at the tests' coarse 3 mm."""
    truth_root = demo_run["bids"] / "derivatives" / "groundtruth"
    for sub, ses in [("01", "1"), ("01", "2"), ("02", "1"), ("02", "2")]:
        name = f"sub-{sub}_ses-{ses}_space-T1w_label-WMH_mask.nii.gz"
        truth = np.asanyarray(nib.load(truth_root / f"sub-{sub}/ses-{ses}/anat" / name).dataobj)
        found = np.asanyarray(
            nib.load(demo_run["out"] / f"sub-{sub}/ses-{ses}/anat" / name).dataobj
        )
        assert truth.shape == found.shape
        dice = 2 * np.logical_and(truth, found).sum() / (truth.sum() + found.sum())
        assert dice > 0.6, (sub, ses, dice)


def test_nothing_written_into_bids_dir(demo_run):
    assert demo_run["bids_after"] == demo_run["bids_before"]


def test_rerun_resumes_from_cache(demo_run):
    """Same work dir: every processing node is found in the cache, nothing is recomputed, and
    outputs deleted since the first run are written again."""
    from csvd_bids.cli.run import main

    deleted = demo_run["out"] / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_desc-regions_stats.tsv"
    deleted.unlink()

    node_dir = (
        demo_run["work"] / "csvd_bids_wf" / "sub_01_ses_1_wf" / "preproc_wf" / "template_priors"
    )
    before = (node_dir / "result_template_priors.pklz").stat().st_mtime_ns
    code = main(
        [
            str(demo_run["bids"]),
            str(demo_run["out"]),
            "participant",
            "-w",
            str(demo_run["work"]),
            "--participant-label",
            "01",
            "--session-label",
            "1",
            "--skip-bids-validation",
        ]
    )
    assert code == 0
    assert (node_dir / "result_template_priors.pklz").stat().st_mtime_ns == before
    assert deleted.is_file()


def test_qc_mosaics_and_coregistration_outputs(demo_run):
    subject = demo_run["out"] / "sub-01"
    for session in ("1", "2"):
        prefix = f"sub-01_ses-{session}"
        figures = {p.name for p in (subject / "figures").glob(f"{prefix}_*.png")}
        assert f"{prefix}_desc-brainmask_T1w.png" in figures
        assert {f"{prefix}_desc-coreg{m}_T1w.png" for m in ("FLAIR", "T2w", "T2starw")} <= figures
        assert f"{prefix}_desc-WMH_FLAIR.png" in figures
        anat = subject / f"ses-{session}" / "anat"
        for modality in ("FLAIR", "T2w", "T2starw"):
            assert (anat / f"{prefix}_from-{modality}_to-T1w_mode-image_xfm.txt").is_file()
        assert f"{prefix}_desc-regions_T1w.png" in figures
        assert f"{prefix}_desc-coregdwi_T1w.png" in figures
        dwi = subject / f"ses-{session}" / "dwi"
        for desc in ("b0", "trace", "adc"):
            assert (dwi / f"{prefix}_space-T1w_desc-{desc}_dwi.nii.gz").is_file()
        assert (dwi / f"{prefix}_from-dwi_to-T1w_mode-image_xfm.txt").is_file()
        sidecar = json.loads((anat / f"{prefix}_space-T1w_desc-preproc_FLAIR.json").read_text())
        registration = sidecar["Registration"]
        assert registration["MutualInformationAfter"] <= registration["MutualInformationBefore"]
