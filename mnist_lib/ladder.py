"""The design ladder: the book's three steps as rungs, from Model_1's recipe
to the final one. Each rung is the rung before it plus exactly one named
change, and every rung is trained with the same seeds, so that the
difference a change makes is measured seed by seed.

    python -m mnist_lib ladder --seeds 10 --out results/ladder.json

The ablation (`mnist_lib.ablation`) is the other view: it takes one
ingredient at a time out of the final recipe.

A change counts by one rule (`effect`): it helps only where the 95%
interval of its paired difference in the mean of the last 3 epochs
excludes zero.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, as_json, config_differences, recipe
from .data import MNIST
from .hardware import environment, machine_differences, source_commit
from .models import get_model, layer_list
from .seeds import last_means, paired_difference, pass_change_p, seed_result
from .target import TARGET
from .utils import atomic_write_json, best_device


@dataclass(frozen=True)
class Rung:
    """One rung: `model` trained with `config`, which differ from the rung
    before in one idea, `change` (one sentence). `step` is the book's step
    that shows it; `name` is short, for tables."""

    name: str
    change: str
    step: int
    model: str
    config: TrainConfig = field(repr=False)


def rungs() -> list[Rung]:
    """The ladder, in order: Step 1's skeleton, then one change a rung to
    Step 2's Model_3 and on to the final recipe (`FINAL_MODEL`'s)."""
    ladder = [Rung("baseline", "Model_1 with Step 1's recipe: SGD at a constant "
                   "learning rate of 0.01, batch 128", 1, "Model_1", recipe("Model_1"))]

    def then(name: str, change: str, step: int, model: str | None = None,
             **fields: Any) -> None:
        last = ladder[-1]
        ladder.append(Rung(name, change, step, model or last.model,
                           replace(last.config, **fields)))

    then("BatchNorm", "BatchNorm after each 3x3 convolution", 2, "Model_1_BN")
    then("learning rate 0.05", "a constant learning rate of 0.05 instead of 0.01",
         2, lr=0.05)
    then("GAP head", "global average pooling and a 1x1 convolution instead of the "
         "8x8 output convolution", 2, "Model_1_GAP")
    then("deeper, narrower", "Model_2's layers: narrower early layers pay for a "
         "fifth 3x3 convolution, so the RF before the pooling grows from 15 to 19 "
         "pixels", 2, "Model_2")
    then("dropout", "5% dropout after every convolution (Model_3)", 2, "Model_3")
    then("one-cycle", "a one-cycle schedule: warm up to the same peak of 0.05, "
         "then anneal to almost zero", 3, scheduler="onecycle")
    then("augmentation", "each training digit rotated by up to 7 degrees, shifted "
         "by up to 5% and zoomed by 95-105%, drawn anew each epoch", 3,
         rotation=7.0, translate=0.05, scale=(0.95, 1.05))
    then("clean last epochs", "no warping in the last 3 epochs", 3, clean_epochs=3)
    then("no dropout", "dropout taken out again (Model_2's layers)", 3, "Model_2")
    then("transition block", "Model_4's layers: a max-pool and a 1x1 convolution "
         "after RF 11, so the RF before the pooling grows from 19 to 29 pixels", 3,
         "Model_4")
    then("batch 256", "256 images a step instead of 128: half as many steps", 3,
         batch_size=256)
    then("peak rate 0.2", "a peak learning rate of 0.2 instead of 0.05", 3, lr=0.2)
    then("weight decay", "weight decay of 5e-4", 3, weight_decay=5e-4)
    then("weight average", "testing an average of the weights (EMA 0.999) with "
         "BatchNorm statistics measured again for it", 3, ema=0.999,
         bn_recompute=10_000)
    return ladder


# ------------------------------------------------------------------ running
def _say(line: str) -> None:
    print(line, flush=True)  # a study runs for hours, often into a log file


def run_ladder(data: MNIST, seeds: list[int], out: str | Path | None = None,
               report: Callable[[str], None] = _say, resume: bool = False,
               command: str = "", **overrides: Any) -> dict[str, Any]:
    """Train every rung with each seed, seed by seed (all rungs with the first
    seed, then all with the next), so that an interrupted study has the same
    seeds on every rung, give or take one. With `out`, the record is written
    (atomically) after each run; with `resume`, an existing `out` is read
    first (same machine, seeds and rungs, or a ValueError that says what
    differs) and only its missing runs are trained. `overrides` change every
    rung's config alike (a quick check: epochs, n_train). `command`, the
    command line that made the record, is kept in it."""
    ladder = rungs()
    configs = [replace(r.config, **overrides) for r in ladder]
    here = environment(best_device(configs[0].device), configs[0].precision)
    record = new_record(ladder, configs, seeds, command)
    if resume and out is not None and Path(out).exists():
        record = resumable(json.loads(Path(out).read_text()), seeds, here, configs)
        done = sum(len(r["seeds"]) for r in record["rungs"])
        report(f"resuming {out}: {done} of {len(ladder) * len(seeds)} runs kept")
    commit = source_commit()
    if commit not in record["commits"]:
        record["commits"].append(commit)
    t0 = time.perf_counter() - record["wall_seconds"]
    for seed in seeds:
        for rung, cfg, rec in zip(ladder, configs, record["rungs"]):
            if any(s["seed"] == seed for s in rec["seeds"]):
                continue
            result, hist = seed_result(rung.model, data, seed, TARGET, cfg)
            rec["seeds"].append(result)
            rec.update(params=hist.params, layers=hist.layers,
                       config=hist.config | {"seed": None})
            record["env"] = hist.env  # one machine: checked above on resume
            record["wall_seconds"] = time.perf_counter() - t0
            report(f"seed {seed:>2}  {rung.name:<20} last 3: "
                   + " ".join(f"{a:.2f}" for a in result["last"])
                   + ("  pass" if result["passed"] else "  FAIL"))
            if out is not None:
                atomic_write_json(out, record)
    return record


def new_record(ladder: list[Rung], configs: list[TrainConfig], seeds: list[int],
               command: str = "") -> dict[str, Any]:
    """An empty record of `ladder` (each rung trained with its `configs`
    entry) for `seeds`: the rungs' names, changes, models and configs, no runs.
    `commits` will list the library's commit of every session that added runs."""
    return {
        "seeds": list(seeds), "target": asdict(TARGET), "env": {},
        "commits": [], "wall_seconds": 0.0, "command": command,
        "rungs": [{"name": r.name, "change": r.change, "step": r.step,
                   "model": r.model, "params": None, "layers": None,
                   "config": as_json(cfg) | {"seed": None}, "seeds": []}
                  for r, cfg in zip(ladder, configs)],
    }


