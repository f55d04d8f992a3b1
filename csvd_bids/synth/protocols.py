"""Acquisition protocols of the physics engine and their signal equations.

Every subject is scanned with its own protocol, drawn over the range of clinical and
research protocols (so that contrast ratios vary as they do between vendors and sites):

- field strength 1.5 T (30 %) or 3 T (70 %), unless given;
- T1w: MPRAGE with inversion efficiency, TI to the k-space centre, readout flip angle, echo
  spacing, the number of readout pulses before the k-space centre (linear or centric
  ordering) and the delay after the readout: the magnetisation relaxes towards the readout's
  steady state from its value at TI (Deichmann et al., MRM 1999;42:206, simplified);
- T2w: turbo spin echo, S = PD (1 - exp(-TR/T1)) exp(-TE/T2);
- FLAIR: inversion-recovery TSE with TI near the CSF null for that TR and inversion
  efficiency (+-3 %: the subject's CSF T1 is not the one assumed),
  S = PD |1 - 2 eff exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2);
- GRE for SWI: spoiled gradient echo, TE 15-30 ms, S = PD sin a (1 - E1) / (1 - cos a E1)
  exp(-TE/T2*), then the phase of the susceptibility field (:mod:`.susceptibility`); written as
  plain magnitude or as SWI (magnitude x phase mask^4, Haacke et al., MRM 2004;52:612);
- DWI: spin-echo EPI, b0 = PD (1 - exp(-TR/T1)) exp(-TE/T2), b1000 = b0 exp(-b ADC).

Flowing arterial blood (``Tissue.flow``) is a flow void on spin-echo sequences (signal x 0.02)
and enhanced by inflow on the gradient echo (x 1.5). :func:`check_protocol` refuses a
parameter outside its physical range, naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .tissue_properties import Tissue

FLOW_VOID, INFLOW = 0.02, 1.5


@dataclass(frozen=True)
class Protocol:
    field_t: float
    t1w_ti: float  # ms, inversion to k-space centre
    t1w_td: float  # ms, delay after the readout train
    t1w_flip: float  # degrees, readout
    t1w_esp: float  # ms, readout echo spacing
    t1w_n_centre: int  # readout pulses before the k-space centre
    t1w_eff: float  # inversion efficiency
    t2w_tr: float
    t2w_te: float
    flair_tr: float
    flair_te: float
    flair_ti: float
    flair_eff: float
    gre_tr: float
    gre_te: float
    gre_flip: float
    swi: bool  # SWI-processed magnitude, else plain GRE magnitude
    dwi_tr: float
    dwi_te: float
    snr: float  # WM signal over noise sigma on the T1w, before the other sequences' scaling
    ghosting: float  # relative amplitude of an N/2 phase-encode ghost (0: none)


# Physical ranges: what any protocol must satisfy (:func:`check_protocol`).
RANGES = {
    "field_t": (0.5, 7.0),
    "t1w_ti": (300.0, 2000.0),
    "t1w_td": (0.0, 3000.0),
    "t1w_flip": (2.0, 20.0),
    "t1w_esp": (3.0, 15.0),
    "t1w_n_centre": (0, 300),
    "t1w_eff": (0.5, 1.0),
    "t2w_tr": (1500.0, 12000.0),
    "t2w_te": (20.0, 250.0),
    "flair_tr": (4000.0, 15000.0),
    "flair_te": (20.0, 250.0),
    "flair_ti": (1200.0, 3500.0),
    "flair_eff": (0.5, 1.0),
    "gre_tr": (5.0, 200.0),
    "gre_te": (3.0, 80.0),
    "gre_flip": (2.0, 90.0),
    "dwi_tr": (2000.0, 15000.0),
    "dwi_te": (40.0, 150.0),
    "snr": (5.0, 200.0),
    "ghosting": (0.0, 0.3),
}
GRE_TE_RANGE = (15.0, 30.0)  # what the engine draws (the SWI protocols)


class ProtocolRangeError(ValueError):
    """A protocol parameter outside its physical range."""


def check_protocol(protocol: Protocol) -> Protocol:
    for name, value in asdict(protocol).items():
        if name in RANGES and not RANGES[name][0] <= value <= RANGES[name][1]:
            low, high = RANGES[name]
            raise ProtocolRangeError(f"{name} = {value} is outside its range [{low}, {high}]")
    if protocol.gre_te >= protocol.gre_tr:
        raise ProtocolRangeError(f"gre_te = {protocol.gre_te} must be below gre_tr")
    return protocol


def flair_null_ti(tr: float, t1_csf: float, eff: float = 1.0) -> float:
    """TI that nulls CSF for a TR and inversion efficiency: 1 - 2 eff exp(-TI/T1) +
    exp(-TR/T1) = 0 (what the scanner's protocol was set up to do)."""
    return float(t1_csf * np.log(2.0 * eff / (1.0 + np.exp(-tr / t1_csf))))


def draw_protocol(
    rng: np.random.Generator, field_t: float | None = None, gre_te: float | None = None
) -> Protocol:
    """One subject's protocol (module docstring); ``field_t`` and ``gre_te`` fix those two."""
    field = field_t if field_t is not None else (1.5 if rng.random() < 0.3 else 3.0)
    high = field >= 2.0
    flair_tr = rng.uniform(8000.0, 11000.0)
    flair_eff = rng.uniform(0.92, 0.99)
    flair_ti = flair_null_ti(flair_tr, 4100.0, flair_eff) * rng.uniform(0.97, 1.03)
    return check_protocol(
        Protocol(
            field_t=float(field),
            t1w_ti=rng.uniform(850.0, 1100.0) if high else rng.uniform(700.0, 1000.0),
            t1w_td=rng.uniform(300.0, 1000.0),
            t1w_flip=rng.uniform(7.0, 10.0),
            t1w_esp=rng.uniform(6.0, 9.0),
            t1w_n_centre=int(rng.integers(0, 100)),
            t1w_eff=rng.uniform(0.9, 0.98),
            t2w_tr=rng.uniform(3000.0, 6000.0),
            t2w_te=rng.uniform(80.0, 115.0),
            flair_tr=flair_tr,
            flair_te=rng.uniform(80.0, 130.0),
            flair_ti=flair_ti,
            flair_eff=flair_eff,
            gre_tr=rng.uniform(35.0, 50.0),
            gre_te=gre_te if gre_te is not None else rng.uniform(*GRE_TE_RANGE),
            gre_flip=rng.uniform(12.0, 20.0),
            swi=bool(rng.random() < 0.6),
            dwi_tr=rng.uniform(6000.0, 9000.0),
            dwi_te=rng.uniform(60.0, 90.0),
            snr=rng.uniform(18.0, 45.0) * (1.0 if high else 0.6),
            ghosting=rng.uniform(0.02, 0.06) if rng.random() < 0.3 else 0.0,
        )
    )


def _mprage(p: Protocol, t: Tissue) -> float:
    e1 = np.exp(-p.t1w_esp / t.t1)
    cos_a = np.cos(np.deg2rad(p.t1w_flip))
    steady = (1.0 - e1) / (1.0 - cos_a * e1)  # readout-train steady state
    before = 1.0 - (1.0 - steady) * np.exp(-p.t1w_td / t.t1)  # recovered after the train
    at_ti = 1.0 - (1.0 + p.t1w_eff * before) * np.exp(-p.t1w_ti / t.t1)
    centre = steady + (at_ti - steady) * (cos_a * e1) ** p.t1w_n_centre
    return abs(centre) * np.sin(np.deg2rad(p.t1w_flip)) * np.exp(-3.0 / t.t2s)


def _spin_echo(tr: float, te: float, t: Tissue) -> float:
    return (1.0 - np.exp(-tr / t.t1)) * np.exp(-te / t.t2)


def _flair(p: Protocol, t: Tissue) -> float:
    recovery = 1.0 - 2.0 * p.flair_eff * np.exp(-p.flair_ti / t.t1) + np.exp(-p.flair_tr / t.t1)
    return abs(recovery) * np.exp(-p.flair_te / t.t2)


def _gre(p: Protocol, t: Tissue) -> float:
    e1 = np.exp(-p.gre_tr / t.t1)
    a = np.deg2rad(p.gre_flip)
    return np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1) * np.exp(-p.gre_te / t.t2s)


