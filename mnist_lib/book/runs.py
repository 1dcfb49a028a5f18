"""The chapters' trainer (`train`: a model with its recipe; quick mode
shrinks it) and the glue of a run's or a study's numbers for a Result block.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..data import MNIST
from ..training.history import History
from ..target import TARGET
from ..train import run
from . import env
from .recorded import load_record
from .render import glue


def train(name: str, data: MNIST, **overrides) -> tuple[nn.Module, History]:
    """Train a model with its recipe (`mnist_lib.config.recipe`); quick mode
    shrinks it."""
    if env.QUICK:
        overrides = env.QUICK_SIZE | overrides
    return run(name, data, **overrides)


def sized(data: MNIST) -> MNIST:
    """The data a chapter's own loop trains on: all of it, or in quick mode
    (the book's test build) the first `QUICK_SIZE` digits, as `train` uses."""
    if not env.QUICK:
        return data
    return data.subset(env.QUICK_SIZE["n_train"], env.QUICK_SIZE["n_test"])


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
    glue(f"{key}_last", percents(accs))
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
    from .. import study

    record = load_record(name)
    return record, {row["name"]: row for row in study.summarise(record)}


def percents(accuracies) -> str:
    """Accuracies as a page prints them, two decimals each: "99.48%, 99.46%"."""
    return ", ".join(f"{a:.2f}%" for a in accuracies)


def glue_arm(key: str, row: dict[str, Any]) -> None:
    """Glue one summarised arm (`load_study`) for a Result block:
    `<key>_mean` and `<key>_std` (of the seeds' last-3 means), `<key>_met`
    ("7 of 10"), and where it is compared with another arm `<key>_vs` (the
    difference with its interval) and `<key>_delta`."""
    from .. import study

    glue(f"{key}_mean", f"{row['mean']:.2f}%")
    glue(f"{key}_std", f"{row['std']:.2f}")
    glue(f"{key}_met", f"{row['met']} of {row['n_seeds']}")
    if row.get("vs"):
        glue(f"{key}_vs", study.interval(row["vs"]))
        glue(f"{key}_delta", f"{row['vs']['delta']:+.2f} points")
