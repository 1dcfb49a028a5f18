"""The chapters' helpers (`mnist_lib.book`) that turn a run into table cells."""

from __future__ import annotations

import json
from dataclasses import asdict

from mnist_lib.book import features
from mnist_lib.models import get_model
from mnist_lib.recipes import recipe
from mnist_lib.train import History


def _history(cfg: dict) -> History:
    return History("Model_4", 0, cfg, {})


def test_features_name_the_augmentation_and_its_clean_last_epochs():
    cfg = json.loads(json.dumps(asdict(recipe("Model_4"))))
    row = features(get_model("Model_4"), _history(cfg))
    assert row["aug"] == (f"rotate ±{cfg['rotation']:g}°, shift ±5%, zoom 95–105%, "
                          f"none in the last {cfg['clean_epochs']} epochs")
    assert row["bn"] == "yes" and row["uses_gap"] == "yes" and row["dropout"] == "no"
    # A one-epoch run has one clean epoch; an older record has no such field.
    assert features(get_model("Model_4"), _history(cfg | {"epochs": 1}))["aug"].endswith(
        "none in the last 1 epoch")
    del cfg["clean_epochs"]
    assert features(get_model("Model_4"), _history(cfg))["aug"].endswith("zoom 95–105%")
    # No augmentation: nothing to switch off.
    plain = json.loads(json.dumps(asdict(recipe("Model_1"))))
    assert features(get_model("Model_1"), _history(plain | {"clean_epochs": 3}))["aug"] == "no"
