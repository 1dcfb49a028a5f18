"""The evidence for Step 3: an ablation study. Step 3 changes four things at
once; here each is taken out of Model_4's recipe in turn, and every variant
is trained with the same seeds and judged by the same rule as the seed study
(`mnist_lib.seeds`), beside the full recipe.

    python -m mnist_lib ablate --seeds 5 --out results/ablation_Model_4.json
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .config import TrainConfig, config_differences, recipe
from .data import MNIST
from .models import get_model, layer_list
from .seeds import run_seeds
from .target import TARGET
from .utils import atomic_write_json

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
    """The full recipe, one variant per ingredient of Step 3, then the full
    recipe judged on a validation split instead of the test set."""
    full, earlier = recipe(BASE), recipe(EARLIER)
    no_warp = dict(rotation=0.0, translate=0.0, scale=(1.0, 1.0), clean_epochs=0)
    return [
        Variant("full recipe", "nothing", BASE, full),
        Variant("no transition block",
                f"the transition block and wider second block ({EARLIER}'s layers)",
                EARLIER, full),
        Variant("no augmentation", "rotation, shift and zoom", BASE,
                replace(full, **no_warp)),
        Variant("no clean last epochs", "the last epochs without warping", BASE,
                replace(full, clean_epochs=0)),
        Variant(f"{EARLIER}'s schedule",
                "one-cycle learning rate and weight decay (back to a constant "
                f"rate {earlier.lr:g} at batch {earlier.batch_size})", BASE,
                replace(full, scheduler=earlier.scheduler, lr=earlier.lr,
                        weight_decay=earlier.weight_decay,
                        batch_size=earlier.batch_size)),
        Variant("no weight average", "EMA of the weights and the BatchNorm recompute",
                BASE, replace(full, ema=0.0, bn_recompute=0)),
        Variant(VALIDATION, "nothing", BASE, full, holdout=True),
    ]


def run_ablation(data: MNIST, seeds: list[int], out: str | Path | None = None,
                 chosen: list[str] | None = None,
                 report: Callable[[str], None] = print, **overrides) -> dict[str, Any]:
    """Train every variant (or those named in `chosen`) with each seed; return
    the record. With `out`, the record is written (atomically) after each
    variant, so that an interrupted study keeps what it finished. `overrides`
    change every variant's config alike (a quick check: epochs, n_train)."""
    arms = [v for v in variants() if chosen is None or v.name in chosen]
    if chosen is not None and len(arms) != len(chosen):
        known = ", ".join(v.name for v in variants())
        raise ValueError(f"unknown variant in {chosen}; the variants are: {known}")
    record: dict[str, Any] = {"base": BASE, "seeds": list(seeds),
                              "target": asdict(TARGET), "variants": []}
    t0 = time.perf_counter()
    for arm in arms:
        report(f"{arm.name}: {arm.model}" + ("" if arm.removed == "nothing"
                                              else f", without {arm.removed}"))
        summary = run_seeds(arm.model, data.holdout() if arm.holdout else data,
                            seeds, config=arm.config, progress=False, **overrides)
        env = summary.pop("env")
        record["env"] = env  # the same machine for every arm
        record["variants"].append({"name": arm.name, "removed": arm.removed,
                                   "judged_on": "validation" if arm.holdout
                                   else "test", **summary})
        report(f"  passed {summary['passed']}/{summary['n_seeds']}, final mean "
               f"{summary['final_mean']:.3f} ± {summary['final_std']:.3f}")
        record["wall_seconds"] = time.perf_counter() - t0
        if out is not None:
            atomic_write_json(out, record)
    return record


def summarise(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm of an ablation `record`: the mean over seeds of each
    seed's mean test accuracy in the last epochs (`last3`), its standard
    deviation across seeds, the passes, and the change against the full
    recipe, paired by seed (`delta`, with its standard error `delta_se`: the
    seeds' differences vary less than their accuracies, since a seed fixes
    the data order and the initial weights of both runs)."""
    def last3(arm: dict) -> dict[int, float]:
        return {s["seed"]: statistics.fmean(s["last"]) for s in arm["seeds"]}

    full = next(last3(a) for a in record["variants"] if a["name"] == "full recipe")
    rows = []
    for arm in record["variants"]:
        mine = last3(arm)
        diffs = [mine[seed] - full[seed] for seed in mine if seed in full]
        n = len(diffs)
        rows.append({
            "name": arm["name"], "removed": arm["removed"],
            "judged_on": arm["judged_on"],
            "last3": statistics.fmean(mine.values()),
            "std": statistics.stdev(mine.values()) if len(mine) > 1 else 0.0,
            "passed": arm["passed"], "n_seeds": arm["n_seeds"],
            "delta": statistics.fmean(diffs) if n else math.nan,
            "delta_se": statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.nan,
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
        if arm["model"] != v.model:
            why.append("model")
        elif arm["layers"] != layer_list(get_model(v.model)):
            why.append("layers")
        if why:
            stale[arm["name"]] = why
    return stale
