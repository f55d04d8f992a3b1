"""Planning checks of the inputs of the lenticulostriate-territory maps (FA/MD, CBF): cheap,
before the graph, so that a session says up front why a map will be missing.

Each returns a JSON-able dict: the files (and metadata) the map is made from, or
``{"reason": ...}`` when it cannot be made.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from csvd_bids.errors import InputImageError
from csvd_bids.preproc.asl import ASLError, check_asl_image, check_metadata, read_context
from csvd_bids.preproc.dti import dti_volumes, read_bvecs
from csvd_bids.preproc.dwi import DWIError, adc_scale, read_bvals
from csvd_bids.preproc.images import check_input_image


def tensor_plan(dwi: str | None, bval: str | None, bvec: str | None, unusable: str | None) -> dict:
    """``{"dwi", "bval", "bvec"}`` of a DWI a tensor can be fitted to, else the reason."""
    if dwi is None:
        return {"reason": f"DWI {unusable}" if unusable else "no DWI series"}
    try:
        bvals = read_bvals(bval)
        dti_volumes(bvals, read_bvecs(bvec, bvals.size), str(dwi))
    except DWIError as exc:
        return {"reason": str(exc)}
    return {"dwi": dwi, "bval": bval, "bvec": bvec}


def asl_plan(asl: str | None, companions: dict | None, unusable: str | None) -> dict:
    """``{"asl", "aslcontext", "m0scan", "metadata", "m0_metadata"}`` of a usable ASL series,
    else the reason."""
    if asl is None:
        return {"reason": f"ASL {unusable}" if unusable else "no ASL series"}
    companions = companions or {}
    if not companions.get("aslcontext"):
        return {"reason": f"{asl}: no aslcontext.tsv beside the series"}
    try:
        shape = check_asl_image(asl, series=True)
        types = read_context(companions["aslcontext"], shape[3])
        check_metadata(
            companions.get("metadata") or {}, types, shape, companions.get("m0scan"), asl
        )
        if companions.get("m0scan"):
            check_asl_image(companions["m0scan"], series=False)
    except (ASLError, InputImageError) as exc:
        return {"reason": str(exc)}
    return {"asl": asl, **companions}


FA_MAX = 1.05  # an FA map's 99th percentile above this is not FA in 0-1 (e.g. scaled by 1000)


def _values(path: str) -> np.ndarray:
    data = np.asanyarray(nib.load(path).dataobj, dtype=np.float32)
    return data[np.isfinite(data) & (data > 0)]


def _t1w_problems(through: dict[str, dict]) -> dict[str, str]:
    """T1w path -> why it cannot be registered (the error's message names the file), for the
    T1ws that maps in another space are registered through; each checked once."""
    problems = {}
    for t1w in sorted({entry["t1w"] for entry in through.values()}):
        try:
            check_input_image(t1w)
        except InputImageError as exc:
            problems[t1w] = str(exc)
    return problems


def _registration_reason(kind: str, path: str, through: dict, problems: dict) -> str | None:
    """Why map ``kind`` cannot be registered through its space's T1w, None when it can."""
    entry = through.get(kind)
    if entry is None or entry["t1w"] not in problems:
        return None
    return f"{problems[entry['t1w']]} (the space-{entry['space']} T1w to register {path} through)"


def _registered(given: dict[str, str], through: dict) -> dict:
    """``{"registered": {map: {"space", "t1w"}}}`` for the given maps not in T1w space."""
    registered = {kind: through[kind] for kind in given if kind in through}
    return {"registered": registered} if registered else {}


def precomputed_tensor_plan(maps: dict[str, str], through: dict | None = None) -> dict | None:
    """``{"precomputed": {"fa", ["md"]}, "md_scale", ["registered"]}`` for the FA (and MD)
    another app made (csvd_bids.bids.precomputed), ``{"reason"}`` when its FA is unusable, None
    without one. ``through``: map -> ``{"space", "t1w"}`` of a map in another space than T1w,
    which is registered through that T1w; a T1w that cannot be read makes its map unusable."""
    if "fa" not in maps:
        return None
    through = through or {}
    problems = _t1w_problems({k: v for k, v in through.items() if k in ("fa", "md")})
    reason = _registration_reason("fa", maps["fa"], through, problems)
    if reason:
        return {"reason": reason}
    fa = _values(maps["fa"])
    if fa.size == 0 or float(np.percentile(fa, 99)) > FA_MAX:
        high = float(np.percentile(fa, 99)) if fa.size else 0.0
        return {"reason": f"{maps['fa']}: not an FA map in 0-1 (99th percentile {high:g})"}
    plan = {"precomputed": {"fa": maps["fa"]}}
    if "md" in maps:
        reason = _registration_reason("md", maps["md"], through, problems)
        plan.update({"md_reason": reason} if reason else _md_plan(maps["md"]))
        if "md_scale" in plan:
            plan["precomputed"]["md"] = maps["md"]
    return {**plan, **_registered(plan["precomputed"], through)}


def _md_plan(path: str) -> dict:
    """``{"md_scale", "md_units"}`` that bring the MD to the app's 1e-6 mm2/s, else
    ``{"md_reason"}``."""
    md = _values(path)
    scale, unit = adc_scale(float(np.median(md)) if md.size else float("nan"))
    if scale is None:
        return {"md_reason": f"{path}: {unit.replace('NAWM median ADC', 'median MD')}"}
    return {"md_scale": scale, "md_units": unit}


def precomputed_asl_plan(maps: dict[str, str], through: dict | None = None) -> dict | None:
    """``{"precomputed": {"cbf"}, ["registered"]}`` for the CBF another app made, ``{"reason"}``
    when its space's T1w cannot be read, None without one (``through``: as for the tensor)."""
    if "cbf" not in maps:
        return None
    through = through or {}
    problems = _t1w_problems({k: v for k, v in through.items() if k == "cbf"})
    reason = _registration_reason("cbf", maps["cbf"], through, problems)
    if reason:
        return {"reason": reason}
    given = {"cbf": maps["cbf"]}
    return {"precomputed": given, **_registered(given, through)}