def stale_rungs(record: dict[str, Any], configs: list[TrainConfig] | None = None
                ) -> dict[str, list[str]]:
    """The recorded rungs that the ladder would not train today, each with
    what differs (its place, "model", "layers", config fields), plus
    "missing rung" for a rung the record lacks; empty when the record is
    today's ladder. `configs` are the configs it should hold (default: the
    rungs' own)."""
    ladder = rungs()
    configs = configs or [r.config for r in ladder]
    recorded = record["rungs"]
    stale: dict[str, list[str]] = {}
    for i, (rung, cfg) in enumerate(zip(ladder, configs)):
        if i >= len(recorded) or recorded[i]["name"] != rung.name:
            stale[rung.name] = ["missing rung" if i >= len(recorded)
                                else f"rung {i} is {recorded[i]['name']!r}"]
            continue
        rec = recorded[i]
        why = config_differences(cfg, rec["config"])
        if rec["model"] != rung.model:
            why.append("model")
        elif rec["layers"] is not None and rec["layers"] != layer_list(
                get_model(rung.model)):
            why.append("layers")
        if why:
            stale[rung.name] = why
    for rec in recorded[len(ladder):]:
        stale[rec["name"]] = ["not a rung any more"]
    return stale


def resumable(record: dict[str, Any], seeds: list[int], env: dict[str, Any],
              configs: list[TrainConfig]) -> dict[str, Any]:
    """`record` (read from a file) if a ladder with `seeds` on the machine
    `env` describes can go on from it: the same machine (the date aside), the
    same seeds, and every rung as the ladder trains it today; else a
    ValueError that says what differs and the fix."""
    if record.get("env") and (differ := machine_differences(record["env"], env)):
        raise ValueError("the record was made on another machine ("
                         + ", ".join(differ) + "): one study, one machine. Fix: "
                         "resume it there, or start a new file")
    if record.get("seeds") != list(seeds):
        raise ValueError(f"the record holds seeds {record.get('seeds')}, not {seeds}. "
                         "Fix: resume with the same --seeds, or start a new file")
    if stale := stale_rungs(record, configs):
        raise ValueError(f"the record's rungs {stale} are not the ladder's as it "
                         "trains them now. Fix: start a new file")
    return record


# ---------------------------------------------------------------- reading
def summarise(record: dict[str, Any], confidence: float = 0.95
              ) -> list[dict[str, Any]]:
    """One row per rung of a ladder `record`: over its seeds, the mean of each
    seed's mean accuracy in the last epochs the target judges (`last_mean`),
    the standard deviation across seeds (`std`), the passes, and against the
    rung before, paired by seed: the difference (`delta`), its standard error
    and the half-width of its `confidence` interval (`delta_ci`), the verdict
    by the ladder's rule (`effect`), and McNemar's p for the change in passes
    (`pass_p`). The first rung has no rung before it: NaN and "-"."""
    rows: list[dict[str, Any]] = []
    before: list[dict[str, Any]] | None = None
    for rung in record["rungs"]:
        runs = rung["seeds"]
        mine = last_means(runs)
        row = {
            "name": rung["name"], "change": rung["change"], "step": rung["step"],
            "model": rung["model"], "params": rung["params"],
            "n_seeds": len(runs), "passed": sum(s["passed"] for s in runs),
            "last_mean": statistics.fmean(mine.values()) if runs else math.nan,
            "std": statistics.stdev(mine.values()) if len(runs) > 1 else math.nan,
            "seconds": statistics.fmean(s["seconds"] for s in runs) if runs
            else math.nan,
            "delta": math.nan, "delta_se": math.nan, "delta_ci": math.nan,
            "effect": "-", "pass_p": math.nan,
        }
        if before is not None:
            change = compare(runs, before, confidence)
            row.update({k: change[k] for k in ("delta", "delta_se", "delta_ci",
                                               "effect", "pass_p")})
        rows.append(row)
        before = runs
    return rows


