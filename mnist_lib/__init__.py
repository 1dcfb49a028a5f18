"""mnist_lib: the library behind the book "Designing a small CNN for MNIST".

Public API (see each module for details):

- data:    `load_mnist`, `MNIST`, `pixel_stats`
- augmentation: `augment` (rotate, shift and zoom a batch on the device)
- models:  `Model_1` ... `Model_5`, `get_model`, `count_parameters`,
           `save_checkpoint`, `load_checkpoint`
- rf:      `receptive_field`, `RFTable`, `effective_rf`
- train:   `TrainConfig`, `fit` (returns a `History`, from history)
- step:    one training step, eager or as a CUDA graph
- evaluation: `evaluate`, `predict`, `per_class_accuracy`, ...
- recipes: `recipe` (each model's training config)
- plots:   curves, predictions, misclassified digits, per-class accuracy
- summary: `summary` (torchsummary's table as text, on any device)

Nothing runs at import time: no downloads, no global torch settings.
"""

from importlib import import_module

from .models import (FINAL_MODEL, MODELS, Model_1, Model_2, Model_3, Model_4, Model_5,
                     count_parameters, get_model, load_checkpoint, save_checkpoint)
from .summary import summary  # imported now: a lazy name would be the module's
from .utils import best_device, set_seed

# Names from the modules that are also command-line programs (`python -m
# mnist_lib.data`, `.train`, `.rf`, ...) load on first use: importing those modules here
# would make `python -m` warn that the module was imported twice.
_LAZY = {
    "data": ["MNIST", "DataError", "load_mnist", "normalize", "pixel_stats"],
    "augmentation": ["augment"],
    "train": ["TrainConfig", "fit", "DivergenceError"],
    "history": ["History", "EpochRecord"],
    "evaluation": ["evaluate", "predict", "per_class_accuracy", "confusion_matrix",
                   "misclassified"],
    "recipes": ["RECIPES", "recipe", "run"],
    "rf": ["receptive_field", "RFTable", "RFError", "effective_rf", "Window"],
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["FINAL_MODEL", "MODELS", "Model_1", "Model_2", "Model_3", "Model_4",
           "Model_5", "count_parameters", "get_model", "load_checkpoint",
           "save_checkpoint", "summary", "best_device", "set_seed",
           *_WHERE]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'mnist_lib' has no attribute {name!r}")
