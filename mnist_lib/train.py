"""Training: `TrainConfig`, `fit() -> History` (`mnist_lib.history`), and a CLI.

    python -m mnist_lib.train --model Model_4 --epochs 15 --seed 0 --out run.json

The loop is the plain one, zero_grad -> forward -> backward -> step, and
works for any model that returns log-probabilities. The data sit on the
device as one tensor; batches are index slices, augmentation is batched
(`mnist_lib.augmentation.warp`), so no DataLoader or PIL is involved. Each
batch is one `mnist_lib.step.train_step`; on a CUDA GPU that step is captured
once and replayed as a CUDA graph (`mnist_lib.step.GraphedStep`). The test
pass after each epoch is `mnist_lib.evaluation.evaluate`; the averaged
weights it tests with `ema` are `mnist_lib.averaging.WeightAverage`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from .averaging import WeightAverage
from .augmentation import random_affine
from .data import MNIST, batch_indices, load_mnist, pixel_stats
from .evaluation import check_outputs, evaluate, recompute_bn_stats
from .hardware import environment
from .history import EpochRecord, History, over_budget, rule_text
from .models import count_parameters, get_model, layer_list
from .step import GraphedStep, train_step
from .utils import (best_device, keep_freed_memory, quiet_on_closed_pipe,
                    set_seed, unwritable)

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULERS = ("none", "step", "onecycle", "plateau")


@dataclass
class TrainConfig:
    """Everything a run depends on; saved with every result (`asdict`)."""

    epochs: int = 15
    batch_size: int = 128           # images per optimizer step
    optimizer: str = "sgd"          # sgd | adam | adamw
    lr: float = 0.05                # peak LR for onecycle, else the initial LR
    momentum: float = 0.9           # SGD only
    weight_decay: float = 0.0       # L2 (SGD, Adam) or decoupled (AdamW)
    scheduler: str = "onecycle"     # none | step | onecycle | plateau
    step_size: int = 6              # epochs between StepLR decays
    gamma: float = 0.1              # StepLR / plateau decay factor
    pct_start: float = 0.25         # onecycle: fraction of steps spent warming up
    label_smoothing: float = 0.0    # share of the target spread over all classes
    ema: float = 0.0                # decay of an exponential moving average of the
                                    # weights, evaluated instead of them (0 = off)
    bn_recompute: int = 0           # before each test, recompute the tested model's
                                    # BatchNorm statistics on this many clean training
                                    # images (0 = keep the running averages)
    rotation: float = 0.0           # max rotation in degrees (0 = no augmentation)
    translate: float = 0.0          # max shift, as a fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range
    clean_epochs: int = 0           # the last N epochs (all, if N >= epochs) train on
                                    # the images as they are: no rotation, shift, zoom
    seed: int = 0
    device: str = "auto"            # auto = CUDA, then MPS, then CPU
    eval_batch_size: int = 500      # evaluation batches (measured fastest on a CPU)
    cuda_graphs: bool = True        # on CUDA with SGD, replay each step as a CUDA graph
    precision: str = "auto"         # fp32 | bf16 (autocast; weights stay fp32) | auto:
                                    # bf16 on CPUs with native bf16, else fp32
    n_train: int | None = None      # use the first n training images (quick runs)
    n_test: int | None = None       # use the first n test images (quick runs)
    progress: bool = True           # tqdm bar and per-epoch test line

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler {self.scheduler!r} is not one of {SCHEDULERS}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if not 0 <= self.ema < 1:
            problems.append(f"ema must be in [0, 1) (e.g. 0.999), got {self.ema}")
        if self.bn_recompute < 0:
            problems.append(f"bn_recompute must be >= 0 (a number of images), "
                            f"got {self.bn_recompute}")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1), "
                            f"got {self.label_smoothing}")
        if self.rotation < 0:
            problems.append(f"rotation must be >= 0 (degrees), got {self.rotation}")
        if not 0 <= self.translate < 1:
            problems.append("translate must be in [0, 1) (a fraction of the image), "
                            f"got {self.translate}")
        self.scale = tuple(self.scale)  # a list (read from JSON, say) too
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale must be (low, high) with 0 < low <= high, e.g. "
                            f"(0.95, 1.05), got {self.scale}")
        # These torch itself refuses, but only once the data are loaded.
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.pct_start < 1:
            problems.append(f"pct_start must be in (0, 1), got {self.pct_start}")
        if self.step_size < 1 or not self.gamma > 0:
            problems.append("step_size must be >= 1 and gamma > 0, got "
                            f"{self.step_size} and {self.gamma}")
        if self.eval_batch_size < 1:
            problems.append(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.clean_epochs < 0:
            problems.append(f"clean_epochs must be >= 0, got {self.clean_epochs}")
        for field in ("n_train", "n_test"):
            # A negative n would slice from the end: all but n images, silently.
            n = getattr(self, field)
            if n is not None and n < 1:
                problems.append(f"{field} must be >= 1 (or None for all), got {n}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))


def augmented_epochs(epochs: int, clean_epochs: int) -> int:
    """How many epochs, from the first, train on warped digits: all but the last
    `clean_epochs` (none if clean_epochs >= epochs). Epoch k (from 1) is clean
    when k > augmented_epochs(...); it is also the index of the first clean one."""
    return max(epochs - clean_epochs, 0)


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite; the message says where and what to try."""