def nearest_rung(model: str, config: TrainConfig | dict[str, Any]) -> Rung:
    """The rung that trains `model` with the recipe closest to `config` (the
    fewest fields that differ): where a study of a recipe no rung trained
    (the final recipe, or it without one ingredient) is compared."""
    return min((r for r in rungs() if r.model == model),
               key=lambda r: len(config_differences(r.config, config)))


def compare(after: list[dict[str, Any]], before: list[dict[str, Any]],
            confidence: float = 0.95) -> dict[str, Any]:
    """Two sets of recorded runs (a rung and the one before it, or any study
    against a rung), paired by seed: the difference of their last-epoch means
    (`delta`, `delta_se`, `delta_ci`), its verdict by the ladder's rule
    (`effect`), the passes of each on the shared seeds and McNemar's p for
    the change (`pass_p`)."""
    mine, theirs = last_means(after), last_means(before)
    delta, se, ci, n = paired_difference(mine, theirs, confidence)
    now = {s["seed"]: s["passed"] for s in after if s["seed"] in theirs}
    was = {s["seed"]: s["passed"] for s in before if s["seed"] in mine}
    return {"delta": delta, "delta_se": se, "delta_ci": ci,
            "effect": effect(delta, ci), "n_seeds": n,
            "passed": sum(now.values()), "passed_before": sum(was.values()),
            "pass_p": pass_change_p(now, was)}


def effect(delta: float, ci: float) -> str:
    """The ladder's rule: "helps" where the interval delta ± ci lies above
    zero, "hurts" where it lies below, else "unclear" (no interval: unclear)."""
    if math.isnan(ci):
        return "unclear"
    return "helps" if delta - ci > 0 else "hurts" if delta + ci < 0 else "unclear"


def verdict(row: dict[str, Any], subject: str = "it") -> str:
    """A summarised rung's verdict in words, from `effect` and its numbers,
    e.g. "+0.120 points (95% interval +0.080 to +0.160): it helps", or
    "..., which includes zero: no measurable effect". `subject` names what
    helps or hurts ("leaving it out", for a study that takes one out)."""
    d, ci = row["delta"], row["delta_ci"]
    words = {"helps": f": {subject} helps", "hurts": f": {subject} hurts",
             "unclear": ", which includes zero: no measurable effect"}
    return (f"{_points(d)} points (95% interval {_points(d - ci)} to "
            f"{_points(d + ci)}){words[row['effect']]}")


def _points(x: float) -> str:
    """A difference in points, to 3 decimals; one that rounds to zero gets
    one significant digit instead, so that its sign still shows."""
    if x == 0:
        return "0.000"
    return f"{x:+.3f}" if abs(x) >= 0.0005 else f"{x:+.1g}"


def to_frame(rows: list[dict[str, Any]]):
    """The summary as a pandas DataFrame, one row a rung, for a chapter: the
    change, mean and std of the last 3 epochs (%), passes, and the difference
    to the rung before with its 95% interval, as text that reads as printed."""
    import pandas as pd  # only a chapter's table needs it

    def interval(r: dict[str, Any]) -> str:
        if math.isnan(r["delta_ci"]):
            return "—"
        return f"{_points(r['delta'])} ({_points(r['delta'] - r['delta_ci'])} to " \
               f"{_points(r['delta'] + r['delta_ci'])})"

    return pd.DataFrame({
        "rung": [r["name"] for r in rows],
        "mean (%)": [f"{r['last_mean']:.2f}" for r in rows],
        "std": ["—" if math.isnan(r["std"]) else f"{r['std']:.2f}" for r in rows],
        "passed": [f"{r['passed']}/{r['n_seeds']}" for r in rows],
        "Δ vs rung before (95% interval)": [interval(r) for r in rows],
        "effect": [r["effect"] for r in rows],
    }).set_index("rung")


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as text: one line a rung."""
    lines = [f"{'rung':<20} {'mean':>7} {'std':>6} {'passed':>7} "
             f"{'delta':>7} {'95% interval':>17}  effect"]
    for r in rows:
        ci = ("" if math.isnan(r["delta_ci"]) else
              f"{r['delta'] - r['delta_ci']:+.3f} to {r['delta'] + r['delta_ci']:+.3f}")
        delta = "" if math.isnan(r["delta"]) else f"{r['delta']:+.3f}"
        std = "" if math.isnan(r["std"]) else f"{r['std']:.3f}"
        lines.append(f"{r['name']:<20} {r['last_mean']:7.3f} {std:>6} "
                     f"{r['passed']:>3}/{r['n_seeds']:<3} {delta:>7} {ci:>17}  "
                     f"{r['effect']}")
    return "\n".join(lines)
