"""Helpers the book's chapters share: quick mode, glue, checked claims, results.

Chapters run in the book build (myst-nb), in Colab/Binder and locally; none of
those may need build-only tools. Where myst-nb is absent, `glue` keeps each
value in `GLUED`, and `show` displays a chapter's Result block with those
values filled in: the `.ipynb` twins (`scripts/twins.py`) turn every Markdown
cell that holds a `{glue:text}` role into a call of `show`.

Quick mode (`MNIST_BOOK_QUICK=1`, set by `make book-quick` and `make test`)
trains on a small subset for one epoch so that CI can execute every chapter in
minutes; `claim` does not check a claim about such a run, since the numbers it
checks need the full run. A claim fails only the book build (`BUILD`); in a
learner's run it prints a note and the chapter goes on.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import torch.nn as nn

from .data import MNIST
from .history import History
from .target import TARGET
from .train import run

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


# Every value glued in this kernel, by name: what `show` fills Markdown from.
GLUED: dict[str, Any] = {}
# Blocks that `show` displayed before all their values were glued: (display
# handle, Markdown). `glue` fills them in as the values arrive.
_PENDING: list[tuple[Any, str]] = []
# {glue:text}`name` or {glue:text}`name:format`, as myst-nb writes them.
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")


def glue(name: str, value: Any, display: bool = False) -> None:
    """myst-nb's `glue` where it exists (the book build); elsewhere, show the
    value if `display` is set. Either way the value is kept in `GLUED`, and
    any block that `show` displayed while waiting for it is filled in.

    NumPy and torch scalars are turned into plain Python numbers first: glue
    cannot format them. Returns None, so that a cell ending in `glue(...)`
    does not display the value a second time.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    GLUED[name] = value
    _update_pending(name)
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab, Binder, plain Jupyter
        if display:
            from IPython.display import display as show

            show(value)
        return None
    _glue(name, value, display=display)
    return None


def fill(markdown: str) -> tuple[str, list[str]]:
    """`markdown` with each `{glue:text}` role replaced by its value from
    `GLUED` (formatted as the role says), and the names not glued yet, whose
    roles become "…"."""
    missing: list[str] = []

    def value(match: re.Match) -> str:
        name, spec = match.group(1), match.group(2) or ""
        if name not in GLUED:
            missing.append(name)
            return "…"
        try:
            return format(GLUED[name], spec)
        except (TypeError, ValueError):  # e.g. ":s" on a number
            return str(GLUED[name])

    return GLUE_ROLE.sub(value, markdown), missing


def _rendered(markdown: str) -> tuple[Any, list[str]]:
    from IPython.display import Markdown

    text, missing = fill(markdown)
    if missing:
        text += ("\n\n*(… : not computed yet; the cells below fill it in: "
                 f"{', '.join(missing)})*")
    return Markdown(text), missing


def show(markdown: str) -> None:
    """Display a chapter's Markdown with its `{glue:text}` values filled in
    from this kernel's run: how Colab and Jupyter, which have no myst-nb,
    show a Result block. A value that a later cell glues shows as "…" until
    that cell runs, and is then filled in where it stands."""
    from IPython.display import display

    rendered, missing = _rendered(markdown)
    handle = display(rendered, display_id=True)
    if missing and handle is not None:
        _PENDING.append((handle, markdown))


def _update_pending(name: str) -> None:
    """Fill in the blocks `show` displayed while waiting for `name`."""
    for entry in list(_PENDING):
        handle, markdown = entry
        if f"`{name}`" in markdown or f"`{name}:" in markdown:
            rendered, missing = _rendered(markdown)
            handle.update(rendered)
            if not missing:
                _PENDING.remove(entry)


def time_change(seconds: float, base: float) -> str:
    """How a time compares with a base time, in words that read right
    whichever way a measurement comes out: "2.3× as long as", "12% longer
    than", "about as long as", "8% less time than". Machines differ and are
    noisy, so the book glues these words and never asserts a speed."""
    ratio = seconds / base
    if ratio >= 1.5:
        return f"{ratio:.1f}× as long as"
    if ratio > 1.02:
        return f"{100 * (ratio - 1):.0f}% longer than"
    if ratio >= 0.98:
        return "about as long as"
    return f"{100 * (1 - ratio):.0f}% less time than"


def bench_lag(record: dict[str, Any]) -> str:
    """One sentence on whether a benchmark record (`results/bench_*.json`)
    trained today's final model with today's recipe, and if not, what it
    trained: its times stand either way, its accuracy is its own design's."""
    from .models import FINAL_MODEL
    from .records import model_differences, recipe_differences

    model = record["model"]
    if model != FINAL_MODEL:
        return (f"It trained {model}, before {FINAL_MODEL} with Step 3's recipe "
                "became the final model: its times compare the two pipelines for "
                f"{model} with the recipe it recorded, and its accuracy is that "
                "model's, not the final model's.")
    lags = recipe_differences(record, model) + (
        model_differences(record, model) if record.get("layers") else ["layers"])
    if lags:
        return (f"It trained {model} as it was then (since changed: "
                f"{', '.join(lags)}): its times stand, its accuracy is that "
                "earlier version's.")
    return f"It trained today's final model, {model}, with today's recipe."


