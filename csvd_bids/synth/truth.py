"""Ground truth of one session: marker masks, the label map and the per-lesion table; and
of one subject: the anatomical structures (``seg-regions_dseg``) for preprocessing benchmarks.

Masks hold exactly the voxels whose intensities a lesion changed on the working (T1w) grid.
One table row per 26-connected component of each marker mask (see :mod:`.measure`).

On an acquisition grid (``grid``: the clinical profile's thick-slice FLAIR, which has no T1w
to be truth on) the truth is what that image's voxels show: a voxel belongs to a marker when
the marker's working-grid mask fills at least half of its block (``contrasts.occupied``;
where two markers each fill half, the dseg order decides, so masks stay disjoint), to the
brain likewise, and takes the most frequent structure of its block (``block_majority``, ties
to the structure). The lesion table is measured on those grid masks; a WMH component's
distance to the ventricles is the least over its blocks, and a lesion's planted attributes
(lobe, planted diameter, onset) are those of the highest-numbered planted lesion in its
blocks. The ratings file (:mod:`.planted`) grades WMH and PVS on these masks with the
pipeline's rules; its microbleed and lacune counts are of the planted lesions, so a lesion too
small to fill half a voxel counts there but has no mask voxel.

WMH are marked on the FLAIR, and a thick FLAIR slice shows a lesion only where the lesion fills
enough of it: a 2 mm ventricular lining seen in a 4 mm slice that also holds ventricle is as
dark as the CSF it is averaged with, and no rater would mark it. So when the truth grid is
finer than the FLAIR (``seen``), a WMH voxel stays in the truth only where the lesion fills at
least half of the FLAIR voxel that holds the voxel's centre (:func:`visible_fraction`). Filling
is not showing when the rest of the voxel is CSF, which is dark on FLAIR: the physics engine
also passes where the FLAIR's noise-free signal is at least halfway from normal WM's to a
WMH's (``visible``, :func:`.physics.visible_wmh`), on the FLAIR grid itself too.

Structures: the lateral ventricles are the generator's own (``Anatomy.ventricles``); basal
ganglia (caudate, putamen, pallidum, accumbens), thalamus, brainstem and cerebellum are the
pipeline's atlas labels (:func:`csvd_bids.preproc.atlas.load_atlas`) read with nearest
neighbour at each voxel's template (MNI) coordinate, so they follow the subject's known
deformation of the template; all within the true brain mask, the ventricles winning ties.
Indices are those of the pipeline's region map (``csvd_bids.preproc.regions.REGION_LABELS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import BY_LABEL, MARKER_LABELS, paint_dseg
from ..preproc.atlas import STRUCTURES, Atlas, load_atlas
from ..preproc.regions import REGION_LABELS
from ..quant.lesions import LESION_COLUMNS
from .anatomy import Anatomy
from .contrasts import BLOCK_AXES, AcqGrid, blocks, occupied
from .lesions import Lesion
from .measure import component_stats, label_components
from .regions import PV_DISTANCE_MM

STATS_COLUMNS = (*LESION_COLUMNS, "planted_diameter_mm", "onset_session")


# atlas structure name -> region name of the pipeline's region map
_ATLAS_TO_REGION = {
    "caudate": "basal_ganglia",
    "putamen": "basal_ganglia",
    "pallidum": "basal_ganglia",
    "accumbens": "basal_ganglia",
    "thalamus": "thalamus",
    "brainstem": "brainstem",
    "cerebellum": "cerebellum",
}
_REGION_INDEX = {name: index for index, name in REGION_LABELS.items()}
VENTRICLES_INDEX = _REGION_INDEX["lateral_ventricles"]
# the region labels the truth uses, in index order
TRUTH_REGIONS = {
    index: name
    for index, name in sorted(REGION_LABELS.items())
    if index == VENTRICLES_INDEX or name in _ATLAS_TO_REGION.values()
}


def regions_tsv_text() -> str:
    """The truth derivative's ``seg-regions_dseg.tsv``: exactly the labels used."""
    return "index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in TRUTH_REGIONS.items())


