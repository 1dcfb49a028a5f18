"""CUDA graphs: a training step captured once and replayed, a speed-up for a
small model on an NVIDIA GPU (`TrainConfig.cuda_graphs`, SGD only; on by
default, measured: `results/bench_loops_cuda.json`; `cuda_graphs=False` runs
the eager loop).

A model this small spends most of a GPU step launching ~100 tiny kernels one
by one from Python; a CUDA graph launches them all at once. `GraphedStep`
wraps the step that `mnist_lib.train.fit` defines, the same code the eager
loop runs: each replay reads its batch from static buffers, so a step costs
two device-to-device copies and one launch. `python -m mnist_lib bench
--loops --device cuda` measures it against the eager loop and torch.compile.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from ..averaging import WeightAverage
from ..config import TrainConfig


def usable(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a run replays its steps as graphs: asked for, on CUDA, with SGD
    (whose fused update reads its learning rate from a device tensor), and
    not compiled (`compile`: a compiled model inside a captured graph is a
    third way to run, neither measured nor tested here)."""
    return (cfg.cuda_graphs and not cfg.compile and device.type == "cuda"
            and cfg.optimizer == "sgd")


def lr_on_device(opt: torch.optim.Optimizer) -> None:
    """Keep each group's learning rate in a device tensor, which a captured
    step reads at every replay and the scheduler updates in place (a Python
    float would be baked into the graph)."""
    for group in opt.param_groups:
        device = group["params"][0].device
        group["lr"] = torch.tensor(float(group["lr"]), device=device)


class GraphedStep:
    """`step(idx, theta)` captured as CUDA graphs (one per batch size: the
    last batch of an epoch may be shorter) and replayed.

    `model`, `opt`, `ema` and `sums` are what `step` changes: the warm-up
    steps that capture needs are undone on them, so that they leave no trace
    on training. `warped`: whether the recipe warps its training digits.
    """

    def __init__(self, step: Callable[[torch.Tensor, torch.Tensor | None], None],
                 model: nn.Module, opt: torch.optim.Optimizer,
                 ema: WeightAverage | None, sums: torch.Tensor, n: int,
                 batch_size: int, warped: bool) -> None:
        device = sums.device
        sizes = sorted({min(batch_size, n), n % batch_size or min(batch_size, n)})
        self.identity = {b: torch.eye(2, 3, device=device).repeat(b, 1, 1)
                         for b in sizes}
        # The batch's indices and (for a recipe that warps) its transforms.
        self.buffers = {b: (torch.zeros(b, dtype=torch.long, device=device),
                            self.identity[b].clone() if warped else None)
                        for b in sizes}

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
                    step(*self.buffers[b])
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
                step(*self.buffers[b])
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