def claim(condition: bool, message: str, evidence: str = "", live: bool = True
          ) -> None:
    """Check a claim the prose makes (`message`) against the numbers behind it.

    In the book build (`BUILD`, set by scripts/build_book.sh) a claim that no
    longer holds fails the build: the prose may not drift from its runs.
    Anywhere else (Colab, Jupyter, a script) it prints a note naming the
    claim, this run's numbers (`evidence`) and why runs differ, and the
    chapter goes on: a learner's run is not the book's. A `live` claim is
    about the run this kernel trained: in quick mode, a one-epoch toy run, it
    is reported, not checked. A claim about a recorded result (`live=False`)
    does not depend on quick mode and is checked there too.
    Returns None, so that a cell ending in a claim shows no stray value.
    """
    if live and QUICK:
        print(f"[quick mode: not checked] {message}: {bool(condition)}")
        return None
    if condition:
        return None
    seen = f" ({evidence})" if evidence else ""
    if BUILD:
        raise AssertionError(f"claim no longer holds: {message}{seen}")
    why = (CLAIM_WHY_LIVE if live else CLAIM_WHY_RECORD)
    print(f"Note: the text says “{message}”, but {'this run' if live else 'the record'}"
          f" does not bear it out{seen}. {why} The chapter goes on.")
    return None


# Why a learner's run can contradict a claim the book build checked.
CLAIM_WHY_LIVE = ("Your run is not the book's: the seed, the device (a GPU or "
                  "another CPU), the precision (bf16 or fp32) and the number of "
                  "threads each change the numbers a little, and a claim near its "
                  "threshold can come out the other way.")
CLAIM_WHY_RECORD = ("The recorded result this chapter read is not the one its text "
                    "was written from: it may be newer than this notebook.")


def train(name: str, data: MNIST, **overrides) -> tuple[nn.Module, History]:
    """Train a model with its recipe (`mnist_lib.config.recipe`); quick mode
    shrinks it."""
    if QUICK:
        overrides = QUICK_SIZE | overrides
    return run(name, data, **overrides)


def glue_result(key: str, hist: History, last: int = TARGET.last) -> dict[str, Any]:
    """Glue a run's standard numbers under `<key>_<field>`; return them as a dict.

    Strings are glued ready to print; numbers stay available for claims.
    """
    accs = hist.last_test_acc(last)
    met = hist.meets_target()
    result = {
        "params": hist.params,
        "best_train": hist.best_train_acc,
        "best_test": hist.best_test_acc,
        "final_test": hist.epochs[-1].test_acc,
        "last": accs,
        "min_last": min(accs),
        "gap": hist.epochs[-1].train_acc - hist.epochs[-1].test_acc,
        "met": met,
        "epochs": len(hist.epochs),
        "seconds": hist.total_seconds,
        "sec_per_epoch": hist.total_seconds / len(hist.epochs),
    }
    glue(f"{key}_params", f"{hist.params:,}")
    glue(f"{key}_best_train", f"{result['best_train']:.2f}%")
    glue(f"{key}_best_test", f"{result['best_test']:.2f}%")
    glue(f"{key}_final_test", f"{result['final_test']:.2f}%")
    glue(f"{key}_last", ", ".join(f"{a:.2f}%" for a in accs))
    glue(f"{key}_min_last", f"{result['min_last']:.2f}%")
    glue(f"{key}_gap", f"{result['gap']:+.2f} points")
    glue(f"{key}_met", "yes" if met else "no")
    glue(f"{key}_epochs", str(result["epochs"]))
    glue(f"{key}_seconds", f"{result['seconds']:.0f} s")
    glue(f"{key}_sec_per_epoch", f"{result['sec_per_epoch']:.1f} s")
    glue(f"{key}_device", hist.env["device"])
    return result


def load_study(name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A study's record (`results/<name>.json`, made by `mnist_lib.study`)
    and its summary rows (`study.summarise`) by arm name. Whether the record
    is complete and today's is checked by the tests, not here."""
    from . import study

    record = load_record(name)
    return record, {row["name"]: row for row in study.summarise(record)}


def glue_arm(key: str, row: dict[str, Any]) -> None:
    """Glue one summarised arm (`load_study`) for a Result block:
    `<key>_mean` and `<key>_std` (of the seeds' last-3 means), `<key>_met`
    ("7 of 10"), and where it is compared with another arm `<key>_vs` (the
    difference with its interval) and `<key>_delta`."""
    from . import study

    glue(f"{key}_mean", f"{row['mean']:.2f}%")
    glue(f"{key}_std", f"{row['std']:.2f}")
    glue(f"{key}_met", f"{row['met']} of {row['n_seeds']}")
    if row.get("vs"):
        glue(f"{key}_vs", study.interval(row["vs"]))
        glue(f"{key}_delta", f"{row['vs']['delta']:+.2f} points")


def source(obj: Any):
    """A class's or function's source, highlighted in notebooks (printed elsewhere)."""
    import inspect

    text = inspect.getsource(obj)
    try:
        from IPython.display import Code
    except ImportError:
        print(text)
        return None
    return Code(text, language="python")


def record_url(name: str) -> str:
    """Where GitHub serves `results/<name>.json` of the book's repository."""
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    return (f"https://raw.githubusercontent.com/{owner_repo}/{BRANCH}/results/"
            f"{name}.json")


def load_record(name: str) -> dict[str, Any]:
    """A recorded result (`results/<name>.json`) from the repository checkout;
    outside one (Colab), from the book's repository on GitHub."""
    root = checkout()
    if root is not None:
        # In a checkout the local record is the one that counts: a missing one
        # is an error, never silently replaced by whatever GitHub holds.
        path = root / "results" / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: regenerate it with the "
                                    "command given in the Reproducibility chapter")
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err}): restore it with git, "
                             "or regenerate it with the command given in the "
                             "Reproducibility chapter") from err
    url = record_url(name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as err:  # no network, HTTP error, not JSON
        raise FileNotFoundError(
            f"the recorded result {name!r} is not here (no repository checkout "
            f"around {Path.cwd()}) and could not be fetched from {url}: {err}. "
            "Run the chapter inside a clone of the repository, or where GitHub "
            "is reachable.") from err
