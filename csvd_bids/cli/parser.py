"""Command-line arguments, following the BIDS Apps spec and fMRIPrep/MRIQC habits."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import yaml

from csvd_bids import __version__
from csvd_bids.config import DEVICES, RunConfig
from csvd_bids.errors import ExitCode, NoInputError, UsageError
from csvd_bids.models.builtin import WMH_METHODS

ANALYSIS_LEVELS = ("participant", "group")
_MEM_UNITS = {
    "": 1.0,
    "G": 1.0,
    "GB": 1.0,
    "M": 1 / 1024,
    "MB": 1 / 1024,
    "T": 1024.0,
    "TB": 1024.0,
}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments; the BIDS Apps spec wants 64 (usage error)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage()
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def _strip_prefix(prefix: str):
    def _strip(value: str) -> str:
        return value[len(prefix) :] if value.startswith(prefix) else value

    return _strip


def parse_mem_gb(text: str) -> float:
    """'8', '8G', '8GB', '8000MB' -> gigabytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", text.upper())
    if not match or match.group(2) not in _MEM_UNITS:
        raise argparse.ArgumentTypeError(f"cannot read memory amount {text!r} (try 8GB or 8000MB)")
    return float(match.group(1)) * _MEM_UNITS[match.group(2)]


def build_parser() -> argparse.ArgumentParser:
    from csvd_bids.labels import MARKER_LABELS
    from csvd_bids.markers import REGISTRY  # the built-in markers and any plugin's

    markers = tuple(m.key for m in MARKER_LABELS if m.key in REGISTRY)
    parser = _Parser(
        prog="csvd-bids",
        description="Segment and score the MRI markers of cerebral small vessel disease "
        "(WMH, microbleeds, perivascular spaces, lacunes, recent small subcortical infarcts) "
        "in a BIDS dataset.",
    )
    parser.add_argument("bids_dir", type=Path, help="the root of the BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="where the BIDS-Derivatives outputs go")
    parser.add_argument(
        "analysis_level",
        nargs="+",
        metavar="{participant,group}",
        help="participant: process each subject/session; group: aggregate all of them "
        "(both may be given, in that order)",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="more log output (repeat for more)",
    )

    sel = parser.add_argument_group("selecting data")
    sel.add_argument(
        "--participant-label",
        "--participant_label",
        dest="participant_labels",
        nargs="+",
        default=[],
        type=_strip_prefix("sub-"),
        help="subjects to process (with or without 'sub-'); default all",
    )
    sel.add_argument(
        "--session-label",
        "--session_label",
        dest="session_labels",
        nargs="+",
        default=[],
        type=_strip_prefix("ses-"),
        help="sessions to process (with or without 'ses-'); default all",
    )
    sel.add_argument(
        "--bids-filter-file",
        type=Path,
        metavar="FILE",
        help="JSON file of pybids filters per modality (t1w, flair, t2w, swi, dwi, asl) "
        "that refine the default queries",
    )
    sel.add_argument(
        "--bids-database-dir",
        type=Path,
        metavar="DIR",
        help="where to keep (and reuse) the pybids index of bids_dir",
    )
    sel.add_argument(
        "--derivatives",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="derivative datasets of other BIDS Apps whose maps in space-T1w are used instead "
        "of making them here: FA/MD (QSIPrep/QSIRecon, dipy) and CBF (ASLPrep); the first "
        "folder given wins",
    )
    sel.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        "--skip_bids_validator",
        dest="skip_validation",
        action="store_true",
        help="do not run the BIDS validator on bids_dir",
    )
    sel.add_argument(
        "--markers",
        nargs="+",
        choices=markers,
        default=list(markers),
        help="which markers to segment (default: all)",
    )

    group = parser.add_argument_group("group level")
    group.add_argument(
        "--group-outcome",
        metavar="COLUMN",
        help="two-level column (participants.tsv or the group table) for the logistic "
        "regression (default: 'group' when it has two levels)",
    )
    group.add_argument(
        "--group-covariates",
        nargs="+",
        metavar="COLUMN",
        default=[],
        help="covariates of the regressions (default: age sex systolic_bp total_cholesterol "
        "svd_score, where present)",
    )
    group.add_argument(
        "--lsa-model",
        action="store_true",
        help="train the lenticulostriate-territory network (3D ResNet18 on the basal-ganglia "
        "T1w patches, FA and CBF, cross-validated) and classify the outcome from its features; "
        "takes minutes (about 17 for 100 subjects on 2 CPU cores, estimated)",
    )
    group.add_argument(
        "--lsa-folds", type=int, default=5, metavar="K", help="its cross-validation folds (5)"
    )
    group.add_argument(
        "--lsa-epochs", type=int, default=4, metavar="N", help="its training epochs per fold (4)"
    )
    group.add_argument(
        "--lsa-permutations",
        type=int,
        default=200,
        metavar="N",
        help="label permutations of its classification p-value (200)",
    )
    group.add_argument(
        "--lsa-saliency-patches",
        type=int,
        default=12,
        metavar="N",
        help="test patches per fold that get an occlusion-sensitivity map (12; 0: none)",
    )

    perf = parser.add_argument_group("resources and execution")
    perf.add_argument(
        "-w",
        "--work-dir",
        type=Path,
        default=Path("work"),
        help="nipype working directory; a re-run with the same one resumes (default: ./work)",
    )
    perf.add_argument(
        "--nprocs",
        "--n-cpus",
        "--n_cpus",
        dest="nprocs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes run at once (default: all CPUs)",
    )
    perf.add_argument(
        "--omp-nthreads",
        type=int,
        default=None,
        help="threads per process (default: nprocs - 1, at most 8)",
    )
    perf.add_argument(
        "--mem",
        "--mem-gb",
        "--mem_gb",
        dest="mem_gb",
        type=parse_mem_gb,
        help="memory the run may use, e.g. 16GB",
    )
    perf.add_argument(
        "--use-plugin",
        type=Path,
        metavar="FILE",
        help="nipype plugin settings as YAML: 'plugin: SLURM' and 'plugin_args: {...}'",
    )
    perf.add_argument(
        "--stop-on-first-crash",
        action="store_true",
        help="stop everything at the first failure (default: finish other sessions)",
    )
    perf.add_argument(
        "--write-graph",
        action="store_true",
        help="write the workflow graph (SVG) into the work directory",
    )
    perf.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="folder of MONAI model bundles; a bundle replaces its marker's detector",
    )
    perf.add_argument(
        "--wmh-method",
        choices=WMH_METHODS,
        default="detector",
        help="WMH by the unsupervised detector (default) or by the FLAIR-only UNet shipped with "
        "csvd-bids (see Models in the README for where each does better); a WMH bundle in "
        "--models-dir wins over both",
    )
    perf.add_argument(
        "--no-second-opinion",
        dest="second_opinion",
        action="store_false",
        help="do not run the shipped WMH model beside the WMH detector (by default, where the "
        "detector finds less than half of a model volume over 20 ml, the model's mask is used, "
        "with a QC warning); saves 7-10 s of one core and 0.2-0.4 GB of memory per session",
    )
    perf.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where model bundles run: auto (CUDA when available), cpu or cuda",
    )
    perf.add_argument(
        "--tta",
        action="store_true",
        help="model bundles: average with the left-right mirrored prediction",
    )
    perf.add_argument(
        "--reports-only",
        action="store_true",
        help="only rebuild the HTML reports (sessions and/or group) from existing outputs",
    )
    perf.add_argument(
        "--notrack",
        action="store_true",
        help="accepted for compatibility: csvd-bids never sends usage data",
    )
    return parser


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise NoInputError(f"{path}: {what} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {what} must hold a JSON object")
    return data