# ------------------------------------------------------------------ pieces
def make_optimizer(model: nn.Module, cfg: TrainConfig, graphed: bool = False
                   ) -> torch.optim.Optimizer:
    """The optimizer. `graphed` (CUDA graphs, SGD only) keeps the LR in a device
    tensor, which the scheduler updates in place."""
    device = next(model.parameters()).device
    # The fused kernels update all tensors in one call: on a CPU 4x faster than
    # the default per-tensor loop for SGD (~0.2 ms a step), 2x for Adam(W)
    # (~0.7 ms a step); SGD's is graph-safe too. Elsewhere (MPS), the default.
    fused = True if device.type in ("cpu", "cuda") else None
    if cfg.optimizer == "sgd":
        lr = torch.tensor(cfg.lr, device=device) if graphed else cfg.lr
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, fused=fused)
    adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                fused=fused)


def check_schedule(cfg: TrainConfig, n_train: int) -> None:
    """A ValueError if `cfg`'s LR schedule cannot run on `n_train` images: a
    one-cycle warm-up (pct_start of all steps) of exactly 1 step, on which
    torch's OneCycleLR divides by zero. A short quick run can meet it."""
    steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    # The very test torch's phase arithmetic fails on (end step pct*steps - 1 = 0).
    if cfg.scheduler == "onecycle" and cfg.pct_start * steps - 1 == 0:
        raise ValueError(
            f"onecycle cannot warm the LR up over exactly 1 step (pct_start x steps "
            f"= {cfg.pct_start:g} x {steps}): torch's OneCycleLR divides by zero. "
            "Train on more or fewer images or epochs, change pct_start, or use the "
            "scheduler 'none'")


