"""Input discovery on tiny BIDS trees written here: selection, SWI naming, runs, filters, gaps."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csvd_bids.bids.discovery import (
    DEFAULT_QUERIES,
    MODALITIES,
    discover_sessions,
    load_layout,
    merge_queries,
)
from csvd_bids.config import ALL_MARKERS
from csvd_bids.errors import InputImageError, NoSelectionError, UsageError
from csvd_bids.markers import REGISTRY
from csvd_bids.planning import make_plan, marker_statuses


def _write_nifti(path: Path, shape: tuple[int, ...] = (8, 8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(len(path.name)).random(shape, dtype=np.float32) + 1.0
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def _dataset(root: Path, files: dict[str, tuple[int, ...]] | list[str]) -> Path:
    """A BIDS root with dataset_description.json and the named NIfTI files (name -> shape)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "discovery test", "BIDSVersion": "1.10.0"})
    )
    shapes = files if isinstance(files, dict) else dict.fromkeys(files, (8, 8, 8))
    for relative, shape in shapes.items():
        _write_nifti(root / relative, shape)
    return root


def _anat(subject: str, session: str | None, name: str) -> str:
    """``sub-01/ses-1/anat/sub-01_ses-1_<name>`` (no session folder when session is None)."""
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    folder = f"sub-{subject}" + (f"/ses-{session}" if session else "")
    return f"{folder}/anat/{prefix}_{name}"


def _discover(root: Path, **kwargs):
    return discover_sessions(load_layout(root), **kwargs)


def _one(root: Path, **kwargs):
    sessions = _discover(root, **kwargs)
    assert len(sessions) == 1
    return sessions[0]


def _name(path: str) -> str:
    return Path(path).name


@pytest.fixture
def longitudinal(tmp_path) -> Path:
    """sub-01 with sessions 1 and 2, sub-02 with session 1; T1w and FLAIR each."""
    files = []
    for subject, session in (("01", "1"), ("01", "2"), ("02", "1")):
        files += [_anat(subject, session, "T1w.nii.gz"), _anat(subject, session, "FLAIR.nii.gz")]
    return _dataset(tmp_path / "bids", files)


# --- subjects, sessions and the label options ---


def test_bids_database_dir_keeps_the_index(longitudinal, tmp_path):
    """--bids-database-dir: the index is written there (not into bids_dir) and reused."""
    database = tmp_path / "bids_db"
    first = load_layout(longitudinal, database)
    assert any(database.iterdir())
    assert not [p for p in longitudinal.rglob("*.sqlite")]
    reused = load_layout(longitudinal, database)
    assert sorted(reused.get_subjects()) == sorted(first.get_subjects()) == ["01", "02"]
    assert len(discover_sessions(reused)) == 3


def test_subjects_and_sessions_found(longitudinal):
    sessions = _discover(longitudinal)
    assert [s.prefix for s in sessions] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    for inputs in sessions:
        assert set(inputs.files) == {"t1w", "flair"}
        assert _name(inputs.files["t1w"]) == f"{inputs.prefix}_T1w.nii.gz"
        assert _name(inputs.files["flair"]) == f"{inputs.prefix}_FLAIR.nii.gz"
        assert inputs.reference == "t1w"


def test_sessionless_dataset(tmp_path):
    root = _dataset(tmp_path / "bids", [_anat("01", None, "FLAIR.nii.gz")])
    inputs = _one(root)
    assert inputs.session is None and inputs.prefix == "sub-01"
    assert inputs.reference == "flair"  # no T1w: FLAIR is the reference


def test_participant_label_selects(longitudinal):
    sessions = _discover(longitudinal, participant_labels=("02",))
    assert [s.prefix for s in sessions] == ["sub-02_ses-1"]


def test_session_label_selects(longitudinal):
    sessions = _discover(longitudinal, session_labels=("2",))
    assert [s.prefix for s in sessions] == ["sub-01_ses-2"]
    both = _discover(longitudinal, participant_labels=("01",), session_labels=("1",))
    assert [s.prefix for s in both] == ["sub-01_ses-1"]


