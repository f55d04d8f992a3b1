"""Does the same-subject check (csvd_bids.preproc.identity) separate same- from
different-subject image pairs?

    python benchmarks/identity_check.py [--work DIR] [--real /work/shared/data/real-bids]
        [--subjects 4] [--seed 7] [--resolution 1.5] [--misalign 10 10] [--robustness]

Synthetic: a dataset from the project's generator (each subject its own random deformation of
the MNI template, so different subjects differ only moderately); every subject's T1w is the
reference for its own and every other subject's FLAIR, T2w, SWI (T2starw) and DWI b0.
Real (if the folder exists; nothing is copied into the repository): sub-ms07 and sub-ms26
(skull-stripped, in MNI space: outlines nearly agree), sub-ms12 (2D clinical scans with skull,
two sessions: cross-session pairs count as same-subject) and sub-chris (T1w only, with skull);
references are every T1w and some FLAIRs (for sessions without a T1w), moving images every
FLAIR and T2w.

Each pair is coregistered as the pipeline does (coregister + resample_with), the brain mask of
the reference comes from deepbet (CPU), and the score is computed; coregistered pairs are
cached in WORK (``<reference>__<moving>.npz``) so reruns only score. Prints one line per pair
and, per data set, the separation: the lowest same-subject score against the highest
different-subject score, the errors at the module's threshold and the time per check.
``--robustness`` repeats the scoring with the moving image shifted by 1 or 2 mm (a residual
misregistration), with Rician noise (10 or 25 % of the median brain intensity), and with the
brain mask grown or shrunk by 5 mm or replaced by a threshold mask of the whole head.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from csvd_bids.preproc.coregister import coregister, resample_with
from csvd_bids.preproc.identity import THRESHOLD, same_subject_score
from csvd_bids.preproc.images import load_3d
from csvd_bids.synth import generate_dataset

SYNTH_MODALITIES = {
    "FLAIR": "anat/{s}_FLAIR",
    "T2w": "anat/{s}_T2w",
    "T2starw": "anat/{s}_acq-swi_T2starw",
    "b0": "dwi/{s}_dwi",
}


class Masker:
    """deepbet's network on the reference (RAS array), as its BrainExtraction.run does."""

    def __init__(self) -> None:
        self._bet = None

    def __call__(self, img: nib.Nifti1Image) -> np.ndarray:
        if self._bet is None:
            from deepbet import BrainExtraction

            self._bet = BrainExtraction(no_gpu=True)
        data = np.asanyarray(img.dataobj, dtype=np.float32)
        return self._bet.postprocess(self._bet.run_model(data.copy()) > 0.5)


def load_volume(path: Path) -> nib.Nifti1Image:
    """load_3d, with the first volume (b0) of a 4D DWI series."""
    img = nib.load(path)
    if img.ndim == 4:
        first = np.asanyarray(img.dataobj[..., 0], dtype=np.float32)
        img = nib.as_closest_canonical(nib.Nifti1Image(first, img.affine))
        return nib.Nifti1Image(np.asanyarray(img.dataobj, dtype=np.float32), img.affine)
    return load_3d(path)


def synth_pairs(root: Path) -> list[tuple[str, Path, str, Path, bool]]:
    subjects = sorted(p.name for p in root.glob("sub-*"))
    pairs = []
    for ref in subjects:
        for mov in subjects:
            for modality, pattern in SYNTH_MODALITIES.items():
                pairs.append(
                    (
                        f"syn_{ref}_T1w",
                        root / ref / "anat" / f"{ref}_T1w.nii.gz",
                        f"syn_{mov}_{modality}",
                        root / mov / f"{pattern.format(s=mov)}.nii.gz",
                        ref == mov,
                    )
                )
    return pairs


def real_pairs(root: Path) -> list[tuple[str, Path, str, Path, bool]]:
    images: dict[str, Path] = {}
    for sub in ("ms07", "ms26"):
        for modality in ("T1w", "FLAIR", "T2w"):
            images[f"{sub}_{modality}"] = root / f"sub-{sub}/anat/sub-{sub}_{modality}.nii.gz"
    images["chris_T1w"] = root / "sub-chris/anat/sub-chris_T1w.nii.gz"
    for ses in ("1", "2"):
        for modality in ("T1w", "FLAIR", "T2w"):
            path = f"sub-ms12/ses-{ses}/anat/sub-ms12_ses-{ses}_{modality}.nii.gz"
            images[f"ms12-{ses}_{modality}"] = root / path

    def subject(name: str) -> str:
        return name.split("_")[0].split("-")[0]

    references = [k for k in images if k.endswith("T1w")] + ["ms07_FLAIR", "ms26_FLAIR"]
    references.append("ms12-1_FLAIR")
    moving = [k for k in images if not k.endswith("T1w")]
    pairs = []
    for ref in references:
        for mov in moving:
            if mov == ref or (ref.endswith("FLAIR") and not mov.endswith("T2w")):
                continue
            pairs.append(
                (
                    f"real_{ref}",
                    images[ref],
                    f"real_{mov}",
                    images[mov],
                    subject(ref) == subject(mov),
                )
            )
    return pairs