def check_run(model: str, cfg: TrainConfig, data: MNIST) -> str:
    """What the CLIs check before training `model` with `cfg` on `data`: a
    ValueError when the subset sizes or the LR schedule cannot run; else the
    note `over_budget` gives ("" for a run within the target's budget)."""
    check_schedule(cfg, len(data.subset(cfg.n_train, cfg.n_test).train_labels))
    return over_budget(cfg.epochs, count_parameters(get_model(model)))


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The LR scheduler, or None. OneCycle steps per batch; the others per epoch.

    OneCycle keeps the momentum fixed (cycle_momentum=False): a CUDA graph
    bakes the momentum in, and one recipe must train the same on every device.
    """
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
            pct_start=cfg.pct_start, div_factor=10.0, final_div_factor=100.0,
            cycle_momentum=False)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "min", cfg.gamma,
                                                          patience=1)
    return None


# -------------------------------------------------------------------- loop
def _diverged(epoch: int, step_lo: int, step_hi: int,
              cfg: TrainConfig) -> DivergenceError:
    return DivergenceError(
        f"training diverged: the loss became NaN or infinite in epoch {epoch}, "
        f"between steps {step_lo} and {step_hi}. The usual cause is a learning rate "
        f"too high for this model (lr={cfg.lr}, optimizer={cfg.optimizer}, "
        f"scheduler={cfg.scheduler}): lower it (e.g. --lr {cfg.lr / 10:g}); also "
        "check that the inputs are normalised and the model has BatchNorm or a "
        "sensible initialisation.")


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, data: MNIST,
                mean: float, std: float, cfg: TrainConfig, epoch: int,
                gen: torch.Generator, sums: torch.Tensor,
                ema: WeightAverage | None = None, graphed: GraphedStep | None = None
                ) -> tuple[float, float]:
    """One pass over the training set; returns (mean loss, accuracy %).

    `sums` is the device tensor that `train_step` adds the loss and the number
    correct to; `graphed`, if given, replays the step as a CUDA graph.
    """
    model.train()
    device = data.train_images.device
    n, bs = len(data.train_labels), cfg.batch_size
    steps = math.ceil(n / bs)
    # The epoch's random transforms, drawn at once and moved to the device once:
    # on a GPU, copying a few numbers from the host every step costs more than
    # the step's own work on a model this small. The last `clean_epochs` have
    # none: the test digits are not warped, so the model ends on digits like them.
    clean = epoch > augmented_epochs(cfg.epochs, cfg.clean_epochs)
    theta = None if clean else random_affine(n, gen, cfg.rotation, cfg.translate,
                                             cfg.scale)
    theta = None if theta is None else theta.to(device)
    # The running sums stay on the device: reading them every step would force
    # a host-device sync per step, which is what makes naive GPU loops slow.
    sums.zero_()
    seen, check_every, last_check = 0, 50, 0
    # A static build (MNIST_PROGRESS=static, set by scripts/build_book.sh) saves
    # every refresh of a live bar as its own line: print one line per epoch instead.
    static = cfg.progress and os.environ.get("MNIST_PROGRESS") == "static"
    t_start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"Epoch {epoch:2d}",
               disable=not cfg.progress or static, file=sys.stdout, ncols=100,
               mininterval=1.0, leave=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                          "[{elapsed}<{remaining}{postfix}]")
    batches = batch_indices(n, bs, True, gen, device)
    for step, idx in enumerate(batches, start=1):
        th = None if theta is None else theta[(step - 1) * bs:step * bs]
        if graphed is not None:
            graphed(idx, th)
        else:
            train_step(model, opt, data, idx, th, mean, std, cfg, sums, ema)
        if cfg.scheduler == "onecycle":
            sched.step()
        seen += len(idx)
        if step % check_every == 0 or step == steps:
            total, correct = sums.tolist()  # one sync per `check_every` steps
            if not math.isfinite(total):
                bar.close()
                raise _diverged(epoch, last_check + 1, step, cfg)
            last_check = step
            bar.set_postfix_str(f"Loss={total / seen:.4f} "
                                f"Accuracy={100 * correct / seen:.2f}", refresh=False)
        bar.update(1)
    bar.close()
    total, correct = sums.tolist()
    mean_loss, acc = total / seen, 100.0 * correct / seen
    if static:
        print(f"Epoch {epoch:2d}: {steps}/{steps} steps "
              f"[{time.perf_counter() - t_start:5.1f} s] Loss={mean_loss:.4f} "
              f"Accuracy={acc:.2f}")
    return mean_loss, acc


def fit(model: nn.Module, data: MNIST, config: TrainConfig | None = None,
        name: str | None = None) -> History:
    """Train `model` on `data` as `config` says; return the per-epoch `History`.

    The data are moved to the device once. Normalisation uses the training
    set's own mean and std.
    """
    cfg = config or TrainConfig()
    gen = set_seed(cfg.seed)
    device = best_device(cfg.device)
    if device.type == "cpu":
        # Without it, each test pass spends much of its time on fresh pages.
        keep_freed_memory()
    data = data.subset(cfg.n_train, cfg.n_test)
    check_schedule(cfg, len(data.train_labels))  # before anything is moved or built
    data = data.to(device)
    model.to(device)
    mean, std = pixel_stats(data.train_images)
    check_outputs(model, data.train_images, mean, std)  # before any step is taken
    steps = math.ceil(len(data.train_labels) / cfg.batch_size)
    graphs = cfg.cuda_graphs and device.type == "cuda" and cfg.optimizer == "sgd"
    opt = make_optimizer(model, cfg, graphed=graphs)
    sched = make_scheduler(opt, cfg, steps)
    # With `ema`, an average of the weights over the last ~1/(1-ema) steps is
    # what gets evaluated (and returned): it smooths out the noise of the last
    # steps, so the test accuracy varies less from epoch to epoch.
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    evaluated = ema.module if ema is not None else model
    sums = torch.zeros(2, device=device)  # summed loss, number correct (per epoch)
    t_setup = time.perf_counter()
    graphed = (GraphedStep(model, opt, data, mean, std, cfg, sums, ema)
               if graphs else None)
    # Capturing the graphs is part of the run: its time goes to epoch 1.
    t_setup = time.perf_counter() - t_setup
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    name = name or type(model).__name__
    # Through JSON and back, so the in-memory history equals a reloaded one.
    hist = History(name, params, json.loads(json.dumps(asdict(cfg))),
                   environment(device, cfg.precision), layers=layer_list(model))
    if cfg.progress:
        print(f"{name}: {params:,} parameters, {len(data.train_labels):,} training "
              f"images, device {device}")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(model, opt, sched, data, mean, std,
                                            cfg, epoch, gen, sums, ema, graphed)
        if cfg.bn_recompute:
            recompute_bn_stats(evaluated, data.train_images[:cfg.bn_recompute],
                               mean, std, cfg.eval_batch_size)
        test_loss, correct, _ = evaluate(evaluated, data.test_images, data.test_labels,
                                         mean, std, cfg.eval_batch_size)
        if cfg.scheduler == "step":
            sched.step()
        elif cfg.scheduler == "plateau":
            sched.step(test_loss)
        n_test = len(data.test_labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rec = EpochRecord(epoch, train_loss, train_acc, test_loss,
                          100.0 * correct / n_test, float(opt.param_groups[0]["lr"]),
                          time.perf_counter() - t0 + (t_setup if epoch == 1 else 0.0))
        hist.epochs.append(rec)
        if cfg.progress:
            print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: "
                  f"{correct}/{n_test} ({rec.test_acc:.2f}%)", flush=True)
    if ema is not None:  # the caller's model ends with the weights that were tested
        model.load_state_dict(ema.module.state_dict())
    return hist


# --------------------------------------------------------------------- CLI
def add_config_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (--batch-size for batch_size, ...), each
    defaulting to None, i.e. to the model's recipe; `config_overrides` reads
    them back. `progress` is left to each CLI (--quiet), and so is `exclude`."""
    for f in fields(TrainConfig):
        if f.name == "progress" or f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "scale":  # a pair: --scale 0.95 1.05
            p.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"),
                           default=None, help="zoom range (default: the model's "
                           "recipe; 1 1 = no zoom)")
        elif f.name in ("n_train", "n_test"):
            p.add_argument(flag, type=int, default=None, help="subset (quick runs)")
        elif isinstance(f.default, bool):  # --cuda-graphs / --no-cuda-graphs
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help="(default: the model's recipe)")
        else:
            choices = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                       "precision": PRECISIONS}.get(f.name)
            p.add_argument(flag, type=type(f.default), default=None, choices=choices,
                           help="(default: the model's recipe)")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (`add_config_flags`)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if getattr(args, f.name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    from .models import FINAL_MODEL, MODELS

    p = argparse.ArgumentParser(
        prog="python -m mnist_lib.train",
        description="Train one of the book's models on MNIST.")
    p.add_argument("--model", default=FINAL_MODEL, choices=list(MODELS),
                   help=f"model to train (default {FINAL_MODEL})")
    p.add_argument("--data", default="data", help="MNIST root folder (default: data)")
    p.add_argument("--out", help="write the history as JSON to this file")
    p.add_argument("--checkpoint", help="write the tested weights to this file "
                   "(read them with mnist_lib.load_checkpoint)")
    add_config_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    from .models import save_checkpoint
    from .recipes import recipe, run

    args = build_parser().parse_args(argv)
    overrides = config_overrides(args) | {"progress": not args.quiet}
    try:
        cfg = recipe(args.model, **overrides)
        best_device(cfg.device)  # fail before loading data if it is not there
    except ValueError as err:
        build_parser().error(str(err))  # exits with status 2 and the usage line
    for flag, path in (("--out", args.out), ("--checkpoint", args.checkpoint)):
        if path and (why := unwritable(path)):
            build_parser().error(f"{flag}: {why}")
    data = load_mnist(args.data)
    try:
        note = check_run(args.model, cfg, data)
    except ValueError as err:
        build_parser().error(str(err))
    if note:
        print(note)
    try:
        model, hist = run(args.model, data, cfg)
    except DivergenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.model}: last-3 test accuracy "
          + ", ".join(f"{a:.2f}" for a in hist.last_test_acc(3))
          + f"; target ({rule_text()}) "
          + ("MET" if hist.meets_target() else "NOT met")
          + f"; {hist.total_seconds:.1f} s")
    if args.out:
        hist.save(args.out)
    if args.checkpoint:
        save_checkpoint(args.checkpoint, args.model, model, asdict(cfg))
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module: `fit`,
    # reached through `recipes`, raises the package copy's DivergenceError,
    # which this copy's `except` would not catch. So run the package's main.
    from mnist_lib.train import main as package_main
    sys.exit(package_main())