def test_unknown_participant_label_is_named(longitudinal):
    with pytest.raises(NoSelectionError, match="sub-99") as exc:
        _discover(longitudinal, participant_labels=("01", "99"))
    assert "sub-01" in str(exc.value)  # the available labels are listed too
    assert exc.value.exit_code == 18


@pytest.mark.parametrize("labels", [("9",), ("1", "9")])
def test_unknown_session_label_is_named(longitudinal, labels):
    with pytest.raises(NoSelectionError, match="ses-9"):
        _discover(longitudinal, session_labels=labels)


def test_session_label_on_a_sessionless_dataset(tmp_path):
    root = _dataset(tmp_path / "bids", [_anat("01", None, "T1w.nii.gz")])
    with pytest.raises(NoSelectionError, match="ses-1"):
        _discover(root, session_labels=("1",))


def test_labels_that_select_nothing(longitudinal):
    # ses-2 exists, but not for sub-02: the label is named with the sessions that do exist
    with pytest.raises(NoSelectionError, match=r"ses-2 \(available: ses-1\)"):
        _discover(longitudinal, participant_labels=("02",), session_labels=("2",))


def test_filters_that_select_nothing(longitudinal):
    filters = {modality: {"acquisition": "nonexistent"} for modality in MODALITIES}
    with pytest.raises(NoSelectionError, match="selected no images"):
        _discover(longitudinal, filters=filters)


# --- SWI naming ---


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["acq-swi_T2starw.nii.gz", "swi.nii.gz", "T2starw.nii.gz"], "acq-swi_T2starw.nii.gz"),
        (["swi.nii.gz", "T2starw.nii.gz"], "swi.nii.gz"),
        (["T2starw.nii.gz"], "T2starw.nii.gz"),
        (["SWI.nii.gz", "T2starw.nii.gz"], "SWI.nii.gz"),
    ],
)
def test_swi_preference(tmp_path, present, expected):
    files = [_anat("01", "1", "T1w.nii.gz")] + [_anat("01", "1", name) for name in present]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["swi"]) == f"sub-01_ses-1_{expected}"
    # candidates are the files of the winning alternative only
    assert [_name(c) for c in inputs.candidates["swi"]] == [f"sub-01_ses-1_{expected}"]


def test_lowercase_swi_suffix_is_indexed(tmp_path):
    # pybids' own validation (validate=True) drops '_swi' files; load_layout must keep them.
    root = _dataset(
        tmp_path / "bids", [_anat("01", None, "FLAIR.nii.gz"), _anat("01", None, "swi.nii.gz")]
    )
    inputs = _one(root)
    assert _name(inputs.files["swi"]) == "sub-01_swi.nii.gz"


def test_phase_images_are_never_used(tmp_path):
    files = [
        _anat("01", None, "T1w.nii.gz"),
        _anat("01", None, "acq-swi_part-phase_T2starw.nii.gz"),
        _anat("01", None, "acq-swi_part-mag_T2starw.nii.gz"),
    ]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["swi"]) == "sub-01_acq-swi_part-mag_T2starw.nii.gz"
    assert [_name(c) for c in inputs.candidates["swi"]] == [
        "sub-01_acq-swi_part-mag_T2starw.nii.gz"
    ]


def test_phase_only_falls_through_to_the_next_alternative(tmp_path):
    files = [
        _anat("01", None, "T1w.nii.gz"),
        _anat("01", None, "acq-swi_part-phase_T2starw.nii.gz"),
        _anat("01", None, "part-phase_swi.nii.gz"),
        _anat("01", None, "acq-gre_T2starw.nii.gz"),
    ]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["swi"]) == "sub-01_acq-gre_T2starw.nii.gz"


@pytest.mark.parametrize("part", ["phase", "real", "imag"])
def test_no_swi_when_only_unusable_parts_exist(tmp_path, part):
    files = [_anat("01", None, "T1w.nii.gz"), _anat("01", None, f"part-{part}_swi.nii.gz")]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert "swi" not in inputs.files and "swi" not in inputs.candidates
    assert part in inputs.unusable["swi"] and f"part-{part}_swi" in inputs.unusable["swi"]


