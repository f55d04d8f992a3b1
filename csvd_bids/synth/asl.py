"""Pseudo-continuous arterial spin labelling (PCASL) with a separate M0 scan (template engine).

Forward model: the single-compartment model of the ISMRM perfusion study group's white paper
(Alsop et al., MRM 2015;73:102-116, eq. 1), inverted for the label-control difference:

    deltaM = CBF * 2 * alpha * T1b * M0 * (1 - exp(-tau / T1b)) * exp(-PLD / T1b) / (6000 * lambda)

with CBF in mL/100 g/min, lambda = 0.9 mL/g (blood-brain partition coefficient), alpha = 0.85
(PCASL labelling efficiency), T1b = 1.65 s (arterial blood at 3 T; 1.35 s at 1.5 T,
``BLOOD_T1``), tau = LabelingDuration = 1.8 s, PLD = PostLabelingDelay = 1.8 s, and M0 the
voxel's equilibrium magnetisation, which the M0 scan shows (``M0_SCALE`` x relative proton
density). The datasets are 3 T.

Images (working grid, then averaged over the blocks of the ASL grid: about 3 x 3 x 5 mm,
:func:`.contrasts.acquisition_grids`): each voxel is the partial-volume mix of the *signals*
of its components (tissue fractions, then lesions blended with their weights, as for every
other contrast), for three linear channels:

- ``M0`` = M0_SCALE * PD, relative PD: CSF 1.0, GM 0.85, WM 0.70; WMH 0.80, PVS 0.95,
  lacune cavity 1.0, lacune rim 0.85, RSSI 0.88 (oedema); head: skull 0.05, marrow 0.10 and
  scalp 0.40 (fat suppressed), air 0. Written as ``_m0scan`` (no T1 saturation: the fully
  relaxed magnetisation; its sidecar's RepetitionTimePreparation is 10 s).
- ``control`` = M0 * (1 - exp(-TRprep / T1)), TRprep = 4 s (no background suppression), T1 at
  3 T: CSF 4.2, GM 1.6, WM 0.85, WMH 1.2, PVS 3.5, cavity 4.2, rim 1.3, RSSI 1.5 s; head 0.3 s.
- ``deltaM`` = the formula above with the component's CBF and M0, so a voxel's CBF computed
  back from deltaM / M0 is the M0-weighted mean of its components' CBF.

CBF (mL/100 g/min): GM 60, WM 22, CSF 0; WMH 15 (hypoperfused white matter), RSSI 10
(infarct), lacune rim 10, lacune cavity and PVS 0 (fluid); microbleeds and veins leave the
ASL images alone; the head 0. Basal-ganglia effect: in the subject's true basal ganglia (the
truth's ``seg-regions`` label) the GM and WM CBF are multiplied by
``1 - BG_CBF_STRENGTH * severity`` (severity: :func:`.diffusion.severity` of the latent
burden), the same in every session.

Acquisition: ``N_PAIRS`` control/label pairs (control first, ``_aslcontext.tsv``), each
volume with its own Rician noise (sigma ``NOISE_SIGMA``), the session's own smooth bias field
shared by the ASL series and the M0 scan, int16. Random draws come from their own stream
(``ASL_STREAM``), so no other image depends on this module.
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from . import contrasts
from . import lesions as L
from .fields import add_rician_noise, bias_field

ASL_STREAM = 5303  # SeedSequence([seed, subject, ASL_STREAM]): one child per session
LABELING_EFFICIENCY = 0.85  # alpha, PCASL
PARTITION_COEFFICIENT = 0.9  # lambda, mL/g
BLOOD_T1 = {3.0: 1.65, 1.5: 1.35}  # s
FIELD_T = 3.0
POST_LABELING_DELAY = 1.8  # s
LABELING_DURATION = 1.8  # s
TR_PREPARATION = 4.0  # s, ASL series
M0_TR_PREPARATION = 10.0  # s, M0 scan
ECHO_TIME = 0.012  # s
M0_SCALE = 3000.0
N_PAIRS = 10
NOISE_SIGMA = 12.0
BG_CBF_STRENGTH = 0.35
CHANNELS = ("M0", "control", "deltaM")

#           PD    T1 (s)  CBF (mL/100 g/min)
TISSUES = {
    "CSF": (1.00, 4.2, 0.0),
    "GM": (0.85, 1.6, 60.0),
    "WM": (0.70, 0.85, 22.0),
}
HEAD = {  # head classes outside the brain
    A.AIR: (0.0, 1.0, 0.0),
    A.CSF_LAYER: TISSUES["CSF"],
    A.SKULL: (0.05, 0.3, 0.0),
    A.MARROW: (0.10, 0.3, 0.0),
    A.SCALP: (0.40, 0.3, 0.0),
}
NAN3 = (float("nan"),) * 3
LESIONS = {
    L.WMH: (0.80, 1.2, 15.0),
    L.CMB: NAN3,  # no change
    L.PVS: (0.95, 3.5, 0.0),
    L.LAC_CAVITY: (1.00, 4.2, 0.0),
    L.LAC_RIM: (0.85, 1.3, 10.0),
    L.RSSI: (0.88, 1.5, 10.0),
    L.VEIN: NAN3,
}
LESION_NAMES = {L.WMH: "WMH", L.PVS: "PVS", L.LAC_CAVITY: "LAC_cavity", L.LAC_RIM: "LAC_rim"}
LESION_NAMES[L.RSSI] = "RSSI"


def delta_m_per_cbf(
    m0: np.ndarray | float,
    pld: float = POST_LABELING_DELAY,
    tau: float = LABELING_DURATION,
    t1_blood: float = BLOOD_T1[FIELD_T],
    alpha: float = LABELING_EFFICIENCY,
    partition: float = PARTITION_COEFFICIENT,
):
    """deltaM for a CBF of 1 mL/100 g/min: Alsop et al. 2015's eq. 1 solved for deltaM."""
    decay = (1.0 - np.exp(-tau / t1_blood)) * np.exp(-pld / t1_blood)
    return 2.0 * alpha * t1_blood * m0 * decay / (6000.0 * partition)


