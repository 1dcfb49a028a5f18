"""Checkpoints: `save_checkpoint` writes a trained model (a book model or any
other) with what prediction needs, and `load_checkpoint` reads it back as a
`Classifier`, which takes raw images.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..utils import model_spec
from .. import models
from ..digit import Digit
from ..models import MODELS
from ..utils.files import atomic_torch_save
from ..hardware import best_device
from ..utils import unwrap

# Where the book's models live: a checkpoint of one names its class from there.
BOOK_MODELS = models.__name__  # "mnist_lib.models"
_PACKAGE = BOOK_MODELS.partition(".")[0]  # "mnist_lib", found wherever it loads


class Classifier(nn.Module):
    """A trained model that takes raw images: a batch of 28x28 digits, (B, 1,
    28, 28) or (B, 28, 28), as a tensor, a NumPy array or a list; pixels
    uint8 or other integers (0-255), or floats in [0, 1] (as `torchvision`'s
    `ToTensor` gives them), normalised with the training set's mean and std
    as in training. One digit from `mnist_lib.read_digit` (a `Digit`), or
    one 28x28 PIL image (colours made grey), is a batch of one; a list of
    them, a batch. Anything else (another size, NaN, 0-255 floats) is
    refused in one line that names the problem. It returns the model's
    outputs (log-probabilities for the book's models); `predict` returns the
    digits, `probabilities` each digit's probability. `load_checkpoint` gives
    one; `net` is the model inside. An image of another size or a photo:
    `mnist_lib.read_digit` makes it an MNIST digit first."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, images: Any) -> torch.Tensor:
        return self.net((self.pixels(images) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, images: Any) -> torch.Tensor:
        """The predicted digit of each image, (B,)."""
        return self(images).argmax(1)

    @torch.no_grad()
    def probabilities(self, images: Any) -> torch.Tensor:
        """Each digit's probability for each image, (B, 10): the softmax of the
        outputs (of log-probabilities, their exp)."""
        return torch.softmax(self(images).float(), dim=1)

    def pixels(self, images: Any) -> torch.Tensor:
        """`images` as (B, 1, 28, 28) float pixels in [0, 1] on the model's
        device; a ValueError (TypeError for a wrong kind of number) naming
        what is wrong, in one line."""
        x = _as_tensor(images)
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (B, 28, 28) digits: one channel
        if x.dim() != 4 or x.shape[1] != 1:
            one = (" (one image: pass [image] or image[None])"
                   if tuple(x.shape[-2:]) == (28, 28) and x.dim() == 2 else "")
            raise ValueError(f"expected (B, 1, H, W) or (B, H, W) images, got shape "
                             f"{tuple(x.shape)}{one}")
        if tuple(x.shape[2:]) != (28, 28):
            height, width = x.shape[2:]
            raise ValueError(
                f"expected 28x28 images, the size the model was trained on, got "
                f"{height}x{width}: make an image of another size an MNIST digit "
                f"with mnist_lib.read_digit")
        x = x.to(self.mean.device)
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"expected uint8 pixels or floats in [0, 1], got "
                            f"{x.dtype}")
        if x.is_floating_point():
            bad = int((~torch.isfinite(x)).sum())
            if bad:
                raise ValueError(f"the images hold {bad} NaN or infinite pixel(s): "
                                 "a pixel is a float in [0, 1] or an integer 0-255")
            x = x.to(self.mean.dtype)
            # Pixels in 0-255 as floats would be taken for [0, 1] ones 255
            # times too bright: the model still answers, mostly wrong.
            if x.numel() and not (x.min() >= 0 and x.max() <= 1):
                raise ValueError(
                    f"expected float pixels in [0, 1], the range the model was "
                    f"trained on, got values from {x.min().item():g} to "
                    f"{x.max().item():g}: divide 0-255 pixels by 255, or pass uint8")
            return x
        if x.dtype != torch.uint8:  # other integers, read as 0-255 too
            x = x.long()
            if x.numel() and not (x.min() >= 0 and x.max() <= 255):
                raise ValueError(f"expected integer pixels in 0-255, got values "
                                 f"from {x.min().item()} to {x.max().item()}")
        return x.to(self.mean.dtype) / 255.0


def _as_tensor(images: Any) -> torch.Tensor:
    """A tensor of `images`: a tensor as it is; a `Digit` or a PIL image as a
    batch of one (a list of them, as tensors); a NumPy array, a list (of
    numbers, arrays or tensors) through NumPy, as one array of equal-sized
    images; a TypeError or ValueError in one line otherwise."""
    if isinstance(images, torch.Tensor):
        return images
    if isinstance(images, Digit) or _is_pil(images):
        return _pixels_of(images)[None]
    if isinstance(images, (list, tuple)):
        images = [_pixels_of(i) if isinstance(i, Digit) or _is_pil(i) else i
                  for i in images]
    if isinstance(images, (list, tuple)) and images and all(
            isinstance(i, torch.Tensor) for i in images):
        try:
            return torch.stack([i.detach().cpu() for i in images])
        except RuntimeError as err:
            raise ValueError(f"the images differ in shape: "
                             f"{str(err).splitlines()[0]}") from None
    import numpy as np

    try:
        array = np.asarray(images)
    except ValueError as err:  # a ragged list
        raise ValueError(f"the images differ in shape: {err}") from None
    if array.dtype.kind not in "biuf":  # strings, objects, complex numbers
        raise TypeError(f"expected images of pixels (numbers), got a "
                        f"{type(images).__name__} of {array.dtype}")
    if not array.flags.writeable:  # torch would warn that it cannot share it
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def _is_pil(image: Any) -> bool:
    """Whether `image` is a PIL image (without importing PIL to find out)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(image, pil.Image)


def _pixels_of(image: Any) -> torch.Tensor:
    """A `Digit`'s pixels, or a PIL image's: grey levels as they are ("L",
    or "I" and "F" numbers, which `Classifier.pixels` checks), other modes
    made grey."""
    if isinstance(image, Digit):
        return image.pixels
    import numpy as np

    if image.mode not in ("L", "I", "F"):
        image = image.convert("L")
    return torch.from_numpy(np.array(image))  # a copy: PIL's own is read-only


def save_checkpoint(path: str | Path, model: nn.Module, history: Any,
                    spec: str | None = None) -> Path:
    """Write a trained model atomically, with what prediction needs: the
    weights, the normalisation and the config of its run (`history`, the
    `History` that `fit` or `run` returned), and how to build the model again.

    That is `spec`, "FILE.py:NAME" or "MODULE:NAME" as `mnist-train --model`
    takes it; by default the import path of the model's class
    (`model_spec.class_spec`, e.g. "mnist_lib.models:Model_4", "my_net:Net"),
    none for a class defined in a notebook or a script. A FILE.py is stored
    relative to the checkpoint's folder; so is the folder a MODULE (other
    than mnist_lib's) was imported from, where `load_checkpoint` looks for it
    when no import finds it: a checkpoint loads from any current folder.
    `load_checkpoint` reads it back."""
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
        spec = f"{_relative(file, path)}:{attr}"
    saved = {"model": history.model, "spec": spec, "state_dict": model.state_dict(),
             "normalization": history.normalization, "config": history.config}
    folder = model_spec.module_folder(spec) if spec else None
    if folder is not None and not spec.startswith(f"{_PACKAGE}."):
        saved["module_folder"] = _relative(folder, path)
    try:
        return atomic_torch_save(saved, path)
    except OSError as err:  # it names its temporary file, not what to do
        raise _unsaved(Path(path), err) from err


def _unsaved(path: Path, err: OSError) -> OSError:
    """The error of a checkpoint that could not be written to `path`, of
    `err`'s type: the folder it was to go in, why, and the fix."""
    if path.is_dir():
        return IsADirectoryError(f"cannot save a checkpoint as {path}: it is a "
                                 f"folder; name a file in it, e.g. {path / 'net.pt'}")
    folder = path.absolute().parent
    return type(err)(f"cannot save {path.name} in the folder {folder}: "
                     f"{err.strerror or err}; save it in a folder you can "
                     "write to (your home folder, or a new one of your own)")


def _relative(target: str | os.PathLike, checkpoint: str | os.PathLike) -> str:
    """`target` relative to the checkpoint's folder (absolute where it cannot
    be: another drive)."""
    try:
        return os.path.relpath(target, Path(checkpoint).parent)
    except ValueError:
        return str(Path(target).resolve())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    model: nn.Module | None = None) -> Classifier:
    """The model saved in `path` (by `save_checkpoint`, or by `python -m
    mnist_lib train --checkpoint FILE`), as a `Classifier` on `device` in eval
    mode: ready for raw images, e.g.
    `load_checkpoint("final.pt").predict(data.test_images[:10])`.

    The weights go into `model` when given (`model=Net()`: nothing is
    imported). Otherwise the model is built from the spec the checkpoint
    holds, as `mnist-train --model` builds it: "MODULE:NAME" is imported
    (from the current folder too, then from the folder it was imported from
    when saved), a "FILE.py:NAME" is run from beside the checkpoint. That
    runs code: load checkpoints you trust, or pass `model`.
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
            folder = saved.get("module_folder")  # relative to the checkpoint
            model = model_spec.build(spec, base=Path(path).parent,
                                     folder=folder and Path(path).parent / folder)
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