def test_cmb_says_the_swi_is_phase_only(tmp_path):
    files = [
        _anat("01", None, "T1w.nii.gz"),
        _anat("01", None, "acq-swi_part-phase_T2starw.nii.gz"),
    ]
    plan = make_plan(_one(_dataset(tmp_path / "bids", files)), ALL_MARKERS)
    assert plan["markers"]["cmb"]["assessed"] is False
    assert "only phase images" in plan["markers"]["cmb"]["reason"]
    assert "magnitude" in plan["unusable"]["swi"]


def _with_dwi(root: Path, bval: str | None) -> Path:
    """Adds a 4-volume DWI (and, unless None, this .bval text with a matching .bvec)."""
    dwi = _write_nifti(root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz", (8, 8, 8, 4))
    if bval is not None:
        dwi.with_name("sub-01_dwi.bval").write_text(bval)
        dwi.with_name("sub-01_dwi.bvec").write_text("1 0 0 1\n0 1 0 0\n0 0 1 0\n")
    return root


@pytest.mark.parametrize(
    ("bval", "words"),
    [(None, "no .bval file"), ("0 1000 1000\n", "expected 1 x 4")],
)
def test_dwi_without_usable_b_values_costs_rssi_only(tmp_path, bval, words):
    root = _with_dwi(_dataset(tmp_path / "bids", [_anat("01", None, "FLAIR.nii.gz")]), bval)
    plan = make_plan(_one(root), ALL_MARKERS)
    assert "dwi" not in plan["files"] and "dwi_bval" not in plan
    assert plan["markers"]["wmh"]["assessed"] is True
    assert plan["markers"]["rssi"]["assessed"] is False
    assert words in plan["markers"]["rssi"]["reason"] and words in plan["unusable"]["dwi"]


def test_dwi_with_b_values_is_planned(tmp_path):
    root = _with_dwi(
        _dataset(tmp_path / "bids", [_anat("01", None, "FLAIR.nii.gz")]), "0 1000 1000 1000"
    )
    plan = make_plan(_one(root), ALL_MARKERS)
    assert plan["dwi_bval"].endswith("sub-01_dwi.bval") and plan["unusable"] == {}
    # processed for the markers that use it: RSSI, and WMH (infarcts are not WMH)
    assert "dwi_bval" in make_plan(_one(root), ("wmh",))
    assert "dwi_bval" not in make_plan(_one(root), ("cmb", "pvs", "lacunes"))


# --- several files for one modality ---


def test_highest_run_wins_over_size(tmp_path):
    files = {
        _anat("01", None, "run-1_T1w.nii.gz"): (12, 12, 12),
        _anat("01", None, "run-2_T1w.nii.gz"): (8, 8, 8),
        _anat("01", None, "run-10_T1w.nii.gz"): (8, 8, 8),  # numeric, not string order
    }
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["t1w"]) == "sub-01_run-10_T1w.nii.gz"
    assert sorted(_name(c) for c in inputs.candidates["t1w"]) == sorted(Path(f).name for f in files)


def test_without_runs_most_voxels_wins(tmp_path):
    files = {
        _anat("01", None, "acq-a_T1w.nii.gz"): (10, 10, 10),
        _anat("01", None, "acq-b_T1w.nii.gz"): (8, 8, 8),
    }
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["t1w"]) == "sub-01_acq-a_T1w.nii.gz"
    assert len(inputs.candidates["t1w"]) == 2


def test_without_runs_same_size_last_name_wins(tmp_path):
    files = [
        _anat("01", None, "acq-b_T1w.nii.gz"),
        _anat("01", None, "acq-a_T1w.nii.gz"),
        _anat("01", None, "acq-c_T1w.nii.gz"),
    ]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert _name(inputs.files["t1w"]) == "sub-01_acq-c_T1w.nii.gz"
    assert [_name(c) for c in inputs.candidates["t1w"]] == [
        "sub-01_acq-a_T1w.nii.gz",
        "sub-01_acq-b_T1w.nii.gz",
        "sub-01_acq-c_T1w.nii.gz",
    ]


# --- the filter file ---