def coregistered(pair, work: Path, masker: Masker, masks: dict) -> Path:
    """The cached (reference, moving on reference, brain mask) of one pair."""
    ref_name, ref_path, mov_name, mov_path, same = pair
    out = work / f"{ref_name}__{mov_name}.npz"
    if out.exists():
        return out
    reference = load_3d(ref_path)
    if ref_name not in masks:
        masks[ref_name] = masker(reference)
    moving = load_volume(mov_path)
    result = coregister(moving, reference)
    on_reference = resample_with(moving, reference, result.transform)
    np.savez_compressed(
        out,
        ref=np.asanyarray(reference.dataobj),
        mov=np.asanyarray(on_reference.dataobj),
        mask=masks[ref_name],
        affine=reference.affine,
        same=same,
        mi=result.metric_after,
    )
    print(f"  coregistered {ref_name} <- {mov_name} ({result.initialisation})", flush=True)
    return out


def head_mask(data: np.ndarray) -> np.ndarray:
    """Everything brighter than Otsu's threshold, holes filled: brain, skull and scalp."""
    return ndi.binary_fill_holes(ndi.binary_closing(data > threshold_otsu(data), iterations=2))


def perturbed(z, variant: str, rng: np.random.Generator):
    """(reference, moving, mask) arrays of a cached pair, changed as ``variant`` says."""
    ref, mov, mask = z["ref"], z["mov"].astype(np.float32), z["mask"].astype(bool)
    zooms = np.linalg.norm(z["affine"][:3, :3], axis=0)
    kind, _, amount = variant.partition(":")
    if kind == "shift":  # along the diagonal, so every axis moves
        mov = ndi.shift(mov, float(amount) / np.sqrt(3) / zooms, order=1)
    elif kind == "noise":
        sigma = float(amount) * float(np.median(mov[mask]))
        noisy = mov + rng.normal(0, sigma, mov.shape) + 1j * rng.normal(0, sigma, mov.shape)
        mov = np.abs(noisy).astype(np.float32)
    elif kind == "mask":
        mm = float(amount)
        if mm > 0:
            mask = ndi.distance_transform_edt(~mask, sampling=zooms) <= mm
        else:
            mask = ndi.distance_transform_edt(mask, sampling=zooms) > -mm
    elif kind == "head":
        mask = head_mask(ref)
    return ref, mov, mask


def score_pair(path: Path, variant: str, rng: np.random.Generator) -> tuple[dict, bool, float]:
    z = np.load(path)
    ref, mov, mask = perturbed(z, variant, rng)
    affine = z["affine"]
    start = time.perf_counter()
    result = same_subject_score(nib.Nifti1Image(ref, affine), nib.Nifti1Image(mov, affine), mask)
    return result, bool(z["same"]), time.perf_counter() - start


def summary(label: str, rows: list[tuple[str, bool, dict, float]]) -> None:
    same = np.array([r[2]["score"] for r in rows if r[1]])
    diff = np.array([r[2]["score"] for r in rows if not r[1]])
    missed = int(np.sum(diff >= THRESHOLD))
    false = int(np.sum(same < THRESHOLD))
    seconds = np.mean([r[3] for r in rows])
    print(
        f"{label:22s} same n={len(same):2d} min {same.min():.3f} median {np.median(same):.3f} | "
        f"different n={len(diff):2d} max {diff.max():.3f} median {np.median(diff):.3f} | "
        f"gap {same.min() - diff.max():+.3f} | at {THRESHOLD}: {false} same flagged, "
        f"{missed} different missed | {seconds:.2f} s/check"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="cache folder (default: a temporary one)")
    parser.add_argument("--real", type=Path, default=Path("/work/shared/data/real-bids"))
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resolution", type=float, default=1.5)
    parser.add_argument("--misalign", type=float, nargs=2, default=(10.0, 10.0))
    parser.add_argument("--robustness", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="identity-check-"))
    work.mkdir(parents=True, exist_ok=True)
    synth_root = work / f"synth-seed{args.seed}-{args.resolution:g}mm"
    if not synth_root.exists():
        generate_dataset(
            synth_root,
            n_subjects=args.subjects,
            n_sessions=1,
            seed=args.seed,
            resolution=args.resolution,
            misalign=tuple(args.misalign),
        )
    sets = {"synthetic": synth_pairs(synth_root)}
    if args.real.is_dir():
        sets["real"] = real_pairs(args.real)
    masker, masks = Masker(), {}
    cached = {
        label: [coregistered(p, work, masker, masks) for p in pairs]
        for label, pairs in sets.items()
    }
    variants = ["none"]
    if args.robustness:
        variants += ["shift:1", "shift:2", "noise:0.10", "noise:0.25", "mask:5", "mask:-5", "head"]
    rng = np.random.default_rng(0)
    results = {}
    for label, paths in cached.items():
        for variant in variants:
            rows = []
            for path in paths:
                result, same, seconds = score_pair(path, variant, rng)
                rows.append((path.stem, same, result, seconds))
            results[label, variant] = rows
    print(f"\n{'pair (reference__moving)':52s} same  score  flag  localCC  shifted  s/check")
    for label in cached:
        for name, same, r, seconds in sorted(
            results[label, "none"], key=lambda x: (not x[1], x[0])
        ):
            print(
                f"{name:52s} {'yes' if same else 'no ':4s} {r['score']:6.3f}  "
                f"{'FLAG' if r['different_subject_suspected'] else '-':4s}  "
                f"{r['local_correlation']:7.3f}  {r['local_correlation_shifted']:7.3f}  "
                f"{seconds:6.2f}"
            )
    print(f"\nSeparation (threshold {THRESHOLD}):")
    for (label, variant), rows in results.items():
        summary(f"{label} {variant}", rows)


if __name__ == "__main__":
    main()
