"""Training: `run(name, data)` trains a book model with its recipe, and
`fit(model, data, config)` is the loop that does it, for any model that
returns log-probabilities: the way to train a net of your own.

Read `fit` top-down: it sets a run up (seed, device, data on the device,
optimizer, learning-rate schedule, weight average), defines `train_step`
(zero_grad -> forward -> loss -> backward -> step on one batch), then runs the
loop: each epoch, every batch's `train_step` and `sched.step()`, then the test
pass (`mnist_lib.evaluation.evaluate`); it returns the `History`. No
DataLoader and no PIL: the data sit on the device as one tensor and batches
are index slices. Two speed-ups for a GPU wrap that same step: `cuda_graphs`
(`mnist_lib.training.cuda_graphs`, on by default on CUDA, measured) and `compile`
(`torch.compile(model)`, off: slower than the eager loop where measured);
both change roundings, not the algorithm, and `compile` turns graphs off.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .training import cuda_graphs
from .augmentation import random_affine, warp, warps
from .averaging import WeightAverage
from .config import (ScheduleWarning, TrainConfig, as_json, augmented_epochs,
                     onecycle_warmup, recipe)
from .data import MNIST, batch_indices, normalize, pixel_stats, to_float
from .evaluation import check_outputs, evaluate, recompute_bn_stats
from .hardware import (ThreadsWarning, autocast_dtype, best_device, environment,
                       keep_freed_memory, use_threads)
from .training.history import EpochRecord, History
from .models import NAMED, count_parameters, get_model, layer_list
from .training.progress import EpochProgress
from .target import TARGET
from .utils.seeding import set_seed

# Steps between two reads of the running loss: each read waits for the device.
CHECK_EVERY = 50


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite; the message says where and what to try."""


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer `cfg` names, over the model's parameters."""
    device = next(model.parameters()).device
    # The fused kernels update all tensors in one call: on a CPU 4x faster than
    # the default per-tensor loop for SGD (~0.2 ms a step), 2x for Adam(W)
    # (~0.7 ms a step). Elsewhere (MPS), the default.
    fused = True if device.type in ("cpu", "cuda") else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, fused=fused)
    adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                fused=fused)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.OneCycleLR | None:
    """The one-cycle schedule, stepped after every optimizer step, or None for
    a constant learning rate.

    It keeps the momentum fixed (cycle_momentum=False), as every recorded run
    of the book's recipes did (and as a CUDA graph needs). A run
    too short for `cfg.pct_start`'s warm-up gets one it can take
    (`config.onecycle_warmup`, which `fit` reports).
    """
    if cfg.scheduler == "none":
        return None
    pct_start, _ = onecycle_warmup(cfg, cfg.epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=pct_start, div_factor=10.0, final_div_factor=100.0,
        cycle_momentum=False)


def scheduled_rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate `make_scheduler` gives each step of a run of `cfg`,
    `steps_per_epoch` steps an epoch: its optimizer steps a throwaway
    parameter, so nothing trains."""
    opt = make_optimizer(nn.Linear(1, 1, bias=False), cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradient: only the schedule moves
        if sched is not None:
            sched.step()
    return rates


def _diverged(epoch: int, step_lo: int, step_hi: int,
              cfg: TrainConfig) -> DivergenceError:
    return DivergenceError(
        f"training diverged: the loss became NaN or infinite in epoch {epoch}, "
        f"between steps {step_lo} and {step_hi}. The usual cause is a learning rate "
        f"too high for this model (lr={cfg.lr}, optimizer={cfg.optimizer}, "
        f"scheduler={cfg.scheduler}): lower it (e.g. lr={cfg.lr / 10:g}); also "
        "check that the inputs are normalised and the model has BatchNorm or a "
        "sensible initialisation.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `fit` in epoch `epoch`, the first that had not finished;
    `history` holds the epochs that had. The model's weights are part-way
    through epoch `epoch`. A KeyboardInterrupt still, so it stops what it
    stops."""

    def __init__(self, history: History, epoch: int) -> None:
        super().__init__(f"stopped in epoch {epoch}")
        self.history, self.epoch = history, epoch


def epoch_warps(cfg: TrainConfig, epoch: int, n: int, gen: torch.Generator,
                device: torch.device) -> torch.Tensor | None:
    """The random warps of one epoch's `n` training images, drawn at once and
    moved to the device once (on a GPU, copying a few numbers from the host
    every step costs more than a small model's step); None for an epoch
    without augmentation. The last `clean_epochs` have none: the test digits
    are not warped, so the model ends on digits like them."""
    if epoch > augmented_epochs(cfg.epochs, cfg.clean_epochs):
        return None
    theta = random_affine(n, gen, cfg.rotation, cfg.translate, cfg.scale)
    return None if theta is None else theta.to(device)


