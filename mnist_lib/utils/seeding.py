"""Seeding: one call that makes a run repeat itself."""

from __future__ import annotations

import random

import torch


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy (if installed) and torch; return a CPU generator.

    The generator drives shuffling and augmentation, so on a CPU a rerun with
    the same seed repeats a run bit for bit, given the same CPU model,
    thread count, precision and library versions. Change any of them, or
    train on a GPU (some cuDNN kernels add in a varying order), and the
    floating-point sums round differently, so the run ends a little
    differently too (the book's Reproducibility chapter shows it).
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # NumPy is optional for the library itself
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
