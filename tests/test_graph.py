"""The session graph: marker-to-marker exclusions as edges (each detector once), the marker
node's contract (size rule once, "not assessed" instead of a lost session, notes), the
marker table behind the label map, and exit codes taken from the exception's class."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import nibabel as nib
import numpy as np
import pytest

from csvd_bids import __version__
from csvd_bids.config import ALL_MARKERS, RunConfig
from csvd_bids.errors import ExitCode
from csvd_bids.interfaces.markers import DetectMarker
from csvd_bids.labels import (
    BY_LABEL,
    MARKER_LABELS,
    MarkerLabel,
    add_marker_label,
    check_marker_table,
    dseg_priority,
    dseg_tsv_text,
    paint_dseg,
)
from csvd_bids.markers import REGISTRY
from csvd_bids.markers.base import (
    Detection,
    MarkerSpec,
    NotAssessableError,
    SessionImages,
    register,
    unregister,
)
from csvd_bids.planning import NOT_SELECTED, detector_order, marker_statuses
from csvd_bids.reports.methods import NUMBERS, cite, methods_paragraph
from csvd_bids.workflows.base import init_csvd_wf, init_session_wf
from csvd_bids.workflows.execute import exception_class, read_crash

SHAPE = (24, 24, 24)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _plan(available: list[str], selected: tuple[str, ...]) -> dict:
    possible = marker_statuses(available, ALL_MARKERS)
    markers = {k: dict(v) if k in selected else dict(NOT_SELECTED) for k, v in possible.items()}
    return {"markers": markers, "detectors": detector_order(markers, possible)}


# --- exclusions are edges of the graph ------------------------------------------------------


def test_wmh_alone_pulls_in_the_markers_it_excludes():
    plan = _plan(["t1w", "flair", "t2w", "dwi"], ("wmh",))
    assert plan["detectors"] == ["lacunes", "rssi", "wmh"]  # dependencies first
    assert plan["markers"]["wmh"]["excludes"] == ["lacunes", "rssi"]
    for key in ("lacunes", "rssi"):  # run for WMH, not written
        assert plan["markers"][key]["assessed"] is False
        assert plan["markers"][key]["needed_by"] == ["wmh"]


def test_an_exclusion_that_cannot_run_is_named_with_its_reason():
    plan = _plan(["t1w", "flair"], ALL_MARKERS)
    assert plan["markers"]["wmh"]["excludes"] == ["lacunes"]
    assert plan["markers"]["wmh"]["not_excluded"] == {"rssi": "missing modality: dwi"}
    assert "rssi" not in plan["detectors"]


def test_markers_without_exclusions_run_alone():
    plan = _plan(["t1w", "flair", "swi"], ("cmb",))
    assert plan["detectors"] == ["cmb"]
    assert "excludes" not in plan["markers"]["cmb"]


def _graph_plan(tmp_path: Path, selected: tuple[str, ...]) -> dict:
    files = {m: str(tmp_path / f"{m}.nii.gz") for m in ("t1w", "flair", "t2w", "swi", "dwi")}
    for path in [*files.values(), tmp_path / "dwi.bval"]:
        Path(path).touch()  # the graph is built, not run: the inputs need only exist
    plan = _plan(list(files), selected)
    return {
        **plan,
        "subject": "01",
        "session": None,
        "reference": "t1w",
        "files": files,
        "unusable": {},
        "dwi_bval": str(tmp_path / "dwi.bval"),
    }


def _detect_nodes(wf) -> dict[str, object]:
    return {
        node.inputs.marker: node
        for node in wf._get_all_nodes()
        if isinstance(node.interface, DetectMarker)
    }


def test_each_detector_is_one_node_and_exclusions_are_edges(tmp_path):
    config = RunConfig(tmp_path / "bids", tmp_path / "out", ("participant",), tmp_path / "w")
    wf = init_session_wf(plan=_graph_plan(tmp_path, ALL_MARKERS), config=config)
    nodes = _detect_nodes(wf)
    assert sorted(nodes) == sorted(ALL_MARKERS)  # one node per marker, no hidden second run
    graph = wf._create_flat_graph()
    flat = {n.inputs.marker: n for n in graph.nodes() if isinstance(n.interface, DetectMarker)}

    def upstream(key: str) -> set[str]:
        ancestors = nx.ancestors(graph, flat[key])
        return {n.inputs.marker for n in ancestors if isinstance(n.interface, DetectMarker)}

    # the WMH node takes the lacune and RSSI nodes' masks; the others depend on no marker
    assert upstream("wmh") == {"lacunes", "rssi"}
    assert all(upstream(key) == set() for key in ALL_MARKERS if key != "wmh")
    assert flat["wmh"].inputs.excluded_keys == ["lacunes", "rssi"]


def test_node_results_live_in_a_folder_of_this_minor_version(tmp_path):
    """nipype caches a node by its inputs alone: results of an older version's code, in a work
    dir reused after an upgrade, must not be handed back (fMRIPrep names its folder alike)."""
    config = RunConfig(tmp_path / "bids", tmp_path / "out", ("participant",), tmp_path / "w")
    wf = init_csvd_wf([_graph_plan(tmp_path, ["wmh"])], config)
    major, minor = __version__.split(".")[:2]
    assert wf.name == f"csvd_bids_{major}_{minor}_wf"
    assert Path(wf.base_dir) == tmp_path / "w"


def test_every_session_reads_the_template_maps_of_one_node_that_starts_the_run(tmp_path):
    config = RunConfig(tmp_path / "bids", tmp_path / "out", ("participant",), tmp_path / "w")
    plans = [_graph_plan(tmp_path, ["wmh"]), {**_graph_plan(tmp_path, ["wmh"]), "subject": "02"}]
    graph = init_csvd_wf(plans, config)._create_flat_graph()
    caches = [n for n in graph.nodes() if n.name == "template_cache"]
    assert len(caches) == 1 and graph.in_degree(caches[0]) == 0
    fed = [n for n in graph.successors(caches[0])]
    # and the basal-ganglia statistics read the atlas centroids from it
    assert sorted(n.name for n in fed) == ["basal_ganglia_stats"] * 2 + ["template_priors"] * 2
    assert all(("folder", "template_cache") in graph[caches[0]][n]["connect"] for n in fed)


def test_wmh_alone_runs_its_exclusions_but_writes_only_wmh(tmp_path):
    config = RunConfig(tmp_path / "bids", tmp_path / "out", ("participant",), tmp_path / "w")
    wf = init_session_wf(plan=_graph_plan(tmp_path, ("wmh",)), config=config)
    assert sorted(_detect_nodes(wf)) == ["lacunes", "rssi", "wmh"]
    writer = next(n for n in wf._get_all_nodes() if n.name == "write_derivatives")
    assert writer.inputs.marker_keys == ["wmh"]


def test_registering_an_exclusion_cycle_is_refused():
    spec = REGISTRY["lacunes"]
    cyclic = MarkerSpec(**{**spec.__dict__, "excludes": ("wmh",)})
    with pytest.raises(ValueError, match="cycle"):
        register(cyclic)
    assert REGISTRY["lacunes"] is spec


# --- the marker node ------------------------------------------------------------------------


def _run(node: DetectMarker, cwd: Path):
    cwd.mkdir(parents=True, exist_ok=True)
    return node.run(cwd=str(cwd))


def _save(tmp_path: Path, name: str, data: np.ndarray) -> str:
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), AFFINE), path)
    return str(path)


def _node_inputs(tmp_path: Path, brain: np.ndarray) -> dict[str, str]:
    rng = np.random.default_rng(0)
    inputs = {m: _save(tmp_path, m, 100 + rng.random(SHAPE)) for m in ("t1w", "flair", "t2w")}
    for prior in ("wm", "gm", "csf", "ventricles"):
        inputs[prior] = _save(tmp_path, prior, np.full(SHAPE, 0.25))
    inputs["regions"] = _save(tmp_path, "regions", np.ones(SHAPE))
    inputs["brain_mask"] = _save(tmp_path, "brain", brain)
    return inputs


def test_a_marker_that_cannot_model_the_images_is_not_assessed(tmp_path):
    """An empty brain mask: the WMH node says why instead of failing the session."""
    inputs = _node_inputs(tmp_path, np.zeros(SHAPE))
    result = _run(DetectMarker(marker="wmh", **inputs), tmp_path / "node")
    status = json.loads(Path(result.outputs.status).read_text())
    assert status["assessed"] is False
    assert "empty brain mask" in status["reason"]
    assert not np.asanyarray(nib.load(result.outputs.mask).dataobj).any()


@pytest.fixture
def oversized():
    """A marker registered for the test whose detector returns one 14 mm cube and notes."""
    label = MarkerLabel("oversized", "OVS", 200, "oversized lesion", "#ffffff", dseg_rank=200)

    def detect(session: SessionImages) -> Detection:
        mask = np.zeros(session.brain_mask.shape, bool)
        mask[5:12, 5:12, 5:12] = True
        if session.excluded:
            mask &= ~session.excluded["cmb"]
        return Detection(mask.astype(np.float32), mask, notes=["degraded mode"])

    register(MarkerSpec("oversized", ("flair",), detect=detect, excludes=("cmb",)), label)
    yield "oversized"
    unregister("oversized")


def test_the_size_rule_is_applied_after_the_detector(tmp_path, oversized, monkeypatch):
    from csvd_bids.markers import size_rules

    inputs = _node_inputs(tmp_path, np.ones(SHAPE))
    node = DetectMarker(marker=oversized, **inputs)
    kept = _run(node, tmp_path / "kept")
    assert np.asanyarray(nib.load(kept.outputs.mask).dataobj).sum() == 7**3
    status = json.loads(Path(kept.outputs.status).read_text())
    assert status["notes"] == ["degraded mode"]
    # with a size rule (the microbleeds': 2-10 mm), the 14 mm cube goes, whoever found it
    monkeypatch.setitem(size_rules.SIZE_RULES, oversized, size_rules.SIZE_RULES["cmb"])
    filtered = _run(DetectMarker(marker=oversized, **inputs), tmp_path / "filtered")
    assert not np.asanyarray(nib.load(filtered.outputs.mask).dataobj).any()
    # and its belief stays below 0.5, so that probseg >= 0.5 is the written mask
    assert np.asanyarray(nib.load(filtered.outputs.score).dataobj).max() == pytest.approx(0.49)
    assert np.asanyarray(nib.load(kept.outputs.score).dataobj).max() == 1.0


def test_excluded_masks_reach_the_detector(tmp_path, oversized):
    inputs = _node_inputs(tmp_path, np.ones(SHAPE))
    cmb = np.zeros(SHAPE)
    cmb[5:12, 5:12, 5:7] = 1
    status = {"assessed": True, "reason": ""}
    (tmp_path / "cmb_status.json").write_text(json.dumps(status))
    node = DetectMarker(
        marker=oversized,
        excluded_keys=["cmb"],
        excluded_mask_files=[_save(tmp_path, "cmb_mask", cmb)],
        excluded_status_files=[str(tmp_path / "cmb_status.json")],
        **inputs,
    )
    result = _run(node, tmp_path / "node")
    assert np.asanyarray(nib.load(result.outputs.mask).dataobj).sum() == 7 * 7 * 5
    assert json.loads(Path(result.outputs.status).read_text())["excluded"] == {"cmb": "left out"}


# --- the marker table -----------------------------------------------------------------------


def test_the_dseg_lookup_is_the_marker_table():
    rows = [line.split("\t") for line in dseg_tsv_text().splitlines()[1:]]
    assert [(int(r[0]), r[1], r[2]) for r in rows] == [(0, "background", "BG")] + [
        (m.index, m.name, m.label) for m in MARKER_LABELS
    ]
    assert len({r[0] for r in rows}) == len(rows)


def test_a_table_with_a_shared_index_is_refused():
    twin = MarkerLabel("twin", "TWN", BY_LABEL["CMB"].index, "twin", "#000001", dseg_rank=99)
    with pytest.raises(ValueError, match="index"):
        check_marker_table([*MARKER_LABELS, twin])
    with pytest.raises(ValueError, match="index"):
        add_marker_label(twin)
    assert "twin" not in [m.key for m in MARKER_LABELS]


def test_overlaps_go_to_what_a_rater_would_call_the_voxel():
    """STRIVE: a cavity or an acute infarct inside WMH is the cavity or the infarct."""
    assert dseg_priority() == ("WMH", "PVS", "CMB", "LAC", "RSSI")
    for lower, higher in (("WMH", "LAC"), ("WMH", "RSSI"), ("LAC", "RSSI"), ("PVS", "CMB")):
        both = np.ones((2, 2, 2), bool)
        dseg = paint_dseg({lower: both, higher: both}, both.shape)
        assert (dseg == BY_LABEL[higher].index).all(), (lower, higher)


def test_every_registered_marker_is_painted():
    for key, spec in REGISTRY.items():
        mask = np.zeros((3, 3, 3), bool)
        mask[1, 1, 1] = True
        dseg = paint_dseg({spec.label.label: mask}, mask.shape)
        assert dseg[1, 1, 1] == spec.label.index, key
        assert dseg.sum() == spec.label.index


# --- exit codes -----------------------------------------------------------------------------


def _crash(tmp_path: Path, last_line: str) -> Path:
    path = tmp_path / "crash-20260101-000000-root-prepare_flair-abc.txt"
    path.write_text(
        "Node: csvd_bids_wf.sub_01_wf.preproc_wf.prepare_flair\n"
        "Working directory: /work/x\n\nNode inputs:\n\nin_file = a.nii.gz\n\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in run\n'
        "    raise NodeExecutionError(msg)\n"
        "nipype.pipeline.engine.nodes.NodeExecutionError: Exception raised while executing "
        "Node prepare_flair.\n\nTraceback:\n\tTraceback (most recent call last):\n"
        '\t  File "y.py", line 2, in _run_interface\n\t    check(path)\n'
        f"\t{last_line}\n"
    )
    return path


def test_the_exit_code_comes_from_the_exception_class(tmp_path):
    bad = read_crash(_crash(tmp_path, "csvd_bids.errors.InputImageError: a.nii.gz: truncated"))
    assert bad.exit_code == ExitCode.INPUT_DATA
    assert bad.session_wf == "sub_01_wf"
    fault = read_crash(_crash(tmp_path, "ValueError: the word InputImageError in a message"))
    assert fault.error is ValueError
    assert fault.exit_code == ExitCode.SESSION_FAILED


@pytest.mark.parametrize(
    ("last_line", "code"),
    [
        ("OSError: [Errno 28] No space left on device: '/work/x'", ExitCode.CANNOT_WRITE),
        ("OSError: [Errno 122] Disk quota exceeded", ExitCode.CANNOT_WRITE),
        ("FileNotFoundError: [Errno 2] No such file or directory: 'x'", ExitCode.SESSION_FAILED),
        ("ValueError: [Errno 28] quoted in a message", ExitCode.SESSION_FAILED),
    ],
)
def test_a_full_work_dir_disk_in_a_node_exits_73(tmp_path, last_line, code):
    assert read_crash(_crash(tmp_path, last_line)).exit_code == code


def test_exception_class_resolves_only_exceptions():
    assert exception_class("csvd_bids.errors.InputImageError").__name__ == "InputImageError"
    assert exception_class("KeyError") is KeyError
    assert exception_class("pass") is None
    assert exception_class("csvd_bids.errors.ExitCode") is None


def test_not_assessable_is_a_value_error():
    """Callers that guard detectors with ValueError (e.g. training) keep working."""
    assert issubclass(NotAssessableError, ValueError)


# --- methods text beside each workflow ------------------------------------------------------


def test_the_methods_text_comes_from_the_workflows(tmp_path):
    config = RunConfig(tmp_path / "bids", tmp_path / "out", ("participant",), tmp_path / "w")
    wf = init_session_wf(plan=_graph_plan(tmp_path, ALL_MARKERS), config=config)
    writer = next(n for n in wf._get_all_nodes() if n.name == "write_derivatives")
    sections = json.loads(writer.inputs.methods)
    assert [s["section"] for s in sections] == [
        "session",
        "preprocessing",
        "lsa",
        *["marker"] * len(ALL_MARKERS),
        "ratings",
    ]
    assert "T2w, T2starw image(s) were bias-corrected" in sections[1]["text"]
    paragraph, references = methods_paragraph(sections, {"wmh"}, ["cerebral microbleeds"])
    assert "[@" not in paragraph  # every citation key resolved to its number
    assert f"N4 [{NUMBERS['n4']}]" in paragraph and len(references) == len(NUMBERS)
    assert "White matter hyperintensities: FLAIR hyperintensity" in paragraph
    assert "Lacunes:" not in paragraph  # only assessed markers are described
    assert "Not assessed (missing or unusable images): cerebral microbleeds." in paragraph
    assert paragraph.index("Not assessed") < paragraph.index("Visual ratings")


def test_an_unknown_citation_key_is_an_error():
    with pytest.raises(KeyError):
        cite("as shown [@nobody]")


def test_the_graph_nodes_import_without_torch():
    """Every node (a MultiProc worker, a SLURM job) imports its interface's module: torch is
    0.9 s of that, paid 34 times by a 2-subject SLURM-plugin run, though only deepbet and the
    model bundles use it (they import it themselves)."""
    modules = ("derivatives", "dwi", "inputs", "lsa", "markers", "preproc", "quant", "reports")
    imports = "; ".join(f"import csvd_bids.interfaces.{name}" for name in modules)
    check = f"{imports}; import sys; print(sorted({{'torch', 'monai'}} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"imported by the interfaces: {loaded}"