def fit(model: nn.Module, data: MNIST, config: TrainConfig | None = None,
        name: str | None = None, threads: int | str | None = None) -> History:
    """Train `model` on `data` as `config` says (default: `TrainConfig()`);
    return the per-epoch `History`. `name` names the run (default: the
    model's class). Any `nn.Module` that maps (B, 1, 28, 28) images to (B, 10)
    log-probabilities trains here, e.g. a net of your own:

        set_seed(0); net = Net()            # the initial weights, seeded
        history = fit(net, data, TrainConfig(epochs=5))
        save_checkpoint("net.pt", net, history)

    The data are moved to the device once. Normalisation uses the training
    set's own mean and std, which the history keeps (a checkpoint needs them).
    A run too short for its warm-up gets one it can take, with a
    `ScheduleWarning` that says so (`config.onecycle_warmup`). Ctrl-C raises
    `TrainingInterrupted`, which holds the epochs that finished.

    `threads`: the CPU threads to train on (`hardware.use_threads`). An int
    sets that many, "auto" picks them as `python -m mnist_lib train` does
    (one a core that other work leaves idle). None, the default, keeps
    torch's number as the caller left it: torch cannot tell a number set with
    `torch.set_num_threads` from its default, and a run's numbers depend on
    its thread count (the same seed and threads give the same numbers). Where
    that number is more than the cores, or than other work leaves idle, a
    `ThreadsWarning` says so once, and how to choose.

    On a CPU with glibc (Linux), fit changes two malloc settings of the whole
    process, for good (`hardware.keep_freed_memory`, which says how to keep
    glibc's own): freed memory is kept for reuse, up to 1 GiB, which makes
    its test passes faster and changes no number.
    """
    cfg = config or TrainConfig()
    gen = set_seed(cfg.seed)
    device = best_device(cfg.device)
    if note := use_threads(threads, check=device.type == "cpu"):
        warnings.warn(note, ThreadsWarning, stacklevel=2)
    if device.type == "cpu":
        # Process-wide (see the docstring): without it, each test pass spends
        # much of its time on fresh pages.
        keep_freed_memory()
    data = data.subset(cfg.n_train, cfg.n_test)
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    bs = cfg.batch_size
    steps = math.ceil(n_train / bs)
    if note := onecycle_warmup(cfg, cfg.epochs * steps)[1]:
        warnings.warn(note, ScheduleWarning, stacklevel=2)
    data = data.to(device)
    model.to(device)
    mean, std = pixel_stats(data.train_images)
    check_outputs(model, data.train_images, mean, std)  # before any step is taken

    opt = make_optimizer(model, cfg)
    graphs = cuda_graphs.usable(cfg, device)
    if graphs:
        cuda_graphs.lr_on_device(opt)  # before the scheduler: it updates it in place
    sched = make_scheduler(opt, cfg, steps)
    # With `ema`, an average of the weights, weighted towards the last steps
    # (`averaging.ema_decay` says how far back it reaches), is what gets
    # evaluated (and returned): it smooths out the noise of the last steps.
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    tested = ema.module if ema is not None else model
    net = torch.compile(model) if cfg.compile else model
    dtype = autocast_dtype(cfg.precision, device)
    sums = torch.zeros(2, device=device)  # summed loss, number correct (per epoch)

    def train_step(idx: torch.Tensor, theta: torch.Tensor | None) -> None:
        """One optimizer step on the training images `idx`, warped by `theta`.
        It adds the batch's summed loss and number correct to `sums` and reads
        nothing back to the host, so that a CUDA graph can capture it."""
        x = to_float(data.train_images[idx])
        if theta is not None:
            x = warp(x, theta)
        x = normalize(x, mean, std)
        y = data.train_labels[idx]

        opt.zero_grad(set_to_none=True)
        # Autocast runs the convolutions in bf16 and keeps the weights, their
        # gradients and the loss in fp32. No cache: a CUDA graph may capture this.
        with torch.autocast(device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None, cache_enabled=False):
            logp = net(x)
        loss = F.nll_loss(logp.float(), y)
        if eps := cfg.label_smoothing:  # target: 1 - eps on the label, eps/10 on each
            loss = (1 - eps) * loss - eps * logp.float().mean(1).mean()
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update()

        with torch.no_grad():
            sums[0] += loss * len(y)
            sums[1] += (logp.argmax(1) == y).sum()

    t_setup = time.perf_counter()
    step = (cuda_graphs.GraphedStep(train_step, model, opt, ema, sums, n_train, bs,
                                    warps(cfg.rotation, cfg.translate, cfg.scale))
            if graphs else train_step)
    t_setup = time.perf_counter() - t_setup  # capturing graphs: epoch 1's time

    name = name or type(model).__name__
    hist = History(name, count_parameters(model), as_json(cfg),
                   environment(device, cfg.precision), layers=layer_list(model),
                   normalization={"mean": mean, "std": std})
    if cfg.progress:
        print(f"{name}: {hist.params:,} parameters, {n_train:,} training images, "
              f"device {device}")
    progress = None
    try:  # Ctrl-C, wherever it lands, keeps the epochs that finished
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            theta = epoch_warps(cfg, epoch, n_train, gen, device)
            sums.zero_()
            progress = EpochProgress(epoch, steps, cfg.progress)
            checked = 0
            batches = batch_indices(n_train, bs, True, gen, device)
            for i, idx in enumerate(batches, 1):
                step(idx, None if theta is None else theta[(i - 1) * bs:i * bs])
                if sched is not None:
                    sched.step()
                if i % CHECK_EVERY and i != steps:
                    progress.step()
                    continue
                # The sums stay on the device; reading them makes the host wait
                # for it, so the loop reads them every CHECK_EVERY steps only.
                total, correct = sums.tolist()
                if not math.isfinite(total):
                    progress.close()
                    raise _diverged(epoch, checked + 1, i, cfg)
                checked = i
                seen = min(i * bs, n_train)
                progress.step(total / seen, 100 * correct / seen)
            train_loss, train_acc = total / n_train, 100.0 * correct / n_train
            progress.close(train_loss, train_acc)

            if cfg.bn_recompute:
                recompute_bn_stats(tested, data.train_images[:cfg.bn_recompute],
                                   mean, std, cfg.eval_batch_size)
            test_loss, n_correct, _ = evaluate(tested, data.test_images,
                                               data.test_labels, mean, std,
                                               cfg.eval_batch_size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0 + (t_setup if epoch == 1 else 0.0)
            hist.epochs.append(EpochRecord(epoch, train_loss, train_acc, test_loss,
                                           100.0 * n_correct / n_test,
                                           float(opt.param_groups[0]["lr"]),
                                           seconds))
            if cfg.progress:
                print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: "
                      f"{n_correct}/{n_test} ({hist.epochs[-1].test_acc:.2f}%)",
                      flush=True)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        raise TrainingInterrupted(hist, len(hist.epochs) + 1) from None
    if ema is not None:  # the caller's model ends with the weights that were tested
        model.load_state_dict(ema.module.state_dict())
    return hist


