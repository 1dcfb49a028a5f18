"""The recorded results a chapter reads (`results/<name>.json`): from the
repository checkout; outside one (Colab, a pip install) from a `results/`
folder beside the notebook, else from the records the library carries
(`shipped_folder`: the package holds every `results/*.json`, so a chapter
runs offline), else from the book's repository on GitHub. `need_records`
checks, before a chapter trains, that it can read every record it will need.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

from . import env

# The records fetched from GitHub in this kernel, by name: fetched once.
_FETCHED: dict[str, dict[str, Any]] = {}
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


def record_url(name: str) -> str:
    """Where GitHub serves `results/<name>.json` of the book's repository."""
    owner_repo = env.REPOSITORY.removeprefix("https://github.com/")
    return (f"https://raw.githubusercontent.com/{owner_repo}/{env.BRANCH}/results/"
            f"{name}.json")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): restore it with git, "
                         "or regenerate it with the command given in the "
                         "Reproducibility chapter") from err


def load_record(name: str) -> dict[str, Any]:
    """A recorded result (`results/<name>.json`) from the repository checkout;
    outside one (Colab, a pip install), from `results/` beside the notebook,
    else from the records the library carries (`shipped_folder`), else from
    the book's repository on GitHub."""
    root = env.checkout()
    if root is not None:
        # In a checkout the local record is the one that counts: a missing one
        # is an error, never silently replaced by whatever GitHub holds.
        path = root / "results" / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: regenerate it with the "
                                    "command given in the Reproducibility chapter")
        return _read(path)
    beside = Path.cwd() / "results" / f"{name}.json"
    if beside.exists():
        return _read(beside)
    shipped = shipped_folder()
    if shipped is not None and (shipped / f"{name}.json").is_file():
        return _read(shipped / f"{name}.json")
    if name not in _FETCHED:
        url = record_url(name)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                _FETCHED[name] = json.loads(response.read())
        except (OSError, ValueError) as err:  # no network, HTTP error, not JSON
            raise FileNotFoundError(
                f"the recorded result {name!r} is not here (no repository checkout "
                f"around {Path.cwd()}, and this library does not carry it) and "
                f"could not be fetched from {url}: {err}. "
                + HOW_TO_GET.format(repository=env.REPOSITORY)) from err
    # A copy, as a read from disk is: a chapter that changes it changes no other's.
    return copy.deepcopy(_FETCHED[name])


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