def test_merge_queries_merges_into_every_alternative():
    before = json.dumps(DEFAULT_QUERIES, sort_keys=True)
    queries = merge_queries({"swi": {"acquisition": "gre", "run": 2}, "t1w": {"suffix": "T1map"}})
    assert queries["swi"] == [
        {"datatype": "anat", "suffix": "T2starw", "acquisition": "gre", "run": 2},
        {"datatype": "anat", "suffix": ["swi", "SWI"], "acquisition": "gre", "run": 2},
        {"datatype": "anat", "suffix": "T2starw", "acquisition": "gre", "run": 2},
    ]
    assert queries["t1w"] == [{"datatype": "anat", "suffix": "T1map"}]  # the user's key wins
    assert queries["flair"] == DEFAULT_QUERIES["flair"]
    assert json.dumps(DEFAULT_QUERIES, sort_keys=True) == before  # defaults not mutated
    assert merge_queries({}) == DEFAULT_QUERIES


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"pet": {"suffix": "pet"}}, "pet"),
        ({"T1w": {"acquisition": "mprage"}}, "T1w"),
        ({"flair": "FLAIR"}, "flair"),
        ({"t1w": {"session": "1"}}, "--session-label"),
        ({"t1w": {"subject": "01"}}, "--participant-label"),
    ],
)
def test_bad_filters_are_usage_errors(filters, named):
    with pytest.raises(UsageError, match=named) as exc:
        merge_queries(filters)
    assert exc.value.exit_code == 64


def test_unknown_entity_in_filter_is_usage_error(longitudinal):
    with pytest.raises(UsageError, match="acq"):
        _discover(longitudinal, filters={"t1w": {"acq": "mprage"}})


def test_filter_picks_the_file(tmp_path):
    files = {
        _anat("01", None, "acq-mprage_T1w.nii.gz"): (8, 8, 8),
        _anat("01", None, "acq-spc_T1w.nii.gz"): (10, 10, 10),
    }
    root = _dataset(tmp_path / "bids", files)
    assert _name(_one(root).files["t1w"]) == "sub-01_acq-spc_T1w.nii.gz"
    chosen = _one(root, filters={"t1w": {"acquisition": "mprage"}})
    assert _name(chosen.files["t1w"]) == "sub-01_acq-mprage_T1w.nii.gz"
    assert chosen.candidates["t1w"] == [chosen.files["t1w"]]


def test_filter_may_narrow_the_extension(tmp_path):
    root = _dataset(tmp_path / "bids", [_anat("01", None, "acq-a_T1w.nii.gz")])
    _write_nifti(root / _anat("01", None, "acq-b_T1w.nii"))
    assert _name(_one(root).files["t1w"]) == "sub-01_acq-b_T1w.nii"
    narrowed = _one(root, filters={"t1w": {"extension": ".nii.gz"}})
    assert _name(narrowed.files["t1w"]) == "sub-01_acq-a_T1w.nii.gz"


# --- missing modalities and what is not an input ---


def test_marker_statuses_name_the_missing_modality():
    statuses = marker_statuses(["t1w"], ALL_MARKERS)
    assert statuses["wmh"]["assessed"] is False
    assert "flair" in statuses["wmh"]["reason"]
    assert marker_statuses(["t1w", "flair"], ALL_MARKERS)["wmh"] == {
        "assessed": True,
        "reason": "",
    }
    assert marker_statuses(["t1w", "flair"], ("cmb",))["wmh"]["reason"] == (
        "not selected (--markers)"
    )


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_no_marker_is_assessed_without_a_required_modality(key):
    spec = REGISTRY[key]
    for missing in spec.required:
        available = [m for m in MODALITIES if m != missing]
        status = marker_statuses(available, ALL_MARKERS)[key]
        assert status["assessed"] is False
        assert status["reason"]
        if spec.detect is not None:
            assert missing in status["reason"]


def test_make_plan_reports_missing_flair(tmp_path):
    root = _dataset(tmp_path / "bids", [_anat("01", "1", "T1w.nii.gz")])
    plan = make_plan(_one(root), ALL_MARKERS)
    assert plan["reference"] == "t1w" and list(plan["files"]) == ["t1w"]
    assert plan["markers"]["wmh"]["assessed"] is False
    assert "flair" in plan["markers"]["wmh"]["reason"]
    assert not any(status["assessed"] for status in plan["markers"].values())


