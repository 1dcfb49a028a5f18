"""A model summary (torchsummary's table) that works on any device and returns text."""

from __future__ import annotations

import contextlib
import copy
import io

import torch.nn as nn

from .utils.layer_kinds import layer_kind


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


def layers_text(model: nn.Module) -> str:
    """A model's layers in one line, e.g. "3×3/2 10, 3×3 16, max-pool, 1×1 10,
    GAP, 1×1 10": each convolution as kernel (/stride where it is not 1) and
    its output channels, each pooling by its kind; BatchNorm, activations and
    dropout left out. For a table that compares models."""
    parts = []
    for m in model.modules():
        kind = layer_kind(m)
        if kind is None:
            continue
        if kind.name == "conv":
            k, s = m.kernel_size, m.stride
            size = "×".join(map(str, k)) + (f"/{s[0]}" if max(s) > 1 else "")
            parts.append(f"{size} {m.out_channels}")
        elif kind.name.startswith("adaptive"):
            parts.append("GAP" if m.output_size in (1, (1, 1)) else "adaptive pool")
        elif kind.name == "linear":
            parts.append(f"linear {m.out_features}")
        else:  # max-pool, avg-pool
            parts.append(kind.name)
    return ", ".join(parts)
