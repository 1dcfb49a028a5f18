"""Writing files so that nothing is lost: each write goes to a temporary file
beside its target and replaces it in one step (`os.replace`), so that a
crash or Ctrl-C leaves the old file or the new one, never half of one; and
`unwritable`, which says before a long run why a path cannot be written."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


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
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())
