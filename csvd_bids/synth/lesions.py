"""Planting the five CSVD markers (and the SWI veins that mimic them) for one subject.

All sessions of a subject are planned at once so that lesions persist: CMB, PVS and lacunes
stay from their onset session on, WMH grow (nested thresholds of one score field), new
lesions appear in later sessions, and an RSSI shows only in the session it was planted in.
Non-WMH lesions keep at least one voxel apart from each other and from veins (so each is its
own 26-connected component), and WMH never take a voxel of another lesion; the lesion
masks are therefore disjoint. Sizes are checked with :mod:`.measure` against the size rules
(CMB 2-10 mm, lacunes 3-15 mm, RSSI < 20 mm, PVS < 3 mm across and 5-15 mm long).
Locations follow :mod:`.regions` (an RSSI is centred in the basal ganglia, thalamus or
periventricular white matter and lies wholly outside the cortex); a WMH component is
periventricular when any of its voxels is within 10 mm of the lateral ventricles, deep
otherwise.

Confluent WMH (``plan_lesions(..., confluent_wmh=True)``, the clinical profile): the halo may
reach 25 mm + 0.2 mm per mL of the last session's volume from the ventricles (25 mm
otherwise) and grows, in the same order, until halo and deep foci together hold the drawn
volume (otherwise the halo is 70 % of it and the foci what they make), so that a heavy burden
is one confluent region around the ventricles that swallows the deep foci near it. Its
lining is at least two working voxels thick wherever it touches the ventricles: voxels within
two voxels of them may be halo whatever their WM fraction (1.5 voxels otherwise), and each
halo voxel of the wall layer (within 1.5 voxels) brings in its neighbours behind it (up to two
voxels out), unless grey matter (e.g. the caudate) is there. A one-voxel lining would average
away in thick FLAIR slices.

Linings in millimetres (``plan_lesions(..., lining_mm=...)``, the physics engine, which plans
on a sub-millimetre render grid where "two voxels" would be 1 mm): every lining (confluent or
not) is at least ``lining_mm`` thick, the wall layer's halo voxels bringing in the voxels behind
them shell by shell, halo specks under 3 mm3 are dropped, and the halo of a non-confluent
burden is sized to hold 70 % of the drawn volume with its lining. Without this, a low burden was
a 0.5 mm lining that 1 mm voxels and 3-5 mm FLAIR slices average with the CSF into darker than
normal white matter: truth that no image shows. The template engine keeps its voxel rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy import ndimage as ndi

from . import shapes
from .anatomy import Anatomy
from .fields import smooth_noise
from .measure import CONNECTIVITY, label_components, max_diameter_mm
from .participants import LesionLoad
from .regions import Regions, lobe

# Lesion tissue codes: which intensity row of contrasts.TISSUES a voxel takes.
WMH, CMB, PVS, LAC_CAVITY, LAC_RIM, RSSI, VEIN = range(7)
NEW_LESION_FRACTION = 0.25  # rate of new lesions per later session, relative to baseline
SIZE_RULES_MM = {"CMB": (2.0, 10.0), "LAC": (3.0, 15.0), "RSSI": (3.0, 19.99), "PVS": (0, 20)}
ATTEMPTS = 60
ANATOMY_SESSIONS = range(0, 999)  # veins and other anatomy: in every session
MIN_SPECK_MM3 = 3.0  # with ``lining_mm``: smaller halo specks are dropped (1 mm grid: 3 voxels)


@dataclass
class Lesion:
    marker: str  # BIDS label: WMH, CMB, PVS, LAC, RSSI (or VEIN, anatomy not truth)
    region: str
    sessions: range  # 0-based sessions in which it is visible
    index: np.ndarray  # flat voxel indices on the working grid
    tissue: np.ndarray  # int8 lesion tissue code per voxel
    weight: np.ndarray  # float32 blend weight per voxel, in (0, 1]
    planted_diameter_mm: float = float("nan")
    lobe: str = "n/a"


class Planter:
    """Places lesions one by one with rejection sampling, keeping them apart."""

    def __init__(self, rng: np.random.Generator, anat: Anatomy, regions: Regions):
        self.rng, self.anat, self.regions = rng, anat, regions
        self.shape = anat.shape
        self.occupied = np.zeros(self.shape, dtype=bool)  # lesions dilated by one voxel
        self.lesion_voxels = np.zeros(self.shape, dtype=bool)  # lesions only (no veins)
        self._pools: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _pool(self, mask: np.ndarray) -> np.ndarray:
        """Candidate voxels of a mask, cached; the mask is kept so its id is never reused."""
        key = id(mask)
        if key not in self._pools:
            self._pools[key] = (mask, np.flatnonzero(mask))
        return self._pools[key][1]

    def place(
        self,
        centres: np.ndarray,
        allowed: np.ndarray,
        make: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        size_rule: tuple[float, float],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Shape a lesion around a random centre; ``None`` after ``ATTEMPTS`` rejections."""
        pool = self._pool(centres)
        if len(pool) == 0:
            return None
        for _ in range(ATTEMPTS):
            ijk0 = np.array(np.unravel_index(self.rng.choice(pool), self.shape), dtype=float)
            centre = ijk0 + self.rng.uniform(-0.3, 0.3, 3)
            ijk, value = make(centre)
            idx = np.ravel_multi_index(ijk.T, self.shape)
            if not allowed.flat[idx].all() or self.occupied.flat[idx].any():
                continue
            diameter = max_diameter_mm(ijk, self.anat.voxel_mm)
            if not size_rule[0] <= diameter <= size_rule[1]:
                continue
            self.claim(ijk, idx)
            return idx, value, centre
        return None

    def claim(self, ijk: np.ndarray, idx: np.ndarray, lesion: bool = True) -> None:
        """Mark voxels taken (dilated by one voxel); ``lesion=False`` for anatomy."""
        lo = np.maximum(ijk.min(axis=0) - 1, 0)
        hi = np.minimum(ijk.max(axis=0) + 2, self.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        local = np.zeros(tuple(hi - lo), dtype=bool)
        local[tuple((ijk - lo).T)] = True
        self.occupied[box] |= ndi.binary_dilation(local, np.ones((3, 3, 3), dtype=bool))
        if lesion:
            self.lesion_voxels.flat[idx] = True

    def mni(self, centre: np.ndarray) -> tuple[float, float, float]:
        ijk = tuple(np.clip(np.rint(centre).astype(int), 0, np.array(self.shape) - 1))
        return tuple(float(self.anat.mni[(a, *ijk)]) for a in range(3))


def medullary_veins(p: Planter, n: int) -> list[Lesion]:
    """Medullary-vein-like dark lines on SWI, running outward from the ventricles."""
    anat, veins = p.anat, []
    start_zone = p.regions.wm & (anat.dist_ventricles >= 2) & (anat.dist_ventricles <= 6)
    grad = np.gradient(anat.dist_ventricles)
    for _ in range(n):

        def make(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ijk = tuple(np.rint(c).astype(int))
            direction = np.array([g[ijk] for g in grad]) + p.rng.normal(0, 0.2, 3)
            direction /= max(np.linalg.norm(direction), 1e-6)
            length = p.rng.uniform(15.0, 35.0) / anat.voxel_mm
            return shapes.tube(c, c + length * direction, 0.6, anat.voxel_mm, p.shape)

        placed = p.place(start_zone, anat.brain_mask, make, (0, 999))
        if placed:
            idx, _, _ = placed
            weight = np.full(len(idx), min(1.0, 1.4 / anat.voxel_mm), dtype=np.float32)
            veins.append(
                Lesion("VEIN", "n/a", ANATOMY_SESSIONS, idx, np.full(len(idx), VEIN), weight)
            )
    p.lesion_voxels[:] = False  # veins are anatomy: WMH may cover them
    return veins


Painter = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # value -> (tissue, weight)


@dataclass
class Recipe:
    """How to make one lesion of a marker: its shape, intensity blend and size."""

    make: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    paint: Painter
    diameter_mm: float


def _plant(
    p: Planter, marker: str, region: str, centres, allowed, recipe: Recipe, sessions: range
) -> Lesion | None:
    placed = p.place(centres, allowed, recipe.make, SIZE_RULES_MM[marker])
    if placed is None:
        return None
    idx, value, centre = placed
    tissue, weight = recipe.paint(value)
    return Lesion(
        marker,
        region,
        sessions,
        idx,
        tissue.astype(np.int8),
        weight.astype(np.float32),
        planted_diameter_mm=round(recipe.diameter_mm, 2),
        lobe=lobe(*p.mni(centre)) if region == "lobar" else "n/a",
    )


def _ellipsoid(p: Planter, diameter_mm: float, flatness: tuple[float, float]):
    radii = diameter_mm / 2.0 * np.array([1.0, *p.rng.uniform(*flatness, 2)])
    rotation = shapes.random_rotation(p.rng)
    return lambda c: shapes.ellipsoid(c, radii, rotation, p.anat.voxel_mm, p.shape)


def _uniform(code: int, weight: Callable[[np.ndarray], np.ndarray]) -> Painter:
    return lambda v: (np.full(len(v), code), weight(v))


def _rssi_recipe(p: Planter) -> Recipe:
    d = p.rng.uniform(6.0, 17.0)
    return Recipe(_ellipsoid(p, d, (0.55, 0.9)), _uniform(RSSI, lambda v: 0.85 + 0.15 * (1 - v)), d)


def _cmb_recipe(p: Planter) -> Recipe:
    d = float(np.clip(np.exp(p.rng.normal(np.log(3.5), 0.35)), 2.0, 9.0))
    # blooming: darkest in the centre, still clearly dark at the rim
    return Recipe(_ellipsoid(p, d, (0.85, 1.0)), _uniform(CMB, lambda v: 1.0 - 0.3 * v), d)


def _lacune_recipe(p: Planter) -> Recipe:
    d = p.rng.uniform(4.0, 13.0)
    flat = p.rng.uniform(0.6, 0.95)
    rim_mm = p.anat.voxel_mm

    def paint(rnorm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # gliotic rim: the outer voxel shell, as long as some cavity is left inside
        rim = (1.0 - rnorm) * d / 2.0 * flat < rim_mm
        if rim.all():
            rim = rnorm > rnorm.min()
        return np.where(rim, LAC_RIM, LAC_CAVITY), np.ones(len(rnorm))

    return Recipe(_ellipsoid(p, d, (flat, 1.0)), paint, d)


def _pvs_recipe(p: Planter, radial: bool) -> Recipe:
    length = p.rng.uniform(5.0, 15.0)
    radius = p.rng.uniform(0.4, 0.9)
    tilt = np.deg2rad(p.rng.uniform(0.0, 20.0))
    azimuth = p.rng.uniform(0.0, 2 * np.pi)
    direction = np.array(
        [np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt)]
    )
    vox = p.anat.voxel_mm

    def make(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = direction.copy()
        if radial:  # in the CSO lean outward, away from the midline, like medullary arteries
            d[0] = abs(d[0]) * np.sign(p.anat.mni[(0, *np.rint(c).astype(int))] or 1.0)
        half = 0.5 * length / vox * d
        return shapes.tube(c - half, c + half, radius, vox, p.shape)

    return Recipe(make, _uniform(PVS, np.ones_like), 2 * radius)


def _deep_wmh_blob(p: Planter, radius_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Irregular deep WMH focus: voxel indices and growth scores (not claimed: WMH may merge)."""
    pool = p._pool(p.regions.deep_wm)
    if len(pool) == 0:
        return None
    centre = np.array(np.unravel_index(p.rng.choice(pool), p.shape), dtype=float)
    ijk, score = shapes.blob(p.rng, centre, radius_mm, p.anat.voxel_mm, p.shape)
    idx = np.ravel_multi_index(ijk.T, p.shape)
    keep = p.regions.deep_wm.flat[idx]
    return idx[keep], score[keep]


def _attached_halo(idx: np.ndarray, ventricles: np.ndarray, min_voxels: int = 3) -> np.ndarray:
    """Halo parts that touch the ventricles and are not mere specks along their wall.

    Both conditions survive growth, so the halo of a later session contains the earlier one.
    """
    mask = np.zeros(ventricles.shape, dtype=bool)
    mask.flat[idx] = True
    labels, _ = label_components(mask)
    wall = ndi.binary_dilation(ventricles, CONNECTIVITY) & mask
    touching = np.zeros(labels.max() + 1, dtype=bool)
    touching[labels[wall]] = True
    big = np.bincount(labels.ravel()) >= min_voxels
    ok = touching & big
    ok[0] = False
    return idx[ok[labels.flat[idx]]]


def _core(idx: np.ndarray, score: np.ndarray, threshold: float, shape) -> np.ndarray:
    """Voxels of a blob above ``threshold`` connected to its peak (no stray specks).

    The peak is the same for every threshold, so lower thresholds give nested shapes.
    """
    keep = score > threshold
    if not keep.any():
        return idx[:0]
    ijk = np.array(np.unravel_index(idx, shape)).T
    lo = ijk.min(axis=0)
    local = np.zeros(tuple(ijk.max(axis=0) - lo + 1), dtype=bool)
    local[tuple((ijk[keep] - lo).T)] = True
    labels, _ = label_components(local)
    peak = tuple(ijk[np.argmax(score)] - lo)
    return idx[labels[tuple((ijk - lo).T)] == labels[peak]]


def _halo_size(order: np.ndarray, deep: np.ndarray, target: int) -> int:
    """Fewest leading voxels of ``order`` whose union with ``deep`` (unique flat indices) holds
    ``target`` voxels; all of ``order`` when even that falls short."""
    if len(deep) >= target:
        return 0
    union = len(deep) + np.cumsum(~np.isin(order, deep))  # union with the first 1, 2, ... voxels
    return int(min(np.searchsorted(union, target) + 1, len(order)))


@dataclass
class _Lining:
    """Where a lining is thickened: the wall layer, and the shells of voxels behind it (nearest
    first), into which the halo's wall voxels grow one shell per step."""

    wall: np.ndarray
    shells: list[np.ndarray]

    def thicken(self, idx: np.ndarray) -> np.ndarray:
        """The halo ``idx`` plus the voxels behind its wall voxels (no new wall voxel: the
        lining gets thicker, not wider, so it has no thin edge of its own)."""
        mask = np.zeros(self.wall.shape, dtype=bool)
        mask.flat[idx] = True
        front = mask & self.wall
        for shell in self.shells:
            front = ndi.binary_dilation(front, CONNECTIVITY) & shell
            mask |= front
        return np.flatnonzero(mask)


def _lining(halo: np.ndarray, dist: np.ndarray, voxel_mm: float, depth_mm: float) -> _Lining:
    """The wall layer (within 1.5 voxels of the ventricles) and the halo shells, one voxel
    deep each, out to ``depth_mm``."""
    edges = [*np.arange(1.5 * voxel_mm, depth_mm, voxel_mm), depth_mm]
    shells = [halo & (dist > lo) & (dist <= hi) for lo, hi in pairwise(edges)]
    return _Lining(halo & (dist <= edges[0]), shells)


@dataclass
class _Halo:
    """Halo candidates in growth order, and the halo made of the first ``n`` of them."""

    order: np.ndarray
    ventricles: np.ndarray
    lining: _Lining | None = None  # where to thicken, if anywhere
    min_speck: int = 3  # voxels: smaller detached parts of the halo are dropped

    def first(self, n: int) -> np.ndarray:
        idx = _attached_halo(self.order[:n], self.ventricles, self.min_speck)
        return idx if self.lining is None else self.lining.thicken(idx)


FILL_STEPS, FILL_TOLERANCE = 4, 0.01


def _fill(halo: _Halo, deep: np.ndarray, target: int, n_min: int) -> tuple[np.ndarray, int]:
    """(halo, n): the halo of about the fewest candidates, at least ``n_min``, with which it
    and ``deep`` hold ``target`` voxels. Detached parts and the lining make the halo differ
    from a count of candidates, hence a few corrective steps."""
    n = max(n_min, _halo_size(halo.order, deep, target))
    idx = halo.first(n)
    for _ in range(FILL_STEPS):
        miss = target - len(np.union1d(idx, deep))
        step = min(max(n + miss, n_min), len(halo.order))
        if abs(miss) <= FILL_TOLERANCE * target or step == n:
            break
        n, idx = step, halo.first(step)
    return idx, n


def _wmh(
    p: Planter,
    load: LesionLoad,
    new_deep: list[int],
    growth: np.ndarray,
    confluent: bool = False,
    lining_mm: float | None = None,
) -> list[Lesion]:
    """One WMH layer per session: periventricular halo + deep foci, growing over time
    (``confluent``, ``lining_mm``: see the module docstring)."""
    anat = p.anat
    vox_ml = anat.voxel_mm**3 / 1000.0
    free = ~p.lesion_voxels & ~anat.ventricles & anat.brain_mask & (anat.gm < 0.5)
    wall = (2.0 if confluent else 1.5) * anat.voxel_mm
    if lining_mm is not None:
        wall = max(wall, lining_mm)
    reach = 25.0 + (0.2 * load.wmh_ml * growth[-1] if confluent else 0.0)
    halo = (
        free
        & (anat.mni[2] > -10)
        & ((anat.wm >= 0.3) | (anat.dist_ventricles <= wall))
        & (anat.dist_ventricles <= reach)
    )
    halo_idx = np.flatnonzero(halo)
    # score ~ distance to the ventricles, jittered, lower at the horns (caps)
    jitter = np.exp(0.35 * smooth_noise(p.rng, p.shape, anat.voxel_mm, 8.0)).flat[halo_idx]
    horn = np.clip((np.abs(anat.mni[1].flat[halo_idx] + 10.0) - 15.0) / 15.0, 0.0, 1.0)
    halo_score = anat.dist_ventricles.flat[halo_idx] * jitter - 4.0 * horn
    order = halo_idx[np.argsort(halo_score, kind="stable")]
    blend = np.clip(0.8 + 0.12 * smooth_noise(p.rng, p.shape, anat.voxel_mm, 8.0), 0.55, 1.0)

    focus_ml = 0.3 * load.wmh_ml / max(new_deep[0], 1)  # deep share split over baseline foci
    blobs = []  # (onset, idx, score)
    for onset, n in enumerate(new_deep):
        for share in p.rng.lognormal(-0.3, 0.8, n):
            volume = focus_ml * share
            radius = float(np.clip(np.cbrt(3 * volume * 1000 / (4 * np.pi)), 1.5, 12.0))
            made = _deep_wmh_blob(p, radius)
            if made is not None:
                blobs.append((onset, *made))

    grower = _Halo(order, anat.ventricles)
    if confluent or lining_mm is not None:
        grower.lining = _lining(halo, anat.dist_ventricles, anat.voxel_mm, wall)
    if lining_mm is not None:
        grower.min_speck = max(3, int(np.ceil(MIN_SPECK_MM3 / anat.voxel_mm**3)))
    layers, n_halo = [], 0
    for s, g in enumerate(growth):
        cores = [
            _core(idx, score, -0.15 * (s - onset), p.shape)
            for onset, idx, score in blobs
            if onset <= s
        ]
        if confluent:  # never fewer candidates than the last session: layers stay nested
            deep = np.unique(np.concatenate(cores)) if cores else order[:0]
            target = int(round(load.wmh_ml * g / vox_ml))
            attached, n_halo = _fill(grower, deep[free.flat[deep]], target, n_halo)
        elif lining_mm is not None:  # the thickened lining counts towards the halo's 70 %
            target = int(round(0.7 * load.wmh_ml * g / vox_ml))
            attached, n_halo = _fill(grower, order[:0], target, n_halo)
        else:
            n_halo = int(round(0.7 * load.wmh_ml * g / vox_ml))
            attached = grower.first(n_halo)
        idx = np.unique(np.concatenate([attached, *cores]))
        idx = idx[free.flat[idx]]
        layers.append(
            Lesion(
                "WMH",
                "n/a",
                range(s, s + 1),
                idx,
                np.full(len(idx), WMH, np.int8),
                blend.flat[idx].astype(np.float32),
            )
        )
    return layers


def plan_lesions(
    rng: np.random.Generator,
    anat: Anatomy,
    regions: Regions,
    load: LesionLoad,
    n_sessions: int,
    confluent_wmh: bool = False,
    mimics: Callable[[Planter], list[Lesion]] | None = None,
    lining_mm: float | None = None,
) -> list[Lesion]:
    """All lesions (and veins) of one subject over its sessions (``confluent_wmh``: WMH of the
    clinical profile; ``lining_mm``: the thinnest WMH lining; see the module docstring).
    ``mimics`` places more anatomy (never truth) after the veins and before the lesions, which
    then keep a voxel away from it."""
    p = Planter(rng, anat, regions)
    r = regions
    lesions: list[Lesion] = medullary_veins(p, 10)
    if mimics is not None:
        lesions += mimics(p)

    def new_counts(key: str) -> list[int]:
        later = rng.poisson(NEW_LESION_FRACTION * load.rates[key], n_sessions - 1)
        return [load.counts[key], *(int(n) for n in later)]

    deep_gm = r.basal_ganglia | r.thalamus
    cmb_sites = {
        "lobar": (0.55, r.lobar),
        "deep": (0.3, deep_gm),
        "infratentorial": (0.15, r.infratentorial),
    }
    lac_sites = {
        "deep": (0.7, deep_gm | (r.wm & (anat.dist_ventricles <= 15.0))),
        "lobar": (0.3, r.wm & (anat.dist_ventricles > 15.0) & ~deep_gm),
    }
    subcortical = r.tissue & ~anat.ventricles

    def choose(sites: dict) -> tuple[str, np.ndarray]:
        names = list(sites)
        probs = np.array([sites[k][0] for k in names])
        name = names[rng.choice(len(names), p=probs / probs.sum())]
        return name, sites[name][1]

    if load.rssi_session is not None and load.rssi_session < n_sessions:
        territory = r.basal_ganglia | r.thalamus | (r.wm & r.periventricular)
        s = load.rssi_session
        # An RSSI is subcortical (STRIVE): its body must not reach cortical grey matter (a
        # periventricular one by a temporal horn had half its volume in the temporal cortex).
        lesions.append(
            _plant(
                p,
                "RSSI",
                "deep",
                territory,
                subcortical & ~r.cortex,
                _rssi_recipe(p),
                range(s, s + 1),
            )
        )
    for s, n in enumerate(new_counts("lac")):
        for _ in range(n):
            region, centres = choose(lac_sites)
            lesions.append(
                _plant(
                    p, "LAC", region, centres, subcortical, _lacune_recipe(p), range(s, n_sessions)
                )
            )
    for s, n in enumerate(new_counts("cmb")):
        for _ in range(n):
            region, centres = choose(cmb_sites)
            lesions.append(
                _plant(p, "CMB", region, centres, centres, _cmb_recipe(p), range(s, n_sessions))
            )
    for key, region, centres, allowed in (
        ("pvs_bg", "BG", r.basal_ganglia, subcortical),
        ("pvs_cso", "CSO", r.cso, r.wm),
    ):
        for s, n in enumerate(new_counts(key)):
            for _ in range(n):
                lesions.append(
                    _plant(
                        p,
                        "PVS",
                        region,
                        centres,
                        allowed,
                        _pvs_recipe(p, radial=region == "CSO"),
                        range(s, n_sessions),
                    )
                )
    growth = np.cumprod([1.0, *rng.uniform(1.05, 1.25, n_sessions - 1)])
    lesions += _wmh(p, load, new_counts("wmh_deep"), growth, confluent_wmh, lining_mm)
    return [lesion for lesion in lesions if lesion is not None]
