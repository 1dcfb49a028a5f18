"""The other view of Step 3's evidence: an ablation study. Where the ladder
(`mnist_lib.ladder`) adds one change a rung, here each ingredient is taken
out of Model_4's final recipe in turn, and every variant is trained with the
same seeds and judged by the same rule as the seed study (`mnist_lib.seeds`),
beside the full recipe.

    python -m mnist_lib ablate --seeds 5 --out results/ablation_Model_4.json
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, config_differences, model_differences, recipe
from .data import MNIST
from .hardware import environment, machine_differences
from .seeds import last_means, paired_difference, run_seeds, summary_line
from .target import TARGET
from .utils import atomic_write_json, best_device

# The base of the study, and the earlier step whose choices stand in for
# Step 3's where one is taken out.
BASE, EARLIER = "Model_4", "Model_2"
# The arm that is judged on held-out training images instead of the test set.
VALIDATION = "full recipe, validation split"


@dataclass(frozen=True)
class Variant:
    """One arm of the study: `model` trained with `config`, which is the
    base's recipe with one ingredient taken out (`removed`, in words). An arm
    with `holdout` takes nothing out: it trains on the first 50,000 training
    images and is judged on the last 10,000 (`MNIST.holdout`), not on test."""

    name: str
    removed: str
    model: str
    config: TrainConfig = field(repr=False)
    holdout: bool = False


def variants() -> list[Variant]:
    """The full recipe, one variant per ingredient of Step 3 that the recipe
    has, then the full recipe judged on a validation split instead of the
    test set."""
    full, earlier = recipe(BASE), recipe(EARLIER)
    no_warp = dict(rotation=0.0, translate=0.0, scale=(1.0, 1.0), clean_epochs=0)
    arms = [
        Variant("full recipe", "nothing", BASE, full),
        Variant("no transition block",
                f"the transition block ({EARLIER}'s layers: five 3x3 convolutions, "
                "no pool)",
                EARLIER, full),
        Variant("no augmentation", "rotation, shift and zoom", BASE,
                replace(full, **no_warp)),
    ]
    if full.clean_epochs:
        arms.append(Variant("no clean last epochs", "the last epochs without "
                            "warping", BASE, replace(full, clean_epochs=0)))
    arms.append(Variant(
        f"{EARLIER}'s schedule",
        "one-cycle learning rate" + (" and weight decay" if full.weight_decay
                                     else "")
        + f" (back to a constant rate {earlier.lr:g} at batch {earlier.batch_size})",
        BASE, replace(full, scheduler=earlier.scheduler, lr=earlier.lr,
                      weight_decay=earlier.weight_decay,
                      batch_size=earlier.batch_size)))
    if full.ema:
        arms.append(Variant("no weight average", "EMA of the weights and the "
                            "BatchNorm recompute", BASE,
                            replace(full, ema=0.0, bn_recompute=0)))
    arms.append(Variant(VALIDATION, "nothing", BASE, full, holdout=True))
    return arms


def run_ablation(data: MNIST, seeds: list[int], out: str | Path | None = None,
                 chosen: list[str] | None = None,
                 report: Callable[[str], None] = print, resume: bool = False,
                 **overrides) -> dict[str, Any]:
    """Train every variant (or those named in `chosen`) with each seed; return
    the record. With `out`, the record is written (atomically) after each
    variant, so that an interrupted study keeps what it finished; with
    `resume`, an existing `out` is read first and its arms are kept, not run
    again. `overrides` change every variant's config alike (a quick check:
    epochs, n_train)."""
    known = [v.name for v in variants()]
    if unknown := [c for c in chosen or [] if c not in known]:
        raise ValueError(f"unknown variant {unknown[0]!r}; the variants are: "
                         + "; ".join(known))
    arms = [v for v in variants() if chosen is None or v.name in chosen]
    record: dict[str, Any] = {"base": BASE, "seeds": list(seeds),
                              "target": asdict(TARGET), "variants": []}
    if resume and out is not None and Path(out).exists():
        # The machine is checked before any training, not after an arm's runs.
        cfg = replace(recipe(BASE), **overrides)
        here = environment(best_device(cfg.device), cfg.precision)
        record = resumable(json.loads(Path(out).read_text()), seeds, here)
        done = {a["name"] for a in record["variants"]}
        arms = [a for a in arms if a.name not in done]
        report(f"resuming {out}: {len(done)} arm(s) kept, {len(arms)} to run")
    t0 = time.perf_counter() - record.get("wall_seconds", 0.0)
    for arm in arms:
        report(f"{arm.name}: {arm.model}" + ("" if arm.removed == "nothing"
                                              else f", without {arm.removed}"))
        summary = run_seeds(arm.model, data.holdout() if arm.holdout else data,
                            seeds, config=arm.config, progress=False, **overrides)
        record["env"] = summary.pop("env")  # one machine: checked above on resume
        record["variants"].append({"name": arm.name, "removed": arm.removed,
                                   "judged_on": "validation" if arm.holdout
                                   else "test", **summary})
        report("  " + summary_line(summary))
        record["wall_seconds"] = time.perf_counter() - t0
        if out is not None:
            atomic_write_json(out, record)
    return record


def summarise(record: dict[str, Any], confidence: float = 0.95
              ) -> list[dict[str, Any]]:
    """One row per arm of an ablation `record`: over the seeds, the mean of each
    seed's mean accuracy in the last epochs the target judges (`last_mean`),
    its standard deviation across seeds (`std`), how far apart those last
    epochs lie within a seed (`spread`, max - min, averaged), the passes, and
    the change against the full recipe paired by seed (`delta`), with its
    standard error (`delta_se`: the standard deviation of the seeds'
    differences over the square root of their number) and the half-width of
    its `confidence` interval (`delta_ci`: t_critical(n - 1) * delta_se). An
    arm judged on other images than the full recipe (the validation arm) has
    no delta: its accuracies are not comparable seed by seed."""
    full_arm = next((a for a in record["variants"] if a["name"] == "full recipe"),
                    None)
    if full_arm is None:
        raise ValueError("the record has no 'full recipe' arm to compare the others "
                         "with. Fix: run ablate with --variant 'full recipe' too "
                         "(--resume keeps the arms already recorded)")
    full = last_means(full_arm["seeds"])
    rows = []
    for arm in record["variants"]:
        mine = last_means(arm["seeds"])
        comparable = arm["judged_on"] == full_arm["judged_on"]
        delta, se, ci, _ = (paired_difference(mine, full, confidence) if comparable
                            else (math.nan,) * 3 + (0,))
        rows.append({
            "name": arm["name"], "removed": arm["removed"],
            "judged_on": arm["judged_on"],
            "last_mean": statistics.fmean(mine.values()),
            "std": statistics.stdev(mine.values()) if len(mine) > 1 else 0.0,
            "spread": statistics.fmean(max(s["last"]) - min(s["last"])
                                       for s in arm["seeds"]),
            "passed": arm["passed"], "n_seeds": arm["n_seeds"],
            "delta": delta, "delta_se": se, "delta_ci": ci,
            "seconds": statistics.fmean(s["seconds"] for s in arm["seeds"]),
        })
    return rows


def stale_arms(record: dict[str, Any]) -> dict[str, list[str]]:
    """The arms of a recorded study that the study would not train today, each
    with what differs ("unknown arm", config fields, "model", "layers"); empty
    when every recorded arm is a current variant, trained as it is now."""
    now = {v.name: v for v in variants()}
    stale = {}
    for arm in record["variants"]:
        v = now.get(arm["name"])
        if v is None:
            stale[arm["name"]] = ["unknown arm"]
            continue
        why = config_differences(v.config, arm["config"])
        why += ["model"] if arm["model"] != v.model else model_differences(arm, v.model)
        if why:
            stale[arm["name"]] = why
    return stale


def resumable(record: dict[str, Any], seeds: list[int], env: dict[str, Any]
              ) -> dict[str, Any]:
    """`record` (read from a file) if a study with `seeds` on the machine `env`
    describes (`hardware.environment`) can go on from it: the same machine
    (the date aside), the same seeds, and every arm still trained as the study
    would train it today; else a ValueError that says what differs and the fix."""
    if differ := machine_differences(record.get("env", env), env):
        raise ValueError("the record was made on another machine ("
                         + ", ".join(differ) + "): one study, one machine. Fix: "
                         "resume it there, or start a new file")
    if record.get("seeds") != list(seeds):
        raise ValueError(f"the record holds seeds {record.get('seeds')}, not {seeds}. "
                         "Fix: resume with the same --seeds, or start a new file")
    if stale := stale_arms(record):
        raise ValueError(f"the record's arms {stale} are not trained as the study "
                         "trains them now. Fix: start a new file")
    return record
