"""Arterial spin labelling of the physics engine: PCASL or PASL, 2D or 3D, from a kinetic model.

The template engine (:mod:`.asl`) renders the label-control difference from the white paper's
single-compartment formula, the same one the pipeline inverts, at a fixed protocol. Here the
difference comes from Buxton's general kinetic model (Buxton et al., MRM 1998;40:383) with
what the white paper's formula leaves out, and the protocol is drawn per subject over the
range of the white paper's recommendations (Alsop et al., MRM 2015;73:102) and of the PASL
and 2D protocols still in use:

- labelled blood arrives after an arterial transit time (ATT; GM U(0.8, 1.3) s, WM 0.2-0.5 s
  later, WMH a further 0.2 s; Mutsaerts et al., JCBFM 2017) and then relaxes with the
  tissue's apparent T1 (1/T1app = 1/T1 + f/lambda, the subject's drawn T1), not the blood's;
  blood T1 is the field's (Lu et al., MRM 2004;52:679) within +-5 % (haematocrit);
- PCASL (75 %): labelling duration U(1.5, 1.8) s, post-labelling delay U(1.5, 2.0) s, true
  labelling efficiency U(0.75, 0.90); PASL (QUIPSS II, 25 %): TI U(1.8, 2.0) s, TI1
  U(0.7, 0.8) s, efficiency U(0.95, 0.99). Half the sidecars state the efficiency, the others
  leave the pipeline to assume one;
- 3D readout (50 %, 6-10 pairs, 3-3.75 mm in-plane, 4 mm slices) with 2-4 background
  suppression pulses of true efficiency U(0.92, 0.97) each, which leave U(0.03, 0.15) of the
  static signal; or a 2D multi-slice readout (20-40 pairs, 5-6 mm slices, gaps in some)
  without suppression, whose slices are read 30-50 ms apart, each at its own delay;
- M0: a separate scan (75 %) with TR U(2, 10) s, not fully relaxed below about 5 s, or M0
  volumes at the start of the series (``Included``, 25 %) with their own TR;
- CBF per subject: GM U(40, 75) mL/100 g/min, WM U(0.30, 0.45) of GM, WMH U(0.6, 0.85) of WM,
  infarcts (RSSI) and lacune rims U(5, 15); fluid, microbleeds, veins, calcifications,
  arteries and air 0; the basal-ganglia effect of the template engine
  (:func:`.asl.severity_factor`);
- rendered on the render grid (partial volume, tissue texture), integrated over each acquired
  voxel with the slice profile (:func:`.physics.acquire_volume`), then one gain, bias field,
  N/2 ghost and Rician noise for the M0 and the series together (:func:`.physics.scanner`).

The truth's ``ASL`` section has the drawn protocol and tissue values and the basal ganglia's
planted mean CBF. Random draws: the subject's from the generator the caller passes, the
session's noise from its own stream, so no other image depends on this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import anatomy as A
from . import lesions as L
from .asl import PARTITION_COEFFICIENT
from .physics import SliceGrid, acquire_volume, render_planes, scanner, slice_grid
from .protocols import Protocol
from .tissue_properties import Tissue

BLOOD_T1_S = {1.5: 1.35, 3.0: 1.65}
ECHO_TIME_S = 0.014
GM_CBF = (40.0, 75.0)
WM_OVER_GM = (0.30, 0.45)
WMH_OVER_WM = (0.6, 0.85)
INFARCT_CBF = (5.0, 15.0)
GM_ATT = (0.8, 1.3)
WM_ATT_DELAY = (0.2, 0.5)
WMH_ATT_DELAY = 0.2
EXCHANGE_S = (0.3, 0.8)
PERFUSED = ("GM", "WM", "WMH", "RSSI", "LAC_RIM")  # every other tissue: CBF 0


@dataclass(frozen=True)
class ASLProtocol:
    labeling: str  # PCASL or PASL
    readout: str  # 3D or 2D
    delay: float  # s: PCASL post-labelling delay, PASL inversion time TI
    bolus: float  # s: PCASL labelling duration, PASL TI1 (bolus cut-off)
    efficiency: float  # true labelling efficiency
    efficiency_in_sidecar: bool
    background_pulses: int  # 0: no background suppression
    pulse_efficiency: float  # true inversion efficiency of each suppression pulse
    static_left: float  # fraction of the static signal suppression leaves
    m0_type: str  # Separate or Included
    tr: float  # s, label and control volumes
    m0_tr: float  # s, M0 volumes
    slice_time: float  # s between consecutive 2D slices
    pairs: int
    in_plane_mm: float
    slice_mm: float
    gap_mm: float
    snr: float  # white matter M0 over the noise sigma
    blood_t1: float  # s

    @classmethod
    def draw(cls, rng: np.random.Generator, field_t: float) -> ASLProtocol:
        pcasl = rng.random() < 0.75
        three_d = rng.random() < 0.5
        blood = BLOOD_T1_S[min(BLOOD_T1_S, key=lambda f: abs(f - field_t))]
        return cls(
            labeling="PCASL" if pcasl else "PASL",
            readout="3D" if three_d else "2D",
            delay=rng.uniform(1.5, 2.0) if pcasl else rng.uniform(1.8, 2.0),
            bolus=rng.uniform(1.5, 1.8) if pcasl else rng.uniform(0.7, 0.8),
            efficiency=rng.uniform(0.75, 0.90) if pcasl else rng.uniform(0.95, 0.99),
            efficiency_in_sidecar=bool(rng.random() < 0.5),
            background_pulses=int(rng.integers(2, 5)) if three_d else 0,
            pulse_efficiency=rng.uniform(0.92, 0.97),
            static_left=rng.uniform(0.03, 0.15) if three_d else 1.0,
            m0_type="Separate" if rng.random() < 0.75 else "Included",
            tr=rng.uniform(4.0, 5.0) if three_d else rng.uniform(3.5, 4.5),
            m0_tr=rng.uniform(2.0, 10.0),
            slice_time=0.0 if three_d else rng.uniform(0.03, 0.05),
            pairs=int(rng.integers(6, 11)) if three_d else int(rng.integers(20, 41)),
            in_plane_mm=rng.uniform(3.0, 3.75),
            slice_mm=4.0 if three_d else rng.uniform(5.0, 6.0),
            gap_mm=0.0 if three_d or rng.random() < 0.5 else rng.uniform(0.5, 1.0),
            snr=rng.uniform(40.0, 80.0) if three_d else rng.uniform(25.0, 50.0),
            blood_t1=blood * rng.uniform(0.95, 1.05),
        )

    def effective_efficiency(self) -> float:
        """Labelling efficiency times what each suppression pulse leaves of the label."""
        return self.efficiency * self.pulse_efficiency**self.background_pulses

    def volume_types(self) -> list[str]:
        m0 = ["m0scan", "m0scan"] if self.m0_type == "Included" else []
        return m0 + ["control", "label"] * self.pairs

    def aslcontext(self) -> str:
        return "volume_type\n" + "".join(f"{t}\n" for t in self.volume_types())


@dataclass(frozen=True)
class Perfusion:
    """One subject's CBF (mL/100 g/min) and arterial transit time (s) per tissue name."""

    cbf: dict[str, float]
    att: dict[str, float]
    exchange: float  # s from arrival in the capillaries to exchange into the tissue

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Perfusion:
        gm = rng.uniform(*GM_CBF)
        wm = gm * rng.uniform(*WM_OVER_GM)
        cbf = {"GM": gm, "WM": wm, "WMH": wm * rng.uniform(*WMH_OVER_WM)}
        cbf["RSSI"], cbf["LAC_RIM"] = rng.uniform(*INFARCT_CBF), rng.uniform(*INFARCT_CBF)
        gm_att = rng.uniform(*GM_ATT)
        wm_att = gm_att + rng.uniform(*WM_ATT_DELAY)
        att = {"GM": gm_att, "WM": wm_att, "WMH": wm_att + WMH_ATT_DELAY}
        att["RSSI"] = att["LAC_RIM"] = wm_att
        exchange = float(rng.uniform(*EXCHANGE_S))
        return cls(
            {k: float(v) for k, v in cbf.items()}, {k: float(v) for k, v in att.items()}, exchange
        )


