"""Each model's training recipe: the `TrainConfig` the book trains it with.

Keeping recipes here (not in the chapters) means the CLI, the benchmark, the
seed runner and the book all train a model the same way.
"""

from __future__ import annotations

from dataclasses import replace

import torch.nn as nn

from .data import MNIST
from .models import get_model
from .train import History, TrainConfig, fit
from .utils import set_seed

RECIPES: dict[str, TrainConfig] = {
    # Step 1: plain SGD, constant LR, no augmentation: the baseline.
    "Model_1": TrainConfig(lr=0.01, scheduler="none"),
    # Step 2: BatchNorm allows a larger LR.
    "Model_2": TrainConfig(lr=0.05, scheduler="none"),
    "Model_3": TrainConfig(lr=0.05, scheduler="none"),
    # Step 3: rotation augmentation, a one-cycle LR schedule, weight decay, and
    # the test accuracy of an average of the weights (EMA) rather than the last.
    "Model_4": TrainConfig(lr=0.1, scheduler="onecycle", rotation=7.0, weight_decay=5e-4,
                           ema=0.999),
    "Model_5": TrainConfig(lr=0.1, scheduler="onecycle", rotation=7.0, weight_decay=5e-4,
                           ema=0.999),
}


def recipe(model: str, **overrides) -> TrainConfig:
    """The recipe for `model`, with any field overridden, e.g. `recipe("Model_4", seed=1)`."""
    if model not in RECIPES:
        raise ValueError(f"no recipe for {model!r}; known: {', '.join(RECIPES)}")
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
    return replace(RECIPES[model], **overrides)


def run(model: str, data: MNIST, config: TrainConfig | None = None, **overrides
        ) -> tuple[nn.Module, History]:
    """Seed, build `model` by name and train it with its recipe; return both.

    Seeding *before* building makes the initial weights part of the seed too:
    `run("Model_4", data, seed=1)` is reproducible end to end.
    """
    cfg = replace(config, **overrides) if config else recipe(model, **overrides)
    set_seed(cfg.seed)
    net = get_model(model)
    return net, fit(net, data, cfg, name=model)
