"""One training step, run eagerly or replayed as a CUDA graph.

`train_step` is the plain zero_grad -> forward -> backward -> step on one
batch, with the batch's random warp and the loss (`nll_loss`). On a CUDA
GPU, `GraphedStep` captures that same function once per batch size and
replays it: launching a small model's ~100 kernels one by one from Python
takes longer than running them. `mnist_lib.train.train_epoch` calls one or
the other for every batch.
"""

from __future__ import annotations

import copy
import torch
import torch.nn as nn
import torch.nn.functional as F

from .averaging import WeightAverage
from .augmentation import random_affine, warp
from .config import TrainConfig
from .data import MNIST, normalize, to_float
from .hardware import autocast_dtype


def train_step(model: nn.Module, opt: torch.optim.Optimizer, data: MNIST,
               idx: torch.Tensor, theta: torch.Tensor | None, *, mean: float,
               std: float, cfg: TrainConfig, sums: torch.Tensor,
               ema: WeightAverage | None = None) -> None:
    """One optimizer step on the training images `idx`, warped by `theta`.

    Adds the batch's summed loss and its number of correct predictions to
    `sums` (a device tensor of 2), and reads nothing back to the host: the
    same code runs eagerly and as a captured CUDA graph.
    """
    x = to_float(data.train_images[idx])
    if theta is not None:
        x = warp(x, theta)
    x = normalize(x, mean, std)
    y = data.train_labels[idx]

    opt.zero_grad(set_to_none=True)
    dtype = autocast_dtype(cfg.precision, x.device)
    # Autocast runs the convolutions in bf16 and keeps the weights, their
    # gradients and the loss in fp32. No cache: a CUDA graph may capture this.
    with torch.autocast(x.device.type, dtype=dtype or torch.float32,
                        enabled=dtype is not None, cache_enabled=False):
        logp = model(x)
    loss = F.nll_loss(logp.float(), y)
    if eps := cfg.label_smoothing:  # the target: 1 - eps on the label, eps/10 on each
        loss = (1 - eps) * loss - eps * logp.float().mean(1).mean()
    loss.backward()
    opt.step()
    if ema is not None:
        ema.update()

    with torch.no_grad():
        sums[0] += loss * len(y)
        sums[1] += (logp.argmax(1) == y).sum()


class GraphedStep:
    """`train_step` captured as CUDA graphs (one per batch size) and replayed.

    On a GPU, a model this small spends most of a step launching ~100 tiny
    kernels one by one from Python; a CUDA graph launches them all at once.
    Each replay reads its batch from static buffers (`idx`, `theta`), so a
    step costs two device-to-device copies and one launch.
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, data: MNIST,
                 *, mean: float, std: float, cfg: TrainConfig, sums: torch.Tensor,
                 ema: WeightAverage | None = None) -> None:
        device = data.train_images.device
        n, bs = len(data.train_labels), cfg.batch_size
        sizes = sorted({min(bs, n), n % bs or min(bs, n)})
        augmented = random_affine(1, torch.Generator(), cfg.rotation, cfg.translate,
                                  cfg.scale) is not None
        self.identity = {b: torch.eye(2, 3, device=device).repeat(b, 1, 1)
                         for b in sizes}
        self.buffers = {
            b: (torch.zeros(b, dtype=torch.long, device=device),
                self.identity[b].clone() if augmented else None)
            for b in sizes}

        def step(b: int) -> None:
            train_step(model, opt, data, *self.buffers[b], mean=mean, std=std,
                       cfg=cfg, sums=sums, ema=ema)

        # Warm-up: CUDA graphs need a few eager steps first (on a side stream),
        # for cuDNN and autograd to make their lazy allocations. Run them with
        # LR 0, then restore every tensor, so they leave no trace on training.
        saved = [copy.deepcopy(model.state_dict()),
                 None if ema is None else copy.deepcopy(ema.module.state_dict())]
        lr = opt.param_groups[0]["lr"]
        lr_value = float(lr)
        lr.fill_(0.0)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for b in sizes:
                for _ in range(3):
                    step(b)
        torch.cuda.current_stream(device).wait_stream(side)
        model.load_state_dict(saved[0])
        if ema is not None:
            ema.module.load_state_dict(saved[1])
            ema.steps.zero_()
        for state in opt.state.values():
            # A zero momentum buffer makes the next step a first step again.
            state["momentum_buffer"].zero_()
        lr.fill_(lr_value)
        sums.zero_()

        self.graphs = {}
        for b in sizes:
            graph = torch.cuda.CUDAGraph()
            # With no grads, backward allocates them from the graph's pool.
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                step(b)
            self.graphs[b] = graph

    def __call__(self, idx: torch.Tensor, theta: torch.Tensor | None) -> None:
        b = len(idx)
        idx_buf, theta_buf = self.buffers[b]
        idx_buf.copy_(idx)
        if theta_buf is not None:
            # A clean epoch (no theta) replays the same graph with identity
            # transforms, which leave the images as they are (to ~1e-6).
            theta_buf.copy_(self.identity[b] if theta is None else theta)
        self.graphs[b].replay()
