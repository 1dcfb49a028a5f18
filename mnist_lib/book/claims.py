"""A claim of the prose checked against the numbers behind it (`claim`), and
words for measured times that read right whichever way they come out.

A claim fails only the book build (`env.BUILD`); in a learner's run it prints
a note and the chapter goes on. In quick mode a claim about the live run is
reported, not checked: the numbers it checks need the full run.
"""

from __future__ import annotations

from typing import Any

from . import env


def time_change(seconds: float, base: float, noise: float = 0.05) -> str:
    """How a time compares with a base time, in words that read right
    whichever way a measurement comes out: "2.3× as long as", "12% longer
    than", "about as long as", "8% less time than". Machines differ and are
    noisy, so the book glues these words and never asserts a speed. Within
    `noise` either way (a ratio from 1/(1 + noise) to 1 + noise) the two
    cannot be told apart: 5% by default, for a single timing; where repeated
    rounds were timed, pass how far they lay apart."""
    ratio = seconds / base
    if 1 / (1 + noise) <= ratio <= 1 + noise:
        return "about as long as"
    if ratio >= 1.5:
        return f"{ratio:.1f}× as long as"
    if ratio > 1:
        return f"{100 * (ratio - 1):.0f}% longer than"
    return f"{100 * (1 - ratio):.0f}% less time than"


def bench_lag(record: dict[str, Any]) -> str:
    """One sentence on whether a benchmark record (`results/bench_*.json`)
    trained today's final model with today's recipe, and if not, what it
    trained: its times stand either way, its accuracy is its own design's."""
    from ..models import FINAL_MODEL
    from ..records import model_differences, recipe_differences

    model = record["model"]
    if model != FINAL_MODEL:
        return (f"Its library side trained {model}, not the final model "
                f"({FINAL_MODEL}); its usual pipeline trained its own "
                "reference net. Its times stand; its accuracies are those "
                "nets', not the final model's.")
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
    if live and env.QUICK:
        print(f"[quick mode: not checked] {message}: {bool(condition)}")
        return None
    if condition:
        return None
    seen = f" ({evidence})" if evidence else ""
    if env.BUILD:
        raise AssertionError(f"claim no longer holds: {message}{seen}")
    why = (CLAIM_WHY_LIVE if live else CLAIM_WHY_RECORD)
    what = "this run" if live else "the record"
    print(f"Note: the text says “{message}”, but {what} does not bear it "
          f"out{seen}. {why} The chapter goes on.")
    return None


# Why a learner's run can contradict a claim the book build checked.
CLAIM_WHY_LIVE = ("Your run is not the book's: the seed, the device (a GPU or "
                  "another CPU), the precision (bf16 or fp32) and the number of "
                  "threads each change the numbers a little, and a claim near its "
                  "threshold can come out the other way.")
CLAIM_WHY_RECORD = ("The recorded result this chapter read is not the one its text "
                    "was written from: it may be newer than this notebook.")
