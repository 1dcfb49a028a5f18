"""TrainConfig's checks and the recipes (mnist_lib.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_lib import config as C
from mnist_lib.config import recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kw, msg", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(optimizer="rmsprop"), "optimizer 'rmsprop'"),
    (dict(scheduler="cosine"), "scheduler 'cosine'"),
    (dict(lr=-1.0), "lr must be > 0"),
    (dict(ema=1.0), "ema must be in"),
    (dict(precision="fp16"), "precision 'fp16' is not one of"),
    (dict(bn_recompute=-1), "bn_recompute must be >= 0"),
    (dict(clean_epochs=-1), "clean_epochs must be >= 0"),
    (dict(rotation=-5), r"rotation must be >= 0 \(degrees\)"),
    (dict(translate=2.0), r"translate must be in \[0, 1\)"),
    (dict(scale=(1.1, 0.9)), r"0 < low <= high, e.g. \(0.95, 1.05\), got \(1.1, 0.9\)"),
    (dict(scale=(0.0, 1.0)), r"0 < low <= high"),
    (dict(scale=(0.9, 1.0, 1.1)), r"0 < low <= high"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(weight_decay=-1e-4), "weight_decay must be >= 0"),
    (dict(pct_start=1.0), r"pct_start must be in \(0, 1\)"),
    (dict(eval_batch_size=0), "eval_batch_size must be >= 1"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        C.TrainConfig(**kw)



def test_augmented_epochs_are_all_but_the_clean_ones():
    # The trainer, the book's table and Step 3 all count clean epochs with it.
    assert [C.augmented_epochs(3, c) for c in (0, 1, 2, 3, 5)] == [3, 2, 1, 0, 0]



def test_recipe_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown TrainConfig field.*lerning_rate"):
        recipe("Model_4", lerning_rate=0.1)



def test_describe_says_what_a_recipe_trains_with_one_idea_a_line():
    from mnist_lib.config import describe

    plain = describe(recipe("Model_1")).splitlines()
    assert plain == ["15 epochs, 128 images a step, SGD with momentum 0.9",
                     "constant learning rate 0.01", "no weight decay",
                     "no augmentation"]
    final = describe(recipe("Model_4", clean_epochs=15))
    assert "no augmentation" in final, "every epoch clean: nothing is warped"
    cfg = recipe("Model_1", scheduler="onecycle", lr=0.2, rotation=7.0,
                 clean_epochs=3, weight_decay=5e-4, optimizer="adamw")
    lines = describe(cfg).splitlines()
    assert lines[0].endswith("AdamW") and "peak 0.2" in lines[1]
    assert lines[2] == "weight decay 0.0005"
    assert lines[3:] == ["augmentation: rotate up to ±7°",
                         "no augmentation in the last 3 epochs"]
    assert all(len(line) <= 76 for line in describe(recipe("Model_4")).splitlines())


def test_run_options_stand_apart_from_the_recipe():
    """TrainConfig marks its run options (which run, where, on how much data,
    how verbosely); no recipe sets one, and `train -h` shows them apart."""
    from dataclasses import fields

    from mnist_lib import cli

    run = C.run_options()
    assert {"seed", "device", "n_train", "n_test", "progress"} <= set(run)
    assert not {"lr", "epochs", "batch_size", "rotation", "precision"} & set(run)
    defaults = C.TrainConfig()
    for name, cfg in C.RECIPES.items():
        assert all(getattr(cfg, f) == getattr(defaults, f) for f in run), name
    groups = {g.title: {a.dest for a in g._group_actions}
              for g in cli.train_parser("mnist-train")._action_groups}
    recipe_flags = {f.name for f in fields(C.TrainConfig)} - set(run)
    assert groups["the recipe (what a run learns)"] == recipe_flags
    assert groups["run options (which run, where, on how much data)"] == \
        set(run) - {"progress"}  # --quiet, with the command's own options
