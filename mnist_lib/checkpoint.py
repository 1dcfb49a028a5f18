"""Checkpoints: `save_checkpoint` writes a trained model (a book model or any
other) with what prediction needs, and `load_checkpoint` reads it back as a
`Classifier`, which takes raw images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import model_spec
from . import models
from .models import MODELS
from .utils import atomic_torch_save, best_device, unwrap

# Where the book's models live: a checkpoint of one names its class from there.
BOOK_MODELS = models.__name__  # "mnist_lib.models"


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
    model = unwrap(model)  # a compiled or data-parallel model: the net inside
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
    spec = saved.get("spec", f"{BOOK_MODELS}:{name}")
    given = model is not None
    model = unwrap(model) if given else None
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
        book = spec == f"{BOOK_MODELS}:{name}" and name in MODELS
        again = name if book else model_spec.resolve(spec, Path(path).parent)
        raise ValueError(
            f"{path} holds weights of an earlier {name}, whose layers differ from "
            f"{name}'s now:\n{err}\nTrain it again: python -m mnist_lib train "
            f"--model {again} --checkpoint {path}"
            + ("" if book else f"\nOr {pass_it}")) from err
    return Classifier(model, norm["mean"], norm["std"]).to(device).eval()