def run(model: str, data: MNIST, config: TrainConfig | None = None,
        threads: int | str | None = None, **overrides) -> tuple[nn.Module, History]:
    """Seed, build `model` by its book name and train it with its recipe
    (`mnist_lib.config.recipe`), or with `config`, on `threads` CPU threads
    (as `fit` takes them); return both.

    Seeding *before* building makes the initial weights part of the seed too:
    `run("Model_4", data, seed=1)` is reproducible end to end. A net of your
    own trains with `fit`.
    """
    if not isinstance(model, str) or model not in NAMED:
        got = repr(model) if isinstance(model, str) else f"a {type(model).__name__}"
        raise ValueError(f"run trains the book's models, by name ({', '.join(NAMED)}); "
                         f"got {got}. To train a net of your own, call fit: "
                         "history = fit(net, data, TrainConfig(...))")
    cfg = replace(config, **overrides) if config else recipe(model, **overrides)
    set_seed(cfg.seed)
    net = get_model(model)
    return net, fit(net, data, cfg, name=model, threads=threads)


def check_run(model: str | nn.Module, cfg: TrainConfig, data: MNIST) -> str:
    """What the CLIs check before training `model` (a book model's name, or
    a model) with `cfg` on `data`: a ValueError when the subset sizes cannot
    run; else the note `Target.over_budget` gives ("" for a run within the
    target's budget)."""
    data.subset(cfg.n_train, cfg.n_test)
    net = get_model(model) if isinstance(model, str) else model
    return TARGET.over_budget(cfg.epochs, count_parameters(net))
