"""Quality of the preprocessing against the generator's anatomical truth: brain mask Dice and
volume error, and Dice of the lateral ventricles, basal ganglia, thalamus, brainstem and
cerebellum of the region map.

    python benchmarks/preproc_quality.py [--seeds 301 302] [--subjects 1] [--sessions 1]
        [--resolution 1] [--misalign 20 20] [--markers wmh] [--nprocs N]
    python benchmarks/preproc_quality.py --bids DIR [--out DIR] [--rerun]
    python benchmarks/preproc_quality.py --real ../shared/data/real-bids
    python benchmarks/preproc_quality.py --self-test

By default, generates one synthetic dataset per seed (held-out seeds: do not tune on them),
runs the participant level through the real command line, and compares, per session,

- ``<out>/sub-*/[ses-*/]anat/<prefix>_space-T1w_desc-brain_mask.nii.gz`` with the truth's
  ``derivatives/groundtruth/.../<prefix>_space-T1w_desc-brain_mask.nii.gz`` (Dice, and the
  relative error of the brain volume, each mask counted on its own grid);
- ``<prefix>_space-T1w_seg-regions_dseg.nii.gz`` with the truth file of the same name, label by
  label (the ``REGION_LABELS`` indices the truth uses: see its ``seg-regions_dseg.tsv``).

Outputs are resampled (nearest neighbour) onto the truth grid when their grids differ. A file
the pipeline did not write is reported as "missing" rather than failing the benchmark. Prints
one line per session, then the median of every column over the sessions that have it.

``--bids DIR`` uses an existing dataset; with ``--out DIR`` the outputs go there, and outputs
already in it are reused (no run) unless ``--rerun``. A dataset without the truth (``--real``,
which also skips the BIDS validator) is only timed and listed: brain and region volumes.
``--self-test`` checks the comparison code on a small 3 mm dataset: truth against itself
(Dice 1), against shifted copies (Dice < 1), and with missing files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path
from statistics import median

import nibabel as nib
import numpy as np
from common import csvd_bids, dice, mask_on_grid, run_measured, synth
from nibabel.processing import resample_from_to

TRUTH = Path("derivatives") / "groundtruth"
BRAIN = "space-T1w_desc-brain_mask.nii.gz"
REGIONS = "space-T1w_seg-regions_dseg.nii.gz"
# REGION_LABELS indices of the structures the truth has (the generator's seg-regions_dseg.tsv)
STRUCTURES = {
    1: "lateral_ventricles",
    5: "basal_ganglia",
    6: "thalamus",
    9: "brainstem",
    10: "cerebellum",
}
COLUMNS = {  # column -> header
    "brain": "brain",
    "brain_volume_error": "vol.err",
    "lateral_ventricles": "LV",
    "basal_ganglia": "BG",
    "thalamus": "thal",
    "brainstem": "BS",
    "cerebellum": "cereb",
}
assert list(COLUMNS)[2:] == list(STRUCTURES.values())


def labels_on_grid(path: Path, grid: nib.Nifti1Image) -> np.ndarray:
    """A label map resampled (nearest neighbour) onto another image's grid, as integers."""
    img = nib.load(path)
    if img.shape[:3] != grid.shape[:3] or not np.allclose(img.affine, grid.affine, atol=1e-3):
        img = resample_from_to(img, (grid.shape[:3], grid.affine), order=0)
    return np.rint(np.asanyarray(img.dataobj)).astype(np.int32)


