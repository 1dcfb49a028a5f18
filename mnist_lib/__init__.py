"""mnist_lib: the library behind the book "A small CNN for MNIST, step by step".

The public names are imported from here (`from mnist_lib import fit, Model_2,
receptive_field`). A file at the top is one the chapters import by name; a
folder holds the parts behind them.

The problem and the recipe
- target:  `TARGET` (>= 99.4% in each of the last 3 of at most 15 epochs,
           < 8,000 parameters), `Target` for variants
- config:  `TrainConfig`, `recipe` (each model's training config)

Digits and nets
- data, augmentation, digit: `load_mnist`, `MNIST`; `augment` (rotate, shift,
           zoom a batch on the device); `read_digit` (any image made an MNIST digit)
- models, summary: `Model_1` ... `Model_8`, `get_model`, `count_parameters`;
           torchsummary's table
- rf/:     the receptive-field calculator (`receptive_field`, `RFTable`,
           `effective_rf`)

Training
- plain:   the classic train()/test() loop with DataLoaders (Step 1)
- train:   `fit`, the loop for any model, and `run` (seed, build, train a book
           model); both return a `History`
- evaluation, averaging: `evaluate`, `predict`, `per_class_accuracy`, ...; the
           moving average of the weights
- training/: what `train` uses: `History`, the progress bar, checkpoints
           (`save_checkpoint`, `load_checkpoint`, `Classifier`), CUDA graphs
- hardware: the device, the threads, what a run ran on

Studies (the held-out protocols in results/)
- stats:   paired t interval, McNemar's exact test, Clopper-Pearson
- study:   the one seed runner; protocol, protocol2: the designs and rules of
           results/protocol.md and results/protocol2.md; records: whether a
           saved record still matches the code; bench: the benchmark

The book
- plots, explorer, pad, book/: figures, the RF explorer's presets, the digit
           pad's model, the chapters' helpers
- utils/:  files (atomic writes), seeding, model_spec, layer_kinds, unwrap
- cli:     the command line, `python -m mnist_lib COMMAND`

Nothing runs at import time: no downloads, no global torch settings.
"""

from .augmentation import augment
from .config import RECIPES, TrainConfig, recipe
from .data import MNIST, DataError, load_mnist, normalize, pixel_stats
from .digit import Digit, read_digit
from .evaluation import (confusion_matrix, evaluate, misclassified, per_class_accuracy,
                         predict)
from .training.history import EpochRecord, History
from .training.checkpoint import Classifier, load_checkpoint, save_checkpoint
from .models import (FINAL_MODEL, MODELS, Model_1, Model_2, Model_3, Model_4, Model_5,
                     Model_6, Model_7, Model_8, count_parameters, get_model)
from .rf import RFError, RFTable, Window, effective_rf, receptive_field
from .summary import summary
from .target import TARGET, Target
from .train import DivergenceError, fit, run
from .hardware import best_device
from .utils.seeding import set_seed

__all__ = [
    "augment", "RECIPES", "TrainConfig", "recipe", "MNIST", "DataError", "load_mnist",
    "normalize", "pixel_stats", "Digit", "read_digit", "confusion_matrix", "evaluate",
    "misclassified", "per_class_accuracy", "predict", "EpochRecord", "History",
    "FINAL_MODEL", "MODELS", "Classifier", "Model_1", "Model_2", "Model_3", "Model_4", "Model_5",
    "Model_6", "Model_7", "Model_8", "count_parameters", "get_model", "load_checkpoint",
    "save_checkpoint", "RFError",
    "RFTable", "Window", "effective_rf", "receptive_field", "summary", "TARGET",
    "Target", "DivergenceError", "fit", "run", "best_device", "set_seed",
]
__version__ = "0.1.0"