ARRIVAL_STEPS = 256  # the bolus' arrival times integrated over


def residue(p: ASLProtocol, exchange: float, t1app: float, s: np.ndarray) -> np.ndarray:
    """What is left of label that arrived ``s`` s ago: it relaxes with blood T1 in the
    capillaries for the exchange time, then with the tissue's apparent T1."""
    in_blood = np.exp(-np.minimum(s, exchange) / p.blood_t1)
    return in_blood * np.exp(-np.maximum(s - exchange, 0.0) / t1app)


def kinetic_delta_m(
    p: ASLProtocol, cbf: float, att: float, t1: float, exchange: float, delay: np.ndarray
) -> np.ndarray:
    """deltaM per unit M0 of a tissue read ``delay`` s after the end of labelling (PCASL) or
    after the inversion (PASL), with the true efficiency: Buxton's general kinetic model (no
    outflow) integrated numerically over the arrival times, with label that relaxes with blood
    T1 until it has exchanged into the tissue and with the tissue's apparent T1
    (1/T1app = 1/T1 + f/lambda) after. Exchange time 0 and T1app = T1b with ATT <= delay
    give the white paper's formula."""
    f = cbf / 6000.0  # mL/g/s
    lam = PARTITION_COEFFICIENT
    t1app = 1.0 / (1.0 / t1 + f / lam)
    delay = np.asarray(delay, dtype=np.float64)
    t = p.bolus + delay if p.labeling == "PCASL" else delay  # from the start of labelling
    last = np.clip(t, att, att + p.bolus)  # the latest arrival so far
    u = np.linspace(0.0, 1.0, ARRIVAL_STEPS)
    arrival = att + (last - att)[..., None] * u  # (..., steps)
    # PCASL: every spin spent the transit time in blood; PASL: all labelled at the inversion
    labelled = np.exp(-(att if p.labeling == "PCASL" else arrival) / p.blood_t1)
    left = labelled * residue(p, exchange, t1app, t[..., None] - arrival)
    integral = np.trapezoid(left, arrival, axis=-1)
    alpha = p.effective_efficiency()
    return (2.0 * alpha * f / lam * integral).astype(np.float32)


