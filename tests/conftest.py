"""Shared fixtures. MNIST is fetched once (offline-safe) into the repo's data/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]

# Locally, the property tests draw new examples on every run (and keep the
# failures they find in .hypothesis/). In CI they draw the same examples each
# time, so a red run means a change broke something, not that a new draw found
# an old edge case; print_blob says how to replay a failure.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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
