"""The book's target, defined once: at least 99.4% test accuracy in each of
the last 3 epochs of a run of at most 15 epochs, of a model with fewer than
8,000 parameters.

`TARGET` is that target. A variant is the same class with other numbers, e.g.
`TARGET.but(param_limit=None)`, the accuracy rule without the parameter budget.
`History.meets_target` and the seed study apply it; records store it
(`asdict`), so that a record says which rule its passes were judged by.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence


@dataclass(frozen=True)
class Target:
    """A consistency rule: `accuracy` % test accuracy in each of the last
    `last` epochs, within `max_epochs`, with fewer than `param_limit`
    parameters (None lifts a limit)."""

    accuracy: float = 99.4             # % test accuracy, in each of the last epochs
    last: int = 3                      # how many epochs in a row must reach it
    max_epochs: int | None = 15        # the longest run that counts
    param_limit: int | None = 8_000    # a model must have fewer parameters

    def __post_init__(self) -> None:
        if self.last < 1:
            raise ValueError(f"last must be >= 1, got {self.last}")
        if self.max_epochs is not None and self.max_epochs < self.last:
            raise ValueError(f"max_epochs must be >= last ({self.last}), or None "
                             f"for no budget; got {self.max_epochs}")

    def but(self, **changes) -> Target:
        """This target with some numbers changed, e.g. `but(max_epochs=None)`."""
        return replace(self, **changes)

    def over(self, epochs: int, params: int) -> list[str]:
        """What of a run is over the budget, e.g. ["20 epochs"]; empty if none."""
        over = []
        if self.max_epochs is not None and epochs > self.max_epochs:
            over.append(f"{epochs} epochs")
        if self.param_limit is not None and params >= self.param_limit:
            over.append(f"{params:,} parameters")
        return over

    def met_by(self, test_accs: Sequence[float], params: int) -> bool:
        """Whether a run with these per-epoch test accuracies, of a model with
        `params` parameters, meets the target: one lucky epoch does not count,
        a run shorter than `last` epochs cannot, and nor can a run over the
        budget, however accurate."""
        return (not self.over(len(test_accs), params) and len(test_accs) >= self.last
                and all(a >= self.accuracy for a in test_accs[-self.last:]))

    def first_epoch(self, test_accs: Sequence[float]) -> int | None:
        """The first epoch (1-based), within `max_epochs`, that ends `last`
        epochs in a row at or above `accuracy`; None if there is none."""
        within = len(test_accs) if self.max_epochs is None else min(
            len(test_accs), self.max_epochs)
        for end in range(self.last, within + 1):
            if all(a >= self.accuracy for a in test_accs[end - self.last:end]):
                return end
        return None

    def text(self) -> str:
        """The rule in words, e.g. ">= 99.4% in each of the last 3 of at most 15
        epochs, < 8,000 parameters"; a limit that is None is left out."""
        within = f" of at most {self.max_epochs}" if self.max_epochs else ""
        params = f", < {self.param_limit:,} parameters" if self.param_limit else ""
        return (f">= {self.accuracy:g}% in each of the last {self.last}{within} "
                f"epochs{params}")

    def over_budget(self, epochs: int, params: int) -> str:
        """Empty for a run of `epochs` epochs of a model with `params`
        parameters within the budget; otherwise a line that says what is over
        it (the CLIs print it before training, so that such a run is not read
        as a near miss)."""
        over = self.over(epochs, params)
        if not over:
            return ""
        budget = [f"at most {self.max_epochs} epochs" if self.max_epochs else "",
                  f"fewer than {self.param_limit:,} parameters"
                  if self.param_limit else ""]
        return (f"note: {' and '.join(over)}: over the target's budget "
                f"({', '.join(b for b in budget if b)}), so no such run meets the "
                "target, however accurate")


TARGET = Target()
