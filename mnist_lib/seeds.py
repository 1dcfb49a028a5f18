"""Train one model with several seeds and report the spread.

    python -m mnist_lib seeds --model Model_2 --seeds 15 \
        --out seeds_Model_2.json

One run proves little: a model "meets the target" only if it does so for
every seed. Prints per seed the last-3 test accuracies, best and final, and
whether the rule held; then mean, standard deviation and minimum.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from .config import TrainConfig
from .target import TARGET, Target
from .history import History
from .train import run


def seed_result(model: str, data, seed: int, target: Target = TARGET,
                config: TrainConfig | None = None, **overrides
                ) -> tuple[dict[str, Any], History]:
    """Train `model` once with `seed` (its recipe, or `config`, with any
    `overrides`); return what a study records of the run, and its History."""
    _, hist = run(model, data, config, seed=seed, progress=False, **overrides)
    return {
        "seed": seed,
        "last": hist.last_test_acc(target.last),
        "best": hist.best_test_acc,
        "final": hist.epochs[-1].test_acc,
        "passed": hist.meets_target(target),
        "seconds": hist.total_seconds,
        "test_acc": hist.column("test_acc"),
        # Per epoch too, for what a chapter says about the run's course: the
        # running averages of the training epoch (in train mode) and the loss
        # on the test set.
        "train_acc": hist.column("train_acc"),
        "test_loss": hist.column("test_loss"),
    }, hist


def run_seeds(model: str, data, seeds: list[int], target: Target = TARGET,
              progress: bool = True, config: TrainConfig | None = None,
              **overrides) -> dict[str, Any]:
    """Train `model` once per seed, with its recipe or `config` (and any
    `overrides`); return a JSON-ready summary. A seed passes when its run
    meets `target` (`History.meets_target`)."""
    per_seed = []
    for seed in seeds:
        result, hist = seed_result(model, data, seed, target, config, **overrides)
        per_seed.append(result)
        if progress:
            print(_row(per_seed[-1]), flush=True)
    finals = [s["final"] for s in per_seed]
    return {
        "model": model,
        "params": hist.params,
        "layers": hist.layers,
        "target": asdict(target),
        "seeds": per_seed,
        "final_mean": statistics.fmean(finals),
        "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "final_min": min(finals),
        "passed": sum(s["passed"] for s in per_seed),
        "n_seeds": len(per_seed),
        # What the runs trained with and on, as their History recorded it.
        "config": hist.config | {"seed": seeds},
        "env": hist.env,
    }


HEADER = f"{'seed':>4}  {'last-3 test accuracy (%)':<26} {'best':>6} {'final':>6}  rule"


def _row(s: dict[str, Any]) -> str:
    last = " ".join(f"{a:6.2f}" for a in s["last"])
    return (f"{s['seed']:>4}  {last:<26} {s['best']:6.2f} {s['final']:6.2f}  "
            f"{'pass' if s['passed'] else 'FAIL'}")


def summary_line(summary: dict[str, Any]) -> str:
    """Mean ± std and minimum of the final accuracies, and how many seeds passed."""
    return (f"final accuracy: mean {summary['final_mean']:.3f} ± "
            f"{summary['final_std']:.3f} (std), min {summary['final_min']:.2f}; "
            f"rule held for {summary['passed']}/{summary['n_seeds']} seeds")


def report(summary: dict[str, Any]) -> str:
    """The whole table: title, one row per seed, summary line."""
    said = Target(**summary["target"]).text()
    lines = [f"{summary['model']} ({summary['params']:,} parameters), rule: {said}",
             HEADER]
    lines += [_row(s) for s in summary["seeds"]]
    lines.append(summary_line(summary))
    return "\n".join(lines)
