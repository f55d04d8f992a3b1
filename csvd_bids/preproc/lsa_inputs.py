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


def precomputed_tensor_plan(maps: dict[str, str]) -> dict | None:
    """``{"precomputed": {"fa", ["md"]}, "md_scale"}`` for the FA (and MD) another app made
    (csvd_bids.bids.precomputed), ``{"reason"}`` when its FA is unusable, None without one."""
    if "fa" not in maps:
        return None
    fa = _values(maps["fa"])
    if fa.size == 0 or float(np.percentile(fa, 99)) > FA_MAX:
        high = float(np.percentile(fa, 99)) if fa.size else 0.0
        return {"reason": f"{maps['fa']}: not an FA map in 0-1 (99th percentile {high:g})"}
    plan = {"precomputed": {"fa": maps["fa"]}}
    if "md" in maps:
        md = _values(maps["md"])
        scale, unit = adc_scale(float(np.median(md)) if md.size else float("nan"))
        if scale is not None:  # the MD is brought to the app's 1e-6 mm2/s
            plan["precomputed"]["md"] = maps["md"]
            plan["md_scale"], plan["md_units"] = scale, unit
        else:
            plan["md_reason"] = f"{maps['md']}: {unit.replace('NAWM median ADC', 'median MD')}"
    return plan


def precomputed_asl_plan(maps: dict[str, str]) -> dict | None:
    """``{"precomputed": {"cbf"}}`` for the CBF another app made, None without one."""
    return {"precomputed": {"cbf": maps["cbf"]}} if "cbf" in maps else None
