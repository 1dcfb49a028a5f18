"""The digit pad (the page "Draw a digit", book/play.md): the book's final
model as the page's JavaScript (`_static/pad_model.js`) runs it.

The pad runs the final model as recorded (`CHECKPOINT`, round 2's recipe
trained with the final test's first seed). After the build the book's Sphinx
extension (`_ext/digit_pad.py`) puts next to the page the checkpoint itself,
its layers and weights as JSON (`model_json`) and test digits to try
(`digits_json`), some of them digits the model gets wrong.

    >>> net = load_checkpoint("final_model.pt")   # doctest: +SKIP
    >>> [layer["kind"] for layer in model_json(net)["layers"]][:3]  # doctest: +SKIP
    ['conv', 'batchnorm', 'relu']
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from .training.checkpoint import Classifier
from .data import DIGIT_BOX
from .digit import CENTRE, FRAME, NOISE
from .evaluation import misclassified
from .explorer import window_layer
from .utils.layer_kinds import layer_kind
from .rf import RFError, receptive_field


# The checkpoint the pad runs, relative to the repository's root: the book's
# final model as recorded (tests/test_records.py holds it to the record).
CHECKPOINT = Path("results") / "final_model.pt"


# ------------------------------------------------------------- the layers
def _weights(t: torch.Tensor | None) -> list[float] | None:
    """A tensor's values, flattened row-major, as the floats they are."""
    return None if t is None else t.detach().double().flatten().tolist()


def _conv(module: nn.Conv2d, n_in: int) -> dict[str, Any] | None:
    layer = window_layer(module, n_in)
    if layer is None or module.padding_mode != "zeros":
        return None
    return layer | {"groups": module.groups, "c_in": module.in_channels,
                    "c_out": module.out_channels, "weight": _weights(module.weight),
                    "bias": _weights(module.bias)}


def _pool(module: nn.Module, n_in: int) -> dict[str, Any] | None:
    return window_layer(module, n_in)


def _batchnorm(module: nn.BatchNorm2d, n_in: int) -> dict[str, Any] | None:
    """In eval mode BatchNorm is an affine map per channel: x * scale + shift."""
    if module.running_mean is None:
        return None  # no running statistics: it normalises by the batch's
    mean, var = module.running_mean.double(), module.running_var.double()
    weight = module.weight.double() if module.affine else torch.ones_like(mean)
    bias = module.bias.double() if module.affine else torch.zeros_like(mean)
    scale = weight / torch.sqrt(var + module.eps)
    return {"kind": "batchnorm", "scale": _weights(scale),
            "shift": _weights(bias - mean * scale)}


def _linear(module: nn.Linear, n_in: int) -> dict[str, Any]:
    return {"kind": "linear", "c_in": module.in_features, "c_out": module.out_features,
            "weight": _weights(module.weight), "bias": _weights(module.bias)}


def _flatten(module: nn.Module | None, n_in: int) -> dict[str, Any] | None:
    if module is not None and (module.start_dim, module.end_dim) != (1, -1):
        return None
    return {"kind": "flatten"}


def _log_softmax(module: nn.Module | None, n_in: int) -> dict[str, Any] | None:
    if module is not None and module.dim not in (1, -1):
        return None
    return {"kind": "log_softmax"}


def _named(kind: str) -> Callable[[Any, int], dict[str, Any]]:
    return lambda module, n_in: {"kind": kind}


# What the pad's script runs, by a row's kind in the receptive-field table
# (the book's names for convolutions, pools and linear layers, `layer_kinds`;
# the torch.nn class or the function for the rest). A rule gives the layer as
# the script takes it, or None where its settings are beyond the script.
# Dropout is the identity in eval mode: nothing to run.
RULES: dict[str, Callable[[Any, int], dict[str, Any] | None]] = {
    "conv": _conv, "max-pool": _pool, "adaptive avg-pool": _pool,
    "BatchNorm2d": _batchnorm, "ReLU": _named("relu"), "relu": _named("relu"),
    "Dropout": _named("identity"), "Dropout2d": _named("identity"),
    "linear": _linear, "Flatten": _flatten, "flatten": _flatten,
    "LogSoftmax": _log_softmax, "log_softmax": _log_softmax,
}
# Rules that need the module's settings: a function of that kind
# (F.conv2d, F.batch_norm) does not say them.
_MODULE_ONLY = {"conv", "max-pool", "adaptive avg-pool", "BatchNorm2d", "linear"}
# Layers the script runs on maps (before a flatten) and on vectors (after).
_ON_MAPS = {"conv", "max-pool", "adaptive avg-pool", "BatchNorm2d"}
_ON_VECTORS = {"linear"}


