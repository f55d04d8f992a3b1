"""``generate_dataset``: the whole synthetic BIDS dataset, written atomically.

Random streams: subject ``i`` (1-based) draws everything from ``SeedSequence([seed, i])``
split into demographics / anatomy / lesions / acquisitions / motion, so a subject does not
change when ``n_subjects`` grows. Sessions of a subject share anatomy and lesion plan.

``misalign=(DEG, MM)`` moves every acquisition but the T1w (FLAIR, T2w, SWI, DWI, ASL with
its M0 scan) of every session by its own random rigid motion about the brain's centre:
angles uniform in [-DEG, DEG] about each axis, translation uniform in [-MM, MM] per axis (see
:mod:`.motion`). Only the affines change, not the voxel data; the truth masks stay on the T1w
grid, and each motion is written to the ground truth as
``<prefix>_from-<SUFFIX>_to-T1w_mode-image_xfm.txt`` (SUFFIX FLAIR, T2w, T2starw, dwi, asl;
ITK text, T1w LPS points -> moved image LPS points, the convention of the pipeline's own
transforms). The motion draws come from their own stream, so the default output does not
depend on this option's code path.

``profile`` (:mod:`.profiles`): ``research`` (default) or ``clinical`` (skull-stripped
thick-slice FLAIR only, heavier and confluent WMH, truth on the FLAIR grid). The clinical
profile draws the slice thickness first from each session's acquisition stream and its WMH
volume last from the lesion stream, so the research output does not depend on it;
``misalign`` needs the T1w of the research profile.

DWI and ASL (research profile): the DWI series has a diffusion tensor per tissue
(:mod:`.diffusion`; the physics engine's drawn per subject, :mod:`.physics_diffusion`), the
PCASL series and M0 scan (``perf/``) follow Alsop et al.'s model (:mod:`.asl`; the physics
engine's a kinetic model with a protocol drawn per subject, :mod:`.physics_asl`); both carry a
basal-ganglia effect that grows with the subject's latent burden. Nothing new is drawn from the
streams above (the DWI's direction noise comes after its b0, the last draws of a session's
acquisition stream; the ASL's bias and noise from their own stream ``SeedSequence([seed,
subject, asl.ASL_STREAM])``, one child per session), so every other image and the lesions are
what they were. Their planted values are in the truth as ``<prefix>_desc-tissue_stats.json``
(``tissue_truth``). The physics engine's tensors, ASL protocol and perfusion come from the
subject's stream ``SeedSequence([seed, subject, 7303])`` and its ASL noise from the same
per-session stream as the template engine's, so its anatomical images are what they were.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import MARKER_LABELS, dseg_tsv_text
from ..preproc.regions import REGION_INDEX
from ..quant.ratings import rate_session
from . import asl, contrasts, layout, motion, writer
from .anatomy import make_anatomy, working_grid
from .diffusion import DiffusionModel, planted_dwi, severity
from .lesions import plan_lesions
from .mimics import plant_mimics
from .participants import draw_load, draw_participant
from .physics import DEFAULT_OVERSAMPLE
from .physics_subject import LINING_MM, PhysicsSubject
from .planted import PLANTED_COLUMNS, planted_ratings, planted_sidecar
from .profiles import PROFILES, Profile, session_grids
from .protocols import RANGES
from .regions import make_regions
from .tissue_properties import FIELDS_T
from .truth import (
    STATS_COLUMNS,
    TRUTH_REGIONS,
    Truth,
    anatomy_truth,
    region_truth,
    regions_tsv_text,
    session_truth,
    stats_sidecar,
)

RESOLUTION_RANGE = (1.0, 4.0)
MAX_MISALIGN_DEG = 180.0  # Euler angles beyond that wrap around
ENGINES = ("template", "physics")
OVERSAMPLE_RANGE = (1, 4)


@dataclass(frozen=True)
class Settings:
    """How every subject is made (the command line's options)."""

    resolution: float
    misalign: tuple[float, float] | None
    profile: Profile
    engine: str = "template"
    oversample: int = DEFAULT_OVERSAMPLE  # physics: render this many times finer than resolution
    field_t: float | None = None  # physics: fixed field strength, else drawn per subject
    gre_te: float | None = None  # physics: fixed GRE echo time (ms), else drawn


class SynthUsageError(ValueError):
    """Invalid arguments (the command line maps this to exit code 64)."""


def _check_engine(engine: str, oversample: int, field_t, gre_te) -> None:
    if engine not in ENGINES:
        raise SynthUsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine != "physics" and (field_t is not None or gre_te is not None):
        raise SynthUsageError("--field-strength and --gre-te need --engine physics")
    if not OVERSAMPLE_RANGE[0] <= oversample <= OVERSAMPLE_RANGE[1]:
        raise SynthUsageError(f"--oversample must be within {OVERSAMPLE_RANGE}, not {oversample}")
    if field_t is not None and field_t not in FIELDS_T:
        raise SynthUsageError(f"--field-strength must be one of {FIELDS_T} T, not {field_t}")
    if gre_te is not None:
        low, high = RANGES["gre_te"]
        if not low <= gre_te <= high:
            raise SynthUsageError(f"--gre-te {gre_te} ms is outside its range [{low}, {high}]")


def _check_arguments(
    out_dir: Path, n_subjects, n_sessions, seed, resolution, overwrite, misalign, profile
) -> None:
    if profile not in PROFILES:
        raise SynthUsageError(f"--profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    if misalign is not None and "T1w" not in PROFILES[profile].modalities:
        raise SynthUsageError(f"--misalign moves images relative to the T1w: {profile} has none")
    if n_subjects < 1 or n_sessions < 1:
        raise SynthUsageError("--subjects and --sessions must be at least 1")
    if seed < 0:
        raise SynthUsageError("--seed must be a non-negative integer")
    if not RESOLUTION_RANGE[0] <= resolution <= RESOLUTION_RANGE[1]:
        raise SynthUsageError(f"--resolution must be within {RESOLUTION_RANGE} mm")
    if misalign is not None and not (
        len(misalign) == 2 and 0 <= misalign[0] <= MAX_MISALIGN_DEG and 0 <= misalign[1] < np.inf
    ):
        raise SynthUsageError(
            f"--misalign DEG MM needs 0 <= DEG <= {MAX_MISALIGN_DEG} and a finite MM >= 0"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthUsageError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SynthUsageError(f"{out_dir} is not empty (use --overwrite to replace it)")


def _write_images(
    root: Path,
    sub: str,
    ses: str | None,
    acquired: dict,
    grids: dict,
    extra: dict | None = None,
    aslcontext: str | None = None,
) -> None:
    """The session's images and sidecars (``extra``: per-modality sidecar fields); the M0 scan
    is on the ASL's grid."""
    prefix = layout.entity_prefix(sub, ses)
    folder = layout.session_dir(root, sub, ses)
    for modality, data in acquired.items():
        grid = grids["asl" if modality == "m0scan" else modality]
        kind = layout.DATATYPE.get(modality, "anat")
        stem = folder / kind / f"{prefix}_{layout.FILE_SUFFIX[modality]}"
        writer.write_nifti(stem.with_name(stem.name + ".nii.gz"), data, grid.affine)
        sidecar = layout.sidecar(modality, grid, (extra or {}).get(modality))
        writer.write_json(stem.with_name(stem.name + ".json"), sidecar)
    if "dwi" in acquired:
        bval, bvec = contrasts.bvals_bvecs()
        writer.write_text(folder / "dwi" / f"{prefix}_dwi.bval", bval)
        writer.write_text(folder / "dwi" / f"{prefix}_dwi.bvec", bvec)
    if "asl" in acquired:
        writer.write_text(folder / "perf" / f"{prefix}_aslcontext.tsv", aslcontext)


def asl_uri(sub: str, ses: str | None) -> str:
    """BIDS URI of a session's ASL series (the M0 scan's IntendedFor)."""
    folder = f"sub-{sub}/" + (f"ses-{ses}/" if ses else "")
    return f"bids::{folder}perf/{layout.entity_prefix(sub, ses)}_asl.nii.gz"


def _write_truth(
    truth_root,
    sub,
    ses,
    anat,
    lesions,
    s,
    motions,
    structures,
    space,
    grid,
    seen,
    visible,
    tissue=None,
) -> None:
    """The truth of session ``s`` on the working grid (``grid`` None) or on ``grid``, named
    ``space-<space>``, its WMH as the FLAIR grid ``seen`` shows them (``visible``: where it
    does, on that grid, or None); ``tissue``: the planted DWI/ASL values
    (:func:`tissue_truth`)."""
    prefix = layout.entity_prefix(sub, ses)
    truth = session_truth(anat, lesions, s, grid, seen, visible)
    brain, regions, affine = anatomy_truth(anat, structures, grid)
    out = layout.session_dir(truth_root, sub, ses) / "anat"
    base = f"{prefix}_space-{space}"
    for marker in MARKER_LABELS:
        writer.write_nifti(
            out / f"{base}_label-{marker.label}_mask.nii.gz", truth.masks[marker.label], affine
        )
    writer.write_nifti(out / f"{base}_desc-brain_mask.nii.gz", brain, affine)
    writer.write_nifti(out / f"{base}_seg-csvd_dseg.nii.gz", truth.dseg, affine)
    writer.write_nifti(out / f"{base}_seg-regions_dseg.nii.gz", regions, affine)
    writer.write_tsv(out / f"{base}_desc-lesions_stats.tsv", STATS_COLUMNS, truth.rows)
    writer.write_json(out / f"{base}_desc-lesions_stats.json", stats_sidecar(space))
    ratings = planted_ratings(lesions, s, _truth_ratings(truth, brain, regions, affine))
    writer.write_tsv(out / f"{prefix}_desc-ratings_stats.tsv", PLANTED_COLUMNS, [ratings])
    writer.write_json(out / f"{prefix}_desc-ratings_stats.json", planted_sidecar())
    if tissue is not None:
        writer.write_json(out / f"{prefix}_desc-tissue_stats.json", tissue)
    for modality, transform in motions.items():
        writer.write_transform(
            out / f"{prefix}_from-{modality}_to-T1w_mode-image_xfm.txt", transform
        )


def _truth_ratings(
    truth: Truth, brain: np.ndarray, regions: np.ndarray, affine: np.ndarray
) -> dict:
    """The pipeline's ratings (:func:`~csvd_bids.quant.ratings.rate_session`) of a session's
    truth WMH and PVS masks with their lesion table, on the truth grid."""
    table = pd.DataFrame(truth.rows, columns=list(STATS_COLUMNS))
    tables = {m: table[table["marker"] == m].reset_index(drop=True) for m in ("WMH", "PVS")}
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    return rate_session(
        {marker: truth.masks[marker] for marker in tables},
        tables,
        regions == REGION_INDEX["lateral_ventricles"],
        brain > 0,
        zooms,
        float(brain.sum() * np.prod(zooms)),
    )


BASAL_GANGLIA = next(i for i, name in TRUTH_REGIONS.items() if name == "basal_ganglia")


def tissue_truth(person, load, sections: dict) -> dict:
    """``<prefix>_desc-tissue_stats.json``: the planted diffusion and perfusion values of a
    session and the subject's basal-ganglia effects (``sections``: ``DWI`` and ``ASL``, for
    what was written)."""
    out = {
        "Description": "Diffusion tensors and perfusion as planted by csvd_bids.synth "
        "(modules diffusion and asl); the basal-ganglia effects are multipliers "
        "1 - strength * Severity, Severity = 1 / (1 + exp(-LatentBurden)).",
        "LatentBurden": round(person.burden, 6),
        "Severity": round(severity(person.burden), 6),
        "BaselineWMHVolumeML": round(load.wmh_ml, 4),
        "BasalGangliaRegion": f"seg-regions_dseg index {BASAL_GANGLIA} (basal_ganglia), "
        "working (T1w) grid",
    }
    return {**out, **sections}


def subject_streams(seed: int, index: int) -> list[np.random.SeedSequence]:
    """Subject ``index``'s five random streams: demographics, anatomy, lesions, acquisition
    and motion (the motion stream was added last: the first four are what they were)."""
    return np.random.SeedSequence([seed, index]).spawn(5)


def draw_cohort(n_subjects: int, seed: int) -> list:
    """The participants of a dataset made with this seed, without rendering any image."""
    return [
        draw_participant(np.random.default_rng(subject_streams(seed, index)[0]))
        for index in range(1, n_subjects + 1)
    ]


def draw_subject(seed: int, index: int, n_sessions: int, settings: Settings) -> tuple:
    """(participant, lesion load, lesion generator, physics subject or None, anatomy) of
    subject ``index``: what its images are made from, before any lesion is placed (the
    anatomy on the render grid, atrophied by the physics engine)."""
    demo, anat_seq, lesion_seq, _, _ = subject_streams(seed, index)
    person = draw_participant(np.random.default_rng(demo))
    lesion_rng = np.random.default_rng(lesion_seq)
    clinical = settings.profile.clinical_burden
    load = draw_load(lesion_rng, person, n_sessions, clinical=clinical)
    physics = PhysicsSubject.draw(seed, index, settings) if settings.engine == "physics" else None
    if physics:
        load = physics.adjust_load(load)
    render_mm = settings.resolution / (settings.oversample if physics else 1)
    anat = make_anatomy(np.random.default_rng(anat_seq), render_mm)
    if physics:
        physics.prepare(anat)
    return person, load, lesion_rng, physics, anat


def _sessions_rows(sessions: list[str | None], person) -> list[dict]:
    interval = layout.SESSION_INTERVAL_YEARS
    return [
        {
            "session_id": f"ses-{ses}",
            "age": round(person.age + s * interval, 1),
        }
        for s, ses in enumerate(sessions)
    ]


def _write_subject(
    root: Path,
    truth_root: Path,
    index: int,
    width: int,
    n_sessions: int,
    seed: int,
    settings: Settings,
) -> dict:
    """Render and write one subject; returns its participants.tsv row."""
    person, load, lesion_rng, physics, anat = draw_subject(seed, index, n_sessions, settings)
    _, _, _, acq_seq, motion_seq = subject_streams(seed, index)
    profile = settings.profile
    regions = make_regions(anat)
    lesions = plan_lesions(
        lesion_rng,
        anat,
        regions,
        load,
        n_sessions,
        confluent_wmh=profile.clinical_burden,
        mimics=plant_mimics if physics else None,
        lining_mm=LINING_MM if physics else None,
    )
    if physics:
        physics.vary_lesions(lesions)
    base = None if physics else contrasts.base_images(anat, profile.channels)
    brain = anat.brain_mask if profile.skull_stripped else None
    structures = region_truth(anat)  # anatomy only: the same for every session
    basal_ganglia = structures == BASAL_GANGLIA
    if physics:
        physics.tissue_models(anat, basal_ganglia, person.burden, profile)
    model = asl_base = None
    if not physics and "dwi" in profile.modalities:
        model = DiffusionModel.make(anat, basal_ganglia, person.burden)
    cbf_factor = None
    if not physics and "asl" in profile.modalities:
        cbf_factor = asl.severity_factor(severity(person.burden))
        asl_base = asl.base_images(anat, basal_ganglia, cbf_factor)
    asl_streams = np.random.SeedSequence([seed, index, asl.ASL_STREAM]).spawn(n_sessions)
    sub = f"{index:0{width}d}"
    sessions = [str(s + 1) for s in range(n_sessions)] if n_sessions > 1 else [None]
    session_streams = zip(
        sessions, acq_seq.spawn(n_sessions), motion_seq.spawn(n_sessions), strict=True
    )
    for s, (ses, seq, motion_stream) in enumerate(session_streams):
        rng = np.random.default_rng(seq)
        active = [x for x in lesions if s in x.sessions]
        asl_rng = np.random.default_rng(asl_streams[s])
        planted, visible = {}, None
        if physics:
            grids, acquired, planted, visible = physics.session(
                rng, anat, active, profile, brain, asl_rng
            )
        else:
            grids = session_grids(profile, rng, anat.shape, anat.affine, settings.resolution)
            images = {name: image.copy() for name, image in base.items()}
            contrasts.apply_lesions(images, active)
            dwi = model.render(active, grids["dwi"]) if model and "dwi" in grids else None
            acquired = contrasts.acquire_session(rng, images, grids, brain, dwi)
            del images, dwi
            if model is not None:
                planted = {"DWI": planted_dwi(model.fa_factor)}
        if asl_base is not None and "asl" in grids:
            images = {name: image.copy() for name, image in asl_base.items()}
            asl.apply_lesions(images, active)
            acquired["asl"], acquired["m0scan"] = asl.acquire(asl_rng, images, grids["asl"])
            planted["ASL"] = asl.planted_asl(cbf_factor, asl.mean_cbf(images, basal_ganglia))
            del images
        placed, motions = grids, {}
        if settings.misalign is not None:
            placed, motions = motion.misalign_grids(
                np.random.default_rng(motion_stream),
                grids,
                *settings.misalign,
                motion.brain_centre(anat),
            )
        extra = physics.sidecars(grids) if physics else {}
        context = None
        if "asl" in acquired and physics:
            extra["asl"], extra["m0scan"] = physics.asl_sidecars(grids["asl"], asl_uri(sub, ses))
            context = physics.asl_protocol.aslcontext()
        elif "asl" in acquired:
            extra["asl"], extra["m0scan"] = asl.sidecars(grids["asl"], asl_uri(sub, ses))
            context = asl.aslcontext()
        _write_images(root, sub, ses, acquired, placed, extra, context)
        space = profile.truth_space
        grid = None if space == "T1w" and not physics else grids[space]
        tissue = tissue_truth(person, load, planted) if planted else None
        seen = grids.get("FLAIR")
        _write_truth(
            truth_root, sub, ses, anat, lesions, s, motions, structures, space, grid, seen,
            visible, tissue,
        )  # fmt: skip
    if n_sessions > 1:
        writer.write_tsv(
            root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv",
            layout.SESSIONS_COLUMNS,
            _sessions_rows(sessions, person),
        )
        # bids-validator 1.x rejects a root sessions.json: describe the columns per subject
        writer.write_json(root / f"sub-{sub}" / f"sub-{sub}_sessions.json", layout.SESSIONS_SIDECAR)
    return {
        "participant_id": f"sub-{sub}",
        "age": person.age,
        "sex": person.sex,
        "systolic_bp": person.systolic_bp,
        "total_cholesterol": person.total_cholesterol,
        "group": person.group,
    }


def _write_dataset(
    root: Path, n_subjects: int, n_sessions: int, seed: int, settings: Settings
) -> None:
    from .. import __version__

    truth_root = root / "derivatives" / layout.TRUTH_PIPELINE
    width = max(2, len(str(n_subjects)))
    rows = [
        _write_subject(root, truth_root, i, width, n_sessions, seed, settings)
        for i in range(1, n_subjects + 1)
    ]
    writer.write_json(root / "dataset_description.json", layout.raw_description())
    writer.write_text(
        root / "README", layout.readme(settings.profile.name, settings.misalign, settings.engine)
    )
    writer.write_text(root / "CHANGES", layout.CHANGES.format(version=__version__))
    writer.write_tsv(root / "participants.tsv", layout.PARTICIPANTS_COLUMNS, rows)
    writer.write_json(root / "participants.json", layout.PARTICIPANTS_SIDECAR)
    writer.write_json(truth_root / "dataset_description.json", layout.truth_description())
    writer.write_text(truth_root / "seg-csvd_dseg.tsv", dseg_tsv_text())
    writer.write_text(truth_root / "seg-regions_dseg.tsv", regions_tsv_text())


def generate_dataset(
    out_dir: Path,
    n_subjects: int,
    n_sessions: int,
    seed: int,
    resolution: float = 1.0,
    *,
    overwrite: bool = False,
    misalign: tuple[float, float] | None = None,
    profile: str = "research",
    engine: str = "template",
    oversample: int = DEFAULT_OVERSAMPLE,
    field_t: float | None = None,
    gre_te: float | None = None,
) -> Path:
    """Write a synthetic BIDS dataset with planted CSVD lesions and its ground truth.

    The dataset is built in a temporary sibling folder and moved into place at the end,
    so an interrupted run never leaves a partial dataset. Returns ``out_dir``.
    Raises :class:`SynthUsageError` for invalid arguments or a non-empty ``out_dir``
    (unless ``overwrite``). ``misalign=(DEG, MM)``: random rigid misalignments of every
    modality but the T1w, with their truth transforms (see the module docstring).
    ``profile``: ``research`` or ``clinical`` (:mod:`.profiles`). ``engine``: ``template``
    (hand-set intensities, :mod:`.contrasts`) or ``physics`` (:mod:`.physics`, rendered
    ``oversample`` times finer than ``resolution``; ``field_t`` and ``gre_te`` fix the field
    strength and the GRE echo time instead of drawing them per subject).
    """
    out_dir = Path(out_dir).absolute()
    _check_arguments(
        out_dir, n_subjects, n_sessions, seed, resolution, overwrite, misalign, profile
    )
    _check_engine(engine, oversample, field_t, gre_te)
    settings = Settings(
        resolution, misalign, PROFILES[profile], engine, oversample, field_t, gre_te
    )
    working_grid(resolution)  # fail early if the template is missing
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_dataset(tmp, n_subjects, n_sessions, seed, settings)
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir
