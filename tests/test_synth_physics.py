"""The physics engine of the generator (``--engine physics``): tissue properties, signal
equations, the computed susceptibility field, acquisition, and the dataset it writes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from csvd_bids.synth import SynthUsageError, generate_dataset
from csvd_bids.synth import protocols as P
from csvd_bids.synth import tissue_properties as T
from csvd_bids.synth.physics import acquire_volume, slice_grid
from csvd_bids.synth.susceptibility import dipole_field_ppm, phase_radians, swi_magnitude

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("physics_dataset")

SEED = 11


def _protocol(**changes) -> P.Protocol:
    return dataclasses.replace(P.draw_protocol(np.random.default_rng(0), 3.0), **changes)


@pytest.mark.parametrize("field_t", T.FIELDS_T)
def test_every_tissue_is_in_its_physical_range(field_t):
    for name, tissue in T.nominal(field_t).items():
        T.check_tissue(name, tissue)
    for seed in range(5):
        T.draw_tissues(np.random.default_rng(seed), field_t)  # checks every draw


def test_a_tissue_out_of_range_is_refused_by_name():
    wm = T.nominal(3.0)["WM"]
    with pytest.raises(T.TissueRangeError, match=r"tissue WM: t2s .* T2\* <= T2"):
        T.check_tissue("WM", dataclasses.replace(wm, t2s=wm.t2 + 1))
    with pytest.raises(T.TissueRangeError, match="tissue WM: pd"):
        T.check_tissue("WM", dataclasses.replace(wm, pd=1.2))


def test_a_protocol_out_of_range_is_refused_by_name():
    with pytest.raises(P.ProtocolRangeError, match=r"gre_te = 200.0 is outside"):
        P.check_protocol(_protocol(gre_te=200.0))
    with pytest.raises(P.ProtocolRangeError, match="flair_ti"):
        P.check_protocol(_protocol(flair_ti=100.0))


@pytest.mark.parametrize("field_t", T.FIELDS_T)
def test_signal_equations_give_the_known_contrasts(field_t):
    tissues = T.nominal(field_t)
    for seed in range(4):
        protocol = P.draw_protocol(np.random.default_rng(seed), field_t)
        s = {name: P.signals(protocol, t) for name, t in tissues.items()}
        assert s["WM"]["T1w"] > s["GM"]["T1w"] > 2 * s["CSF"]["T1w"]  # MPRAGE
        assert s["CSF"]["FLAIR"] < 0.25 * s["WM"]["FLAIR"]  # CSF nulled
        assert s["WMH"]["FLAIR"] > 1.2 * s["WM"]["FLAIR"]
        assert s["CSF"]["T2w"] > s["GM"]["T2w"] > s["WM"]["T2w"]
        assert s["CMB"]["T2starw"] < 0.5 * s["WM"]["T2starw"]  # short T2*
        assert s["RSSI"]["b1000"] > 1.3 * s["WM"]["b1000"]  # restricted diffusion
        assert s["ARTERY"]["T2w"] < 0.1 * s["WM"]["T2w"]  # flow void
        assert s["AIR"]["T1w"] == 0.0
    null = P.flair_null_ti(9000.0, 4100.0)
    csf = T.nominal(3.0)["CSF"]
    nulled = P.signals(_protocol(flair_ti=null, flair_eff=1.0, flair_tr=9000.0), csf)
    assert nulled["FLAIR"] < 1e-6


def _sphere_field(chi: float, radius_mm: float, voxel_mm: float, n: int = 64):
    ijk = (np.indices((n, n, n)) - (n - 1) / 2.0) * voxel_mm
    r = np.sqrt((ijk**2).sum(axis=0))
    volume = np.where(r <= radius_mm, chi, 0.0).astype(np.float32)
    return dipole_field_ppm(volume, voxel_mm), ijk, r


def test_the_dipole_field_of_a_sphere_matches_the_analytic_field():
    """Outside a sphere dB/B0 = chi (R/r)^3 (3 cos^2 theta - 1) / 3 (B0 along z)."""
    radius, voxel = 3.0, 0.5
    field, ijk, r = _sphere_field(0.5, radius, voxel)
    shell = (r > 2 * radius) & (r < 4 * radius)
    cos2 = (ijk[2][shell] / r[shell]) ** 2
    analytic = 0.5 * (radius / r[shell]) ** 3 * (3 * cos2 - 1) / 3
    error = np.abs(field[shell] - analytic)
    assert np.median(error) < 0.05 * np.abs(analytic).max()
    assert np.corrcoef(field[shell], analytic)[0, 1] > 0.95
    along_b0 = field[32, 32, 32 + int(2.5 * radius / voxel)]
    across = field[32 + int(2.5 * radius / voxel), 32, 32]
    assert along_b0 > 0 > across  # positive lobes along B0 for a paramagnetic source


def _dark_volume(field_t: float, te_ms: float) -> float:
    """Signal lost (in acquired 1 mm voxels of background signal 1) around a 0.6 ppm
    microbleed of 2 mm diameter: its apparent, bloomed size."""
    field, _, r = _sphere_field(0.6, 1.0, 0.25)
    magnitude = np.where(r <= 1.0, 0.2, 1.0).astype(np.float32)
    signal = magnitude * np.exp(1j * phase_radians(field, field_t, te_ms))
    acquired = np.abs(acquire_volume(signal, slice_grid(4, 4, 0, signal.shape, np.eye(4))))
    return float((1.0 - acquired).sum())


def test_blooming_grows_with_echo_time_and_field_strength():
    no_field = 0.8 * 4 / 3 * np.pi * 1.0**3  # the deposit's own signal loss, in mm3
    assert _dark_volume(3.0, 30.0) > 1.3 * _dark_volume(3.0, 15.0)
    assert _dark_volume(3.0, 15.0) > 1.3 * no_field
    assert _dark_volume(3.0, 20.0) > 1.3 * _dark_volume(1.5, 20.0)


def test_swi_darkens_paramagnetic_sources_but_not_diamagnetic_ones():
    values = {}
    for chi in (0.6, -0.6):
        field, _, r = _sphere_field(chi, 2.0, 0.5)
        phase = phase_radians(field, 3.0, 20.0)
        assert np.sign(phase[r <= 1.0].mean()) == -np.sign(chi)
        signal = np.exp(1j * phase).astype(np.complex64)
        swi = swi_magnitude(signal, 0.5)
        values[chi] = float(swi[r <= 1.0].mean())
    assert values[0.6] < 0.7 < values[-0.6]


def test_slices_with_gaps_integrate_their_own_slab():
    volume = np.zeros((4, 4, 20), dtype=np.float32)
    volume[..., 4] = 1.0  # a plane inside the gap after slice 0 (planes 0-2, gap 3-4)
    grid = slice_grid(1, 3, 2, volume.shape, np.eye(4))
    assert grid.shape == (4, 4, 4)
    assert np.allclose(grid.affine[:3, 2], [0, 0, 5])
    acquired = acquire_volume(volume, grid)
    assert acquired[..., 0].max() == 0.0  # unseen: in the gap, beyond the profile's tail
    assert acquired[..., 1].max() == pytest.approx(0.25 / 3.5)  # the next slice's tail


@pytest.fixture(scope="module")
def physics_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("physics") / "ds"
    return generate_dataset(
        root, 1, 1, SEED, 3.0, engine="physics", oversample=2, field_t=1.5, gre_te=25.0
    )


def test_the_physics_dataset_has_its_protocol_pose_and_truth(physics_ds):
    anat = physics_ds / "sub-01" / "anat"
    swi = json.loads((anat / "sub-01_acq-swi_T2starw.json").read_text())
    assert swi["MagneticFieldStrength"] == 1.5 and swi["EchoTime"] == 0.025
    flair = json.loads((anat / "sub-01_FLAIR.json").read_text())
    assert 8.0 <= flair["RepetitionTime"] <= 11.0 and 1.2 < flair["InversionTime"] < 3.5
    t1w = nib.load(anat / "sub-01_T1w.nii.gz")
    truth = physics_ds / "derivatives" / "groundtruth" / "sub-01" / "anat"
    dseg = nib.load(truth / "sub-01_space-T1w_seg-csvd_dseg.nii.gz")
    assert dseg.shape == t1w.shape and np.allclose(dseg.affine, t1w.affine)
    rotation = t1w.affine[:3, :3] / 3.0
    assert not np.allclose(rotation, np.eye(3), atol=1e-3)  # a random head pose
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert "Engine: physics" in (physics_ds / "README").read_text()
    data = t1w.get_fdata()
    assert data.dtype.kind == "f" and data.max() > 0


def test_the_physics_engine_differs_from_the_template_engine(physics_ds, tmp_path):
    template = generate_dataset(tmp_path / "t", 1, 1, SEED, 3.0)
    name = "sub-01/anat/sub-01_FLAIR.nii.gz"
    a, b = nib.load(physics_ds / name), nib.load(template / name)
    assert a.shape != b.shape or not np.array_equal(a.get_fdata(), b.get_fdata())
    rows = [(ds / "participants.tsv").read_text().splitlines()[1] for ds in (physics_ds, template)]
    assert rows[0] == rows[1]  # the same people


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "physics", "gre_te": 200.0}, "--gre-te 200.0 ms is outside"),
        ({"engine": "physics", "field_t": 2.0}, "--field-strength must be one of"),
        ({"field_t": 3.0}, "need --engine physics"),
        ({"engine": "physics", "oversample": 9}, "--oversample must be within"),
        ({"engine": "mri"}, "--engine must be one of"),
    ],
)
def test_bad_engine_options_are_refused_by_name(tmp_path, options, message):
    with pytest.raises(SynthUsageError, match=message):
        generate_dataset(tmp_path / "x", 1, 1, 0, 4.0, **options)
    assert not (tmp_path / "x").exists()


def test_the_command_line_refuses_a_bad_echo_time(tmp_path):
    command = [sys.executable, "-m", "csvd_bids.synth", str(tmp_path / "x"), "--engine"]
    command += ["physics", "--gre-te", "-5"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 64 and "--gre-te -5.0 ms is outside" in done.stderr


def test_the_physics_engine_is_deterministic_and_makes_clinical_sessions(tmp_path):
    made = [
        generate_dataset(tmp_path / f"c{i}", 1, 1, 3, 4.0, engine="physics", profile="clinical")
        for i in range(2)
    ]
    files = sorted(p.relative_to(made[0]) for p in made[0].rglob("*.nii.gz"))
    assert files == sorted(p.relative_to(made[1]) for p in made[1].rglob("*.nii.gz"))
    for name in files:
        assert (made[0] / name).read_bytes() == (made[1] / name).read_bytes(), name
    anat = made[0] / "sub-01" / "anat"
    assert [p.name for p in anat.glob("*.nii.gz")] == ["sub-01_FLAIR.nii.gz"]
    flair = nib.load(anat / "sub-01_FLAIR.nii.gz")
    assert 5.0 <= json.loads((anat / "sub-01_FLAIR.json").read_text())["SliceThickness"] <= 8.0
    assert (flair.get_fdata() == 0).mean() > 0.3  # skull-stripped
    truth = made[0] / "derivatives" / "groundtruth" / "sub-01" / "anat"
    assert nib.load(truth / "sub-01_space-FLAIR_seg-csvd_dseg.nii.gz").shape == flair.shape


@pytest.fixture(scope="module")
def small_subject():
    """One subject's anatomy (3 mm), its load and its lesions with the mimics."""
    from csvd_bids.synth.anatomy import make_anatomy
    from csvd_bids.synth.lesions import plan_lesions
    from csvd_bids.synth.mimics import plant_mimics
    from csvd_bids.synth.participants import draw_load, draw_participant
    from csvd_bids.synth.regions import make_regions

    rng = np.random.default_rng(4)
    person = draw_participant(rng)
    load = draw_load(rng, person, 1)
    anat = make_anatomy(rng, 3.0)
    lesions = plan_lesions(rng, anat, make_regions(anat), load, 1, mimics=plant_mimics)
    return anat, load, lesions


def test_mimics_are_planted_but_never_truth(small_subject):
    from csvd_bids.labels import MARKER_LABELS
    from csvd_bids.synth.truth import session_truth

    anat, _, lesions = small_subject
    markers = {x.marker for x in lesions}
    assert {"VEIN", "ARTERY", "AIR"} <= markers
    mimic_voxels = np.concatenate(
        [x.index for x in lesions if x.marker in ("VEIN", "ARTERY", "AIR", "CALC")]
    )
    truth = session_truth(anat, lesions, 0)
    wmh = next(m.index for m in MARKER_LABELS if m.label == "WMH")
    found = truth.dseg.flat[mimic_voxels]
    assert not ((found > 0) & (found != wmh)).any()  # WMH may cover a vein, as in real scans
    air = np.concatenate([x.index for x in lesions if x.marker == "AIR"])
    assert not anat.brain_mask.flat[air].any()  # sinuses are in the skull, not the brain


def test_atrophy_turns_tissue_into_csf_without_changing_the_brain(small_subject):
    import copy

    from csvd_bids.synth.physics import atrophy

    anat = copy.deepcopy(small_subject[0])
    before = {k: getattr(anat, k).copy() for k in ("gm", "wm", "csf", "ventricles")}
    atrophy(anat, np.random.default_rng(4))  # ventricles 4.7 mm larger: beyond a 3 mm voxel
    assert np.allclose(anat.gm + anat.wm + anat.csf, before["gm"] + before["wm"] + before["csf"])
    assert anat.ventricles.sum() > before["ventricles"].sum()
    assert (anat.ventricles | ~before["ventricles"]).all()  # the old ventricles stay
    assert anat.csf.sum() > before["csf"].sum() and (anat.gm <= before["gm"] + 1e-6).all()
    assert anat.dist_ventricles[anat.ventricles].max() == 0.0


def test_physics_subjects_have_more_bg_pvs_and_some_rimless_lacunes(small_subject):
    from csvd_bids.synth.dataset import Settings
    from csvd_bids.synth.lesions import LAC_CAVITY, LAC_RIM, Lesion
    from csvd_bids.synth.physics_subject import BG_PVS_CAP, PhysicsSubject
    from csvd_bids.synth.profiles import PROFILES

    _, load, _ = small_subject
    settings = Settings(1.0, None, PROFILES["research"], "physics")
    counts = [
        PhysicsSubject.draw(0, i, settings).adjust_load(load).counts["pvs_bg"] for i in range(20)
    ]
    assert min(counts) >= load.counts["pvs_bg"] and max(counts) > load.counts["pvs_bg"]
    assert max(counts) <= BG_PVS_CAP
    lacunes = [
        Lesion("LAC", "deep", range(1), np.arange(3), np.array([LAC_RIM, LAC_CAVITY, LAC_RIM]),
               np.ones(3, np.float32))
        for _ in range(40)
    ]  # fmt: skip
    PhysicsSubject.draw(0, 1, settings).vary_lesions(lacunes)
    rimless = sum(not (x.tissue == LAC_RIM).any() for x in lacunes)
    assert 5 < rimless < 30


def test_physics_wmh_linings_are_thick_enough_to_be_seen():
    """A low burden is mostly a lining of the ventricle walls; one voxel thick, 3-8 mm FLAIR
    slices average it with the CSF into darker than normal white matter (truth no image
    shows). With ``lining_mm`` (the physics engine) the lining's wall voxels have lesion
    behind them, and the volume stays the one drawn."""
    from csvd_bids.synth.anatomy import make_anatomy
    from csvd_bids.synth.lesions import plan_lesions
    from csvd_bids.synth.participants import draw_load, draw_participant
    from csvd_bids.synth.physics_subject import LINING_MM
    from csvd_bids.synth.regions import make_regions

    rng = np.random.default_rng(4)
    load = dataclasses.replace(draw_load(rng, draw_participant(rng), 1), wmh_ml=1.0)
    anat = make_anatomy(rng, 1.0)
    regions = make_regions(anat)
    backed, volume = {}, {}
    for lining in (None, LINING_MM):
        lesions = plan_lesions(np.random.default_rng(7), anat, regions, load, 1, lining_mm=lining)
        wmh = np.zeros(anat.shape, dtype=bool)
        for lesion in (x for x in lesions if x.marker == "WMH"):
            wmh.flat[lesion.index] = True
        dist = anat.dist_ventricles
        wall = wmh & (dist <= 1.5)
        behind = ndi.binary_dilation(wmh & (dist > 1.5) & (dist <= LINING_MM), np.ones((3,) * 3))
        backed[lining] = (wall & behind).sum() / wall.sum()
        volume[lining] = wmh.sum() / 1000.0
    assert backed[LINING_MM] >= 0.9 > 0.5 > backed[None]
    assert abs(volume[LINING_MM] - volume[None]) < 0.2 * volume[None]


