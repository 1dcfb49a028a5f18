"""What a training run returns: a `History` of per-epoch records (`EpochRecord`)
with what is needed to reproduce them, saved and loaded as JSON, and the
book's consistency rule (`History.meets_target`, `first_epoch_meeting`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .utils import atomic_write_json


@dataclass
class EpochRecord:
    """One epoch's numbers. Accuracies are percentages."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float           # learning rate at the end of the epoch
    seconds: float      # training + evaluation wall time


# The target's budget: met within 15 epochs, with fewer than 8,000 parameters.
MAX_EPOCHS = 15
PARAM_LIMIT = 8_000


def _check_rule(last: int, max_epochs: int | None) -> None:
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    if max_epochs is not None and max_epochs < last:
        raise ValueError(f"max_epochs must be >= last ({last}), or None for no "
                         f"budget; got {max_epochs}")


def _over(epochs: int, params: int, max_epochs: int | None,
          param_limit: int | None) -> list[str]:
    """What of a run is over its budget, e.g. ["20 epochs"]; None: no limit."""
    over = []
    if max_epochs is not None and epochs > max_epochs:
        over.append(f"{epochs} epochs")
    if param_limit is not None and params >= param_limit:
        over.append(f"{params:,} parameters")
    return over


def over_budget(epochs: int, params: int) -> str:
    """Empty for a run of `epochs` epochs of a model with `params` parameters
    within the target's budget; otherwise a line that says what is over it
    (the CLIs print it before training, so that such a run is not read as a
    near miss)."""
    over = _over(epochs, params, MAX_EPOCHS, PARAM_LIMIT)
    if not over:
        return ""
    return (f"note: {' and '.join(over)}: over the target's budget (at most "
            f"{MAX_EPOCHS} epochs, fewer than {PARAM_LIMIT:,} parameters), so no "
            f"such run meets the target, however accurate")


def rule_text(threshold: float = 99.4, last: int = 3,
              max_epochs: int | None = MAX_EPOCHS,
              param_limit: int | None = PARAM_LIMIT) -> str:
    """The rule `History.meets_target` applies, in words, e.g. ">= 99.4% in
    each of the last 3 of at most 15 epochs, < 8,000 parameters"; a limit
    that is None is left out."""
    within = f" of at most {max_epochs}" if max_epochs else ""
    params = f", < {param_limit:,} parameters" if param_limit else ""
    return f">= {threshold}% in each of the last {last}{within} epochs{params}"


def first_epoch_meeting(accs: list[float], threshold: float = 99.4, last: int = 3,
                        max_epochs: int | None = MAX_EPOCHS) -> int | None:
    """The first epoch (1-based), within the first `max_epochs`, ending `last`
    epochs in a row at or above `threshold`, for per-epoch test accuracies
    `accs`; None if there is none. `max_epochs=None` looks at every epoch."""
    _check_rule(last, max_epochs)
    within = len(accs) if max_epochs is None else min(len(accs), max_epochs)
    for end in range(last, within + 1):
        if all(a >= threshold for a in accs[end - last:end]):
            return end
    return None


@dataclass
class History:
    """What `fit` returns: per-epoch records plus what is needed to reproduce them."""

    model: str
    params: int
    config: dict[str, Any]
    env: dict[str, Any]
    epochs: list[EpochRecord] = field(default_factory=list)
    # The model's layers as text (`models.layer_list`); empty in older records.
    layers: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        """One field over the epochs, e.g. `history.column("test_acc")`."""
        return [getattr(e, name) for e in self.epochs]

    def last_test_acc(self, last: int = 3) -> list[float]:
        """Test accuracies of the last `last` epochs."""
        return self.column("test_acc")[-last:]

    def meets_target(self, threshold: float = 99.4, last: int = 3,
                     max_epochs: int | None = MAX_EPOCHS,
                     param_limit: int | None = PARAM_LIMIT) -> bool:
        """True when each of the last `last` epochs reached `threshold` % test
        accuracy, in a run of at most `max_epochs` epochs of a model with fewer
        than `param_limit` parameters (None: no such limit).

        This is the book's consistency rule: one lucky epoch does not count, a
        run shorter than `last` epochs cannot meet it, and nor can a run over
        the budget of 15 epochs and 8,000 parameters, however accurate.
        """
        _check_rule(last, max_epochs)
        accs = self.column("test_acc")
        within = not _over(len(accs), self.params, max_epochs, param_limit)
        return within and len(accs) >= last and all(a >= threshold for a in accs[-last:])

    def first_epoch_meeting(self, threshold: float = 99.4, last: int = 3,
                            max_epochs: int | None = MAX_EPOCHS) -> int | None:
        """The first epoch, within `max_epochs`, at which the last `last`
        epochs all reached `threshold`."""
        return first_epoch_meeting(self.column("test_acc"), threshold, last, max_epochs)

    @property
    def best_train_acc(self) -> float:
        return max(self.column("train_acc"))

    @property
    def best_test_acc(self) -> float:
        return max(self.column("test_acc"))

    @property
    def total_seconds(self) -> float:
        return sum(self.column("seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the history as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        records = [EpochRecord(**e) for e in d["epochs"]]
        return cls(d["model"], d["params"], d["config"], d["env"], records,
                   d.get("layers", []))

    @classmethod
    def load(cls, path: str | Path) -> "History":
        """Read a history written by `save` (or the training CLI's --out)."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as err:  # not JSON, or not a History's
            raise ValueError(
                f"{path} is not a saved History ({type(err).__name__}: {err}).\n"
                "It is cut short or another file: save the run again with "
                "History.save, or the CLI's --out.") from err
