"""Shared fixtures. MNIST is fetched once (offline-safe) into the repo's data/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    return ROOT / "data"


@pytest.fixture(scope="session")
def mnist(data_root):
    from mnist_lib.data import load_mnist

    return load_mnist(data_root, verbose=False)


@pytest.fixture(scope="session")
def small(mnist):
    """2,000 training and 1,000 test images: enough to learn, fast on a CPU."""
    return mnist.subset(2000, 1000)
