"""Whether a saved record is still what the library trains: the fields in
which its config differs from a config or a model's recipe, and whether its
layers are still the model's. The studies resume and reuse runs by these;
the book says by them whether a recorded number is still its model's.

    >>> from mnist_lib.config import as_json, recipe
    >>> from mnist_lib.records import recipe_differences
    >>> recipe_differences({"config": as_json(recipe("Model_4", lr=0.1))}, "Model_4")
    ['lr']
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig, as_json, recipe
from .models import get_model, layer_list

# Fields that say where or how verbosely a run happened, not what it trained:
# fewer than config.run_options(), since a subset (n_train, n_test) changes
# what a run learns and is tested on, and a record made with CUDA graphs or
# another evaluation batch is kept apart until shown to be the same.
_NOT_RECIPE = ("seed", "device", "progress")

# Fields added to TrainConfig after records were made, each with the value that
# every run before it trained with: a record without one is read as that. A
# record that lacks any other field differs from every config in it.
_ADDED = {"label_smoothing": 0.0, "compile": False}


def config_differences(config: TrainConfig, recorded: dict[str, Any]) -> list[str]:
    """The fields in which a `recorded` config differs from `config` (seed,
    device and progress aside); empty when a run trained with `config`."""
    now, then = as_json(config), as_json(recorded)
    then = {k: then.get(k, _ADDED.get(k)) for k in now}
    return [k for k in now if k not in _NOT_RECIPE and then[k] != now[k]]


def recipe_differences(record: dict[str, Any], model: str) -> list[str]:
    """The fields in which a recorded run's `config` differs from `model`'s
    current recipe; empty when it was trained with this recipe."""
    return config_differences(recipe(model), record["config"])


def model_differences(record: dict[str, Any], model: str) -> list[str]:
    """["layers"] when the layers a record's runs trained (`models.layer_list`)
    are not `model`'s as it is now, else empty. With `recipe_differences`, it
    says whether a record's numbers are still the book's model's and recipe's."""
    return [] if record["layers"] == layer_list(get_model(model)) else ["layers"]
