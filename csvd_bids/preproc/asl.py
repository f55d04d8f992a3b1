"""Cerebral blood flow (CBF) from arterial spin labelling (BIDS ``perf/``), on the reference grid.

The single-compartment model of the ISMRM perfusion study group's consensus paper (Alsop et
al., Magn Reson Med 2015;73:102-116), in ml/100 g/min:

- (P)CASL: ``CBF = 6000 lambda dM exp(PLD / T1b) / (2 alpha T1b M0 (1 - exp(-tau / T1b)))``
- PASL (QUIPSS II / Q2TIPS): ``CBF = 6000 lambda dM exp(TI / T1b) / (2 alpha TI1 M0)``

with ``lambda`` the blood-brain partition coefficient (0.9 ml/g), ``T1b`` the T1 of arterial
blood (1.65 s at 3 T, 1.35 s at 1.5 T), ``alpha`` the labelling efficiency (0.85 PCASL/CASL,
0.98 PASL, times 0.95 per background-suppression pulse when the sidecar gives their number:
``ASLParameters``), ``tau`` = LabelingDuration, ``PLD`` = PostLabelingDelay (PASL: ``TI``),
``TI1`` = BolusCutOffDelayTime. In a 2D multi-slice series every slice is read later than
the first: its delay is PLD + its SliceTiming (the white paper's per-slice correction).

- ``dM``: the mean of the ``deltam`` volumes, or mean(control) - mean(label) (aslcontext);
  ``cbf`` volumes, when the series holds them, are used as they are.
- ``M0``: ``M0Type`` Separate (the ``m0scan`` series, mean of its volumes), Included (the
  series' ``m0scan`` volumes) or Estimate (``M0Estimate``). An M0 acquired with a TR under 5 s
  has not recovered fully; it is divided by ``1 - exp(-TR / T1 tissue)`` (T1 of grey matter,
  1.4 s at 3 T, 1.1 s at 1.5 T) as the white paper recommends. Absent: the mean control image
  stands in for M0 when there is no background suppression (noted in the report); with
  background suppression CBF cannot be quantified.
- CBF is computed on the ASL grid (outside the M0's brain signal: 0), then the M0 is rigidly
  registered to the reference (:func:`csvd_bids.preproc.coregister.coregister`) and CBF and
  M0 are resampled once, linearly (CBF can be negative from noise; a spline would ring).

A post-labelling delay under ``SHORT_PLD_S`` (1 s) is reported as a note: labelled blood is
then still in the arteries, and the model, which assumes it has reached the tissue, reads
arterial signal as perfusion and misses late-arriving territories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from csvd_bids.errors import InputImageError
from csvd_bids.preproc.coregister import coregister, coverage_on, resample_linear
from csvd_bids.preproc.images import check_input_image, new_like

CBF_UNITS = "mL/100 g/min"
SHORT_PLD_S = 1.0
FULL_RECOVERY_TR_S = 5.0
VOLUME_TYPES = {"control", "label", "m0scan", "deltam", "cbf", "noRF"}
# Brain signal on the ASL grid: M0 above this fraction of its 99th percentile.
M0_BRAIN_FRACTION = 0.15


class ASLError(InputImageError, ValueError):
    """An ASL series, its aslcontext or its metadata cannot give CBF (names the file)."""


@dataclass(frozen=True)
class ASLParameters:
    """The model's constants (Alsop et al. 2015, table 1 and text)."""

    partition_coefficient: float = 0.9  # lambda, ml/g
    blood_t1_s: dict = field(default_factory=lambda: {1.5: 1.35, 3.0: 1.65})
    tissue_t1_s: dict = field(default_factory=lambda: {1.5: 1.1, 3.0: 1.4})  # M0 TR correction
    efficiency: dict = field(default_factory=lambda: {"PCASL": 0.85, "CASL": 0.85, "PASL": 0.98})
    background_pulse_efficiency: float = 0.95

    def at_field(self, table: dict, field_t: float) -> float:
        """The value of ``table`` at the nearest tabulated field strength."""
        nearest = min(table, key=lambda tesla: abs(tesla - field_t))
        return float(table[nearest])


