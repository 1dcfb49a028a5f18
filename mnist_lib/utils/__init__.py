"""Helpers the library's modules share, one module a job:

- here: a model as a user gives it, the net inside its wrappers (`unwrap`), and
  the model in eval mode for a block (`eval_mode`);
- `files`: atomic writes (nothing half-written after a crash or Ctrl-C) and
  `unwritable`, which names why a path cannot be written before a long run;
- `seeding`: `set_seed`, one call that makes a run repeat itself;
- `model_spec`: a model named `MODULE:NAME` or `FILE.py:NAME` (the loader the
  rf and train commands and `load_checkpoint` share);
- `layer_kinds`: the one table of layer kinds (conv, pools, linear) that the
  plots, the explorer, the summary and the multiply-add count read.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch.nn as nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode for a `with` block; afterwards, even after an
    error, every submodule has the mode it had before (a model may keep some
    parts in eval on purpose, which `model.train()` would undo)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside the wrappers that add no op of their own: torch.compile's
    OptimizedModule, nn.DataParallel and DistributedDataParallel. torch.fx
    cannot trace them, a checkpoint of one would name the wrapper's class and
    prefix every weight, and the model they hold computes the same."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
                getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