class PadError(ValueError):
    """A model the digit pad's script cannot run, and why."""


def pad_layers(net: nn.Module, size: int = FRAME) -> list[dict[str, Any]]:
    """`net`'s layers in forward order, as the digit pad's script runs them
    on a one-channel `size`x`size` digit: {"name", "kind", ...settings and
    weights}. The walk is the receptive-field calculator's (the model's real
    graph); a PadError names the first layer the script cannot run, a branch
    (the script runs a chain), or an end other than log-probabilities."""
    was_training = net.training
    net.eval()
    try:
        table = receptive_field(net, (1, size, size))
    except RFError as err:
        raise PadError(f"the digit pad walks the model as the receptive-field "
                       f"calculator does, which cannot: {err}") from err
    finally:
        net.train(was_training)
    modules = dict(net.named_modules())
    layers, before, n = [], (), size
    for row in table.rows:
        if table.sources.get(row.name, ()) != before:
            inputs = " and ".join(table.sources.get(row.name, ())) or "the input"
            raise PadError(f"the digit pad runs a chain of layers, one after "
                           f"another; {row.name} ({row.kind}) takes {inputs}, "
                           f"not only the layer before it")
        before = (row.name,)
        found = layer_kind(row.kind)
        key = found.name if found is not None else row.kind
        module = modules.get(row.name)
        rule = RULES.get(key)
        flat = any(layer["kind"] == "flatten" for layer in layers)
        fits = not (key in _ON_MAPS and flat or key in _ON_VECTORS and not flat)
        layer = None
        settled = module is not None or key not in _MODULE_ONLY
        if rule is not None and fits and settled:
            layer = rule(module, n)
        if layer is None:
            known = ", ".join(sorted(RULES))
            raise PadError(f"the digit pad's script (_static/pad_model.js) cannot run "
                           f"{row.name} ({row.kind}"
                           f"{'' if rule is None else ' with these settings'}); it "
                           f"runs 2-D layers of these kinds: {known}")
        layers.append({"name": row.name, **layer})
        if row.spatial and row.n_out is not None and not isinstance(row.n_out, tuple):
            n = row.n_out
    if not layers or layers[-1]["kind"] != "log_softmax":
        raise PadError("the digit pad shows probabilities: the model must end in "
                       "log_softmax, as the book's models do")
    return [layer for layer in layers if layer["kind"] != "identity"]


def model_json(model: Classifier) -> dict[str, Any]:
    """What the pad's script loads: the model's layers and weights
    (`pad_layers`), the normalisation it was trained with, and how a drawn
    digit is made an MNIST digit (`mnist_lib.digit`'s constants)."""
    return {"model": type(model.net).__name__,
            "normalization": {"mean": float(model.mean), "std": float(model.std)},
            "digit": {"frame": FRAME, "box": DIGIT_BOX, "centre": CENTRE,
                      "noise": NOISE},
            "layers": pad_layers(model.net)}


# --------------------------------------------------------- digits to try
def digits_json(model: Classifier, images: torch.Tensor, labels: torch.Tensor,
                first: int = 200, wrong: int = 100) -> dict[str, Any]:
    """Test digits for the pad: the `first` ones of `images`, then up to
    `wrong` more that `model` gets wrong. Each: its index, label, the
    model's prediction, and its 28x28 uint8 pixels, base64, row-major."""
    predicted = torch.cat([model.predict(images[i:i + 1000])
                           for i in range(0, len(images), 1000)]).cpu()
    missed = misclassified(predicted, labels).tolist()
    chosen = list(range(min(first, len(images))))
    chosen += [i for i in missed if i >= first][:wrong]
    return {"digits": [
        {"index": i, "label": int(labels[i]), "predicted": int(predicted[i]),
         "pixels": base64.b64encode(images[i].to(torch.uint8).numpy().tobytes())
         .decode("ascii")}
        for i in chosen]}
