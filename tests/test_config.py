"""TrainConfig's checks and the recipes (mnist_lib.config), and the records that quote them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from mnist_lib import config as C
from mnist_lib.config import model_differences, recipe, recipe_differences
from mnist_lib.models import get_model, layer_list

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



def test_recipe_differences_names_the_changed_fields():
    record = {"config": json.loads(json.dumps(asdict(recipe("Model_4", seed=3))))}
    assert recipe_differences(record, "Model_4") == []  # the seed is not the recipe
    record["config"]["lr"] *= 2
    record["config"]["scale"] = [1.0, 1.0]
    assert recipe_differences(record, "Model_4") == ["lr", "scale"]
    # A field the record lacks is a difference, never assumed to match.
    del record["config"]["ema"]
    assert recipe_differences(record, "Model_4") == ["lr", "ema", "scale"]



def test_model_differences_tell_a_changed_model_from_the_recorded_one():
    record = {"layers": layer_list(get_model("Model_5"))}
    assert model_differences(record, "Model_5") == []
    assert model_differences(record, "Model_4") == ["layers"]
    # The same shapes with another activation, or another padding, is another model.
    for old, new in (("GELU", "ReLU"), ("padding=(1, 1)", "padding=(0, 0)")):
        changed = [r.replace(old, new) for r in record["layers"]]
        assert changed != record["layers"]
        assert model_differences({"layers": changed}, "Model_5") == ["layers"]



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