def test_make_plan_assesses_wmh_with_flair(tmp_path):
    root = _dataset(tmp_path / "bids", [_anat("01", "1", "FLAIR.nii.gz")])
    plan = make_plan(_one(root), ALL_MARKERS)
    assert plan["reference"] == "flair"
    assert plan["markers"]["wmh"] == {
        "assessed": True,
        "reason": "",
        "excludes": ["lacunes"],  # lacunes are left out of WMH; recent infarcts need a DWI
        "not_excluded": {"rssi": "missing modality: dwi"},
    }
    assert plan["detectors"] == ["lacunes", "wmh"]


FOUR_IMAGES = ("T1w.nii.gz", "FLAIR.nii.gz", "T2w.nii.gz", "acq-swi_T2starw.nii.gz")


@pytest.mark.parametrize(
    ("selected", "unread"),
    [
        (ALL_MARKERS, []),
        (("wmh",), ["swi"]),  # the T2w stays: lacunes, which WMH leaves out, read it
        (("cmb",), ["flair", "t2w"]),
        (("pvs",), ["swi"]),
    ],
)
def test_images_no_selected_marker_reads_are_neither_checked_nor_prepared(
    tmp_path, selected, unread
):
    root = _dataset(tmp_path / "bids", [_anat("01", None, name) for name in FOUR_IMAGES])
    plan = make_plan(_one(root), selected)
    assert sorted(plan["unread"]) == unread
    assert sorted(plan["files"]) == sorted({"t1w", "flair", "t2w", "swi"} - set(unread))


def test_a_broken_swi_costs_a_wmh_only_session_nothing(tmp_path):
    """A clinical SWI with a broken header: the session is rejected only where a selected
    marker (or one it leaves out) reads it, with the file named."""
    root = _dataset(tmp_path / "bids", [_anat("01", None, name) for name in FOUR_IMAGES])
    swi = root / _anat("01", None, "acq-swi_T2starw.nii.gz")
    swi.write_bytes(swi.read_bytes()[:100])  # truncated inside its header
    plan = make_plan(_one(root), ("wmh",))
    assert plan["markers"]["wmh"]["assessed"] and plan["unread"] == {"swi": str(swi)}
    with pytest.raises(InputImageError, match="acq-swi_T2starw"):
        make_plan(_one(root), ("wmh", "cmb"))


def test_make_plan_rejects_a_session_without_t1w_or_flair(tmp_path):
    files = [_anat("01", "1", "T2w.nii.gz"), _anat("01", "1", "acq-swi_T2starw.nii.gz")]
    inputs = _one(_dataset(tmp_path / "bids", files))
    assert set(inputs.files) == {"t2w", "swi"} and inputs.reference is None
    with pytest.raises(InputImageError, match="neither a T1w nor a FLAIR") as exc:
        make_plan(inputs, ALL_MARKERS)
    assert "sub-01_ses-1" in str(exc.value)