def static_signal(t: Tissue, tr: float) -> float:
    """Relaxed signal per unit PD of a tissue at a repetition time (no suppression)."""
    return (1.0 - np.exp(-tr * 1000.0 / t.t1)) * np.exp(-ECHO_TIME_S * 1000.0 / t.t2s)


def delays(p: ASLProtocol, slice_of_plane: np.ndarray) -> np.ndarray:
    """The delay at which each render plane was read: 2D slices one after the other."""
    return p.delay + p.slice_time * slice_of_plane


CHANNELS = ("M0", "control", "deltaM", "relaxed", "flow")  # the last two: truth only


def tissue_images(
    p: ASLProtocol,
    perfusion: Perfusion,
    bg_factor: float,
    anat: A.Anatomy,
    basal_ganglia: np.ndarray,
    lesions: list[L.Lesion],
    tissues: dict[str, Tissue],
    code_tissue: dict[int, str],
    head_tissue: dict[int, str],
    texture: np.ndarray,
    slice_of_plane: np.ndarray,
) -> dict[str, np.ndarray]:
    """Noise-free render-grid images, partial-volume mixes of the tissues and lesions:
    ``M0`` (at the M0 TR), ``control`` (at the series TR, suppressed), ``deltaM``, and for the
    truth ``relaxed`` (fully relaxed M0) and ``flow`` (relaxed M0 times CBF)."""
    delay = delays(p, slice_of_plane)

    def channels(name: str, factor: float = 1.0) -> np.ndarray:
        """(channels, planes) of one tissue."""
        t = tissues[name]
        relaxed = t.pd * np.exp(-ECHO_TIME_S * 1000.0 / t.t2s)  # at the echo
        cbf = perfusion.cbf.get(name, 0.0) * factor
        att = perfusion.att.get(name, 1.0)
        dm = kinetic_delta_m(p, cbf, att, t.t1 / 1000.0, perfusion.exchange, delay)
        m0 = t.pd * static_signal(t, p.m0_tr)
        control = t.pd * static_signal(t, p.tr) * p.static_left
        rows = [m0, control, relaxed * dm, relaxed, relaxed * cbf]
        return np.stack([np.broadcast_to(np.float32(r), delay.shape) for r in rows])

    tissue = {name: channels(name) for name in ("CSF", "GM", "WM")}
    slowed = {name: channels(name, bg_factor) for name in ("GM", "WM")}
    head = np.stack([channels(head_tissue[k])[:, 0] for k in range(len(head_tissue))])
    images = {}
    for c, key in enumerate(CHANNELS):
        gm, wm = tissue["GM"][c], tissue["WM"][c]
        if key in ("deltaM", "flow"):  # the basal-ganglia effect is in the perfusion only
            gm = np.where(basal_ganglia, slowed["GM"][c], gm)
            wm = np.where(basal_ganglia, slowed["WM"][c], wm)
        image = (anat.gm * gm + anat.wm * wm) * texture + anat.csf * tissue["CSF"][c]
        image = image + anat.outside * head[anat.head, c]  # no perfusion outside the brain
        images[key] = np.array(np.broadcast_to(image, anat.shape), np.float32)
    table = np.stack([channels(code_tissue[code]) for code in range(len(code_tissue))])
    for lesion in lesions:
        idx, w = lesion.index, lesion.weight
        z = np.unravel_index(idx, anat.shape)[2]
        for c, key in enumerate(CHANNELS):
            flat = images[key].reshape(-1)
            flat[idx] = flat[idx] * (1.0 - w) + w * table[lesion.tissue, c, z]
    return images