B_VALUE = 1000.0  # s/mm2


def signals(p: Protocol, t: Tissue) -> dict[str, float]:
    """Noise-free signal of one tissue on every channel (``contrasts.CHANNELS`` names)."""
    spin = FLOW_VOID if t.flow else 1.0
    b0 = t.pd * _spin_echo(p.dwi_tr, p.dwi_te, t) * spin
    fat_free = t.adc > 0.0  # DWI is fat-suppressed; bone and air give nothing
    return {
        "T1w": t.pd * _mprage(p, t) * (0.3 if t.flow else 1.0),
        "FLAIR": t.pd * _flair(p, t) * spin,
        "T2w": t.pd * _spin_echo(p.t2w_tr, p.t2w_te, t) * spin,
        "T2starw": t.pd * _gre(p, t) * (INFLOW if t.flow else 1.0),
        "b0": b0 if fat_free else 0.0,
        "b1000": b0 * np.exp(-B_VALUE * t.adc * 1e-3) if fat_free else 0.0,
    }


def sidecar_fields(p: Protocol) -> dict[str, dict]:
    """BIDS sidecar parameters (s, degrees) of each written modality."""
    s = 1e-3
    return {
        "T1w": {"InversionTime": round(p.t1w_ti * s, 4), "FlipAngle": round(p.t1w_flip, 1)},
        "FLAIR": {
            "RepetitionTime": round(p.flair_tr * s, 4),
            "EchoTime": round(p.flair_te * s, 4),
            "InversionTime": round(p.flair_ti * s, 4),
        },
        "T2w": {"RepetitionTime": round(p.t2w_tr * s, 4), "EchoTime": round(p.t2w_te * s, 4)},
        "T2starw": {
            "RepetitionTime": round(p.gre_tr * s, 4),
            "EchoTime": round(p.gre_te * s, 4),
            "FlipAngle": round(p.gre_flip, 1),
            "AcquisitionDescription": "SWI magnitude (phase mask^4)" if p.swi else "GRE magnitude",
        },
        "dwi": {"RepetitionTime": round(p.dwi_tr * s, 4), "EchoTime": round(p.dwi_te * s, 4)},
    }