def region_truth(anat: Anatomy, atlas: Atlas | None = None) -> np.ndarray:
    """uint8 map of the structures (``TRUTH_REGIONS``) on the working grid; see the module
    docstring. Shared by all sessions of a subject (one anatomy). ``atlas``: the result of
    :func:`~csvd_bids.preproc.atlas.load_atlas` (loaded here if not given)."""
    atlas = atlas if atlas is not None else load_atlas()
    lookup = np.zeros(256, dtype=np.uint8)
    for label, name in STRUCTURES.items():
        if name in _ATLAS_TO_REGION:
            lookup[label] = _REGION_INDEX[_ATLAS_TO_REGION[name]]
    inverse = np.linalg.inv(atlas.affine)  # the atlas's x axis is flipped: full matrix
    out = np.zeros(anat.shape, dtype=np.uint8)
    where = np.nonzero(anat.brain_mask)
    mni = anat.mni[(slice(None), *where)].astype(np.float64)  # (3, n) brain voxels only
    ijk = np.rint(inverse[:3, :3] @ mni + inverse[:3, 3:4]).astype(np.intp)
    shape = np.array(atlas.structures.shape)[:, None]
    inside = ((ijk >= 0) & (ijk < shape)).all(axis=0)
    values = np.zeros(ijk.shape[1], dtype=np.uint8)
    values[inside] = lookup[atlas.structures[tuple(ijk[:, inside])]]
    out[where] = values
    out[anat.ventricles & anat.brain_mask] = VENTRICLES_INDEX
    return out


def block_majority(labels: np.ndarray, grid: AcqGrid) -> np.ndarray:
    """Most frequent value of each block of a uint8 label map on ``grid``; a tie goes to the
    higher value (a structure filling half a block wins over background, as for masks)."""
    values = np.moveaxis(blocks(labels, grid), BLOCK_AXES, (3, 4, 5))
    values = values.reshape(*grid.shape, -1).astype(np.int32)
    counts = np.stack(
        [(values == values[..., j : j + 1]).sum(axis=-1) for j in range(values.shape[-1])], -1
    )
    best = np.argmax(counts * 256 + values, axis=-1)
    return np.take_along_axis(values, best[..., None], axis=-1)[..., 0].astype(labels.dtype)


def anatomy_truth(
    anat: Anatomy, structures: np.ndarray, grid: AcqGrid | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brain mask uint8, structures, affine) on the working grid or on ``grid``."""
    if grid is None:
        return anat.brain_mask.astype(np.uint8), structures, anat.affine
    brain = occupied(anat.brain_mask, grid).astype(np.uint8)
    return brain, block_majority(structures, grid), grid.affine


@dataclass
class Truth:
    masks: dict[str, np.ndarray]  # label -> uint8 0/1
    dseg: np.ndarray  # uint8 indices of seg-csvd_dseg.tsv
    rows: list[dict]


def _region(lesion: Lesion | None, dist: float) -> str:
    if lesion is None:  # WMH: location of the whole component
        return "periventricular" if dist <= PV_DISTANCE_MM else "deep"
    return lesion.region


def visible_fraction(
    mask: np.ndarray, seen: AcqGrid, affine: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Per voxel of the grid (``affine``, ``shape``): the fraction of the ``seen`` voxel that
    holds its centre which the working-grid ``mask`` fills (0 outside ``seen``)."""
    fraction = blocks(mask, seen).mean(axis=BLOCK_AXES, dtype=np.float32)
    return on_seen(fraction, seen, affine, shape)