def _read_plugin(path: Path | None, nprocs: int, mem_gb: float | None) -> tuple[str, dict]:
    plugin, args = "MultiProc", {}
    if path is not None:
        if not path.is_file():
            raise NoInputError(f"{path}: plugin file does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: plugin file is not valid YAML ({exc})") from exc
        if not isinstance(data, dict) or "plugin" not in data:
            raise UsageError(f"{path}: plugin file needs a 'plugin:' entry")
        plugin, args = str(data["plugin"]), dict(data.get("plugin_args") or {})
        from csvd_bids.workflows.cluster import check_plugin  # imports nipype: only when asked

        check_plugin(plugin, str(path))
    if plugin == "MultiProc":
        args.setdefault("n_procs", nprocs)
        if mem_gb is not None:
            args.setdefault("memory_gb", mem_gb)
        # nipype's default 2 s poll leaves each core idle up to 2 s after every node (3 mm,
        # 2 subjects: 79 s at 2 s, 52 s at 0.05 s). Read by configure_nipype.
        args.setdefault("poll_sleep_duration", 0.05)
        args.setdefault("raise_insufficient", False)
        # Workers forked from a process whose torch (OpenMP) thread pool is running hang at
        # their first torch call; a fork server starts them from a clean interpreter.
        args.setdefault("mp_context", "forkserver")
    # A batch job takes seconds to start; each poll asks the scheduler once (workflows/cluster.py).
    args.setdefault("poll_sleep_duration", 1.0)
    return plugin, args


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse the command line into a RunConfig; raise CsvdBidsError on bad values."""
    opts = build_parser().parse_args(argv)
    levels = tuple(opts.analysis_level)
    unknown = [level for level in levels if level not in ANALYSIS_LEVELS]
    if unknown:
        raise UsageError(
            f"unknown analysis level {unknown[0]!r}: choose participant and/or group",
            ExitCode.UNKNOWN_LEVEL,
        )
    if opts.nprocs < 1:
        raise UsageError("--nprocs must be at least 1")
    if (
        opts.lsa_folds < 2
        or opts.lsa_epochs < 1
        or min(opts.lsa_permutations, opts.lsa_saliency_patches) < 0
    ):
        raise UsageError(
            "--lsa-folds must be at least 2, --lsa-epochs at least 1, --lsa-permutations and "
            "--lsa-saliency-patches at least 0"
        )
    for folder in opts.derivatives:
        if not folder.is_dir():
            raise NoInputError(f"{folder}: --derivatives folder does not exist")
    # As fMRIPrep: leave room for other nodes to run beside a multi-threaded one.
    omp = opts.omp_nthreads or max(1, min(8, opts.nprocs - 1))
    filters = _read_json(opts.bids_filter_file, "BIDS filter file") if opts.bids_filter_file else {}
    plugin, plugin_args = _read_plugin(opts.use_plugin, opts.nprocs, opts.mem_gb)
    return RunConfig(
        bids_dir=opts.bids_dir.expanduser().absolute(),
        output_dir=opts.output_dir.expanduser().absolute(),
        analysis_levels=levels,
        work_dir=opts.work_dir.expanduser().absolute(),
        participant_labels=tuple(dict.fromkeys(opts.participant_labels)),
        session_labels=tuple(dict.fromkeys(opts.session_labels)),
        bids_filters=filters,
        bids_database_dir=opts.bids_database_dir.absolute() if opts.bids_database_dir else None,
        derivatives=tuple(path.absolute() for path in opts.derivatives),
        markers=tuple(dict.fromkeys(opts.markers)),
        nprocs=opts.nprocs,
        omp_nthreads=omp,
        mem_gb=opts.mem_gb,
        plugin=plugin,
        plugin_args=plugin_args,
        stop_on_first_crash=opts.stop_on_first_crash,
        write_graph=opts.write_graph,
        skip_validation=opts.skip_validation,
        verbosity=opts.verbosity,
        group_outcome=opts.group_outcome,
        group_covariates=tuple(opts.group_covariates),
        lsa_model=opts.lsa_model,
        lsa_folds=opts.lsa_folds,
        lsa_epochs=opts.lsa_epochs,
        lsa_permutations=opts.lsa_permutations,
        lsa_saliency_patches=opts.lsa_saliency_patches,
        models_dir=opts.models_dir.expanduser().absolute() if opts.models_dir else None,
        wmh_method=opts.wmh_method,
        second_opinion=opts.second_opinion,
        device=opts.device,
        tta=opts.tta,
        reports_only=opts.reports_only,
    )
