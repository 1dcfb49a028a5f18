"""What a training run returns: a `History` of per-epoch records (`EpochRecord`)
with what is needed to reproduce them, saved and loaded as JSON. Whether a run
meets the book's target is `History.meets_target` (the rule is
`mnist_lib.target.TARGET`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..target import TARGET, Target
from ..utils.files import atomic_write_json


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


@dataclass
class History:
    """What `fit` returns: per-epoch records plus what is needed to reproduce them."""

    model: str
    params: int
    config: dict[str, Any]
    env: dict[str, Any]
    epochs: list[EpochRecord] = field(default_factory=list)
    # The model's layers as text (`models.layer_list`).
    layers: list[str] = field(default_factory=list)
    # The pixel mean and std the inputs were normalised with (a checkpoint
    # keeps them, so that the model can be given raw images).
    normalization: dict[str, float] = field(default_factory=dict)

    def column(self, name: str) -> list[float]:
        """One field over the epochs, e.g. `history.column("test_acc")`."""
        return [getattr(e, name) for e in self.epochs]

    def last_test_acc(self, last: int = TARGET.last) -> list[float]:
        """Test accuracies of the last `last` epochs."""
        return self.column("test_acc")[-last:]

    def meets_target(self, target: Target = TARGET, **changes) -> bool:
        """Whether this run meets `target` (the book's, unless given), with any
        of its numbers changed, e.g. `meets_target(param_limit=None)` for the
        accuracy rule alone. See `Target.met_by`."""
        return target.but(**changes).met_by(self.column("test_acc"), self.params)

    def first_epoch_meeting(self, target: Target = TARGET) -> int | None:
        """The first epoch at which this run met `target`'s accuracy rule
        (`Target.first_epoch`), or None."""
        return target.first_epoch(self.column("test_acc"))

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
                   d["layers"], d["normalization"])

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
