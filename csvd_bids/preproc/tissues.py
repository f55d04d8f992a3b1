"""Subject-level tissue segmentation (CSF, GM, WM) with the template priors.

A Gaussian mixture of the reference image's intensities inside the brain mask, fitted by EM
where each voxel's mixing weights are the deformably warped template priors (the unified
segmentation idea of Ashburner & Friston 2005, without its bias and warp updates, which N4
and Demons already did). scikit-learn's GaussianMixture has no per-voxel weights, hence the
few lines below. Priors are softened (``PRIOR_WEIGHT``) so the subject's own contrast can
override a misregistered prior, e.g. in enlarged ventricles.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

TISSUES = ("csf", "gm", "wm")
PRIOR_WEIGHT = 0.8  # the rest is spread evenly over the three classes
EM_ITERATIONS = 10


def segment_tissues(
    image: np.ndarray, brain: np.ndarray, priors: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Posterior probability of each tissue (float32, 0 outside ``brain``)."""
    x = image[brain].astype(np.float64)
    if x.size < 1000 or np.ptp(x) == 0:
        raise ValueError("the brain mask holds too few or constant voxels to segment tissues")
    prior = np.stack([np.clip(priors[t][brain], 0.0, 1.0) for t in TISSUES], axis=1)
    prior = PRIOR_WEIGHT * prior / np.maximum(prior.sum(1, keepdims=True), 1e-6)
    prior += (1.0 - PRIOR_WEIGHT) / len(TISSUES)
    posterior = prior
    for _ in range(EM_ITERATIONS):
        weight = posterior.sum(0)
        mean = (posterior * x[:, None]).sum(0) / weight
        var = (posterior * (x[:, None] - mean) ** 2).sum(0) / weight
        sd = np.sqrt(np.maximum(var, 1e-6 * np.var(x)))
        likelihood = stats.norm.pdf(x[:, None], mean, sd)
        joint = prior * likelihood
        posterior = joint / np.maximum(joint.sum(1, keepdims=True), 1e-300)
    out = {}
    for k, tissue in enumerate(TISSUES):
        full = np.zeros(image.shape, dtype=np.float32)
        full[brain] = posterior[:, k]
        out[tissue] = full
    return out
