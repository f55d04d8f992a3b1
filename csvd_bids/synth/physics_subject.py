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
from . import physics_asl as pasl
from .anatomy import Anatomy
from .asl import severity_factor
from .diffusion import DiffusionModel, planted_dwi, severity
from .lesions import LAC_CAVITY, LAC_RIM, Lesion
from .motion import brain_centre
from .participants import LesionLoad
from .physics_diffusion import PhysicsTensors, physics_model
from .profiles import Profile
from .protocols import Protocol, draw_protocol, sidecar_fields
from .tissue_properties import Tissue, draw_tissues

PHYSICS_STREAM = 7301
# the DWI tensors and the ASL protocol and perfusion: added after the others, in a stream of
# their own so that no earlier image changed
PHYSICS_TISSUE_STREAM = 7303
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
    tensors: PhysicsTensors
    asl_protocol: pasl.ASLProtocol
    perfusion: pasl.Perfusion
    tissue_rng: np.random.Generator
    texture: np.ndarray | None = None
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    dwi_model: DiffusionModel | None = None
    basal_ganglia: np.ndarray | None = None
    cbf_factor: float = 1.0

    @classmethod
    def draw(cls, seed: int, index: int, settings) -> PhysicsSubject:
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, PHYSICS_STREAM]))
        protocol = draw_protocol(rng, settings.field_t, settings.gre_te)
        tissues = draw_tissues(rng, protocol.field_t)
        extra = np.random.default_rng(np.random.SeedSequence([seed, index, PHYSICS_TISSUE_STREAM]))
        return cls(
            rng,
            settings.oversample,
            settings.resolution,
            protocol,
            tissues,
            PhysicsTensors.draw(extra),
            pasl.ASLProtocol.draw(extra, protocol.field_t),
            pasl.Perfusion.draw(extra),
            extra,
        )

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

    def tissue_models(
        self, anat: Anatomy, basal_ganglia: np.ndarray, latent_burden: float, profile: Profile
    ) -> None:
        """The DWI's tensors and the ASL's basal-ganglia effect, after the lesions are planned
        (``basal_ganglia``: the truth's region on the render grid)."""
        self.basal_ganglia = basal_ganglia
        self.cbf_factor = severity_factor(severity(latent_burden))
        if "dwi" in profile.modalities:
            self.dwi_model = physics_model(
                anat,
                basal_ganglia,
                latent_burden,
                self.tensors,
                self.tissues,
                self.protocol,
                physics.CODE_TISSUE,
                physics.HEAD_TISSUE,
                self.texture,
                self.tissue_rng,
            )

    def session(
        self,
        rng: np.random.Generator,
        anat: Anatomy,
        active: list[Lesion],
        profile: Profile,
        brain: np.ndarray | None,
        asl_rng: np.random.Generator,
    ) -> tuple[dict[str, physics.SliceGrid], dict[str, np.ndarray], dict | None, np.ndarray | None]:
        """(posed grids, int16 images, the planted DWI/ASL values or None, where the FLAIR
        shows WMH (:func:`.physics.visible_wmh`, on its grid) or None) of one session."""
        grids = physics.physics_grids(
            anat.shape, anat.affine, self.oversample, rng, profile.slice_mm, self.resolution
        )
        grids = {name: grids[name] for name in profile.modalities if name in grids}
        channels = tuple(c for c in profile.channels if c != "b1000" or self.dwi_model is None)
        images = physics.render(anat, active, self.tissues, self.protocol, channels, self.texture)
        dwi = None
        if self.dwi_model is not None and "dwi" in grids:
            dwi = self.dwi_model.render(active, grids["dwi"])
        acquired = physics.acquire(
            rng, images, grids, self.tissues, self.protocol, brain, anat.voxel_mm, dwi
        )
        visible = None
        if "FLAIR" in grids:
            visible = physics.visible_wmh(
                images["FLAIR"], grids["FLAIR"], self.tissues, self.protocol, brain
            )
        del images, dwi
        planted = self._planted_dwi() if "dwi" in acquired else None
        if "asl" in profile.modalities:
            grids["asl"] = pasl.asl_grid(self.asl_protocol, anat.shape, anat.affine, anat.voxel_mm)
            acquired["asl"], m0scan, section = self._asl(asl_rng, anat, active, grids["asl"])
            if m0scan is not None:
                acquired["m0scan"] = m0scan
            planted = {**(planted or {}), "ASL": section}
        posed = {name: physics.posed(g, self.pose) for name, g in grids.items()}
        return posed, acquired, planted, visible

    def _planted_dwi(self) -> dict:
        tissue, lesion = self.tensors.planted(self.tissues)
        return {"DWI": planted_dwi(self.dwi_model.fa_factor, tissue, lesion)}

    def _asl(
        self, rng: np.random.Generator, anat: Anatomy, active: list[Lesion], grid
    ) -> tuple[np.ndarray, np.ndarray | None, dict]:
        p = self.asl_protocol
        images = pasl.tissue_images(
            p,
            self.perfusion,
            self.cbf_factor,
            anat,
            self.basal_ganglia,
            active,
            self.tissues,
            physics.CODE_TISSUE,
            physics.HEAD_TISSUE,
            self.texture,
            pasl.slice_of_planes(grid, anat.shape[2]),
        )
        wm = self.tissues["WM"]
        wm_m0 = wm.pd * pasl.static_signal(wm, p.m0_tr)
        series, m0scan = pasl.acquire(rng, p, images, grid, self.protocol, wm_m0)
        bg_cbf = pasl.mean_cbf(images, self.basal_ganglia)
        return series, m0scan, pasl.planted(p, self.perfusion, self.cbf_factor, bg_cbf)

    def asl_sidecars(self, grid: physics.SliceGrid, asl_uri: str) -> tuple[dict, dict]:
        render_mm = self.resolution / self.oversample
        return pasl.sidecars(self.asl_protocol, grid, render_mm, self.protocol.field_t, asl_uri)

    def sidecars(self, grids: dict[str, physics.SliceGrid]) -> dict[str, dict]:
        """Per-modality sidecar fields: the protocol, field strength and slice geometry."""
        fields = sidecar_fields(self.protocol)
        render_mm = self.resolution / self.oversample
        out = {}
        for name, grid in grids.items():
            if name not in fields:
                continue  # the ASL's: asl_sidecars
            thickness = grid.factors[2] * render_mm
            spacing = (grid.factors[2] + grid.gap) * render_mm
            out[name] = {
                **fields[name],
                "MagneticFieldStrength": self.protocol.field_t,
                "SliceThickness": round(thickness, 6),
                **({"SpacingBetweenSlices": round(spacing, 6)} if grid.gap else {}),
            }
        return out
