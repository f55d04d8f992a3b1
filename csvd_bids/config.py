"""The one place run settings live.

The command line builds a :class:`RunConfig`; workflows and interfaces read from it and never
from ``sys.argv`` or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from csvd_bids.labels import MARKER_LABELS

ALL_MARKERS: tuple[str, ...] = tuple(m.key for m in MARKER_LABELS)  # the built-in markers
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")  # torch devices of model inference


@dataclass
class RunConfig:
    bids_dir: Path
    output_dir: Path
    analysis_levels: tuple[str, ...]
    work_dir: Path
    participant_labels: tuple[str, ...] = ()
    session_labels: tuple[str, ...] = ()
    bids_filters: dict = field(default_factory=dict)
    bids_database_dir: Path | None = None
    derivatives: tuple[Path, ...] = ()  # other apps' derivatives: precomputed FA, MD, CBF
    markers: tuple[str, ...] = ALL_MARKERS
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float | None = None
    plugin: str = "MultiProc"
    plugin_args: dict = field(default_factory=dict)
    stop_on_first_crash: bool = False
    write_graph: bool = False
    skip_validation: bool = False
    group_outcome: str | None = None  # None: participants.tsv's two-level "group" column
    group_covariates: tuple[str, ...] = ()  # (): csvd_bids.group.stats.DEFAULT_COVARIATES
    lsa_model: bool = False  # group level: the lenticulostriate-territory network (minutes)
    lsa_folds: int = 5  # its cross-validation folds
    lsa_epochs: int = 4  # its training epochs per fold
    lsa_permutations: int = 200  # label permutations of its classification's p-value
    lsa_saliency_patches: int = 12  # occlusion maps per fold (0: none)
    models_dir: Path | None = None  # model bundles that replace markers' detectors
    wmh_method: str = "detector"  # or "model": the shipped WMH bundle (csvd_bids.models.builtin)
    second_opinion: bool = True  # the shipped WMH model beside the detector (models.second_opinion)
    device: str = "auto"  # torch device of model inference: auto, cpu, cuda
    tta: bool = False  # left-right flip test-time augmentation of model inference
    reports_only: bool = False  # rebuild the HTML reports from existing outputs, run nothing
    verbosity: int = 0