def mean_cbf(images: dict[str, np.ndarray], mask: np.ndarray) -> float | None:
    """The planted CBF of a region: its relaxed-M0-weighted mean."""
    if not mask.any():
        return None
    weight = float(images["relaxed"][mask].sum(dtype=np.float64))
    return float(images["flow"][mask].sum(dtype=np.float64)) / weight


def asl_grid(p: ASLProtocol, shape, affine: np.ndarray, render_mm: float) -> SliceGrid:
    """The series' acquisition grid on the render grid (whole render voxels)."""
    gap = render_planes(p.gap_mm, render_mm) if p.gap_mm > 0 else 0
    in_plane, thickness = (render_planes(mm, render_mm) for mm in (p.in_plane_mm, p.slice_mm))
    return slice_grid(in_plane, thickness, gap, shape, affine)


def slice_of_planes(grid: SliceGrid, depth: int) -> np.ndarray:
    """The acquired slice each render plane belongs to (a gap's planes: the slice before)."""
    spacing = grid.factors[2] + grid.gap
    return np.minimum(np.arange(depth) // spacing, grid.shape[2] - 1)


def acquire(
    rng: np.random.Generator,
    p: ASLProtocol,
    images: dict[str, np.ndarray],
    grid: SliceGrid,
    protocol: Protocol,
    wm_m0: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(series, separate M0 scan or None), int16: the M0 and the series share one gain, bias
    field and ghost (``wm_m0``: white matter's M0, which the gain brings to scanner units),
    every volume its own Rician noise."""
    m0, control, delta = (acquire_volume(images[key], grid) for key in CHANNELS[:3])
    n_m0 = p.volume_types().count("m0scan") or 1
    volumes = [m0] * n_m0 + [control, control - delta] * p.pairs
    acquired = scanner(rng, volumes, wm_m0, p.snr, protocol)
    if p.m0_type == "Included":
        return acquired, None
    return acquired[..., 1:], acquired[..., 0]


def sidecars(
    p: ASLProtocol, grid: SliceGrid, render_mm: float, field_t: float, asl_uri: str
) -> tuple[dict, dict]:
    """Fields of the ``_asl.json`` and ``_m0scan.json`` (the M0's unused when Included)."""
    voxel = [round(float(np.linalg.norm(grid.affine[:3, a])), 6) for a in range(3)]
    thickness = round(grid.factors[2] * render_mm, 6)
    types = p.volume_types()
    common = {
        "MagneticFieldStrength": field_t,
        "MRAcquisitionType": p.readout,
        "PulseSequenceType": "3D GRASE" if p.readout == "3D" else "2D EPI",
        "EchoTime": ECHO_TIME_S,
        "FlipAngle": 90,
        "AcquisitionVoxelSize": voxel,
        "SliceThickness": thickness,
        **({"SpacingBetweenSlices": voxel[2]} if grid.gap else {}),
    }
    asl = {
        **common,
        "ArterialSpinLabelingType": p.labeling,
        "PostLabelingDelay": round(p.delay, 4),
        "BackgroundSuppression": p.background_pulses > 0,
        "VascularCrushing": False,
        "M0Type": p.m0_type,
        "TotalAcquiredPairs": p.pairs,
        "RepetitionTimePreparation": [round(p.m0_tr if t == "m0scan" else p.tr, 4) for t in types]
        if p.m0_type == "Included"
        else round(p.tr, 4),
    }
    if p.labeling == "PCASL":
        asl.update(PCASLType="balanced", LabelingDuration=round(p.bolus, 4))
    else:
        asl.update(
            PASLType="FAIR",
            BolusCutOffFlag=True,
            BolusCutOffDelayTime=round(p.bolus, 4),
            BolusCutOffTechnique="Q2TIPS",
        )
    if p.efficiency_in_sidecar:
        asl["LabelingEfficiency"] = round(p.efficiency, 4)
    if p.background_pulses:
        asl["BackgroundSuppressionNumberPulses"] = p.background_pulses
    if p.readout == "2D":
        asl["SliceTiming"] = [round(k * p.slice_time, 4) for k in range(grid.shape[2])]
        asl["SliceEncodingDirection"] = "k"
    m0 = {**common, "RepetitionTimePreparation": round(p.m0_tr, 4), "IntendedFor": asl_uri}
    return asl, m0


def planted(
    p: ASLProtocol, perfusion: Perfusion, bg_factor: float, bg_mean_cbf: float | None
) -> dict:
    """The truth's ``ASL`` section for the physics engine."""
    return {
        "Model": "Buxton et al. 1998 general kinetic model (tissue T1, transit time)",
        "CBFUnits": "mL/100 g/min",
        "Protocol": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(p).items()},
        "BloodBrainPartitionCoefficient": PARTITION_COEFFICIENT,
        "ExchangeTime": round(perfusion.exchange, 4),
        "Tissues": {
            name: {
                "CBF": round(perfusion.cbf.get(name, 0.0), 4),
                "ATT": round(perfusion.att.get(name, 0.0), 4),
            }
            for name in ("CSF", *PERFUSED)
        },
        "BasalGangliaCBFFactor": round(bg_factor, 6),
        "BasalGanglia": {
            name: {"CBF": round(perfusion.cbf[name] * bg_factor, 4)} for name in ("GM", "WM")
        },
        "BasalGangliaMeanCBF": None if bg_mean_cbf is None else round(bg_mean_cbf, 4),
    }
