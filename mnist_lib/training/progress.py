"""What a run prints while an epoch trains: a progress bar (tqdm) in a
terminal or notebook, on stderr (so that `> log` keeps the results, not the
bar's every refresh), one line per epoch in a static build (the book sets
`MNIST_PROGRESS=static`, where every refresh of a bar would be saved as a
line of its own), or nothing."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class EpochProgress:
    """The progress of one epoch of `steps` optimizer steps."""

    def __init__(self, epoch: int, steps: int, enabled: bool = True) -> None:
        self.epoch, self.steps, self.enabled = epoch, steps, enabled
        self.static = enabled and os.environ.get("MNIST_PROGRESS") == "static"
        self.start = time.perf_counter()
        self.bar = tqdm(total=steps, desc=f"Epoch {epoch:2d}",
                        disable=not enabled or self.static, file=sys.stderr,
                        ncols=100, mininterval=1.0, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar:20}| "
                                   "{n_fmt}/{total_fmt} [{elapsed}<{remaining}"
                                   "{postfix}]")

    def step(self, loss: float | None = None, accuracy: float | None = None) -> None:
        """One step done; with `loss` and `accuracy`, show them too."""
        if loss is not None:
            self.bar.set_postfix_str(f"Loss={loss:.4f} Accuracy={accuracy:.2f}",
                                     refresh=False)
        self.bar.update(1)

    def close(self, loss: float | None = None, accuracy: float | None = None) -> None:
        """The epoch is over (or failed, without numbers)."""
        self.bar.close()
        if self.static and loss is not None:
            print(f"Epoch {self.epoch:2d}: {self.steps}/{self.steps} steps "
                  f"[{time.perf_counter() - self.start:5.1f} s] Loss={loss:.4f} "
                  f"Accuracy={accuracy:.2f}")