def test_derivatives_and_sourcedata_are_not_inputs(tmp_path):
    root = _dataset(
        tmp_path / "bids",
        [
            _anat("01", "1", "T1w.nii.gz"),
            "derivatives/other/" + _anat("01", "1", "FLAIR.nii.gz"),
            "derivatives/other/" + _anat("01", "1", "space-T1w_desc-preproc_T1w.nii.gz"),
            "derivatives/other/" + _anat("03", "1", "T1w.nii.gz"),
            "sourcedata/" + _anat("01", "1", "acq-swi_T2starw.nii.gz"),
            "sourcedata/" + _anat("04", "1", "T1w.nii.gz"),
        ],
    )
    (root / "derivatives" / "other" / "dataset_description.json").write_text(
        json.dumps({"Name": "other", "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    )
    sessions = _discover(root)
    assert [s.prefix for s in sessions] == ["sub-01_ses-1"]
    inputs = sessions[0]
    assert list(inputs.files) == ["t1w"]
    assert inputs.files["t1w"] == str(root / _anat("01", "1", "T1w.nii.gz"))
    assert inputs.candidates["t1w"] == [inputs.files["t1w"]]
    with pytest.raises(NoSelectionError, match="sub-03"):
        _discover(root, participant_labels=("03",))


def test_database_dir_is_reused(longitudinal, tmp_path):
    database = tmp_path / "db"
    first = [s.files for s in discover_sessions(load_layout(longitudinal, database))]
    assert database.is_dir() and any(database.iterdir())
    second = [s.files for s in discover_sessions(load_layout(longitudinal, database))]
    assert first == second


def test_wmh_alone_runs_the_lacune_node_and_says_so(tmp_path, caplog):
    root = _dataset(tmp_path / "bids", [_anat("01", "1", "FLAIR.nii.gz")])
    with caplog.at_level("INFO", logger="csvd_bids"):
        plan = make_plan(_one(root), ("wmh",))
    assert plan["detectors"] == ["lacunes", "wmh"]
    assert plan["markers"]["lacunes"]["assessed"] is False  # run for WMH, not written
    assert "lacunes runs so that wmh can leave its lesions out" in caplog.text


@pytest.mark.parametrize(
    "parent", ["plain", "perf", "anat", "dwi", "ses-pilot", "acq-old", "sub-99/ses-1/anat"]
)
def test_folders_above_the_dataset_do_not_change_its_entities(tmp_path, parent):
    """pybids matches entity patterns against absolute paths: a lab folder named like a
    datatype or an entity must not leak into the files' entities."""
    files = [
        _anat("01", None, "T1w.nii.gz"),
        _anat("01", None, "FLAIR.nii.gz"),
        "sub-01/dwi/sub-01_dwi.nii.gz",
    ]
    root = _dataset(tmp_path / parent / "ds", files)
    sessions = _discover(root)
    assert [(s.subject, s.session) for s in sessions] == [("01", None)]
    assert sorted(sessions[0].files) == ["dwi", "flair", "t1w"]
    layout = load_layout(root)
    for f in layout.get(extension=".nii.gz"):
        entities = {k: v for k, v in f.entities.items() if k[0].islower()}
        assert "session" not in entities and "acquisition" not in entities, f.path
        assert entities["subject"] == "01"
        assert entities["datatype"] == Path(f.path).parent.name, f.path


# --- the shipped WMH model as a second opinion on the detector ---


def test_the_shipped_wmh_model_is_planned_beside_the_wmh_detector(tmp_path):
    from csvd_bids.models.builtin import WMH_BUNDLE, second_opinion_bundles
    from csvd_bids.models.bundle import read_bundle
    from csvd_bids.models.second_opinion import THRESHOLD

    second = second_opinion_bundles("detector", True, {})
    assert second["wmh"].path == WMH_BUNDLE
    # at the second opinion's threshold, not the bundle's own, and its description says so
    assert read_bundle(WMH_BUNDLE).metadata["threshold"] > THRESHOLD
    assert f"threshold {THRESHOLD}" in second["wmh"].description
    # not when it is the method, when switched off, or when a bundle replaces the detector
    assert second_opinion_bundles("model", True, {}) == {}
    assert second_opinion_bundles("detector", False, {}) == {}
    assert second_opinion_bundles("detector", True, {"wmh": second["wmh"]}) == {}
    files = [_anat("01", None, "FLAIR.nii.gz"), _anat("01", None, "T1w.nii.gz")]
    inputs = _one(_dataset(tmp_path / "bids", files))
    entry = make_plan(inputs, ALL_MARKERS, second_opinions=second)["markers"]["wmh"]
    assert entry["second_opinion"]["model"] == str(WMH_BUNDLE)
    assert entry["second_opinion"]["model_sha256"] == second["wmh"].metadata["weights_sha256"]
    assert entry["second_opinion"]["threshold"] == THRESHOLD
    assert "model" not in entry  # the detector still makes the mask
    unselected = make_plan(inputs, ("cmb",), second_opinions=second)["markers"]["wmh"]
    assert "second_opinion" not in unselected
    replaced = make_plan(inputs, ALL_MARKERS, second, second_opinions=second)["markers"]["wmh"]
    assert "model" in replaced and "second_opinion" not in replaced