def test_wmh_truth_is_what_the_thick_flair_shows(small_subject):
    """A one-voxel roof lining in a four-voxel FLAIR slab is averaged with what lies above it:
    no rater marks it, so it is not truth on the finer T1w grid; a wall lining that fills
    its slab is (``truth.visible_fraction``)."""
    from csvd_bids.synth.lesions import WMH, Lesion
    from csvd_bids.synth.truth import session_truth

    anat = small_subject[0]
    x, y, z = (n // 2 for n in anat.shape)
    z -= z % 4  # the first plane of a slab of the FLAIR grid below
    roof = np.zeros(anat.shape, dtype=bool)
    roof[x : x + 6, y : y + 6, z] = True
    wall = np.zeros(anat.shape, dtype=bool)
    wall[x + 8, y : y + 6, z : z + 8] = True

    def lesion(mask):
        index = np.flatnonzero(mask)
        ones = np.ones(index.size)
        return Lesion("WMH", "periventricular", range(1), index, ones.astype(np.int8) * WMH, ones)

    planted = [lesion(roof), lesion(wall)]
    grid = slice_grid(1, 1, 0, anat.shape, anat.affine)
    flair = slice_grid(1, 4, 0, anat.shape, anat.affine)
    every = session_truth(anat, planted, 0, grid).masks["WMH"].astype(bool)
    seen = session_truth(anat, planted, 0, grid, flair).masks["WMH"].astype(bool)
    assert every[roof].all() and every[wall].all()
    assert seen[wall].all() and not seen[roof].any()
    assert not (seen & ~every).any()
    # the template engine's research truth is on the working grid itself (grid None)
    working = session_truth(anat, planted, 0, None, flair).masks["WMH"].astype(bool)
    assert working[wall].all() and not working[roof].any()
    # and only where the FLAIR's signal shows it (``visible``, on the FLAIR grid)
    visible = np.zeros(flair.shape, dtype=bool)
    shown = session_truth(anat, planted, 0, grid, flair, visible).masks["WMH"]
    assert not shown.any()
    visible[x + 8, y : y + 3, :] = True  # half the wall's columns
    shown = session_truth(anat, planted, 0, grid, flair, visible).masks["WMH"].astype(bool)
    assert shown[x + 8, y : y + 3, z : z + 8].all() and shown.sum() == 3 * 8
    on_flair = session_truth(anat, planted, 0, flair, flair, visible).masks["WMH"].astype(bool)
    assert on_flair.any() and not (on_flair & ~visible).any()  # the clinical profile's truth


def test_wmh_truth_needs_half_the_lesion_contrast_on_the_flair():
    """A WMH voxel of the FLAIR is visible when its noise-free signal is at least halfway from
    normal WM's to a WMH's: a lesion filling half a slab of WM is; one filling a quarter is
    not, nor is a lining that shares its slab with CSF (darker than WM on FLAIR)."""
    from csvd_bids.synth.physics import visible_wmh

    protocol = _protocol()
    tissues = T.draw_tissues(np.random.default_rng(0), protocol.field_t)
    flair = {name: P.signals(protocol, tissues[name])["FLAIR"] for name in ("WM", "WMH", "CSF")}
    assert flair["CSF"] < flair["WM"] < flair["WMH"]
    volume = np.full((2, 2, 24), flair["WM"], dtype=np.float32)  # six slabs of 4 planes
    volume[..., [0, 1, 4]] = flair["WMH"]  # half of slab 0 (and the tail of its profile)
    volume[..., [8, 9, 12]] = flair["WMH"]  # the same in slab 2, whose other half is CSF
    volume[..., 10:12] = flair["CSF"]
    volume[..., 17] = flair["WMH"]  # a quarter of slab 4, in WM
    grid = slice_grid(1, 4, 0, volume.shape, np.eye(4))
    visible = visible_wmh(volume, grid, tissues, protocol, None)
    assert visible[..., 0].all()
    assert not visible[..., 1:].any()


def test_planted_grades_are_what_the_truth_masks_show(physics_ds):
    """The ratings file's Fazekas grades and PVS slice counts are the pipeline's rating code on
    the truth masks, which hold what the images show: a WMH part the thick FLAIR does not show,
    or a tube too thin to fill half a truth voxel, does not count."""
    import pandas as pd
    from helpers import ratings_on_truth

    from csvd_bids.synth.planted import RATED_ON_TRUTH

    truth = physics_ds / "derivatives" / "groundtruth"
    planted = pd.read_csv(truth / "sub-01" / "anat" / "sub-01_desc-ratings_stats.tsv", sep="\t")
    measured = ratings_on_truth(truth, "01")
    for column in RATED_ON_TRUTH:
        assert planted.iloc[0][column] == measured[column], column


def test_pvs_slice_counts_follow_the_pipeline_rule():
    from csvd_bids.quant.ratings import pvs_slice_counts

    mask = np.zeros((20, 10, 10), np.uint8)
    brain = np.ones(mask.shape, bool)  # midline at x = 9.5: 0-9 one side, 10-19 the other
    mask[2, 2, 3:6] = mask[5, 5, 4:7] = 1  # two BG tubes sharing slices 4-5, one side
    mask[15, 5, 4] = 1  # a BG dot on the other side
    mask[7, 8, 8] = 1  # a CSO dot
    regions = ["BG", "BG", "CSO", "BG"]  # the components in label order
    assert pvs_slice_counts(mask, regions, brain) == {"BG": 2, "CSO": 1}