def on_seen(
    values: np.ndarray, seen: AcqGrid, affine: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Per voxel of the grid (``affine``, ``shape``): the value of ``values`` (on ``seen``'s
    grid) at the ``seen`` voxel that holds its centre (0 outside ``seen``)."""
    to_seen = np.linalg.solve(seen.affine, affine)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    index = np.rint(to_seen[:3, :3] @ ijk + to_seen[:3, 3:]).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(seen.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], dtype=np.float32)
    out[inside] = values[tuple(index[:, inside])]
    return out.reshape(shape)


def session_truth(
    anat: Anatomy,
    lesions: list[Lesion],
    session: int,
    grid: AcqGrid | None = None,
    seen: AcqGrid | None = None,
    visible: np.ndarray | None = None,
) -> Truth:
    """Masks, dseg and lesion table of a session (0-based) on the working grid, or on an
    acquisition ``grid``; WMH limited to what the FLAIR grid ``seen`` shows (module
    docstring), and to its voxels ``visible`` (on ``seen``'s grid) when given. ``grid`` and
    ``seen`` must be placed alike (both posed or neither)."""
    active = [x for x in lesions if session in x.sessions and x.marker in BY_LABEL]
    owner = np.full(anat.shape, -1, dtype=np.int32)  # which planted lesion made a voxel
    masks = {m.label: np.zeros(anat.shape, dtype=np.uint8) for m in MARKER_LABELS}
    for serial, lesion in enumerate(active):
        masks[lesion.marker].flat[lesion.index] = 1
        owner.flat[lesion.index] = serial
    planted_wmh = masks["WMH"].astype(bool)  # working grid, before any block rule
    affine, dist = anat.affine, anat.dist_ventricles
    if grid is not None:
        masks = {label: occupied(mask, grid) for label, mask in masks.items()}
        owner = blocks(owner, grid).max(axis=BLOCK_AXES)
        dist = blocks(dist, grid).min(axis=BLOCK_AXES)
        affine = grid.affine
    shape = owner.shape
    # on the FLAIR grid itself, the half-a-block rule above already keeps what it fills
    if seen is not None and seen is not grid:
        masks["WMH"] &= visible_fraction(planted_wmh, seen, affine, shape) >= 0.5
    if seen is not None and visible is not None:
        masks["WMH"] &= visible if seen is grid else on_seen(visible, seen, affine, shape) > 0.5
    dseg = paint_dseg(masks, shape)
    # from the dseg: disjoint even where two markers fill half a block each
    masks = {m.label: (dseg == m.index).astype(np.uint8) for m in MARKER_LABELS}
    rows: list[dict] = []
    for marker in MARKER_LABELS:
        labels, n = label_components(masks[marker.label])
        for stat in component_stats(labels, n, affine):
            voxels = labels[stat.box] == stat.label
            planted = None if marker.label == "WMH" else active[owner[stat.box][voxels].max()]
            rows.append(
                {
                    "lesion_id": len(rows) + 1,
                    "marker": marker.label,
                    "region": _region(planted, float(dist[stat.box][voxels].min())),
                    "volume_mm3": round(stat.volume_mm3, 3),
                    "max_diameter_mm": round(stat.max_diameter_mm, 3),
                    "centroid_x_mm": round(stat.centroid_mm[0], 3),
                    "centroid_y_mm": round(stat.centroid_mm[1], 3),
                    "centroid_z_mm": round(stat.centroid_mm[2], 3),
                    "n_voxels": stat.n_voxels,
                    "lobe": planted.lobe if planted else "n/a",
                    "planted_diameter_mm": planted.planted_diameter_mm if planted else "n/a",
                    "onset_session": planted.sessions.start + 1 if planted else "n/a",
                }
            )
    return Truth(masks, dseg, rows)


STATS_SIDECAR = {
    "lesion_id": {"Description": "Lesion number in this file (1..n), markers in label order."},
    "marker": {
        "Description": "Marker label (BIDS label- entity).",
        "Levels": {m.label: m.name for m in MARKER_LABELS},
    },
    "region": {
        "Description": "Location class: WMH periventricular (a voxel within 10 mm of the "
        "lateral ventricles) or deep; CMB lobar/deep/infratentorial; PVS BG/CSO; LAC "
        "deep/lobar; RSSI deep. Rules in csvd_bids.synth.regions."
    },
    "volume_mm3": {"Description": "Lesion volume.", "Units": "mm^3"},
    "max_diameter_mm": {
        "Description": "Largest distance between two voxel centres of the lesion plus one "
        "voxel width.",
        "Units": "mm",
    },
    "centroid_x_mm": {"Description": "Centroid, x world coordinate.", "Units": "mm"},
    "centroid_y_mm": {"Description": "Centroid, y world coordinate.", "Units": "mm"},
    "centroid_z_mm": {"Description": "Centroid, z world coordinate.", "Units": "mm"},
    "n_voxels": {"Description": "Number of voxels (26-connected component on the T1w grid)."},
    "lobe": {"Description": "Coarse lobe of a lobar lesion (n/a otherwise)."},
    "planted_diameter_mm": {
        "Description": "Diameter drawn when planting (PVS: tube width); n/a for WMH.",
        "Units": "mm",
    },
    "onset_session": {"Description": "Session number in which the lesion first appeared."},
}


def stats_sidecar(space: str = "T1w") -> dict:
    """``STATS_SIDECAR`` for a table measured on the grid of ``space`` (T1w or FLAIR)."""
    entry = {"Description": f"Number of voxels (26-connected component on the {space} grid)."}
    return {**STATS_SIDECAR, "n_voxels": entry}
