"""One subject of the physics engine: its protocol, tissues, texture and pose, and its
sessions' images (see :mod:`.physics`).

The physics draws come from their own stream, ``SeedSequence([seed, subject, 7301])``, so the
subject's demographics, anatomy and lesion counts are those of the template engine with the
same seed (the lesions' positions differ: mimics are placed first), except that
basal-ganglia PVS are up to four times as many (log-uniform factor, at most 120: Potter grades
up to 3-4), 40 % of the lacunes have no gliotic rim, and WMH linings are at least
``LINING_MM`` thick (:func:`.lesions.plan_lesions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import physics
from .anatomy import Anatomy
from .lesions import LAC_CAVITY, LAC_RIM, Lesion
from .motion import brain_centre
from .participants import LesionLoad
from .profiles import Profile
from .protocols import Protocol, draw_protocol, sidecar_fields
from .tissue_properties import Tissue, draw_tissues

PHYSICS_STREAM = 7301
BG_PVS_FACTOR = (1.0, 4.0)  # log-uniform: basal-ganglia PVS up to grade 3-4
BG_PVS_CAP = 120
RIMLESS_LACUNES = 0.4  # fraction of lacunes without a gliotic rim
# WMH linings at least this thick (mm): pencil-thin linings and caps are about 2 mm or more on
# FLAIR; a thinner one averages with the CSF in 3-8 mm slices and no rater would mark it
LINING_MM = 2.0


@dataclass
class PhysicsSubject:
    rng: np.random.Generator
    oversample: int
    resolution: float
    protocol: Protocol
    tissues: dict[str, Tissue]
    texture: np.ndarray | None = None
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))

    @classmethod
    def draw(cls, seed: int, index: int, settings) -> PhysicsSubject:
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, PHYSICS_STREAM]))
        protocol = draw_protocol(rng, settings.field_t, settings.gre_te)
        tissues = draw_tissues(rng, protocol.field_t)
        return cls(rng, settings.oversample, settings.resolution, protocol, tissues)

    def adjust_load(self, load: LesionLoad) -> LesionLoad:
        """More basal-ganglia PVS than the template engine: up to 4x, at most 120."""
        factor = float(np.exp(self.rng.uniform(*np.log(BG_PVS_FACTOR))))
        counts = {
            **load.counts,
            "pvs_bg": min(int(round(load.counts["pvs_bg"] * factor)), BG_PVS_CAP),
        }
        return replace(load, counts=counts)

    def vary_lesions(self, lesions: list[Lesion]) -> None:
        """Some lacunes lose their gliotic rim (in place)."""
        for lesion in lesions:
            if lesion.marker == "LAC" and self.rng.random() < RIMLESS_LACUNES:
                lesion.tissue[lesion.tissue == LAC_RIM] = LAC_CAVITY

    def prepare(self, anat: Anatomy) -> None:
        """Atrophy (in place), tissue texture and head pose; before regions and lesions."""
        physics.atrophy(anat, self.rng)
        self.texture = physics.tissue_texture(self.rng, anat)
        self.pose = physics.random_pose(self.rng, brain_centre(anat))

    def session(
        self,
        rng: np.random.Generator,
        anat: Anatomy,
        active: list[Lesion],
        profile: Profile,
        brain: np.ndarray | None,
    ) -> tuple[dict[str, physics.SliceGrid], dict[str, np.ndarray]]:
        """(posed grids, int16 images) of one session's modalities."""
        grids = physics.physics_grids(
            anat.shape, anat.affine, self.oversample, rng, profile.slice_mm, self.resolution
        )
        # the physics engine renders no ASL: modalities it has no grid for are left out
        grids = {name: grids[name] for name in profile.modalities if name in grids}
        images = physics.render(
            anat, active, self.tissues, self.protocol, profile.channels, self.texture
        )
        acquired = physics.acquire(
            rng, images, grids, self.tissues, self.protocol, brain, anat.voxel_mm
        )
        return {name: physics.posed(g, self.pose) for name, g in grids.items()}, acquired

    def sidecars(self, grids: dict[str, physics.SliceGrid]) -> dict[str, dict]:
        """Per-modality sidecar fields: the protocol, field strength and slice geometry."""
        fields = sidecar_fields(self.protocol)
        render_mm = self.resolution / self.oversample
        out = {}
        for name, grid in grids.items():
            thickness = grid.factors[2] * render_mm
            spacing = (grid.factors[2] + grid.gap) * render_mm
            out[name] = {
                **fields[name],
                "MagneticFieldStrength": self.protocol.field_t,
                "SliceThickness": round(thickness, 6),
                **({"SpacingBetweenSlices": round(spacing, 6)} if grid.gap else {}),
            }
        return out