def severity_factor(severity: float) -> float:
    """Basal-ganglia CBF multiplier of a subject of ``severity`` (0-1)."""
    return 1.0 - BG_CBF_STRENGTH * severity


def _channels(pd: float, t1: float, cbf: float) -> tuple[float, float, float]:
    m0 = M0_SCALE * pd
    return m0, m0 * (1.0 - np.exp(-TR_PREPARATION / t1)), cbf * delta_m_per_cbf(m0)


def base_images(anat: A.Anatomy, basal_ganglia: np.ndarray, factor: float) -> dict:
    """Lesion-free M0, control and deltaM on the working grid; deltaM of the GM and WM in
    ``basal_ganglia`` (bool, working grid) times ``factor``."""
    head = np.array([_channels(*HEAD[k]) for k in range(len(HEAD))], dtype=np.float32)
    images = {}
    for c, name in enumerate(CHANNELS):
        value = {tissue: _channels(*v)[c] for tissue, v in TISSUES.items()}
        brain = anat.gm * np.float32(value["GM"]) + anat.wm * np.float32(value["WM"])
        if name == "deltaM":
            brain = np.where(basal_ganglia, brain * np.float32(factor), brain)
        image = brain + anat.csf * np.float32(value["CSF"])
        image += anat.outside * head[anat.head, c] * anat.head_texture
        images[name] = image.astype(np.float32)
    return images


LESION_TABLE = np.array(
    [_channels(*LESIONS[k]) if not np.isnan(LESIONS[k][0]) else NAN3 for k in range(len(LESIONS))],
    dtype=np.float32,
)


def apply_lesions(images: dict[str, np.ndarray], lesions: list[L.Lesion]) -> None:
    """Blend lesion tissue into the ASL channels in place (NaN: left alone)."""
    for lesion in lesions:
        target = LESION_TABLE[lesion.tissue]
        ok = ~np.isnan(target[:, 0])
        if not ok.any():
            continue
        idx, w = lesion.index[ok], lesion.weight[ok]
        for c, name in enumerate(CHANNELS):
            flat = images[name].reshape(-1)
            flat[idx] = flat[idx] * (1.0 - w) + w * target[ok, c]


def _int16(volume: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(volume), 0, np.iinfo(np.int16).max).astype(np.int16)


