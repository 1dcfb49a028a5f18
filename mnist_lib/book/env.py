"""Where a chapter runs: quick mode, the book build, the book's repository
and its checkout, and where MNIST is kept.

Quick mode (`MNIST_BOOK_QUICK=1`, set by `make book-quick` and `make test`)
trains on a small subset for one epoch so that CI can execute every chapter in
minutes. The book build (`MNIST_BOOK_BUILD=1`, set by scripts/build_book.sh)
is where a claim that no longer holds fails (`mnist_lib.book.claims`).
"""

from __future__ import annotations

import os
from pathlib import Path

QUICK = os.environ.get("MNIST_BOOK_QUICK", "") not in ("", "0")
# The book build (scripts/build_book.sh sets MNIST_BOOK_BUILD=1): where a claim
# that no longer holds fails, instead of printing a note (`claim`).
BUILD = os.environ.get("MNIST_BOOK_BUILD", "") not in ("", "0")
QUICK_SIZE = dict(epochs=1, n_train=2000, n_test=1000)

# The repository that hosts the book, as `_config.yml` names it: written by
# `make repository` (scripts/repository.py), which keeps them the same. In Colab
# the chapters install the library from it and read its recorded results from it.
REPOSITORY = "https://github.com/small-cnn-book/mnist-small-cnn"
BRANCH = "main"


def checkout() -> Path | None:
    """The repository checkout the cwd is in (the folder holding pyproject.toml
    and mnist_lib/), or None, as in Colab, where the library was pip-installed."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "mnist_lib").is_dir():
            return folder
    return None


def repo_root() -> Path:
    """The repository root (see `checkout`), else the cwd."""
    return checkout() or Path.cwd().resolve()


def data_root() -> Path:
    """Where chapters keep MNIST: $MNIST_DATA, else `<repo>/data`."""
    return Path(os.environ.get("MNIST_DATA") or repo_root() / "data")