def read_metadata(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ASLError(str(path), f"not a readable JSON sidecar ({exc})") from exc
    if not isinstance(data, dict):
        raise ASLError(str(path), "the sidecar must hold a JSON object")
    return data


def read_context(path: str | Path, n_volumes: int) -> list[str]:
    """The ``volume_type`` column of an ``aslcontext.tsv``, one entry per volume."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str)
    except (OSError, ValueError) as exc:
        raise ASLError(str(path), f"not a readable aslcontext table ({exc})") from exc
    if "volume_type" not in table.columns:
        raise ASLError(str(path), "no volume_type column")
    types = [str(t).strip() for t in table["volume_type"]]
    unknown = sorted(set(types) - VOLUME_TYPES)
    if unknown:
        raise ASLError(
            str(path), f"unknown volume_type {unknown[0]!r} (known: {', '.join(VOLUME_TYPES)})"
        )
    if len(types) != n_volumes:
        raise ASLError(str(path), f"{len(types)} rows for an ASL series of {n_volumes} volumes")
    return types


def check_asl_image(path: str | Path, series: bool) -> tuple[int, ...]:
    """check_input_image: the ASL series is 4D; an M0 scan may be 3D or hold volumes."""
    try:
        four_d = series or len(nib.load(path).shape) == 4
    except Exception:  # unreadable: check_input_image names the problem
        four_d = series
    return check_input_image(path, expect_4d=four_d)


def _load(path: str | Path, series: bool) -> nib.Nifti1Image:
    check_asl_image(path, series)
    img = nib.load(path)
    return nib.Nifti1Image(np.asanyarray(img.dataobj, dtype=np.float32), img.affine)


def _volumes(data: np.ndarray) -> np.ndarray:
    return data if data.ndim == 4 else data[..., None]


def _mean_of(data: np.ndarray, types: list[str], kind: str) -> np.ndarray | None:
    index = [i for i, t in enumerate(types) if t == kind]
    return data[..., index].mean(axis=-1) if index else None


def _number(meta: dict, key: str, source: str) -> float:
    value = meta.get(key)
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        value = value[0]  # one delay per volume, all alike
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ASLError(source, f"{key} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def check_m0_source(meta: dict, types: list[str], m0_path: str | Path | None, source: str) -> None:
    """ASLError unless the sidecar's M0Type names an M0 this series has."""
    m0_type = meta.get("M0Type")
    if m0_type == "Separate" and m0_path is None:
        raise ASLError(source, "M0Type is Separate but no m0scan file belongs to the series")
    if m0_type == "Included" and "m0scan" not in types:
        raise ASLError(source, "M0Type is Included but aslcontext lists no m0scan volume")
    if m0_type == "Estimate":
        _number(meta, "M0Estimate", source)
    elif m0_type == "Absent":
        if meta.get("BackgroundSuppression"):
            raise ASLError(
                source,
                "M0Type is Absent and background suppression was used: no M0 to quantify CBF",
            )
        if "control" not in types:
            raise ASLError(source, "M0Type is Absent and there are no control volumes")
    elif m0_type not in ("Separate", "Included"):
        raise ASLError(
            source, f"M0Type must be Separate, Included, Estimate or Absent, got {m0_type!r}"
        )


def check_metadata(
    meta: dict, types: list[str], shape: tuple[int, ...], m0_path: str | None, source: str
) -> None:
    """Everything :func:`prepare_asl` needs from the metadata, checked without the data (at
    planning): the M0's source and the quantification parameters, on a dummy grid."""
    check_m0_source(meta, types, m0_path, source)
    if "cbf" in types:
        return  # the scanner's own CBF: nothing to quantify
    if not {"control", "label"} <= set(types) and "deltam" not in types:
        raise ASLError(source, "aslcontext lists neither cbf, deltam nor control/label volumes")
    quantify_cbf(np.zeros(shape[:3], np.float32), np.zeros(shape[:3], np.float32), meta, source)


def _included_m0_tr(tr, types: list[str]):
    """The TR of an Included M0's volumes: BIDS allows one RepetitionTimePreparation per
    volume, and the M0 volumes' is often longer than the label and control volumes'."""
    if not isinstance(tr, list) or len(tr) != len(types):
        return tr
    values = {tr[i] for i, kind in enumerate(types) if kind == "m0scan"}
    return values.pop() if len(values) == 1 else None


def m0_image(
    series: np.ndarray,
    types: list[str],
    meta: dict,
    m0_path: str | Path | None,
    m0_meta: dict | None,
    source: str,
    params: ASLParameters,
) -> tuple[np.ndarray, list[str]]:
    """The M0 image on the ASL grid (see module docstring) and notes on how it was made."""
    check_m0_source(meta, types, m0_path, source)
    m0_type = meta.get("M0Type")
    field_t = float(meta.get("MagneticFieldStrength", 3.0))
    notes: list[str] = []
    tr = meta.get("RepetitionTimePreparation")
    if m0_type == "Separate":
        m0_img = _load(m0_path, series=False)
        m0 = _volumes(np.asanyarray(m0_img.dataobj)).mean(axis=-1)
        if m0.shape != series.shape[:3]:
            raise ASLError(
                str(m0_path), f"M0 grid {m0.shape} differs from the ASL grid {series.shape[:3]}"
            )
        m0_meta = m0_meta or {}
        tr = m0_meta.get("RepetitionTimePreparation", m0_meta.get("RepetitionTime"))
    elif m0_type == "Included":
        m0 = _mean_of(series, types, "m0scan")
        tr = _included_m0_tr(tr, types)
    elif m0_type == "Estimate":
        value = _number(meta, "M0Estimate", source)
        return np.full(series.shape[:3], value, np.float32), ["M0 is the sidecar's M0Estimate"]
    else:  # Absent
        m0 = _mean_of(series, types, "control")
        notes.append("no M0 scan: the mean control image stands in for M0")
    if isinstance(tr, int | float) and 0 < tr < FULL_RECOVERY_TR_S:
        t1 = params.at_field(params.tissue_t1_s, field_t)
        m0 = m0 / (1.0 - np.exp(-float(tr) / t1))
        notes.append(
            f"M0 acquired with TR {tr:g} s (< {FULL_RECOVERY_TR_S:g} s): divided by "
            f"1 - exp(-TR / {t1:g} s) for incomplete recovery"
        )
    return m0.astype(np.float32), notes


def slice_delays(meta: dict, shape: tuple[int, ...], source: str) -> np.ndarray:
    """Seconds after the first slice at which each voxel was read (0 for a 3D readout),
    broadcastable to the ASL grid."""
    timing = meta.get("SliceTiming")
    if meta.get("MRAcquisitionType") != "2D" or not timing:
        return np.zeros((1, 1, 1), np.float32)
    axis = {"i": 0, "j": 1, "k": 2}[str(meta.get("SliceEncodingDirection", "k")).rstrip("-")]
    timing = np.asarray(timing, dtype=np.float32)
    if timing.size != shape[axis]:
        raise ASLError(source, f"{timing.size} SliceTiming entries for {shape[axis]} slices")
    view = [1, 1, 1]
    view[axis] = timing.size
    return (timing - timing.min()).reshape(view)


def quantify_cbf(
    delta_m: np.ndarray,
    m0: np.ndarray,
    meta: dict,
    source: str,
    params: ASLParameters | None = None,
) -> tuple[np.ndarray, dict]:
    """CBF (``CBF_UNITS``) from the mean difference and M0 on one grid; 0 where M0 has no
    brain signal. Returns the map and the parameters used."""
    params = params or ASLParameters()
    kind = meta.get("ArterialSpinLabelingType")
    if kind not in params.efficiency:
        raise ASLError(source, f"ArterialSpinLabelingType must be PCASL, CASL or PASL: {kind!r}")
    field_t = float(meta.get("MagneticFieldStrength", 3.0))
    t1b = params.at_field(params.blood_t1_s, field_t)
    alpha = params.efficiency[kind]
    pulses = meta.get("BackgroundSuppressionNumberPulses")
    if meta.get("BackgroundSuppression") and isinstance(pulses, int) and pulses > 0:
        alpha *= params.background_pulse_efficiency**pulses
    delay = _number(meta, "PostLabelingDelay", source) + slice_delays(meta, m0.shape, source)
    lam = params.partition_coefficient
    if kind == "PASL":
        if not meta.get("BolusCutOffFlag"):
            raise ASLError(source, "PASL without a bolus cut-off (BolusCutOffFlag): TI1 unknown")
        ti1 = meta.get("BolusCutOffDelayTime")
        ti1 = ti1[0] if isinstance(ti1, list) and ti1 else ti1
        ti1 = _number({"BolusCutOffDelayTime": ti1}, "BolusCutOffDelayTime", source)
        scale = 6000.0 * lam * np.exp(delay / t1b) / (2.0 * alpha * ti1)
    else:
        tau = _number(meta, "LabelingDuration", source)
        scale = 6000.0 * lam * np.exp(delay / t1b) / (2.0 * alpha * t1b * (1 - np.exp(-tau / t1b)))
    brain = m0_brain(m0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cbf = np.where(brain, scale * delta_m / m0, 0.0)
    used = {
        "ArterialSpinLabelingType": kind,
        "LabelingEfficiency": round(alpha, 4),
        "BloodT1": t1b,
        "PartitionCoefficient": lam,
        "PostLabelingDelay": round(float(np.min(delay)), 4),  # of the first slice
        "MagneticFieldStrength": field_t,
    }
    return np.nan_to_num(cbf).astype(np.float32), used


def m0_brain(m0: np.ndarray) -> np.ndarray:
    """Voxels with brain signal on the ASL grid: M0 above ``M0_BRAIN_FRACTION`` of its 99th
    percentile."""
    positive = m0[m0 > 0]
    level = float(np.percentile(positive, 99)) if positive.size else 0.0
    return m0 > M0_BRAIN_FRACTION * level


@dataclass(frozen=True)
class PreparedASL:
    cbf: nib.Nifti1Image  # reference grid
    m0: nib.Nifti1Image  # reference grid
    coverage: nib.Nifti1Image  # uint8, reference grid: inside the ASL's brain signal
    transform: sitk.Transform  # reference points -> ASL points (ITK, LPS)
    report: dict


def prepare_asl(
    asl_path: str | Path,
    context_path: str | Path,
    meta: dict,
    m0_path: str | Path | None,
    m0_meta: dict | None,
    reference: nib.Nifti1Image,
    params: ASLParameters | None = None,
) -> PreparedASL:
    """CBF and M0 of an ASL series on the reference grid, with a report (module docstring)."""
    params = params or ASLParameters()
    source = str(asl_path)
    img = _load(asl_path, series=True)
    series = _volumes(np.asanyarray(img.dataobj))
    types = read_context(context_path, series.shape[3])
    check_metadata(meta, types, series.shape, m0_path, source)
    m0, notes = m0_image(series, types, meta, m0_path, m0_meta, source, params)
    cbf_given = _mean_of(series, types, "cbf")
    if cbf_given is not None:
        cbf, used = cbf_given.astype(np.float32), {"Model": "the series' own cbf volumes"}
    else:
        delta_m = _mean_of(series, types, "deltam")
        if delta_m is None:  # check_metadata: control and label are there
            delta_m = _mean_of(series, types, "control") - _mean_of(series, types, "label")
        cbf, used = quantify_cbf(delta_m, m0, meta, source, params)
        used = {"Model": "single-compartment (Alsop et al. 2015)", **used}
    pld = used.get("PostLabelingDelay")
    if pld is not None and pld < SHORT_PLD_S:
        notes.append(
            f"PostLabelingDelay {pld:g} s is shorter than {SHORT_PLD_S:g} s (the white paper "
            "recommends 1.5-2 s): labelled blood is still arterial, so CBF is biased: "
            "high in and near arteries, low in late-arriving territories"
        )
    m0_img, cbf_img = new_like(m0, img), new_like(cbf, img)
    registration = coregister(m0_img, reference)
    report = {
        "Registration": {**registration.as_dict(), "RegisteredImage": "M0"},
        "Quantification": used,
        "CBFUnits": CBF_UNITS,
        "VolumeTypes": {t: types.count(t) for t in sorted(set(types))},
        "M0Type": meta.get("M0Type"),
        "Notes": notes,
        "Interpolation": "linear",
    }
    return PreparedASL(
        resample_linear(cbf_img, reference, registration.transform),
        resample_linear(m0_img, reference, registration.transform),
        coverage_on(m0_brain(m0), img, reference, registration.transform),
        registration.transform,
        report,
    )
