"""Acquisition profiles: which images a session has and how its truth is written.

- ``research`` (default): T1w, FLAIR, T2w, SWI, DWI (31 directions, :mod:`.diffusion`) and
  PCASL with an M0 scan (``asl``; template engine :mod:`.asl`, physics engine
  :mod:`.physics_asl`, which also makes PASL, 2D readouts and included M0s) with a skull; the
  lesion-burden model of :mod:`.participants`; the truth on the T1w (working) grid,
  ``space-T1w``.
- ``clinical``: what clinical CSVD scans often are: a skull-stripped 2D FLAIR only, in-plane
  at the working resolution, slices 5 to 8 mm thick (drawn per session); WMH from 0.5 to
  150 ml with a third of the subjects above 80 ml (:func:`.participants.clinical_wmh_ml`),
  heavy burdens confluent (:func:`.lesions.plan_lesions` with ``confluent_wmh``); the other
  markers as in ``research``. The truth is written on each session's FLAIR grid
  (``space-FLAIR``, see :mod:`.truth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import contrasts


@dataclass(frozen=True)
class Profile:
    name: str
    modalities: tuple[str, ...]  # acquired and written, keys of contrasts.acquisition_grids
    channels: tuple[str, ...]  # working-grid images they need (contrasts.CHANNELS)
    skull_stripped: bool  # zero outside the brain mask
    slice_mm: tuple[float, float] | None  # FLAIR slice thickness drawn per session, if any
    truth_space: str  # grid of the truth: "T1w" (working grid) or an acquired modality
    clinical_burden: bool  # WMH volume from the clinical mixture, confluent when heavy


PROFILES = {
    "research": Profile(
        "research",
        ("T1w", "FLAIR", "T2w", "T2starw", "dwi", "asl"),
        contrasts.CHANNELS,
        skull_stripped=False,
        slice_mm=None,
        truth_space="T1w",
        clinical_burden=False,
    ),
    "clinical": Profile(
        "clinical",
        ("FLAIR",),
        ("FLAIR",),
        skull_stripped=True,
        slice_mm=(5.0, 8.0),
        truth_space="FLAIR",
        clinical_burden=True,
    ),
}


def session_grids(
    profile: Profile, rng: np.random.Generator, shape, affine: np.ndarray, resolution: float
) -> dict[str, contrasts.AcqGrid]:
    """The grids of one session's modalities; a drawn slice thickness uses ``rng`` first."""
    grids = contrasts.acquisition_grids(shape, affine, resolution)
    if profile.slice_mm is not None:
        thickness = float(rng.uniform(*profile.slice_mm))
        grids["FLAIR"] = contrasts.thick_slice_grid(
            shape, affine, resolution, thickness, profile.slice_mm
        )
    return {name: grids[name] for name in profile.modalities}
