"""A model summary (torchsummary's table) that works on any device and returns text."""

from __future__ import annotations

import contextlib
import copy
import io

import torch.nn as nn


def summary(model: nn.Module, input_size: tuple[int, int, int] = (1, 28, 28)) -> str:
    """torchsummary's layer table for `model`, as a string.

    torchsummary runs a forward pass and supports only "cpu" and "cuda", so it
    runs on a CPU copy in eval mode: the model itself (its device, its
    BatchNorm statistics, its train/eval mode) is left untouched.
    """
    # Imported here, not with the package: `import mnist_lib` needs torch alone.
    from torchsummary import summary as _torchsummary

    clone = copy.deepcopy(model).cpu().eval()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _torchsummary(clone, tuple(input_size), device="cpu")
    return buf.getvalue().rstrip("\n")
