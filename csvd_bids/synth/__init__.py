"""Synthetic BIDS datasets with planted CSVD lesions and their ground truth (demo and tests)."""

from __future__ import annotations

from .dataset import SynthUsageError, generate_dataset

__all__ = ["SynthUsageError", "generate_dataset"]