def acquire(
    rng: np.random.Generator, images: dict[str, np.ndarray], grid: contrasts.AcqGrid
) -> tuple[np.ndarray, np.ndarray]:
    """(ASL series (*grid.shape, 2 * N_PAIRS), control first; M0 scan), int16."""
    m0, control, delta = (contrasts.to_grid(images[name], grid) for name in CHANNELS)
    bias = bias_field(rng, grid.shape, contrasts.BIAS_STRENGTH)
    m0scan = _int16(add_rician_noise(rng, m0 * bias, NOISE_SIGMA))
    volumes = []
    for _ in range(N_PAIRS):
        for clean in (control, control - delta):
            volumes.append(_int16(add_rician_noise(rng, clean * bias, NOISE_SIGMA)))
    return np.stack(volumes, -1), m0scan


def aslcontext() -> str:
    return "volume_type\n" + "control\nlabel\n" * N_PAIRS


def sidecars(grid: contrasts.AcqGrid, asl_uri: str) -> tuple[dict, dict]:
    """Fields of the ``_asl.json`` and ``_m0scan.json`` beyond the scanner's."""
    voxel = [round(float(np.linalg.norm(grid.affine[:3, a])), 6) for a in range(3)]
    common = {
        "MRAcquisitionType": "3D",
        "PulseSequenceType": "3D GRASE",
        "EchoTime": ECHO_TIME,
        "FlipAngle": 90,
        "AcquisitionVoxelSize": voxel,
    }
    asl = {
        **common,
        "ArterialSpinLabelingType": "PCASL",
        "PCASLType": "balanced",
        "PostLabelingDelay": POST_LABELING_DELAY,
        "LabelingDuration": LABELING_DURATION,
        "LabelingEfficiency": LABELING_EFFICIENCY,
        "BackgroundSuppression": False,
        "VascularCrushing": False,
        "M0Type": "Separate",
        "TotalAcquiredPairs": N_PAIRS,
        "RepetitionTimePreparation": TR_PREPARATION,
    }
    m0 = {**common, "RepetitionTimePreparation": M0_TR_PREPARATION, "IntendedFor": asl_uri}
    return asl, m0


def planted_asl(factor: float, bg_mean_cbf: float | None) -> dict:
    """The truth's ASL section: the model's constants, CBF and PD per tissue and lesion, the
    basal-ganglia effect and the M0-weighted mean CBF of the basal ganglia as planted."""

    def entry(pd: float, t1: float, cbf: float) -> dict:
        return {"CBF": cbf, "PD": pd, "T1": t1}

    return {
        "Model": "Alsop et al. 2015 single compartment (white paper eq. 1)",
        "CBFUnits": "mL/100 g/min",
        "LabelingEfficiency": LABELING_EFFICIENCY,
        "BloodBrainPartitionCoefficient": PARTITION_COEFFICIENT,
        "BloodT1": BLOOD_T1[FIELD_T],
        "PostLabelingDelay": POST_LABELING_DELAY,
        "LabelingDuration": LABELING_DURATION,
        "M0Scale": M0_SCALE,
        "Tissues": {name: entry(*value) for name, value in TISSUES.items()},
        "Lesions": {LESION_NAMES[c]: entry(*LESIONS[c]) for c in LESION_NAMES},
        "BasalGangliaCBFStrength": BG_CBF_STRENGTH,
        "BasalGangliaCBFFactor": round(factor, 6),
        "BasalGanglia": {
            name: {"CBF": round(TISSUES[name][2] * factor, 6)} for name in ("GM", "WM")
        },
        "BasalGangliaMeanCBF": None if bg_mean_cbf is None else round(bg_mean_cbf, 4),
    }


def mean_cbf(images: dict[str, np.ndarray], mask: np.ndarray) -> float | None:
    """CBF of the region ``mask`` (working grid) from the noise-free images: sum deltaM over
    sum M0, through the model (what a region average of deltaM and M0 gives)."""
    if not mask.any():
        return None
    m0 = float(images["M0"][mask].sum(dtype=np.float64))
    return float(images["deltaM"][mask].sum(dtype=np.float64)) / float(delta_m_per_cbf(m0))
