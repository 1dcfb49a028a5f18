"""The book's models, `Model_1` ... `Model_5`, from a working skeleton to the final net.

Every model maps (B, 1, 28, 28) images to (B, 10) log-probabilities
(`log_softmax`), which the trainer pairs with `nll_loss`. Comments give the
output size, the receptive field (RF) and the jump (j, the distance in input
pixels between neighbouring units); `mnist_lib.rf` computes the same from the
graph. After a global average pooling each unit sees the whole map: "global".

The first layer of every model is a stride-2 convolution: on a CPU, work at
the full 28x28 resolution is the costliest part of a step (the book's
"Engineering notes" time it), and MNIST digits need no 1-pixel detail.

`save_checkpoint` and `load_checkpoint` write and read a trained model, a
book model or any other, with what prediction needs; `load_checkpoint` gives a
`Classifier`, which takes raw images.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import model_spec
from .utils import atomic_torch_save, best_device


def conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
               padding: int = 0, bn: bool = True, dropout: float = 0.0,
               act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv -> (BatchNorm) -> activation (ReLU unless `act` says) ->
    (Dropout): the unit every model is built from."""
    # BatchNorm subtracts the mean of each channel: a bias before it would
    # be subtracted too, so the conv has none when BatchNorm follows.
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                  bias=not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(act())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Model_1(nn.Module):
    """Step 1, skeleton: the whole pipeline, no BatchNorm, no regularisation.

    Target: a net whose RF covers the digit and that learns (> 98%), to check
    data, loop and plots. It ends with a large 'classifier' convolution over
    the whole 8x8 map, which holds most of its parameters: Step 2 removes it.
    """

    def __init__(self) -> None:
        super().__init__()
        # conv_block with bn=False fixed, so each line shows the shape.
        block = partial(conv_block, bn=False)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 16, stride=2, padding=1),          # 14x14x16, RF 3, j 2
            block(16, 16),                              # 12x12x16, RF 7
            block(16, 16),                              # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            block(16, 16),                              # 8x8x16, RF 15
        )
        self.output = nn.Conv2d(16, 10, kernel_size=8)  # 1x1x10, RF 29

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_1_BN(nn.Module):
    """A rung of Step 2's ladder (`mnist_lib.ladder`): Model_1 with BatchNorm
    after each 3x3 convolution, and nothing else changed."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 16, stride=2, padding=1),     # 14x14x16, RF 3, j 2
            conv_block(16, 16),                         # 12x12x16, RF 7
            conv_block(16, 16),                         # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(16, 16),                         # 8x8x16, RF 15
        )
        self.output = nn.Conv2d(16, 10, kernel_size=8)  # 1x1x10, RF 29

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_1_GAP(nn.Module):
    """A rung of Step 2's ladder (`mnist_lib.ladder`): Model_1_BN whose 8x8
    output convolution gives way to global average pooling and a 1x1
    convolution, and nothing else changed: under 8,000 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 16, stride=2, padding=1),     # 14x14x16, RF 3, j 2
            conv_block(16, 16),                         # 12x12x16, RF 7
            conv_block(16, 16),                         # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(16, 16),                         # 8x8x16, RF 15
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_2(nn.Module):
    """Step 2, under 8,000 parameters: BatchNorm after each 3x3 convolution,
    global average pooling and a 1x1 convolution instead of Model_1's 8x8
    output convolution, and the budget spent on depth: narrower early layers
    pay for a fifth 3x3 convolution (padded, so the map stays 8x8), which
    takes the RF before the pooling from 15 (Model_1_GAP) to 19 pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 10, stride=2, padding=1),     # 14x14x10, RF 3, j 2
            conv_block(10, 12),                         # 12x12x12, RF 7
            conv_block(12, 14),                         # 10x10x14, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(14, 16),                         # 8x8x16, RF 15
            conv_block(16, 16, padding=1),              # 8x8x16, RF 19
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_3(nn.Module):
    """Step 2, regularisation: Model_2 with dropout after every block.

    Target: close the train-test gap that Model_2 shows, with the same
    parameters (dropout adds none).
    """

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        # conv_block with the dropout fixed, so each line shows the shape.
        block = partial(conv_block, dropout=dropout)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 10, stride=2, padding=1),          # 14x14x10, RF 3, j 2
            block(10, 12),                              # 12x12x12, RF 7
            block(12, 14),                              # 10x10x14, RF 11
        )
        self.block2 = nn.Sequential(
            block(14, 16),                              # 8x8x16, RF 15
            block(16, 16, padding=1),                   # 8x8x16, RF 19
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_4(nn.Module):
    """Step 3, final: a transition block (max-pool + 1x1) and more capacity.

    Target: >= 99.4% in each of the last 3 of 15 epochs, < 8,000 parameters,
    trained with augmentation and a one-cycle learning rate. Pooling after
    RF 11 lets the later layers be wider for the same cost. Dropout is off by
    default (`dropout=` turns it on): augmentation is the regulariser of
    this recipe.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        # conv_block with the dropout fixed, so each line shows the shape.
        block = partial(conv_block, dropout=dropout)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 10, stride=2, padding=1),          # 14x14x10, RF 3, j 2
            block(10, 16),                              # 12x12x16, RF 7
            block(16, 16),                              # 10x10x16, RF 11
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 5x5x16, RF 13, j 4
            block(16, 10, kernel=1),                    # 5x5x10, RF 13
        )
        self.block2 = nn.Sequential(
            block(10, 16, padding=1),                   # 5x5x16, RF 21
            block(16, 14),                              # 3x3x14, RF 29
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x14, RF global
            nn.Conv2d(14, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_5(nn.Module):
    """Stretch: the final design under 5,000 parameters.

    Target: the same rule (>= 99.4% in each of the last 3 of 15 epochs)
    with fewer than 5,000 parameters. Every layer is narrower, and GELU
    replaces ReLU: ReLU passes no gradient back for a negative input, GELU a
    small one, and with this few channels no unit can be spared.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        # conv_block with dropout and GELU fixed, so each line shows a shape.
        block = partial(conv_block, dropout=dropout, act=nn.GELU)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 8, stride=2, padding=1),           # 14x14x8, RF 3, j 2
            block(8, 12),                               # 12x12x12, RF 7
            block(12, 12),                              # 10x10x12, RF 11
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 5x5x12, RF 13, j 4
            block(12, 10, kernel=1),                    # 5x5x10, RF 13
        )
        self.block2 = nn.Sequential(
            block(10, 12, padding=1),                   # 5x5x12, RF 21
            block(12, 12),                              # 3x3x12, RF 29
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x12, RF global
            nn.Conv2d(12, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


MODELS: dict[str, type[nn.Module]] = {
    "Model_1": Model_1, "Model_2": Model_2, "Model_3": Model_3,
    "Model_4": Model_4, "Model_5": Model_5,
}
FINAL_MODEL = "Model_4"
# Nets that are only rungs of Step 2's ladder (`mnist_lib.ladder`), between
# Model_1 and Model_2: trained by the ladder, not by a chapter.
RUNG_MODELS: dict[str, type[nn.Module]] = {
    "Model_1_BN": Model_1_BN, "Model_1_GAP": Model_1_GAP,
}


def get_model(name: str) -> nn.Module:
    """Build a model by its book name, e.g. `get_model("Model_4")` (or a
    ladder rung's, `RUNG_MODELS`)."""
    known = MODELS | RUNG_MODELS
    if name not in known:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(known)}")
    return known[name]()


# What, besides its type and weights' shapes, makes one layer differ from another.
_LAYER_SETTINGS = ("kernel_size", "stride", "padding", "dilation", "groups",
                   "output_size", "p")


def layer_list(model: nn.Module) -> list[str]:
    """The model's layers (modules without children) in order, each as its type,
    weight shapes and settings, e.g. "Conv2d 8x1x3x3 kernel_size=(3, 3)
    stride=(2, 2) ...". Records store it, so that a changed model cannot pass
    for the recorded one. Built from attributes, not `repr`, whose wording
    changes between torch versions."""
    rows = []
    for m in model.modules():
        if list(m.children()):
            continue
        shapes = ["x".join(map(str, p.shape)) for p in m.parameters(recurse=False)]
        settings = [f"{k}={getattr(m, k)}" for k in _LAYER_SETTINGS if hasattr(m, k)]
        rows.append(" ".join([type(m).__name__, *shapes, *settings]))
    return rows


class Classifier(nn.Module):
    """A trained model that takes raw images: (B, 1, 28, 28) or (B, 28, 28)
    pixels, uint8 (0-255) or float in [0, 1] (as `torchvision`'s `ToTensor`
    gives them), normalised with the training set's mean and std as in
    training; anything else is refused, with the reason. It returns the
    model's outputs (log-probabilities for the book's models); `predict`
    returns the digits. `load_checkpoint` gives one; `net` is the model inside."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(1)  # (B, 28, 28) digits: one channel
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (B, H, W) images, got shape "
                             f"{tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.to(self.mean.dtype) / 255.0
        elif images.is_floating_point():
            x = images.to(self.mean.dtype)
            # Pixels in 0-255 as floats would be taken for [0, 1] ones 255
            # times too bright: the model still answers, mostly wrong.
            if x.numel() and not (x.min() >= 0 and x.max() <= 1):  # NaN fails too
                raise ValueError(
                    f"expected float pixels in [0, 1], the range the model was "
                    f"trained on, got values from {x.min().item():g} to "
                    f"{x.max().item():g}: divide 0-255 pixels by 255, or pass uint8")
        else:
            raise TypeError(f"expected uint8 pixels or floats in [0, 1], got "
                            f"{images.dtype}")
        return self.net((x - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The predicted digit of each image."""
        return self(images).argmax(1)


def save_checkpoint(path: str | Path, model: nn.Module, history: Any,
                    spec: str | None = None) -> Path:
    """Write a trained model atomically, with what prediction needs: the
    weights, the normalisation and the config of its run (`history`, the
    `History` that `fit` or `run` returned), and how to build the model again.

    That is `spec`, "FILE.py:NAME" or "MODULE:NAME" as `mnist-train --model`
    takes it; by default the import path of the model's class
    (`model_spec.class_spec`, e.g. "mnist_lib.models:Model_4", "my_net:Net"),
    none for a class defined in a notebook or a script. A FILE.py is stored
    relative to the checkpoint's folder. `load_checkpoint` reads it back."""
    if not getattr(history, "normalization", None):
        raise ValueError("save_checkpoint needs the History that fit (or run) "
                         "returned for this model: it holds the normalisation the "
                         f"model was trained with; got {type(history).__name__}")
    if spec is None:
        spec = model_spec.class_spec(model)
    elif ":" not in spec:
        raise ValueError(f"spec {spec!r} is not FILE.py:NAME or MODULE:NAME")
    elif spec.rpartition(":")[0].endswith(".py"):  # found again from the checkpoint
        file, _, attr = spec.rpartition(":")
        spec = f"{os.path.relpath(file, Path(path).parent)}:{attr}"
    return atomic_torch_save({"model": history.model, "spec": spec,
                              "state_dict": model.state_dict(),
                              "normalization": history.normalization,
                              "config": history.config}, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    model: nn.Module | None = None) -> Classifier:
    """The model saved in `path` (by `save_checkpoint`, or by `python -m
    mnist_lib train --checkpoint FILE`), as a `Classifier` on `device` in eval
    mode: ready for raw images, e.g.
    `load_checkpoint("model4.pt").predict(data.test_images[:10])`.

    The weights go into `model` when given (`model=Net()`: nothing is
    imported). Otherwise the model is built from the spec the checkpoint
    holds, as `mnist-train --model` builds it: "MODULE:NAME" is imported
    (from the current folder too), a "FILE.py:NAME" is run from beside the
    checkpoint. That runs code: load checkpoints you trust, or pass `model`.
    The weights themselves are read safely (`torch.load(weights_only=True)`).
    """
    device = best_device(str(device))  # a ValueError saying what there is
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        name, state = saved["model"], saved["state_dict"]
        norm = saved["normalization"]
    except FileNotFoundError:
        raise
    except Exception as err:  # not a torch file, cut short, or another kind of one
        # torch's own message (about weights_only) would mislead here.
        what = f": no {err}" if isinstance(err, KeyError) else ""
        raise ValueError(f"{path} is not a checkpoint ({type(err).__name__}{what})."
                         "\nWrite one with save_checkpoint(path, model, history), or "
                         "`python -m mnist_lib train --checkpoint FILE`.") from err
    # Checkpoints written before the spec was stored held book models only.
    spec = saved.get("spec", f"{__name__}:{name}")
    given = model is not None
    pass_it = (f"pass the model to load the weights into: "
               f"load_checkpoint({str(path)!r}, model={name}())")
    if not given:
        if spec is None:
            raise ValueError(f"{path} holds a {name} whose class no import finds "
                             f"(it was defined in a notebook or a script): {pass_it}")
        try:
            model = model_spec.build(spec, base=Path(path).parent)
        except model_spec.SpecError as err:
            raise ValueError(f"{path} holds a {name}, which cannot be built from "
                             f"{spec!r}: {err}\nOr {pass_it}") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # the model's layers changed since it was saved
        if given:
            raise ValueError(f"the weights in {path}, a {name}'s, do not fit the "
                             f"model given:\n{err}") from err
        book = spec == f"{__name__}:{name}" and name in MODELS
        again = name if book else model_spec.resolve(spec, Path(path).parent)
        raise ValueError(
            f"{path} holds weights of an earlier {name}, whose layers differ from "
            f"{name}'s now:\n{err}\nTrain it again: python -m mnist_lib train "
            f"--model {again} --checkpoint {path}"
            + ("" if book else f"\nOr {pass_it}")) from err
    return Classifier(model, norm["mean"], norm["std"]).to(device).eval()


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)
