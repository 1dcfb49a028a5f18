"""Small helpers shared by the library: seeding, device choice, eval mode for
a block, atomic writes, the CPU allocator setting that `fit` uses, and how the
CLIs exit."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy (if installed) and torch; return a CPU generator.

    The generator drives shuffling and augmentation, so on a CPU a rerun with
    the same seed repeats a run bit for bit, given the same thread count,
    precision and library versions. Change any of them, or train on a GPU
    (some cuDNN kernels add in a varying order), and the floating-point sums
    round differently, so the run ends a little differently too (the book's
    Reproducibility chapter shows it).
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # NumPy is optional for the library itself
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def best_device(requested: str = "auto") -> torch.device:
    """Return the device to train on: CUDA, then Apple MPS, then CPU.

    `requested` may name a device ("cpu", "cuda", "cuda:1", "mps"); asking for
    one that is not available raises a ValueError that says what is.
    """
    if requested in ("auto", "", None):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'mps'"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available; "
                         "use device='auto' or device='cpu'")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("device='mps' requested but MPS is not available; "
                         "use device='auto' or device='cpu'")
    return device


# glibc's mallopt(3) parameters, from <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_kept_freed_memory = False


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode for a `with` block; afterwards, even after an
    error, every submodule has the mode it had before (a model may keep some
    parts in eval on purpose, which `model.train()` would undo)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees for reuse, instead of giving
    it back to the operating system at once (Linux with glibc only; elsewhere
    it does nothing). Returns whether the setting is in effect.

    PROCESS-WIDE AND FOR GOOD: it changes two of glibc's malloc settings
    (`mallopt` M_MMAP_THRESHOLD = 64 MiB, M_TRIM_THRESHOLD = 1 GiB) for
    everything in the process, until it ends. `fit` and the benchmark call it
    on a CPU. It cannot be undone: glibc neither reports these settings nor
    goes back to tuning them itself once they are set. A process that must
    keep glibc's own behaviour sets either threshold in the environment
    (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or `GLIBC_TUNABLES`
    with `glibc.malloc.mmap_threshold` or `trim_threshold`) before it starts:
    this function then leaves malloc as it is and returns False.

    Why: PyTorch on a CPU allocates every activation with malloc and frees it
    as soon as it is used. glibc returns freed memory at the top of the heap
    to the system once more than a threshold is free there, and serves blocks
    above another threshold with fresh mmaps. It tunes both from what it has
    seen freed; after an epoch of training, an evaluation pass kept missing
    them, so every batch asked the kernel for fresh pages: ~200,000 page
    faults a test (~800 MB of pages zeroed), ~40% of its time on the
    book's 2-core CPU. Fixed thresholds (blocks up to 64 MiB from the heap,
    keep up to 1 GiB free) end that; the process then keeps what it freed,
    up to 1 GiB, for its next batches instead of returning it at once.
    Arithmetic does not change: runs give the same numbers with it and without.
    """
    global _kept_freed_memory
    if (not _kept_freed_memory and platform.libc_ver()[0] == "glibc"
            and not malloc_set_by_environment()):
        try:
            mallopt = ctypes.CDLL(None).mallopt  # this process's own C library
        except (AttributeError, OSError):
            return False
        _kept_freed_memory = bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)
                                  and mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _kept_freed_memory


def malloc_set_by_environment() -> bool:
    """Whether the environment sets glibc's mmap or trim threshold (then
    `keep_freed_memory` leaves them as they are)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(os.environ.get(f"MALLOC_{name.upper()}_THRESHOLD_")
               or f"glibc.malloc.{name}_threshold" in tunables
               for name in ("mmap", "trim"))


def unwritable(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be written (a sentence), or None if it can.

    The CLIs ask before a run, not after: a run of minutes that cannot save
    its result at the end is lost. Creates missing parent folders, as the
    atomic writers below do.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give the name of a file in it"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}."):
            pass
    except OSError as err:
        return (f"cannot write {path}: {err.strerror or err}; "
                "choose a folder you can write to")
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename.

    A reader sees either the old file or the complete new one, never a
    half-written file, even if the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the file the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically (see `atomic_write_bytes`)."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` through a temporary file and a rename (for checkpoints)."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def quiet_on_closed_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command-line `main` so that, when the program reading its output
    stops early (`python -m mnist_lib rf ... | head`), it stops quietly with
    exit code 1 instead of printing a BrokenPipeError traceback."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            # Python's documented recipe: send what is still buffered to
            # devnull, or the flush at exit raises the same error again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1

    return wrapped


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside the wrappers that add no op of their own: torch.compile's
    OptimizedModule, nn.DataParallel and DistributedDataParallel. torch.fx
    cannot trace them, a checkpoint of one would name the wrapper's class and
    prefix every weight, and the model they hold computes the same."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
                getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
