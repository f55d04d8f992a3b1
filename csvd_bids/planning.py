"""From the command line's selection to one plan per session.

A plan is a small JSON-able dict (subject, session, reference modality, files, marker status)
that the graph is built from and that the outputs record. Every anatomical image that the
reference space or a marker that runs reads is checked here (the others, ``plan["unread"]``,
are neither checked nor prepared: ``unread_images``) with
csvd_bids.preproc.images.check_input_image: a session with a bad one is rejected with a
message naming the file, before anything is written, and the other sessions go on. A DWI
series that cannot be used (unreadable, no or mismatched .bval/.bvec) is left out instead: RSSI
is not assessed, with that reason, and the rest of the session runs. So is an ASL series
without its aslcontext or with unreadable data: CBF is "not assessed" with the reason.

The lenticulostriate-territory maps (``plan["lsa"]``): FA and MD from a DWI with at least six
gradient directions, CBF from an ASL series; each either has its inputs or a reason why not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from csvd_bids.bids.discovery import (
    ANAT_MODALITIES,
    SessionInputs,
    discover_sessions,
    load_layout,
    session_prefix,
)
from csvd_bids.bids.precomputed import find_precomputed, parse_name, space_t1w
from csvd_bids.config import RunConfig
from csvd_bids.errors import ExitCode, InputImageError, NoSelectionError
from csvd_bids.markers import REGISTRY
from csvd_bids.preproc.images import check_dwi, check_input_image
from csvd_bids.preproc.lsa_inputs import (
    asl_plan,
    precomputed_asl_plan,
    precomputed_tensor_plan,
    tensor_plan,
)

LOGGER = logging.getLogger("csvd_bids")
NOT_SELECTED = {"assessed": False, "reason": "not selected (--markers)"}
REFERENCE_MODALITIES = frozenset({"t1w", "flair"})


@dataclass(frozen=True)
class Rejection:
    """Why a session was refused before the graph, and the exit code that goes with it."""

    message: str
    exit_code: ExitCode


def marker_statuses(
    available: list[str], selected: tuple[str, ...], unusable: dict[str, str] | None = None
) -> dict[str, dict]:
    """{marker: {"assessed", "reason"}}; ``unusable`` says why a found modality is not used."""
    statuses = {}
    for key, spec in sorted(REGISTRY.items()):
        assessed, reason = spec.status(available)
        why = [f"{m}: {unusable[m]}" for m in spec.required if m in (unusable or {})]
        if why:
            reason = "; ".join([reason, *why])
        statuses[key] = {"assessed": assessed, "reason": reason}
        if key not in selected:
            statuses[key] = dict(NOT_SELECTED)
    return statuses


def detector_order(markers: dict[str, dict], possible: dict[str, dict]) -> list[str]:
    """The markers whose node runs, each after the markers it excludes: every assessed marker
    and, for each, the excluded markers that can run on this session (``possible``: the
    statuses as if every marker were selected), selected or not (a marker run only for another
    is not written). Notes in each assessed marker's entry which excluded markers it gets
    (``excludes``) and why it does not get the others (``not_excluded``)."""
    order: list[str] = []

    def visit(key: str) -> None:
        if key in order:
            return
        runs = [k for k in REGISTRY[key].excludes if possible[k]["assessed"]]
        for other in runs:
            visit(other)
        order.append(key)
        if markers[key]["assessed"] and REGISTRY[key].excludes:
            markers[key]["excludes"] = runs
            markers[key]["not_excluded"] = {
                k: possible[k]["reason"] for k in REGISTRY[key].excludes if k not in runs
            }

    for key, status in markers.items():
        if status["assessed"]:
            visit(key)
    for key in order:
        if not markers[key]["assessed"]:  # run for others only: its model, if any, and why
            needed_by = [k for k in order if key in markers[k].get("excludes", ())]
            markers[key] = {**possible[key], **markers[key], "needed_by": needed_by}
    return order


def unread_images(
    files: dict[str, str], reference: str, detectors: list[str], markers: dict[str, dict]
) -> dict[str, str]:
    """The anatomical images that neither the reference space nor any detector that runs
    (a model's channels included) reads: {modality: file}. They are neither checked nor
    prepared, so a broken SWI costs a WMH-only run nothing (the DWI and ASL series are
    planned by the markers and maps that use them, below)."""
    read = {reference}
    for key in detectors:
        read.update(REGISTRY[key].modalities(list(files)))
        read.update(markers[key].get("channels", ()))
    return {m: files[m] for m in ANAT_MODALITIES if m in files and m not in read}


def plan_prefix(plan: dict) -> str:
    return session_prefix(plan["subject"], plan["session"])


def make_plan(
    inputs: SessionInputs,
    selected_markers: tuple[str, ...],
    bundles: dict | None = None,
    precomputed: dict[str, str] | None = None,
    second_opinions: dict | None = None,
) -> dict:
    """Check the session's images and describe what will run; raises InputImageError.
    ``bundles``: marker key -> model bundle that replaces the marker's detector;
    ``precomputed``: FA, MD, CBF maps other apps made (csvd_bids.bids.precomputed);
    ``second_opinions``: marker key -> shipped model that runs beside its detector."""
    if inputs.reference is None:
        found = ", ".join(sorted(inputs.files)) or "nothing usable"
        raise InputImageError(
            inputs.prefix,
            "neither a T1w nor a FLAIR image: nothing to use as the reference space (found: "
            f"{found}; FA and CBF are measured on an anatomical reference only)",
        )
    files, unusable = dict(inputs.files), dict(inputs.unusable)
    if "dwi" in files:
        # Only RSSI needs the DWI: a series without usable b-values costs RSSI, not the session.
        try:
            check_dwi(files["dwi"], inputs.bval, inputs.bvec)
        except InputImageError as exc:
            unusable["dwi"] = f"not used, {exc}"
            del files["dwi"]
    for modality, why in unusable.items():
        LOGGER.warning("%s: %s %s", inputs.prefix, modality, why)
    for modality, candidates in inputs.candidates.items():
        if len(candidates) > 1:
            LOGGER.info(
                "%s: %d %s images; using %s (highest run, then most voxels)",
                inputs.prefix,
                len(candidates),
                modality,
                inputs.files[modality],
            )
    # what could run here if every marker were selected, a model bundle replacing its detector
    possible = marker_statuses(list(files), tuple(REGISTRY), unusable)
    for key, bundle in (bundles or {}).items():
        if key in possible and possible[key]["assessed"]:
            possible[key].update(model_status(bundle, set(files)))
    markers = {
        key: dict(status) if key in selected_markers else dict(NOT_SELECTED)
        for key, status in possible.items()
    }
    for key, bundle in (second_opinions or {}).items():
        entry = second_opinion_status(bundle, set(files))
        if markers[key]["assessed"] and "model" not in markers[key] and entry:
            markers[key]["second_opinion"] = entry
    detectors = detector_order(markers, possible)
    unread = unread_images(files, inputs.reference, detectors, markers)
    for modality, path in unread.items():
        LOGGER.info(
            "%s: %s not read: no selected marker uses it (--markers %s)",
            inputs.prefix,
            path,
            " ".join(selected_markers),
        )
        del files[modality]
    for modality in ANAT_MODALITIES:
        if modality in files:
            check_input_image(files[modality])
    plan = {
        "subject": inputs.subject,
        "session": inputs.session,
        "reference": inputs.reference,
        "files": dict(sorted(files.items())),
        "markers": markers,
        "detectors": detectors,
        "unusable": unusable,
        "unread": unread,
    }
    for key in plan["detectors"]:
        if not markers[key]["assessed"]:
            LOGGER.info(
                "%s: %s runs so that %s can leave its lesions out (not written: not selected)",
                inputs.prefix,
                key,
                ", ".join(markers[key]["needed_by"]),
            )
    plan["lsa"] = {
        "dti": tensor_plan(files.get("dwi"), inputs.bval, inputs.bvec, unusable.get("dwi")),
        "asl": asl_plan(files.get("asl"), inputs.asl, unusable.get("asl")),
    }
    if plan["lsa"]["asl"].get("reason") and "asl" in files:
        unusable["asl"] = f"not used, {plan['lsa']['asl']['reason']}"
        LOGGER.warning("%s: asl %s", inputs.prefix, unusable["asl"])
        del plan["files"]["asl"]
    use_precomputed(plan["lsa"], precomputed or {}, inputs.prefix)
    uses_dwi = any("dwi" in REGISTRY[k].modalities(["dwi"]) for k in plan["detectors"])
    # processed only for the markers that use it, or for the tensor fit
    if "dwi" in files and (uses_dwi or "dwi" in plan["lsa"]["dti"]):
        plan["dwi_bval"] = str(inputs.bval)
    return plan


def precomputed_note(entry: dict, kind: str) -> str:
    """How a precomputed map reaches the reference grid: "" from T1w space, else its space and
    the T1w registered to the reference (csvd_bids.bids.precomputed)."""
    via = entry.get("registered", {}).get(kind)
    return f"space-{via['space']}, registered through {via['t1w']}" if via else ""


def _precomputed_source(entry: dict) -> str:
    given = entry["precomputed"]
    notes = {
        kind: ", ".join(["--derivatives", *filter(None, [precomputed_note(entry, kind)])])
        for kind in given
    }
    if len(set(notes.values())) == 1:  # one app, one space: the files, then what they share
        return f"precomputed {', '.join(given.values())} ({notes[next(iter(given))]})"
    return "precomputed " + ", ".join(f"{path} ({notes[kind]})" for kind, path in given.items())


def _map_source(entry: dict, made_here: str) -> str:
    if "precomputed" in entry:
        return _precomputed_source(entry)
    return f"not assessed ({entry['reason']})" if "reason" in entry else made_here


def _registrations(maps: dict[str, str]) -> dict[str, dict]:
    """map -> ``{"space", "t1w"}`` of each map in another space than T1w (find_precomputed
    takes no such map without its T1w)."""
    through = {}
    for kind, path in maps.items():
        t1w = space_t1w(path)
        if t1w is not None:
            space = parse_name(Path(path).name)[0]["space"]
            through[kind] = {"space": space, "t1w": str(t1w)}
    return through


def use_precomputed(lsa: dict, maps: dict[str, str], prefix: str) -> None:
    """Replace the tensor fit and the CBF quantification by the maps other apps made, where
    usable (a precomputed map is preferred), and log where each map comes from."""
    through = _registrations(maps)
    for key, made, label in (
        ("dti", precomputed_tensor_plan(maps, through), "FA"),
        ("asl", precomputed_asl_plan(maps, through), "CBF"),
    ):
        if made is not None and "reason" in made:
            LOGGER.warning("%s: precomputed %s not used, %s", prefix, label, made["reason"])
        elif made is not None:
            lsa[key] = made
        if made is not None and made.get("md_reason"):
            LOGGER.warning("%s: precomputed MD not used, %s", prefix, made["md_reason"])
    dti, asl = lsa["dti"], lsa["asl"]
    sources = {
        "FA/MD": _map_source(dti, f"tensor fit of {dti.get('dwi')}"),
        "CBF": _map_source(asl, f"quantified from {asl.get('asl')}"),
    }
    for label, source in sources.items():
        LOGGER.info("%s: %s: %s", prefix, label, source)


def model_status(bundle, available: set[str]) -> dict:
    """The marker's plan entries when a bundle replaces its detector: the bundle, its channels
    and method, or "not assessed" when the session lacks a modality the model needs."""
    from csvd_bids.models.bundle import missing_channels

    missing = missing_channels(bundle, available)
    if missing:
        return {
            "assessed": False,
            "reason": f"model {bundle.metadata['name']} needs {', '.join(missing)}",
        }
    return {**bundle_entry(bundle), "channels": list(bundle.inputs)}


def second_opinion_status(bundle, available: set[str]) -> dict | None:
    """The plan entry of a shipped model that checks a detector's volume, or None when the
    session lacks a modality the model needs."""
    from csvd_bids.models.bundle import missing_channels

    return None if missing_channels(bundle, available) else bundle_entry(bundle)


def bundle_entry(bundle) -> dict:
    """What a plan records of a bundle it runs: folder, weights checksum (a cache key of its
    node), probability threshold and the description that the sidecars give as the method."""
    return {
        "model": str(bundle.path),
        "model_sha256": bundle.metadata["weights_sha256"],
        "threshold": float(bundle.metadata["threshold"]),
        "method": bundle.description,
    }


def load_models(config: RunConfig) -> dict:
    """marker key -> bundle: those of --models-dir, each checked against its marker, over the
    shipped ones the run asks for (--wmh-method model); {} without either."""
    if config.models_dir is None and config.wmh_method == "detector":
        return {}
    from csvd_bids.markers import REGISTRY
    from csvd_bids.models.builtin import builtin_bundles
    from csvd_bids.models.bundle import find_bundles
    from csvd_bids.models.detect import check_bundle_supported
    from csvd_bids.models.inference import resolve_device

    resolve_device(config.device)  # refuse cuda without a GPU before anything runs
    bundles = builtin_bundles(config.wmh_method)
    if config.models_dir is not None:
        bundles.update(find_bundles(config.models_dir))
    for key, bundle in bundles.items():
        check_bundle_supported(bundle, REGISTRY[key])
        LOGGER.info("%s: model bundle %s replaces the detector", key, bundle.path)
    return bundles


def plan_sessions(config: RunConfig) -> tuple[list[dict], dict[str, Rejection]]:
    """(plans of usable sessions, {session prefix: why it was rejected}).

    Raises NoSelectionError when the filters left no session a reference image."""
    from csvd_bids.models.builtin import second_opinion_bundles

    bundles = load_models(config)
    second = second_opinion_bundles(config.wmh_method, config.second_opinion, bundles)
    layout = load_layout(config.bids_dir, config.bids_database_dir)
    sessions = discover_sessions(
        layout, config.participant_labels, config.session_labels, config.bids_filters
    )
    plans, rejected = [], {}
    filtered = sorted(REFERENCE_MODALITIES & set(config.bids_filters or {}))
    for inputs in sessions:
        try:
            if inputs.reference is None and filtered:
                raise NoSelectionError(
                    f"the filters of --bids-filter-file ({', '.join(filtered)}) selected neither "
                    "a T1w nor a FLAIR image: nothing to use as the reference space"
                )
            maps = find_precomputed(config.derivatives, inputs.subject, inputs.session)
            plans.append(make_plan(inputs, config.markers, bundles, maps, second))
        except (InputImageError, NoSelectionError) as exc:
            # an error about the session as a whole names it already
            rejected[inputs.prefix] = Rejection(
                str(exc).removeprefix(f"{inputs.prefix}: "), exc.exit_code
            )
            if config.stop_on_first_crash:
                raise
    codes = {r.exit_code for r in rejected.values()}
    if not plans and codes == {ExitCode.NO_SELECTION}:
        # the filters' fault, not any session's: said once, as a selection error
        raise NoSelectionError("; ".join(sorted({r.message for r in rejected.values()})))
    for prefix, rejection in rejected.items():
        LOGGER.error("%s: %s", prefix, rejection.message)
    return plans, rejected
