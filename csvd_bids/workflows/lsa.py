"""The lenticulostriate territory of one session: FA and MD from the DWI, CBF from ASL, and
their means over the basal-ganglia regions of interest."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.bids.derivatives import raw_uri
from csvd_bids.config import RunConfig
from csvd_bids.interfaces.lsa import BasalGangliaStats, FitDTI, PrepareASL, ResampleMaps
from csvd_bids.planning import precomputed_note
from csvd_bids.preproc.coregister import METHOD

# Inputs from the preprocessing besides the DWI's transform.
LSA_INPUTS = ("reference", "structures", "affine", "brain_mask")
DTI_OUTPUTS = ("fa", "md", "dti_report")
ASL_OUTPUTS = ("cbf", "m0", "asl_transform", "asl_report")


def lsa_plan(plan: dict) -> dict:
    """The plan's map inputs (csvd_bids.planning); a plan made without them has neither map."""
    missing = {"dti": {"reason": "no DWI series"}, "asl": {"reason": "no ASL series"}}
    return plan.get("lsa") or missing


def lsa_outputs(plan: dict) -> list[str]:
    """The fields ``init_lsa_wf`` gives for this plan: the table, and the maps it can make."""
    lsa = lsa_plan(plan)
    return [
        "table",
        *(["patches"] if "t1w" in plan["files"] else []),
        *_map_outputs(lsa["dti"], DTI_OUTPUTS, "dti_report"),
        *_map_outputs(lsa["asl"], ASL_OUTPUTS, "asl_report"),
    ]


def _map_outputs(entry: dict, made_here: tuple[str, ...], report: str) -> tuple[str, ...]:
    """A map made here gives all of ``made_here``; one made elsewhere its maps and a report."""
    if "precomputed" in entry:
        return (*entry["precomputed"], report)
    return () if "reason" in entry else made_here


def map_sources(plan: dict, bids_dir) -> dict[str, str]:
    """map -> the raw file it is made from (a BIDS URI), "precomputed: <file>" for a map
    another app made, or "not assessed: <why>"."""
    lsa = lsa_plan(plan)

    def made_from(entry: dict, raw: str, names: tuple[str, ...]) -> dict[str, str]:
        if "reason" in entry:
            return dict.fromkeys(names, f"not assessed: {entry['reason']}")
        if "precomputed" not in entry:
            return dict.fromkeys(names, raw_uri(bids_dir, entry[raw]))
        given = entry["precomputed"]
        missing = entry.get("md_reason", "no precomputed map beside the FA")

        def precomputed(n: str) -> str:
            note = precomputed_note(entry, n)
            return f"precomputed: {given[n]}" + (f" ({note})" if note else "")

        return {n: precomputed(n) if n in given else f"not assessed: {missing}" for n in names}

    return {**made_from(lsa["dti"], "dwi", ("fa", "md")), **made_from(lsa["asl"], "asl", ("cbf",))}


def _precomputed_methods(entry: dict) -> str:
    """The methods sentences of maps another app made: from T1w space resampled, from another
    subject space (QSIPrep's ACPC) resampled through the registration of that space's T1w."""
    given, registered = entry["precomputed"], entry.get("registered", {})
    plain = [k for k in given if k not in registered]
    moved = [k for k in given if k in registered]

    def names(kinds: list[str], files: dict[str, str]) -> tuple[str, str]:
        """The maps' names ("FA and MD") and their files', each once (FA and MD share a T1w)."""
        unique = dict.fromkeys(Path(files[k]).name for k in kinds)
        return " and ".join(k.upper() for k in kinds), ", ".join(unique)

    text = ""
    if plain:
        maps, files = names(plain, given)
        text += (
            f" {maps} made by another application in the subject's T1w space ({files}) were "
            "resampled linearly onto the reference grid."
        )
    if moved:
        maps, files = names(moved, given)
        _, t1ws = names(moved, {k: registered[k]["t1w"] for k in moved})
        spaces = ", ".join(sorted({registered[k]["space"] for k in moved}))
        text += (
            f" {maps} made by another application in its {spaces} space ({files}) were "
            "resampled linearly onto the reference grid through the rigid registration of that "
            f"application's T1w in the same space ({t1ws}) to the reference; {METHOD}."
        )
    return text


