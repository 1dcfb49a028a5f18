"""Passes over images that do not train: the check that a model fits the
trainer (`check_outputs`), predictions and the test pass (`predict`,
`evaluate`), BatchNorm statistics for averaged weights (`recompute_bn_stats`),
and the per-class numbers the book plots."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

from .data import normalize, to_float
from .utils import eval_mode


def model_inputs(model: nn.Module, images: torch.Tensor, mean: float, std: float,
                 batch_size: int = 500) -> Iterator[torch.Tensor]:
    """uint8 images (N, 28, 28) as normalised float batches (B, 1, 28, 28) on the
    model's device, `batch_size` at a time, for passes that do not train."""
    device = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        yield normalize(to_float(images[i:i + batch_size].to(device)), mean, std)


class ModelOutputError(ValueError):
    """A model whose output the trainer cannot use: wrong shape, or not
    log-probabilities."""


@torch.no_grad()
def check_outputs(model: nn.Module, images: torch.Tensor, mean: float,
                  std: float) -> None:
    """Raise `ModelOutputError` unless `model` maps a batch of `images` to
    (batch, 10) log-probabilities, as `nll_loss` needs.

    A model that returns raw scores (logits) would still "train", with a
    negative, falling loss and a poor accuracy: nothing would say why. Runs
    in eval mode, so no BatchNorm statistic or random number is used up.
    """
    name = type(model).__name__
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelOutputError(
            f"{name} has no trainable parameters: training would change nothing.\n"
            "Give it layers with weights (nn.Conv2d, nn.Linear), or unfreeze the "
            "ones it has (p.requires_grad_(True)).")
    x = next(model_inputs(model, images[:2], mean, std))
    try:
        with eval_mode(model):
            out = model(x)
    except Exception as err:
        raise ModelOutputError(
            f"{name} does not run on a batch of MNIST images, shape "
            f"{tuple(x.shape)}: {type(err).__name__}: {err}\n"
            "Its first layer must take 1 channel, and each layer must fit what "
            "a 28x28 input leaves.") from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), 10):
        shape = (tuple(out.shape) if isinstance(out, torch.Tensor)
                 else f"a {type(out).__name__}")
        raise ModelOutputError(
            f"{name} returns {shape} for {len(x)} images; the trainer needs "
            f"({len(x)}, 10), one score per digit.\nEnd forward() with a layer "
            "of 10 outputs and x.flatten(1), then F.log_softmax(x, dim=1).")
    total = torch.logsumexp(out.float(), dim=1)
    if not torch.allclose(total, torch.zeros_like(total), atol=1e-3):
        raise ModelOutputError(
            f"{name} does not return log-probabilities: exp(output) sums to "
            f"{total.exp().max().item():.3g} over the 10 digits, not 1.\n"
            "The trainer pairs the output with nll_loss: end forward() with "
            "F.log_softmax(x, dim=1).")


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, images: torch.Tensor, mean: float, std: float,
                       batch_size: int = 500) -> None:
    """Set the BatchNorm running statistics of `model` to the mean and variance of
    its own activations over `images` (uint8 (N, 28, 28), not augmented).

    During training BatchNorm keeps running averages of batch statistics, taken
    from augmented images and from the weights as they were at each step. The
    weights that get tested (the moving average, with `ema`) are not any of
    those; this gives them statistics of their own, as SWA does
    (`torch.optim.swa_utils.update_bn`, which does the pass). The forward
    passes run in full precision, like `evaluate`.
    """
    update_bn(model_inputs(model, images, mean, std, batch_size), model)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: float, std: float,
            batch_size: int = 500) -> torch.Tensor:
    """Log-probabilities (N, 10) for uint8 images (N, 28, 28), in eval mode."""
    with eval_mode(model):
        outs = [model(x) for x in model_inputs(model, images, mean, std, batch_size)]
    return torch.cat(outs)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: float, std: float, batch_size: int = 500
             ) -> tuple[float, int, torch.Tensor]:
    """Average NLL loss, number correct, and predicted labels for a test set."""
    logp = predict(model, images, mean, std, batch_size)
    labels = labels.to(logp.device)
    loss = F.nll_loss(logp, labels, reduction="sum").item() / len(labels)
    pred = logp.argmax(dim=1)
    return loss, int((pred == labels).sum()), pred


def per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor,
                       n_classes: int = 10) -> list[float]:
    """Accuracy (%) for each true class."""
    pred, labels = pred.cpu(), labels.cpu()
    out = []
    for c in range(n_classes):
        mask = labels == c
        out.append(100.0 * float((pred[mask] == c).float().mean()) if mask.any()
                   else float("nan"))
    return out


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor,
                     n_classes: int = 10) -> torch.Tensor:
    """(true, predicted) count matrix of shape (n_classes, n_classes)."""
    idx = labels.cpu() * n_classes + pred.cpu()
    return torch.bincount(idx, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def misclassified(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Indices of the examples whose prediction is wrong."""
    return (pred.cpu() != labels.cpu()).nonzero().flatten()
