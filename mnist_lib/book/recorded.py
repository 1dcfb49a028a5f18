"""The recorded results a chapter reads (`results/<name>.json`): from the
repository checkout; outside one (Colab, a pip install) from a `results/`
folder beside the notebook, else from the records the library carries
(`shipped_folder`: the package holds every `results/*.json`, so a chapter
runs offline), else from the book's repository on GitHub. `need_records`
checks, before a chapter trains, that it can read every record it will need.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from . import env

# The files fetched from GitHub in this kernel, by file name: fetched once.
_FETCHED: dict[str, bytes] = {}
HOW_TO_GET = ("Run the chapter inside a clone of the repository; or install the "
              "library of the chapter's own version, which carries its records "
              "(pip install --upgrade git+{repository}); or run it where GitHub "
              "is reachable; or download each file named above into a results/ "
              "folder beside this notebook.")


def shipped_folder() -> Path | None:
    """The folder of the records this library carries, or None: in a package
    built from the repository (pip install) `mnist_lib/book/results/`, which
    pyproject.toml fills with `results/*.json`; in the source tree the
    library is imported from (an editable install), its `results/`."""
    here = Path(__file__).resolve().parent
    tree = here.parents[1]
    for folder, holds in ((here / "results", True),
                          (tree / "results", (tree / "pyproject.toml").is_file()
                           and (tree / "mnist_lib").is_dir())):
        if holds and folder.is_dir():
            return folder
    return None


def record_url(name: str, suffix: str = ".json") -> str:
    """Where GitHub serves `results/<name><suffix>` of the book's repository."""
    owner_repo = env.REPOSITORY.removeprefix("https://github.com/")
    return (f"https://raw.githubusercontent.com/{owner_repo}/{env.BRANCH}/results/"
            f"{name}{suffix}")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): restore it with git, "
                         "or regenerate it with the command given in the "
                         "Reproducibility chapter") from err


def _find(name: str, suffix: str) -> Path | bytes:
    """`results/<name><suffix>`: its path in the repository checkout; outside one,
    beside the notebook, else in the records the library carries; else its
    bytes, fetched from the book's repository on GitHub once a kernel."""
    filename = name + suffix
    root = env.checkout()
    if root is not None:
        # In a checkout the local record is the one that counts: a missing one
        # is an error, never silently replaced by whatever GitHub holds.
        path = root / "results" / filename
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: regenerate it with the "
                                    "command given in the Reproducibility chapter")
        return path
    beside = Path.cwd() / "results" / filename
    if beside.exists():
        return beside
    shipped = shipped_folder()
    if shipped is not None and (shipped / filename).is_file():
        return shipped / filename
    if filename not in _FETCHED:
        url = record_url(name, suffix)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                _FETCHED[filename] = response.read()
        except OSError as err:  # no network, HTTP error
            raise FileNotFoundError(
                f"the recorded result {name!r} is not here (no repository checkout "
                f"around {Path.cwd()}, and this library does not carry it) and "
                f"could not be fetched from {url}: {err}. "
                + HOW_TO_GET.format(repository=env.REPOSITORY)) from err
    return _FETCHED[filename]


def load_record(name: str) -> dict[str, Any]:
    """A recorded result (`results/<name>.json`) from the repository checkout;
    outside one (Colab, a pip install), from `results/` beside the notebook,
    else from the records the library carries (`shipped_folder`), else from
    the book's repository on GitHub."""
    found = _find(name, ".json")
    if isinstance(found, Path):
        return _read(found)
    try:  # parsed anew each time: a chapter that changes it changes no other's
        return json.loads(found)
    except ValueError as err:
        raise FileNotFoundError(f"what {record_url(name)} served is not a record "
                                f"(not JSON: {err}). "
                                + HOW_TO_GET.format(repository=env.REPOSITORY)) from err


def load_model(name: str):
    """A recorded model (`results/<name>.pt`, written by `save_checkpoint` or
    `python -m mnist_lib train --checkpoint`), found as `load_record` finds a
    record, as a `Classifier` in eval mode on the CPU."""
    from ..training.checkpoint import load_checkpoint

    found = _find(name, ".pt")
    if isinstance(found, Path):
        return load_checkpoint(found)
    with tempfile.TemporaryDirectory() as folder:  # fetched: a file to read
        path = Path(folder) / f"{name}.pt"
        path.write_bytes(found)
        return load_checkpoint(path)


def need_records(*names: str) -> None:
    """Check, before a chapter trains, that every record it will read can be
    read (`load_record`): rather than train for minutes and only then fail,
    stop at once and name each record that is missing and how to get it."""
    missing = []
    for name in names:
        try:
            load_record(name)
        except (FileNotFoundError, ValueError) as err:
            missing.append(f"- {name}: {err}")
    if missing:
        raise FileNotFoundError(
            "this chapter reads recorded results that it cannot read:\n"
            + "\n".join(missing))
