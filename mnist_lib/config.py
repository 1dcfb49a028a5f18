"""What a training run depends on: `TrainConfig`, its checks, and each book
model's recipe (`recipe`), the config the book, the CLIs, the benchmark and
the seed study all train it with; `describe` says a recipe in words, and
`as_json` gives a config as a record saves it (records.py compares the two).

    >>> from mnist_lib.config import recipe
    >>> recipe("Model_4", seed=1).lr      # Model_4's recipe, with seed 1
    0.2
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .target import TARGET

# The mark of a run option in TrainConfig (see there).
RUN = {"run": True}
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULERS = ("none", "onecycle")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a run depends on; saved with every result (`asdict`)."""

    epochs: int = TARGET.max_epochs  # 15: the most the target allows
    batch_size: int = 128           # images per optimizer step
    optimizer: str = "sgd"          # sgd | adam | adamw
    lr: float = 0.05                # peak LR for onecycle, else the constant LR
    momentum: float = 0.9           # SGD only
    weight_decay: float = 0.0       # L2 (SGD, Adam) or decoupled (AdamW)
    scheduler: str = "onecycle"     # none (constant LR) | onecycle (per step)
    pct_start: float = 0.25         # onecycle: fraction of steps spent warming up
    ema: float = 0.0                # decay of an exponential moving average of the
                                    # weights, evaluated instead of them (0 = off)
    bn_recompute: int = 0           # before each test, recompute the tested model's
                                    # BatchNorm statistics on this many clean training
                                    # images (0 = keep the running averages)
    rotation: float = 0.0           # max rotation in degrees (0 = no augmentation)
    translate: float = 0.0          # max shift, as a fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range
    clean_epochs: int = 0           # the last N epochs (all, if N >= epochs) train on
                                    # the images as they are: no rotation, shift, zoom
    label_smoothing: float = 0.0    # the loss's target: 1 - this on the label, the
                                    # rest spread evenly over all 10 classes
    # Run options (`RUN`), not the recipe: which run of it, where, on how much
    # data, how verbosely; the recipes set none of them. (Kept in this order,
    # the order of every recorded config.)
    seed: int = field(default=0, metadata=RUN)
    device: str = field(default="auto", metadata=RUN)  # CUDA, then MPS, then CPU
    eval_batch_size: int = field(default=500, metadata=RUN)  # fastest on a CPU
    # On a GPU: replay each step as a CUDA graph (SGD; mnist_lib.training.cuda_graphs), and
    # torch.compile the model. Measured on an H200 (results/bench_loops_cuda.json):
    # graphs 5.5x the eager loop's epochs, compile 0.85x; so graphs on, compile off.
    cuda_graphs: bool = field(default=True, metadata=RUN)
    compile: bool = field(default=False, metadata=RUN)
    precision: str = "auto"         # (recipe) fp32 | bf16 (autocast; weights stay
                                    # fp32) | auto: bf16 on CPUs with it, else fp32
    n_train: int | None = field(default=None, metadata=RUN)  # the first n images
    n_test: int | None = field(default=None, metadata=RUN)  # the first n test images
    progress: bool = field(default=True, metadata=RUN)  # bars, a line an epoch

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler {self.scheduler!r} is not one of {SCHEDULERS}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if not 0 <= self.ema < 1:
            problems.append(f"ema must be in [0, 1) (e.g. 0.999), got {self.ema}")
        if self.bn_recompute < 0:
            problems.append(f"bn_recompute must be >= 0 (a number of images), "
                            f"got {self.bn_recompute}")
        if self.rotation < 0:
            problems.append(f"rotation must be >= 0 (degrees), got {self.rotation}")
        if not 0 <= self.translate < 1:
            problems.append("translate must be in [0, 1) (a fraction of the image), "
                            f"got {self.translate}")
        self.scale = tuple(self.scale)  # a list (read from JSON, say) too
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale must be (low, high) with 0 < low <= high, e.g. "
                            f"(0.95, 1.05), got {self.scale}")
        # These torch itself refuses, but only once the data are loaded.
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.pct_start < 1:
            problems.append(f"pct_start must be in (0, 1), got {self.pct_start}")
        if self.eval_batch_size < 1:
            problems.append(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1) (e.g. 0.1), got "
                            f"{self.label_smoothing}")
        if self.clean_epochs < 0:
            problems.append(f"clean_epochs must be >= 0, got {self.clean_epochs}")
        for name in ("n_train", "n_test"):
            # A negative n would slice from the end: all but n images, silently.
            n = getattr(self, name)
            if n is not None and n < 1:
                problems.append(f"{name} must be >= 1 (or None for all), got {n}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))


def run_options() -> list[str]:
    """TrainConfig's run options: which run, where, on how much data, how
    verbosely; the other fields are the recipe (hyperparameters)."""
    return [f.name for f in fields(TrainConfig) if f.metadata.get("run")]


def describe(cfg: TrainConfig) -> str:
    """What a recipe trains with, in words, one idea a line: the fields that
    matter for learning (epochs, batch, optimizer, learning rate, weight
    decay, augmentation, weight average), not where or how verbosely."""
    opt = {"sgd": f"SGD with momentum {cfg.momentum:g}", "adam": "Adam",
           "adamw": "AdamW"}[cfg.optimizer]
    lines = [f"{cfg.epochs} epochs, {cfg.batch_size} images a step, {opt}"]
    if cfg.scheduler == "onecycle":
        lines.append(f"one-cycle learning rate, peak {cfg.lr:g} "
                     f"(warm-up: {100 * cfg.pct_start:g}% of the steps)")
    else:
        lines.append(f"constant learning rate {cfg.lr:g}")
    lines.append(f"weight decay {cfg.weight_decay:g}" if cfg.weight_decay
                 else "no weight decay")
    warps = []
    if cfg.rotation:
        warps.append(f"rotate up to ±{cfg.rotation:g}°")
    if cfg.translate:
        warps.append(f"shift up to ±{100 * cfg.translate:g}%")
    if tuple(cfg.scale) != (1.0, 1.0):
        warps.append(f"zoom {100 * cfg.scale[0]:g}–{100 * cfg.scale[1]:g}%")
    clean = augmented_epochs(cfg.epochs, cfg.clean_epochs)
    if warps and clean:
        lines.append("augmentation: " + ", ".join(warps))
        if cfg.clean_epochs:
            lines.append(f"no augmentation in the last {cfg.clean_epochs} epochs")
    else:
        lines.append("no augmentation")
    if cfg.label_smoothing:
        lines.append(f"label smoothing {cfg.label_smoothing:g}")
    if cfg.ema:
        lines.append(f"tested: an average of the weights (EMA {cfg.ema:g})")
    if cfg.bn_recompute:
        lines.append(f"tested with BatchNorm statistics measured again on "
                     f"{cfg.bn_recompute:,} images")
    return "\n".join(lines)


def augmented_epochs(epochs: int, clean_epochs: int) -> int:
    """How many epochs, from the first, train on warped digits: all but the last
    `clean_epochs` (none if clean_epochs >= epochs). Epoch k (from 1) is clean
    when k > augmented_epochs(...); it is also the index of the first clean one."""
    return max(epochs - clean_epochs, 0)


class ScheduleWarning(UserWarning):
    """A run's LR schedule was adapted to its length (`onecycle_warmup`)."""


def onecycle_warmup(cfg: TrainConfig, steps: int) -> tuple[float, str]:
    """The pct_start that torch's OneCycleLR gets in a run of `steps` optimizer
    steps, and a note that says why where it is not `cfg.pct_start` ("" where
    it is, the case of every run but the one below).

    A warm-up (pct_start x steps) of exactly 1 step makes OneCycleLR divide
    by zero; a short run meets it (4 steps, a quarter of them warm-up). That
    warm-up becomes 2 steps: the LR starts at its lowest and peaks at the
    second step. A run of 2 steps has no room for that: it has no warm-up,
    and its LR starts near the peak."""
    if cfg.scheduler != "onecycle" or cfg.pct_start * steps - 1 != 0:
        # Not torch's failing case (its phase's end step, pct x steps - 1, is 0).
        return cfg.pct_start, ""
    pct_start, how = (2 / steps, "2 steps") if steps > 2 else (0.5 / steps, "none")
    return pct_start, (
        f"onecycle cannot warm the LR up over exactly 1 step (pct_start x steps = "
        f"{cfg.pct_start:g} x {steps}), on which torch's OneCycleLR divides by "
        f"zero: this run's warm-up is {how}, as with pct_start={pct_start:g}")


# ----------------------------------------------------------------- recipes
# Step 3's augmentation: each training digit rotated by up to 7 degrees,
# shifted by up to 5% and zoomed by 95-105%, drawn anew each epoch.
WARP = dict(rotation=7.0, translate=0.05, scale=(0.95, 1.05))
NO_WARP = dict(rotation=0.0, translate=0.0, scale=(1.0, 1.0))

# Step 2's recipe: a constant learning rate of 0.05 (BatchNorm allows it).
STEP2 = TrainConfig(lr=0.05, scheduler="none")

# Step 3's recipe, the final one, chosen on held-out digits by the rule of
# results/protocol.md: a one-cycle learning rate to a peak of 0.2, 128 images
# a step, and augmentation (rotate up to 7 degrees, shift up to 5%, zoom
# 95-105%). What the ladder tried and left out (dropout, batch 256, clean
# last epochs, weight decay, an average of the weights) keeps its fields.
STEP3 = TrainConfig(lr=0.2, scheduler="onecycle", **WARP)

# Round 2's recipe, chosen on held-out digits by the rule of
# results/protocol2.md for Model_8's layers: Step 3's recipe with a peak of
# 0.4 and a shorter warm-up (15% of the steps), so a longer anneal.
ROUND2 = replace(STEP3, lr=0.4, pct_start=0.15)

# Each model's recipe: the best the book trains it with. Round 1's final
# model is Model_2's layers with Step 3's recipe (Step 2 trains it with
# STEP2); round 2's is Model_8's with ROUND2.
RECIPES: dict[str, TrainConfig] = {
    # Step 1: plain SGD, constant LR, no augmentation: the baseline.
    "Model_1": TrainConfig(lr=0.01, scheduler="none"),
    "Model_2": STEP3,
    "Model_3": STEP2,
    "Model_4": STEP3,
    "Model_5": STEP3,
    "Model_8": ROUND2,
    "Starter": STEP3,  # the capstone's starter, with round 1's recipe
    "StarterFull": STEP3,  # the capstone's worked step, the same recipe
}


def recipe(model: str, **overrides) -> TrainConfig:
    """The recipe for `model`, with any field overridden.

    Example: `recipe("Model_4", seed=1)` is Model_4's recipe with seed 1.
    """
    if model not in RECIPES:
        raise ValueError(f"no recipe for {model!r}; known: {', '.join(RECIPES)}")
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
    return replace(RECIPES[model], **overrides)


def as_json(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """A config as a record holds it: through JSON, so that tuples compare
    equal to the lists a saved record has."""
    return json.loads(json.dumps(cfg if isinstance(cfg, dict) else asdict(cfg)))