def lsa_methods(plan: dict) -> str:
    lsa = lsa_plan(plan)
    text = (
        "The caudate, putamen and globus pallidus of each hemisphere (the lenticulostriate "
        "territory) were taken from the warped Harvard-Oxford atlas."
    )
    for entry in (lsa["dti"], lsa["asl"]):
        if "precomputed" in entry:
            text += _precomputed_methods(entry)
    if "dwi" in lsa["dti"]:
        text += (
            " A diffusion tensor was fitted to the DWI (b <= 1500 s/mm2, weighted least squares, "
            "dipy [@dipy]); FA and MD were resampled onto the reference grid with the DWI's rigid "
            "transform."
        )
    if "asl" in lsa["asl"]:
        text += (
            " CBF was quantified from the ASL series with the single-compartment model of the "
            "ISMRM perfusion study group [@alsop2015] and resampled onto the reference grid after "
            "rigid registration of the M0."
        )
    if "t1w" in plan["files"]:
        text += (
            " A T1w patch of each region (48 mm, 1.5 mm voxels, template orientation through "
            "the affine registration, z-scored over the brain) was written for group models."
        )
    return text + " Mean values per region are reported."


def init_lsa_wf(*, plan: dict, config: RunConfig, name: str = "lsa_wf") -> pe.Workflow:
    """Inputs: ``LSA_INPUTS`` and ``dwi_transform`` (when the plan fits a tensor); outputs:
    :func:`lsa_outputs`."""
    wf = pe.Workflow(name=name)
    wf.__desc__ = lsa_methods(plan)
    lsa = lsa_plan(plan)
    fit_dti, use_asl = "dwi" in lsa["dti"], "asl" in lsa["asl"]
    t1w = "t1w" in plan["files"]
    fields = [*LSA_INPUTS, *(["dwi_transform"] if fit_dti else []), *(["t1w"] if t1w else [])]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=lsa_outputs(plan)), name="outputnode")
    stats = pe.Node(
        BasalGangliaStats(sources=json.dumps(map_sources(plan, config.bids_dir))),
        name="basal_ganglia_stats",
        mem_gb=1.0,
    )
    wf.connect(
        [
            (inputnode, stats, [("structures", "structures"), ("affine", "affine")]),
            (stats, outputnode, [("table", "table")]),
        ]
    )
    if t1w:
        wf.connect(
            [
                (inputnode, stats, [("t1w", "t1w"), ("brain_mask", "brain_mask")]),
                (stats, outputnode, [("patches", "patches")]),
            ]
        )
    threaded = {"n_procs": config.omp_nthreads}
    for key, coverage, report in (
        ("dti", "dti_coverage", "dti_report"),
        ("asl", "cbf_coverage", "asl_report"),
    ):
        given = lsa[key].get("precomputed")
        if not given:
            continue
        scales = {"md": lsa[key]["md_scale"]} if "md" in given else {}
        registered = lsa[key].get("registered", {})
        resample = pe.Node(
            ResampleMaps(
                maps=json.dumps(given),
                scales=json.dumps(scales),
                registered=json.dumps(registered),
                num_threads=config.omp_nthreads,
            ),
            name=f"resample_precomputed_{key}",
            mem_gb=1.0,
            **(threaded if registered else {}),
        )
        wf.connect(
            [
                (inputnode, resample, [("reference", "reference")]),
                (resample, stats, [*((m, m) for m in given), ("coverage", coverage)]),
                (resample, outputnode, [*((m, m) for m in given), ("report", report)]),
            ]
        )
    if fit_dti:
        dti = pe.Node(
            FitDTI(
                in_file=lsa["dti"]["dwi"],
                bval=lsa["dti"]["bval"],
                bvec=lsa["dti"]["bvec"],
                num_threads=config.omp_nthreads,
            ),
            name="fit_dti",
            mem_gb=2.0,
            **threaded,
        )
        wf.connect(
            [
                (
                    inputnode,
                    dti,
                    [
                        ("reference", "reference"),
                        ("dwi_transform", "transform"),
                        ("brain_mask", "brain_mask"),
                    ],
                ),
                (dti, stats, [("fa", "fa"), ("md", "md"), ("coverage", "dti_coverage")]),
                (dti, outputnode, [("fa", "fa"), ("md", "md"), ("report", "dti_report")]),
            ]
        )
    if use_asl:
        asl = lsa["asl"]
        prepare = pe.Node(
            PrepareASL(
                in_file=asl["asl"],
                aslcontext=asl["aslcontext"],
                metadata=json.dumps(asl["metadata"], sort_keys=True),
                m0_metadata=json.dumps(asl.get("m0_metadata") or {}, sort_keys=True),
                num_threads=config.omp_nthreads,
                **({"m0scan": asl["m0scan"]} if asl.get("m0scan") else {}),
            ),
            name="prepare_asl",
            mem_gb=1.5,
            **threaded,
        )
        wf.connect(
            [
                (inputnode, prepare, [("reference", "reference")]),
                (prepare, stats, [("cbf", "cbf"), ("coverage", "cbf_coverage")]),
                (
                    prepare,
                    outputnode,
                    [(f, f) for f in ("cbf", "m0")]
                    + [("transform", "asl_transform"), ("report", "asl_report")],
                ),
            ]
        )
    return wf
