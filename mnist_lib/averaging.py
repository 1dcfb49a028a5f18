"""An exponential moving average (EMA) of a model's weights, `WeightAverage`,
and its warm-up, `ema_decay`. With `TrainConfig(ema=...)` the trainer tests
(and returns) the average rather than the last step's weights, meant to cancel
some of the noise of the last steps (the book's ladder measures what it does).
"""

from __future__ import annotations

import copy
from itertools import chain

import torch
import torch.nn as nn


def ema_decay(step: float | torch.Tensor, decay: float) -> torch.Tensor:
    """The share d that `WeightAverage` keeps of the average at step `step`:
    (1 + t) / (10 + t), capped at `decay`. The warm-up lets the average forget
    the random initial weights fast; the average then spans about 1 / (1 - d)
    steps. (1 + t) / (10 + t) reaches 0.999 only at step 8,990: with
    decay=0.999, a shorter run never reaches the cap."""
    t = torch.as_tensor(step, dtype=torch.float32)
    return ((1 + t) / (10 + t)).clamp(max=decay)


class WeightAverage:
    """An exponential moving average (EMA) of a model's weights and BatchNorm
    statistics, kept in `self.module`, a copy of the model.

    `update()` after each optimizer step moves every averaged tensor a share
    (1 - d) of the way towards the model's, with d = `ema_decay(t, decay)` at
    step t. It is a few fused operations over all tensors with no host sync,
    so it can run inside a CUDA graph too.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.steps = torch.zeros((), device=next(model.parameters()).device)
        self._live = [t for t in chain(model.parameters(), model.buffers())
                      if t.is_floating_point()]
        self._avg = [t for t in chain(self.module.parameters(), self.module.buffers())
                     if t.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        d = ema_decay(self.steps, self.decay)
        # avg = d * avg + (1 - d) * live, for all tensors in one call each.
        torch._foreach_mul_(self._avg, d)
        torch._foreach_add_(self._avg, torch._foreach_mul(self._live, 1 - d))


def ema_weights(steps: int, decay: float) -> list[float]:
    """The share of the final average that each step's weights hold, after
    `steps` steps of a `WeightAverage` (index 0 = step 1): step t's weights
    hold (1 - d_t) times the d of every later step (`ema_decay`). The shares
    of the steps sum to 1, less the share left of the starting copy."""
    d = ema_decay(torch.arange(1, steps + 1), decay).tolist()
    share, keep = [0.0] * steps, 1.0
    for t in reversed(range(steps)):
        share[t], keep = (1 - d[t]) * keep, keep * d[t]
    return share


def ema_ages(steps: int, decay: float) -> tuple[float, int]:
    """How old the weights a `WeightAverage` holds after `steps` steps are:
    their mean age in steps (the last step's weights are 0 steps old), and
    how many of the last steps hold half of the average (`ema_weights`)."""
    share = ema_weights(steps, decay)
    mean_age = sum(w * (steps - 1 - t) for t, w in enumerate(share))
    total, half = 0.0, steps
    for k, w in enumerate(reversed(share), 1):
        total += w
        if total >= 0.5:
            half = k
            break
    return mean_age, half
