"""mnist_lib: the library behind the book "A small CNN for MNIST, step by step".

Public API (see each module for details):

- target:  `TARGET`, the book's target (>= 99.4% in each of the last 3 of at
           most 15 epochs, < 8,000 parameters), and `Target` for variants
- data:    `load_mnist`, `MNIST`, `pixel_stats`
- augmentation: `augment` (rotate, shift and zoom a batch on the device)
- models:  `Model_1` ... `Model_5`, `get_model`, `count_parameters`
- checkpoint: `save_checkpoint`, `load_checkpoint` (any model; a `Classifier`
           for raw images)
- digit:   `read_digit` (an image of any size made an MNIST digit)
- config:  `TrainConfig`, `recipe` (each model's training config)
- records: whether a saved record still matches a config, a recipe, a model
- train:   `run` (seed, build, train a book model), `fit` (the loop, for any
           model: a net of your own trains here); both return a `History`
- evaluation: `evaluate`, `predict`, `per_class_accuracy`, ...
- rf:      `receptive_field`, `RFTable`, `effective_rf` (a package)
- plain:   the classic train()/test() loop with DataLoaders (Step 1)
- layer_kinds: the one table of layer kinds (conv, pools, linear) that
           plots, explorer, summary and models read
- pad:     the final model as the page "Draw a digit" runs it in the
           browser (its layers and weights as JSON, test digits)
- plots, summary, seeds, bench, book: figures, torchsummary's table, the
           seed study, the benchmark, the chapters' helpers
- stats:   the statistics the studies use (paired t interval, McNemar's
           exact test, Clopper-Pearson bound)
- study, protocol: the held-out studies of results/protocol.md (the ladder,
           the ablation, the confirmation, the final test)
- cli:     the command line, `python -m mnist_lib COMMAND`

Nothing runs at import time: no downloads, no global torch settings.
"""

from .augmentation import augment
from .config import RECIPES, TrainConfig, recipe
from .data import MNIST, DataError, load_mnist, normalize, pixel_stats
from .digit import Digit, read_digit
from .evaluation import (confusion_matrix, evaluate, misclassified, per_class_accuracy,
                         predict)
from .history import EpochRecord, History
from .checkpoint import Classifier, load_checkpoint, save_checkpoint
from .models import (FINAL_MODEL, MODELS, Model_1, Model_2, Model_3, Model_4, Model_5,
                     count_parameters, get_model)
from .rf import RFError, RFTable, Window, effective_rf, receptive_field
from .summary import summary
from .target import TARGET, Target
from .train import DivergenceError, fit, run
from .hardware import best_device
from .seeding import set_seed

__all__ = [
    "augment", "RECIPES", "TrainConfig", "recipe", "MNIST", "DataError", "load_mnist",
    "normalize", "pixel_stats", "Digit", "read_digit", "confusion_matrix", "evaluate",
    "misclassified", "per_class_accuracy", "predict", "EpochRecord", "History",
    "FINAL_MODEL", "MODELS", "Classifier", "Model_1", "Model_2", "Model_3", "Model_4", "Model_5",
    "count_parameters", "get_model", "load_checkpoint", "save_checkpoint", "RFError",
    "RFTable", "Window", "effective_rf", "receptive_field", "summary", "TARGET",
    "Target", "DivergenceError", "fit", "run", "best_device", "set_seed",
]
__version__ = "0.1.0"
