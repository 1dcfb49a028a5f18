"""Train one model with several seeds and report the spread.

    python -m mnist_lib seeds --model Model_2 --seeds 15 \
        --out seeds_Model_2.json

One run proves little: a model "meets the target" only if it does so for
every seed. Prints per seed the last-3 test accuracies, best and final, and
whether the rule held; then mean, standard deviation and minimum.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from typing import Any, Callable

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


def last_means(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Each recorded run's mean test accuracy over the last epochs the target
    judges (its `last`), by seed: the number the studies compare."""
    return {r["seed"]: statistics.fmean(r["last"]) for r in runs}


def paired_difference(after: dict[int, float], before: dict[int, float],
                      confidence: float = 0.95) -> tuple[float, float, float, int]:
    """`after` minus `before`, paired by seed (the seeds both have): the mean
    difference, its standard error (the differences' standard deviation over
    the square root of their number), the half-width of its `confidence`
    interval (t_critical(n - 1) x SE) and n. With fewer than two pairs there
    is no interval: NaN."""
    diffs = [after[seed] - before[seed] for seed in after if seed in before]
    n = len(diffs)
    if n < 2:
        return (statistics.fmean(diffs) if n else math.nan), math.nan, math.nan, n
    se = statistics.stdev(diffs) / math.sqrt(n)
    return statistics.fmean(diffs), se, t_critical(n - 1, confidence) * se, n


def pass_change_p(after: dict[int, bool], before: dict[int, bool]) -> float:
    """How likely a split of passes at least this lopsided is by chance, if
    the change made no difference to whether a seed passes: McNemar's exact
    test, two-sided, on the seeds both have. Only the seeds whose verdict
    changed count (b passed only after, c only before); with no effect each
    is a coin toss, so min(b, c) or fewer of b + c is binomial(b + c, 1/2).
    1.0 when no verdict changed."""
    b = sum(after[s] and not before[s] for s in after if s in before)
    c = sum(before[s] and not after[s] for s in after if s in before)
    m = b + c
    tail = sum(math.comb(m, k) for k in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


HEADER = f"{'seed':>4}  {'last-3 test accuracy (%)':<26} {'best':>6} {'final':>6}  rule"


def pass_rate_lower_bound(passed: int, n: int, confidence: float = 0.95) -> float:
    """The lowest pass rate that `passed` passes out of `n` seeds are consistent
    with, at `confidence` (one-sided Clopper-Pearson): at any lower rate, that
    many passes or more would come up less than 1 - `confidence` of the time.

    A perfect record is a sample too: 15 passes out of 15 still allow a rate
    as low as 0.82 at 95%.
    """
    if not (n >= 1 and 0 <= passed <= n and 0 < confidence < 1):
        raise ValueError(f"need 0 <= passed <= n, n >= 1 and 0 < confidence < 1; "
                         f"got passed={passed}, n={n}, confidence={confidence}")
    if passed == 0:
        return 0.0

    def at_least(p: float) -> float:  # P(X >= passed), X ~ Binomial(n, p)
        return sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k)
                   for k in range(passed, n + 1))

    return _crossing(at_least, 1 - confidence, 0.0, 1.0)  # at_least grows with p


def t_critical(df: int, confidence: float = 0.95) -> float:
    """The two-sided critical value of Student's t with `df` degrees of
    freedom: a mean difference of n paired runs, m ± t_critical(n - 1) * SE,
    covers the true difference with probability `confidence`. With few runs
    it is well above the normal's 1.96: 2.78 for 5 runs (df 4) at 95%.

    The density (1 + x²/df)^(-(df+1)/2), normalised, is integrated with
    Simpson's rule and the quantile found by bisection: accurate to about
    1e-6, plenty for a confidence interval.
    """
    if not (df >= 1 and 0 < confidence < 1):
        raise ValueError(f"need df >= 1 and 0 < confidence < 1; got df={df}, "
                         f"confidence={confidence}")
    log_c = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2)
             - 0.5 * math.log(df * math.pi))

    def density(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    def mass(x: float, steps: int = 2000) -> float:  # P(0 < T < x), Simpson
        h = x / steps
        inner = sum((4 if k % 2 else 2) * density(k * h) for k in range(1, steps))
        return h / 3 * (density(0.0) + inner + density(x))

    lo, hi = 0.0, 1.0
    while mass(hi) < confidence / 2:  # bracket the quantile
        lo, hi = hi, 2 * hi
    return _crossing(mass, confidence / 2, lo, hi)


def _crossing(f: Callable[[float], float], level: float, lo: float, hi: float
              ) -> float:
    """The x in [lo, hi] where the increasing `f` reaches `level`, by
    bisection: 50 halvings leave the bracket 1e-15 of its width."""
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < level else (lo, mid)
    return (lo + hi) / 2


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