def volume_ml(path: Path, label: int | None = None) -> float:
    """Volume of a mask (``label`` None: every non-zero voxel) on its own grid."""
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    n = int(np.count_nonzero(data if label is None else np.rint(data) == label))
    return n * abs(float(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def find_output(folder: Path, prefix: str, ending: str) -> Path | None:
    """``<prefix>_space-T1w_...`` in ``folder``, allowing extra entities before ``space``."""
    matches = sorted(folder.glob(f"{prefix}_*{ending}")) if folder.is_dir() else []
    return matches[0] if matches else None


def compare_session(
    truth_brain: Path,
    truth_regions: Path | None,
    ours_brain: Path | None,
    ours_regions: Path | None,
) -> dict[str, float | None]:
    """Every column for one session; None where our (or the truth's) file is missing."""
    scores: dict[str, float | None] = dict.fromkeys(COLUMNS)
    grid = nib.load(truth_brain)
    if ours_brain is not None:
        scores["brain"] = dice(mask_on_grid(truth_brain, grid), mask_on_grid(ours_brain, grid))
        truth_volume = volume_ml(truth_brain)
        scores["brain_volume_error"] = (volume_ml(ours_brain) - truth_volume) / truth_volume
    if ours_regions is not None and truth_regions is not None:
        truth = labels_on_grid(truth_regions, grid)
        ours = labels_on_grid(ours_regions, grid)
        for index, name in STRUCTURES.items():
            scores[name] = dice(truth == index, ours == index)
    return scores


def truth_sessions(bids: Path) -> list[tuple[str, Path]]:
    """(prefix, session folder relative to the dataset root / anat) of every truth brain mask."""
    root = bids / TRUTH
    found = []
    for path in sorted(root.glob(f"sub-*/**/anat/*_{BRAIN}")):
        found.append((path.name.split("_space-")[0], path.parent.relative_to(root)))
    return found


def evaluate(bids: Path, out: Path, name: str = "") -> list[tuple[str, dict[str, float | None]]]:
    """(name + session prefix, scores) of every session of the truth."""
    rows = []
    for prefix, relative in truth_sessions(bids):
        truth_folder = bids / TRUTH / relative
        truth_regions = truth_folder / f"{prefix}_{REGIONS}"
        scores = compare_session(
            truth_folder / f"{prefix}_{BRAIN}",
            truth_regions if truth_regions.exists() else None,
            find_output(out / relative, prefix, BRAIN),
            find_output(out / relative, prefix, REGIONS),
        )
        rows.append((f"{name}{prefix}", scores))
    return rows


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return f"{'missing':>8s}"
    return f"{100 * value:+7.1f}%" if column == "brain_volume_error" else f"{value:8.3f}"


def print_table(rows: list[tuple[str, dict[str, float | None]]]) -> None:
    print(
        f"{'session (Dice; brain volume error)':36s}"
        + "".join(f"{h:>8s}" for h in COLUMNS.values())
    )
    for prefix, scores in rows:
        print(f"{prefix:36s}" + "".join(_cell(c, scores[c]) for c in COLUMNS))
    medians, counts = {}, []
    for column in COLUMNS:
        values = [s[column] for _, s in rows if s[column] is not None]
        medians[column] = median(values) if values else None
        counts.append(len(values))
    label = f"median over {len(rows)} session(s)"
    print(f"{label:36s}" + "".join(_cell(c, medians[c]) for c in COLUMNS))
    if any(n < len(rows) for n in counts):
        print(f"{'(sessions with the file)':36s}" + "".join(f"{n:8d}" for n in counts))


def list_outputs(bids: Path, out: Path) -> None:
    """No truth: brain and structure volumes (ml) of every session with a T1w."""
    names = ["brain", *STRUCTURES.values()]
    print(f"{'session (volumes, ml)':36s}" + "".join(f"{n[:10]:>11s}" for n in names))
    for t1w in sorted(bids.glob("sub-*/**/anat/*_T1w.nii.gz")):
        prefix = t1w.name.split("_T1w")[0].split("_acq-")[0].split("_run-")[0]
        folder = out / t1w.parent.relative_to(bids)
        brain, regions = find_output(folder, prefix, BRAIN), find_output(folder, prefix, REGIONS)
        cells = [f"{volume_ml(brain):11.1f}" if brain else f"{'missing':>11s}"]
        for index in STRUCTURES:
            cells.append(f"{volume_ml(regions, index):11.1f}" if regions else f"{'missing':>11s}")
        print(f"{prefix:36s}" + "".join(cells))


def run_participant(bids: Path, out: Path, work: Path, args, extra: list[str]) -> None:
    command = csvd_bids(str(bids), str(out), "participant", "-w", str(work), *extra)
    command += ["--markers", *args.markers]
    if args.nprocs:
        command += ["--nprocs", str(args.nprocs)]
    seconds, peak_gb, code = run_measured(command)
    print(f"participant level on {bids.name}: {seconds:.1f} s, peak {peak_gb:.2f} GB, exit {code}")


def self_test() -> None:
    """The comparison code on a 3 mm dataset's truth: itself, shifted copies, missing files."""
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        subprocess.run(synth(bids, 1, 1, 0, 3.0), check=True, stdout=subprocess.DEVNULL)
        [(prefix, relative)] = truth_sessions(bids)
        truth = bids / TRUTH / relative
        out = Path(tmp) / "out"
        ours = out / relative
        ours.mkdir(parents=True)
        for ending in (BRAIN, REGIONS):
            shutil.copy(truth / f"{prefix}_{ending}", ours / f"{prefix}_{ending}")
        [(_, same)] = evaluate(bids, out)
        assert all(same[c] == 1.0 for c in COLUMNS if c != "brain_volume_error"), same
        assert same["brain_volume_error"] == 0.0, same
        print("truth vs itself:")
        print_table([(prefix, same)])

        def rewrite(ending: str, data=None, shift_mm=(0.0, 0.0, 0.0)) -> None:
            img = nib.load(truth / f"{prefix}_{ending}")
            affine = img.affine.copy()
            affine[:3, 3] += shift_mm
            data = np.asanyarray(img.dataobj) if data is None else data
            nib.save(nib.Nifti1Image(data, affine), ours / f"{prefix}_{ending}")

        rows = []
        for ending in (BRAIN, REGIONS):  # one voxel (3 mm) along x, by the affine: resampled
            rewrite(ending, shift_mm=(3.0, 0.0, 0.0))
        [(_, moved)] = evaluate(bids, out)
        rows.append((f"{prefix} affine +3 mm x", moved))
        assert all(0.0 <= moved[c] < 1.0 for c in COLUMNS if c != "brain_volume_error"), moved
        assert moved["brain"] > 0.9 and abs(moved["brain_volume_error"]) < 1e-9, moved
        for ending in (BRAIN, REGIONS):  # two voxels along y in the data, same grid
            data = np.roll(np.asanyarray(nib.load(truth / f"{prefix}_{ending}").dataobj), 2, axis=1)
            rewrite(ending, data=data)
        [(_, rolled)] = evaluate(bids, out)
        rows.append((f"{prefix} data +2 voxels y", rolled))
        assert rolled["brain"] < moved["brain"] and rolled["thalamus"] < moved["thalamus"], rows
        (ours / f"{prefix}_{REGIONS}").unlink()  # the region map not written yet
        [(_, partial)] = evaluate(bids, out)
        rows.append((f"{prefix} no region map", partial))
        assert partial["brain"] == rolled["brain"]
        assert all(partial[name] is None for name in STRUCTURES.values()), partial
        shutil.rmtree(out)  # no output at all
        [(_, nothing)] = evaluate(bids, out)
        rows.append((f"{prefix} no output", nothing))
        assert all(value is None for value in nothing.values()), nothing
        print("shifted and missing outputs:")
        print_table(rows)
    print("self-test passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[301, 302])
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--misalign", type=float, nargs=2, default=[20.0, 20.0])
    parser.add_argument("--markers", nargs="+", default=["wmh"], help="passed to csvd-bids")
    parser.add_argument("--nprocs", type=int, help="passed to csvd-bids")
    parser.add_argument("--bids", type=Path, help="an existing dataset (no generation)")
    parser.add_argument("--out", type=Path, help="with --bids: the output folder to use/reuse")
    parser.add_argument("--rerun", action="store_true", help="run even if --out has outputs")
    parser.add_argument("--real", type=Path, help="a dataset without truth: timing and listing")
    parser.add_argument("--self-test", action="store_true", help="check the comparison code")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    if args.out and not (args.bids or args.real):
        parser.error("--out needs --bids (or --real)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []  # (dataset, output folder, extra csvd-bids arguments)
        if args.bids or args.real:
            bids = (args.bids or args.real).absolute()
            extra = ["--skip-bids-validation"] if args.real else []
            runs.append((bids, (args.out or tmp / "out").absolute(), extra))
        else:
            for seed in args.seeds:
                bids = tmp / f"seed-{seed}"
                command = synth(bids, args.subjects, args.sessions, seed, args.resolution)
                command += ["--misalign", *(str(v) for v in args.misalign)]
                subprocess.run(command, check=True)
                runs.append((bids, tmp / f"out-{seed}", []))
        rows = []
        for number, (bids, out, extra) in enumerate(runs):
            if args.rerun or not any(out.glob("sub-*")):
                run_participant(bids, out, tmp / f"work-{number}", args, extra)
            else:
                print(f"reusing the outputs in {out}")
            if truth_sessions(bids):
                rows += evaluate(bids, out, f"{bids.name} " if len(runs) > 1 else "")
            else:
                print(f"{bids}: no truth in {TRUTH}; volumes only")
                list_outputs(bids, out)
        if rows:
            print_table(rows)


if __name__ == "__main__":
    main()
