"""Susceptibility effects computed from the susceptibility map, not painted.

The field perturbation of a susceptibility distribution chi (ppm) in a main field along z is
the convolution with the unit dipole, in k-space ``dB/B0 = (1/3 - kz^2/k^2) FT(chi)``
(Salomir et al. 2003; Marques and Bowtell 2005). The gradient-echo signal of each render
voxel then precesses by ``phase = -2 pi gamma B0 dB TE``; averaging the complex signal over
an acquired voxel (:mod:`.physics`) gives the dephasing: blooming around microbleeds, veins
and calcifications that grows with TE and field strength, and signal loss next to air.
SWI (Haacke et al., MRM 2004) multiplies the magnitude by a mask of the high-pass phase:
paramagnetic sources (negative phase here) are darkened, diamagnetic ones are not.
"""

from __future__ import annotations

import numpy as np
from scipy import fft
from scipy import ndimage as ndi

GAMMA_HZ_PER_T = 42.577e6
PAD_VOXELS = 16


def dipole_field_ppm(chi: np.ndarray, voxel_mm: float, outside: float = 0.0) -> np.ndarray:
    """Field perturbation (ppm of B0) of ``chi`` (ppm), B0 along the third axis.

    ``outside`` is the susceptibility around the volume (air): the map is padded with it, so
    the volume's edge is no interface.
    """
    padded = np.pad(chi.astype(np.float32) - outside, PAD_VOXELS)
    freqs = [fft.fftfreq(n, voxel_mm).astype(np.float32) for n in padded.shape[:2]]
    freqs.append(fft.rfftfreq(padded.shape[2], voxel_mm).astype(np.float32))
    kx, ky, kz = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k2 = kx * kx + ky * ky + kz * kz
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.float32(1.0 / 3.0) - kz * kz / k2
    kernel[0, 0, 0] = 0.0
    spectrum = fft.rfftn(padded, workers=-1)
    spectrum *= kernel
    field = fft.irfftn(spectrum, s=padded.shape, workers=-1)
    crop = tuple(slice(PAD_VOXELS, PAD_VOXELS + n) for n in chi.shape)
    return field[crop].astype(np.float32)


def phase_radians(field_ppm: np.ndarray, field_t: float, te_ms: float) -> np.ndarray:
    """Gradient-echo phase of a field perturbation: negative for paramagnetic sources."""
    scale = -2.0 * np.pi * GAMMA_HZ_PER_T * field_t * 1e-6 * te_ms * 1e-3
    return (field_ppm * np.float32(scale)).astype(np.float32)


def swi_magnitude(signal: np.ndarray, voxel_mm: float, power: int = 4) -> np.ndarray:
    """SWI of an acquired complex image: the magnitude times the negative-phase mask of the
    homodyne high-passed phase (in-plane Gaussian low-pass of about 8 mm), to the ``power``."""
    sigma = (4.0 / voxel_mm, 4.0 / voxel_mm, 0.0)
    low = ndi.gaussian_filter(signal.real, sigma) + 1j * ndi.gaussian_filter(signal.imag, sigma)
    phase = np.angle(signal * np.conj(low))
    mask = np.where(phase < 0.0, (np.pi + phase) / np.pi, 1.0)
    return (np.abs(signal) * mask**power).astype(np.float32)
