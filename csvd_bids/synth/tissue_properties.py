"""MR properties of tissues, lesions and mimics for the physics engine (:mod:`.physics`).

Each tissue has T1, T2 and T2* (ms), proton density (relative to CSF), magnetic
susceptibility (ppm, SI, relative to CSF) and an apparent diffusion coefficient (1e-3 mm2/s),
at 1.5 T and 3 T. Relaxation times are the published means the values below were taken from;
each subject then draws its own within +-``BIOLOGICAL_SPREAD`` (lesions within the wider
``LESION_RANGES``, their properties coupled), so contrast varies between subjects as it does
between people.

Sources (means, rounded):
- WM, GM, CSF T1/T2 at 1.5 T and 3 T: Stanisz et al., MRM 2005;54:507; Wansapura et al.,
  JMRI 1999;9:531; CSF T1 from Lu et al., JMRI 2005;22:13.
- T2* at 1.5 T / 3 T: Peters et al., MRI 2007;25:748 (3 T, 7 T); 1.5 T scaled by field.
- Blood: T1 1.5 T 1350 ms / 3 T 1650 ms (Lu et al., MRM 2004;52:679); venous T2 at Y = 0.6
  (Zhao et al., MRM 2007;58:592).
- WMH and gliosis: T1 and T2 10-80 % above NAWM (Bastin et al.; Ropele et al.).
- Susceptibility: WM -0.03, GM +0.02 ppm (QSM literature, e.g. Deistung et al., NeuroImage
  2013); venous blood Hct (1 - Y) 3.39 ppm = +0.45 ppm at Hct 0.42, Y 0.68 (Weisskoff and
  Kiihne 1992); microbleeds +0.3 to +1 ppm (Liu et al., Radiology 2012;262:269);
  calcifications -0.1 to -0.6 ppm (Chen et al., Radiology 2014;270:496); air +9.4 ppm, cortical
  bone -2 ppm, fat +0.6 ppm relative to water (Schenck, Med Phys 1996).
- ADC: CSF 3.0, GM 0.85, WM 0.75, WMH 1.1, acute infarct 0.4 (1e-3 mm2/s; e.g. Helenius 2002).

``flow`` marks moving arterial blood: a flow void (no signal) on spin-echo sequences and
inflow enhancement on the short-TR gradient echo. These are the nominal tables; no value here
is tuned to the detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Tissue:
    t1: float  # ms
    t2: float  # ms
    t2s: float  # ms, T2* <= T2
    pd: float  # proton density relative to CSF, 0 to 1
    chi: float  # ppm (SI), relative to CSF
    adc: float  # 1e-3 mm2/s
    flow: bool = False


FIELDS_T = (1.5, 3.0)

#                 T1     T2    T2*    PD    chi    ADC
_TABLE = {
    3.0: {
        "CSF": Tissue(4100, 1800, 400, 1.00, 0.00, 3.0),
        "GM": Tissue(1330, 99, 60, 0.80, 0.02, 0.85),
        "WM": Tissue(830, 72, 50, 0.69, -0.03, 0.75),
        "WMH": Tissue(1250, 135, 75, 0.79, -0.01, 1.10),
        "CMB": Tissue(1000, 40, 8, 0.70, 0.60, 0.70),
        "PVS": Tissue(3600, 1200, 300, 0.97, 0.00, 2.6),
        "LAC_CAVITY": Tissue(4000, 1600, 350, 1.00, 0.00, 2.9),
        "LAC_RIM": Tissue(1400, 160, 80, 0.82, -0.01, 1.3),
        "RSSI": Tissue(1350, 150, 80, 0.84, 0.00, 0.40),
        "VEIN": Tissue(1650, 30, 12, 0.85, 0.45, 1.6),
        "CALCIFICATION": Tissue(900, 30, 6, 0.30, -0.30, 0.3),
        "ARTERY": Tissue(1650, 250, 120, 0.85, 0.10, 2.0, flow=True),
        "AIR": Tissue(4000, 1, 1, 0.00, 9.40, 0.0),
        "BONE": Tissue(300, 1, 1, 0.05, -2.0, 0.0),
        "MARROW": Tissue(380, 130, 35, 0.90, 0.60, 0.0),  # fat: suppressed on DWI
        "SCALP": Tissue(600, 60, 30, 0.80, 0.30, 0.0),
    },
    1.5: {
        "CSF": Tissue(4100, 1900, 700, 1.00, 0.00, 3.0),
        "GM": Tissue(1100, 105, 85, 0.80, 0.02, 0.85),
        "WM": Tissue(650, 78, 65, 0.69, -0.03, 0.75),
        "WMH": Tissue(1000, 145, 100, 0.79, -0.01, 1.10),
        "CMB": Tissue(850, 45, 14, 0.70, 0.60, 0.70),
        "PVS": Tissue(3600, 1300, 500, 0.97, 0.00, 2.6),
        "LAC_CAVITY": Tissue(4000, 1700, 600, 1.00, 0.00, 2.9),
        "LAC_RIM": Tissue(1150, 170, 110, 0.82, -0.01, 1.3),
        "RSSI": Tissue(1100, 160, 110, 0.84, 0.00, 0.40),
        "VEIN": Tissue(1350, 60, 25, 0.85, 0.45, 1.6),
        "CALCIFICATION": Tissue(750, 35, 10, 0.30, -0.30, 0.3),
        "ARTERY": Tissue(1350, 270, 180, 0.85, 0.10, 2.0, flow=True),
        "AIR": Tissue(4000, 1, 1, 0.00, 9.40, 0.0),
        "BONE": Tissue(250, 1, 1, 0.05, -2.0, 0.0),
        "MARROW": Tissue(260, 140, 50, 0.90, 0.60, 0.0),
        "SCALP": Tissue(500, 65, 40, 0.80, 0.30, 0.0),
    },
}
TISSUES = tuple(_TABLE[3.0])
BIOLOGICAL_SPREAD = 0.05  # relative, per subject, for the normal tissues
# Per subject, relative to the nominal value: lesions vary far more than normal tissue. The
# properties of one lesion tissue move together, at one draw u ~ U(0, 1) per subject (value =
# low + u (high - low)): T1, T2 and PD of a WMH all rise with its water content, so a long T1
# never comes with a short T2; an acute infarct's ADC falls as its T2 rises; more calcium is
# more diamagnetic and has fewer protons.
LESION_RANGES = {
    "WMH": {"t1": (0.87, 1.17), "t2": (0.78, 1.22), "pd": (0.95, 1.06)},
    "LAC_RIM": {"t1": (0.85, 1.15), "t2": (0.85, 1.2)},
    "RSSI": {"t1": (0.9, 1.15), "t2": (0.85, 1.2), "adc": (1.3, 0.8)},
    "CMB": {"chi": (0.5, 1.6)},
    "VEIN": {"chi": (0.75, 1.2)},
    "CALCIFICATION": {"chi": (0.4, 2.0), "pd": (1.5, 0.5)},
}


class TissueRangeError(ValueError):
    """A tissue property outside its physical range."""


def check_tissue(name: str, tissue: Tissue) -> None:
    """Refuse a property outside its physical range, naming the tissue and the property."""
    rules = (
        ("t1", 0.0 < tissue.t1 <= 6000.0, "0 < T1 <= 6000 ms"),
        ("t2", 0.0 < tissue.t2 <= tissue.t1, "0 < T2 <= T1"),
        ("t2s", 0.0 < tissue.t2s <= tissue.t2, "0 < T2* <= T2"),
        ("pd", 0.0 <= tissue.pd <= 1.0, "0 <= PD <= 1"),
        ("chi", -20.0 <= tissue.chi <= 20.0, "-20 <= chi <= 20 ppm"),
        ("adc", 0.0 <= tissue.adc <= 3.5, "0 <= ADC <= 3.5e-3 mm2/s"),
    )
    for prop, ok, rule in rules:
        if not ok:
            raise TissueRangeError(
                f"tissue {name}: {prop} = {getattr(tissue, prop)} is outside {rule}"
            )


def nominal(field_t: float) -> dict[str, Tissue]:
    """The published means at 1.5 T or 3 T (the nearer of the two)."""
    key = min(FIELDS_T, key=lambda f: abs(f - field_t))
    return dict(_TABLE[key])


def draw_tissues(rng: np.random.Generator, field_t: float) -> dict[str, Tissue]:
    """One subject's tissue properties: nominal values with biological variation; each is
    checked against its physical range."""
    drawn = {}
    for name, tissue in nominal(field_t).items():
        scale = {p: rng.uniform(1 - BIOLOGICAL_SPREAD, 1 + BIOLOGICAL_SPREAD) for p in ("t1", "t2")}
        if name in LESION_RANGES:
            u = rng.uniform()
            scale.update(
                {p: low + u * (high - low) for p, (low, high) in LESION_RANGES[name].items()}
            )
        values = {p: getattr(tissue, p) * s for p, s in scale.items()}
        values["pd"] = min(values.get("pd", tissue.pd), 1.0)
        values["t2"] = min(values["t2"], values["t1"])
        values["t2s"] = min(tissue.t2s * values["t2"] / tissue.t2, values["t2"])
        drawn[name] = replace(tissue, **values)
        check_tissue(name, drawn[name])
    return drawn
