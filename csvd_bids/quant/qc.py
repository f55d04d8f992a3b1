"""Quality-control figures that flag a session's inputs as not to be trusted blindly.

Brain coverage: the fraction of the brain mask where an image has signal. Every modality is
resampled onto the reference grid with zeros outside its own field of view, so a slab that
misses part of the brain shows as brain voxels at exactly 0. For the reference itself, whose
grid bounds the mask, the brain mask's volume is compared with the template brain's volume
brought into subject space by the affine registration.
"""

from __future__ import annotations

import numpy as np

MIN_BRAIN_COVERAGE = 0.9  # below this, a marker measured on that image undercounts


def brain_coverage(image: np.ndarray, brain: np.ndarray) -> float:
    """Fraction of brain-mask voxels where ``image`` is non-zero."""
    total = int(brain.sum())
    return float((image[brain] > 0).sum() / total) if total else 0.0


def reference_coverage(
    brain_volume_mm3: float, template_brain_mm3: float, subject_to_template: np.ndarray
) -> float:
    """Observed brain-mask volume / the volume the template brain should have here.

    ``subject_to_template``: the 3x3 linear part of the affine template registration; its
    determinant is how much larger the template is than this subject."""
    expected = template_brain_mm3 / abs(float(np.linalg.det(subject_to_template)))
    return min(1.0, brain_volume_mm3 / expected) if expected > 0 else 0.0


def same_subject_warnings(checks: dict[str, dict]) -> list[str]:
    """One sentence per image the same-subject check flags (csvd_bids.preproc.identity)."""
    return [
        f"{name} may show another subject than the reference, or be misregistered "
        f"(same-subject score {check['score']:.2f} < {check['threshold']:.2f})"
        for name, check in checks.items()
        if check.get("different_subject_suspected")
    ]


def coverage_warnings(coverages: dict[str, float]) -> list[str]:
    """One sentence per image whose coverage is under MIN_BRAIN_COVERAGE."""
    return [
        f"{name} covers only {100 * value:.0f}% of the brain (field of view)"
        for name, value in coverages.items()
        if value < MIN_BRAIN_COVERAGE
    ]
