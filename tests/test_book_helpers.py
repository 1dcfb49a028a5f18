"""The chapters' helpers (`mnist_lib.book`) that turn a run into table cells."""

from __future__ import annotations

import json
from dataclasses import asdict

from mnist_lib.book import features
from mnist_lib.models import get_model
from mnist_lib.recipes import recipe
from mnist_lib.history import History


def _history(cfg: dict) -> History:
    return History("Model_4", 0, cfg, {})


def test_features_name_the_augmentation_and_its_clean_last_epochs():
    cfg = json.loads(json.dumps(asdict(recipe("Model_4"))))
    row = features(get_model("Model_4"), _history(cfg))
    assert row["aug"] == (f"rotate ±{cfg['rotation']:g}°, shift ±5%, zoom 95–105%, "
                          f"none in the last {cfg['clean_epochs']} epochs")
    assert row["bn"] == "yes" and row["uses_gap"] == "yes" and row["dropout"] == "no"
    # One clean epoch is singular. A run no longer than its clean epochs (a quick
    # build's) never warped an image, so it has no augmentation. An older record
    # has no such field.
    assert features(get_model("Model_4"), _history(cfg | {"clean_epochs": 1}))["aug"].endswith(
        "zoom 95–105%, none in the last 1 epoch")
    assert features(get_model("Model_4"), _history(cfg | {"epochs": 3}))["aug"] == "no"
    assert features(get_model("Model_4"), _history(cfg | {"epochs": 4}))["aug"].endswith(
        "none in the last 3 epochs")
    del cfg["clean_epochs"]
    assert features(get_model("Model_4"), _history(cfg))["aug"].endswith("zoom 95–105%")
    # No augmentation: nothing to switch off.
    plain = json.loads(json.dumps(asdict(recipe("Model_1"))))
    assert features(get_model("Model_1"), _history(plain | {"clean_epochs": 3}))["aug"] == "no"
