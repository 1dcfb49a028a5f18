"""Training (mnist_lib.train, mnist_lib.training.cuda_graphs): learning, determinism, the
optimizers and the schedule, divergence, the weight average in a run, clean
epochs, bf16, CUDA graphs, the progress line."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mnist_lib import config as C
from mnist_lib.training import cuda_graphs
from mnist_lib import train as T
from mnist_lib.averaging import WeightAverage
from mnist_lib.data import pixel_stats
from mnist_lib.evaluation import (ModelOutputError, evaluate,
                                  recompute_bn_stats)
from mnist_lib.models import get_model
from mnist_lib.train import run


ROOT = Path(__file__).resolve().parents[1]



def quick(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, scheduler="none", progress=False,
                device="cpu", n_train=2000, n_test=1000)
    return C.TrainConfig(**(base | kw))



def test_short_training_lowers_loss_and_beats_chance(small):
    _, hist = run("Model_2", small, quick(epochs=3))
    losses = hist.column("train_loss")
    assert losses[-1] < 0.5 * losses[0]
    assert hist.epochs[-1].test_acc > 50.0  # chance is 10%
    assert len(hist.epochs) == 3 and hist.params == 7308



def test_same_seed_same_history_other_seed_differs(small):
    cfg = quick(epochs=1, rotation=7.0)
    _, a = run("Model_4", small, cfg)
    _, b = run("Model_4", small, cfg)
    _, c = run("Model_4", small, quick(epochs=1, rotation=7.0, seed=1))
    assert a.column("train_loss") == b.column("train_loss")
    assert a.column("test_acc") == b.column("test_acc")
    assert a.column("train_loss") != c.column("train_loss")



@pytest.mark.parametrize("sched", ["none", "onecycle"])
def test_every_scheduler_runs_and_records_lr(small, sched):
    hist = T.fit(get_model("Model_2"), small, quick(scheduler=sched))
    lrs = hist.column("lr")
    if sched == "onecycle":
        assert lrs[-1] < 0.05 / 100  # annealed far below the peak
    else:
        assert lrs == [0.05, 0.05]



class _Explodes(nn.Module):
    """Returns NaN log-probabilities from its 5th call on."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = torch.log_softmax(self.lin(x.flatten(1)), -1)
        return out * float("nan") if self.calls >= 5 else out



def test_nan_loss_stops_with_a_clear_message(small):
    with pytest.raises(T.DivergenceError) as exc:
        T.fit(_Explodes(), small, quick(epochs=1))
    msg = str(exc.value)
    assert "epoch 1" in msg and "between steps 1 and" in msg
    assert "learning rate" in msg and "(e.g. lr=0.005)" in msg  # a Python argument



def _raise_in_epoch_2(monkeypatch, name: str):
    """Make `T.<name>` raise KeyboardInterrupt (Ctrl-C) on its second call,
    in epoch 2; for batch_indices, at the second step of epoch 2."""
    real, calls = getattr(T, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if name == "batch_indices":
            return (idx if len(calls) < 2 or i < 2 else _ctrl_c()
                    for i, idx in enumerate(real(*args, **kwargs), 1))
        return _ctrl_c() if len(calls) == 2 else real(*args, **kwargs)

    monkeypatch.setattr(T, name, interrupted)


def _ctrl_c():
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["batch_indices", "evaluate", "EpochProgress"])
def test_ctrl_c_keeps_the_epochs_that_finished(small, monkeypatch, where):
    """Ctrl-C in epoch 2, wherever it lands (a training step, the test pass,
    between two epochs' work), raises TrainingInterrupted: a KeyboardInterrupt
    that names epoch 2 and holds epoch 1's record, as the same run without
    Ctrl-C recorded it."""
    cfg = quick(epochs=3, n_train=512, n_test=200)
    _, full = run("Model_2", small, cfg)
    _raise_in_epoch_2(monkeypatch, where)
    with pytest.raises(KeyboardInterrupt) as stop:
        run("Model_2", small, cfg)
    assert isinstance(stop.value, T.TrainingInterrupted) and stop.value.epoch == 2
    (kept,) = stop.value.history.epochs
    assert replace(kept, seconds=0) == replace(full.epochs[0], seconds=0)


def test_fit_keeps_the_callers_threads_and_says_once_when_fewer_run_faster(
        small, monkeypatch):
    """fit (and run) train on torch's thread count as the caller left it:
    torch cannot tell a number set with torch.set_num_threads from its
    default. Beside busy cores, a ThreadsWarning says once how to pick them as
    `train` does (threads="auto"); threads=N sets N, warned above the cores."""
    import warnings

    import mnist_lib.hardware as hw

    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(hw, "_SETTLED", set())
    monkeypatch.setattr(hw, "_AUTO_MOST", [])
    monkeypatch.setattr(hw, "usable_cpus", lambda: {0, 1})
    monkeypatch.setattr(hw, "idle_cores", lambda: 0.9)  # a core busy elsewhere
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    cfg = quick(epochs=1, n_train=256, n_test=100)
    with pytest.warns(hw.ThreadsWarning, match=r"training on torch's 2 CPU threads, "
                      r"but 0\.9 of 2 cores idle as the run started: .* so 1 may "
                      r"run faster\. threads=\"auto\" \(to fit or run\) picks"):
        T.fit(get_model("Model_2"), small, cfg)
    assert chosen == []  # the caller's number is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        T.fit(get_model("Model_2"), small, cfg)
        run("Model_2", small, cfg, threads="auto")
    assert chosen == [1]
    with pytest.warns(hw.ThreadsWarning, match=r"threads=3: more than the 2 CPU "
                      r"core\(s\) this process may use"):
        T.fit(get_model("Model_2"), small, cfg, threads=3)
    assert chosen == [1, 3]
    with pytest.raises(ValueError, match="threads must be a number >= 1"):
        T.fit(get_model("Model_2"), small, cfg, threads=0)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_train(small, name, cls):
    cfg = quick(optimizer=name, lr=0.01, weight_decay=0.01, epochs=3)
    opt = T.make_optimizer(get_model("Model_2"), cfg)
    assert type(opt) is cls and opt.defaults["weight_decay"] == 0.01
    assert opt.defaults["fused"]  # the one-kernel update, on a CPU
    _, hist = run("Model_2", small, cfg)
    losses = hist.column("train_loss")
    assert losses[-1] < 0.5 * losses[0] and hist.epochs[-1].test_acc > 50.0



def test_a_one_cycle_warm_up_of_one_step_adapts_and_says_so(small):
    """2,000 images in 4 steps of 500, a quarter of them warm-up: 1 step, on
    which torch's OneCycleLR divides by zero. The run warms up over 2 steps
    instead (LR from its lowest to its peak at the second step), with a
    warning that says so; a run of 2 steps has no warm-up at all."""
    cfg = quick(scheduler="onecycle", batch_size=500, epochs=1, pct_start=0.25)
    assert C.onecycle_warmup(cfg, 4)[0] == 0.5
    with pytest.warns(C.ScheduleWarning, match=r"exactly 1 step \(pct_start x "
                      r"steps = 0.25 x 4\)(?s:.*)warm-up is 2 steps, as with "
                      r"pct_start=0.5"):
        hist = T.fit(get_model("Model_2"), small, cfg)
    assert len(hist.epochs) == 1 and hist.config["pct_start"] == 0.25  # as asked
    opt = T.make_optimizer(get_model("Model_2"), cfg)
    sched = T.make_scheduler(opt, cfg, steps_per_epoch=4)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:2] == pytest.approx([cfg.lr / 10, cfg.lr]) and lrs[2] < cfg.lr
    assert lrs[3] == pytest.approx(cfg.lr / 1000)
    # Two steps, half of them warm-up: no warm-up; the LR falls from near the peak.
    two = replace(cfg, pct_start=0.5)
    pct, note = C.onecycle_warmup(two, 2)
    assert pct * 2 < 1 and "warm-up is none" in note
    with pytest.warns(C.ScheduleWarning):
        T.fit(get_model("Model_2"), small, replace(two, n_train=1000))
    # Other warm-ups, however short, are torch's own, as before: no note.
    for other in (replace(cfg, pct_start=0.5), replace(cfg, pct_start=0.1),
                  replace(cfg, scheduler="none")):
        assert C.onecycle_warmup(other, 4) == (other.pct_start, "")


def test_huge_learning_rate_diverges(small):
    with pytest.raises(T.DivergenceError):
        T.fit(get_model("Model_1"), small, quick(epochs=2, lr=1e6))



def test_ema_model_is_the_one_tested_and_returned(small):
    """With `ema`, the reported test accuracy is the averaged weights', and the
    model handed back holds those weights, not the last step's."""
    model, hist = run("Model_4", small, quick(epochs=2, ema=0.9))
    _, plain = run("Model_4", small, quick(epochs=2))
    data = small.subset(None, 1000)
    mean, std = pixel_stats(small.train_images[:2000])
    _, correct, _ = evaluate(model, data.test_images, data.test_labels, mean, std)
    assert 100.0 * correct / 1000 == hist.epochs[-1].test_acc
    # Same seed and data: only the averaging differs, and it changes the weights.
    assert hist.column("train_loss") == plain.column("train_loss")
    # The test loss, not the accuracy: whole digits out of 1,000 can tie.
    assert hist.column("test_loss") != plain.column("test_loss")



class _Head(nn.Module):
    """A one-layer model: `layer`, then `finish` on its output."""

    def __init__(self, layer: nn.Module, finish):
        super().__init__()
        self.layer, self.finish = layer, finish

    def forward(self, x):
        return self.finish(self.layer(x))



@pytest.mark.parametrize("layer, finish, msg", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), lambda x: x,
     "does not return log-probabilities"),
    (nn.Conv2d(1, 10, 28), lambda x: torch.log_softmax(x, 1),
     "returns (2, 10, 1, 1) for 2 images"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 9)), lambda x: torch.log_softmax(x, 1),
     "returns (2, 9) for 2 images"),
    (nn.Conv2d(3, 10, 28), lambda x: torch.log_softmax(x.flatten(1), 1),
     "to have 3 channels, but got 1"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
     lambda x: (torch.log_softmax(x, 1), x), "returns a tuple for 2 images"),
])
def test_fit_refuses_a_model_whose_output_it_cannot_use(small, layer, finish, msg):
    """Raw logits would "train" silently with a negative loss; a wrong shape
    would fail inside nll_loss. Both are caught before the first step, with
    the fix."""
    model = _Head(layer, finish)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ModelOutputError, match=re.escape(msg)) as exc:
        T.fit(model, small, quick(epochs=1))
    assert "log_softmax" in str(exc.value) or "1 channel" in str(exc.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.training  # the check's eval mode is undone



@pytest.mark.parametrize("model", [
    lambda: _Head(nn.Flatten(), lambda x: torch.log_softmax(x[:, :10], 1)),
    lambda: get_model("Model_2").requires_grad_(False),
])
def test_fit_refuses_a_model_with_nothing_to_train(small, model):
    # Before: "generator raised StopIteration" or "empty parameter list".
    with pytest.raises(ModelOutputError, match="has no trainable parameters.*\n.*"
                                               r"nn.Conv2d.*requires_grad_\(True\)"):
        T.fit(model(), small, quick(epochs=1))



@pytest.mark.parametrize("model, got", [("Net", "got 'Net'"),
                                        (nn.Linear(784, 10), "got a Linear")])
def test_run_points_a_net_of_ones_own_to_fit(small, model, got):
    # run knows the book's models by name only; the door for any other is fit.
    with pytest.raises(ValueError, match=f"run trains the book's models, by name "
                       f"\\(Model_1, .*\\); {got}. To train a net of your own, call "
                       f"fit: history = fit\\(net, data, TrainConfig"):
        run(model, small, quick(epochs=1))


def test_fit_trains_a_net_of_ones_own_by_its_class_name(small):
    hist = T.fit(_Head(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                       lambda x: torch.log_softmax(x, 1)), small, quick(epochs=1))
    assert hist.model == "_Head" and hist.normalization and len(hist.epochs) == 1


def test_clean_epochs_train_the_last_epochs_on_unwarped_images(small, monkeypatch):
    """The first epochs train exactly as with augmentation throughout; the last
    `clean_epochs` warp no image; more clean epochs than epochs means all."""
    # Patched in train's namespace, where fit's train_step looks `warp` up.
    real_warp, warped = T.warp, []

    def counting_warp(x, theta):
        warped.append(len(x))
        return real_warp(x, theta)

    monkeypatch.setattr(T, "warp", counting_warp)
    cfg = quick(epochs=3, rotation=7.0, translate=0.05, scale=(0.95, 1.05))
    _, augmented = run("Model_4", small, cfg)
    assert sum(warped) == 3 * 2000
    warped.clear()
    _, clean = run("Model_4", small, cfg, clean_epochs=2)
    assert sum(warped) == 2000                  # epoch 1 only
    for col in ("train_loss", "train_acc", "test_acc"):
        assert clean.column(col)[0] == augmented.column(col)[0]
    assert clean.column("train_loss")[1:] != augmented.column("train_loss")[1:]
    warped.clear()
    run("Model_4", small, cfg, clean_epochs=5)
    assert warped == []



def test_bn_recompute_changes_what_is_tested_not_how_it_trains(small):
    """The pass runs between training and testing: the training history is
    the same step for step, the test accuracies differ, and the model handed
    back carries the recomputed statistics, so it scores what was reported."""
    model, hist = run("Model_4", small, quick(epochs=2, ema=0.9, bn_recompute=1000))
    _, plain = run("Model_4", small, quick(epochs=2, ema=0.9))
    assert hist.column("train_loss") == plain.column("train_loss")
    assert hist.column("test_loss") != plain.column("test_loss")
    data = small.subset(None, 1000)
    mean, std = pixel_stats(small.train_images[:2000])
    _, correct, _ = evaluate(model, data.test_images, data.test_labels, mean, std)
    assert 100.0 * correct / 1000 == hist.epochs[-1].test_acc
    # Recomputing again on the same images finds the same statistics.
    bn = model.block1[1][1]
    before = bn.running_mean.clone(), bn.running_var.clone()
    recompute_bn_stats(model, small.train_images[:1000], mean, std)
    assert torch.allclose(bn.running_mean, before[0], atol=1e-6)
    assert torch.allclose(bn.running_var, before[1], atol=1e-6)



def test_bf16_training_learns_and_keeps_fp32_weights(small):
    model, bf16 = run("Model_2", small, quick(epochs=3, precision="bf16"))
    _, fp32 = run("Model_2", small, quick(epochs=3, precision="fp32"))
    losses = bf16.column("train_loss")
    assert losses[-1] < 0.5 * losses[0] and bf16.epochs[-1].test_acc > 50.0
    # bf16 learns as fp32 does. The training loss, not the test accuracy on
    # 1,000 images after 3 short epochs, which swings by points with the threads.
    assert losses[-1] == pytest.approx(fp32.column("train_loss")[-1], rel=0.1)
    assert losses != fp32.column("train_loss")  # autocast did change the arithmetic
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert bf16.env["precision"] == "bf16 autocast" and fp32.env["precision"] == "fp32"



def test_static_progress_prints_one_line_per_epoch(small, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_PROGRESS", "static")
    T.fit(get_model("Model_2"), small, quick(epochs=2, progress=True))
    out = capsys.readouterr().out
    assert "\r" not in out
    epochs = [l for l in out.splitlines() if l.startswith("Epoch")]
    assert len(epochs) == 2 and "Loss=" in epochs[0] and "Accuracy=" in epochs[0]
    assert len([l for l in out.splitlines() if l.startswith("Test set:")]) == 2



def test_progress_bars_go_to_stderr_and_results_to_stdout(small, capsys,
                                                         monkeypatch):
    """`python -m mnist_lib train > log` keeps the results: the bar's every
    refresh (carriage returns) goes to stderr."""
    monkeypatch.delenv("MNIST_PROGRESS", raising=False)
    T.fit(get_model("Model_2"), small, quick(epochs=1, progress=True))
    out, err = capsys.readouterr()
    assert "Epoch  1" in err and "Epoch" not in out and "\r" not in out
    assert "Test set:" in out


def test_onecycle_keeps_momentum_fixed(small):
    """One recipe must train the same everywhere: a CUDA graph bakes the
    momentum in, so the schedule may not change it."""
    model = get_model("Model_4")
    cfg = quick(scheduler="onecycle", epochs=2)
    opt = T.make_optimizer(model, cfg)
    sched = T.make_scheduler(opt, cfg, steps_per_epoch=10)
    lrs, moms = [], []
    for _ in range(19):  # the scheduler's first step was taken on construction
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
    assert len(set(moms)) == 1 and moms[0] == cfg.momentum
    assert max(lrs) == pytest.approx(cfg.lr) and lrs[-1] == pytest.approx(cfg.lr / 1000)



cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")



@cuda
def test_graph_warm_up_leaves_no_trace(small):
    """Capturing runs a few steps; afterwards weights, BatchNorm statistics
    and momentum must be as before, or the graphed run trains differently."""
    cfg = quick(device="cuda", rotation=7.0, ema=0.9, n_train=1000)
    model = get_model("Model_4").cuda()
    data = small.subset(1000, 200).to("cuda")
    opt = T.make_optimizer(model, cfg)
    cuda_graphs.lr_on_device(opt)
    # Give the momentum buffers a value, as a real run would have.
    model(torch.randn(8, 1, 28, 28, device="cuda")).sum().backward()
    opt.step()
    ema = WeightAverage(model, cfg.ema)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sums = torch.zeros(2, device="cuda")

    def step(idx, theta):  # the shape of fit's train_step
        opt.zero_grad(set_to_none=True)
        x = data.train_images[idx].float().unsqueeze(1) / 255
        loss = torch.nn.functional.nll_loss(model(x), data.train_labels[idx])
        loss.backward()
        opt.step()
        ema.update()
        sums[0] += loss.detach()

    cuda_graphs.GraphedStep(step, model, opt, ema, sums, 1000, cfg.batch_size,
                            warped=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not s["momentum_buffer"].any() for s in opt.state.values())
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(cfg.lr) and not sums.any()
    assert ema.steps == 0


@cuda
@pytest.mark.parametrize("fast", [dict(cuda_graphs=True), dict(compile=True)])
def test_accelerated_and_eager_cuda_runs_agree(small, fast):
    """Same seed, same batches: replaying CUDA graphs, or a compiled model,
    trains like the eager loop (up to cuDNN's non-determinism and the fused
    kernels' roundings), including the short last batch."""
    # bn_recompute rewrites, between epochs, buffers the graphed EMA update writes.
    # A clean last epoch replays the augmented graph with identity transforms.
    cfg = quick(device="cuda", scheduler="onecycle", rotation=7.0, ema=0.9,
                bn_recompute=500, clean_epochs=1,
                n_train=1950, epochs=3)  # 1950 = 30 x 64 + 30
    _, eager = run("Model_4", small, cfg, cuda_graphs=False, compile=False)
    _, fast_run = run("Model_4", small, cfg, **({"cuda_graphs": False} | fast))
    # cuDNN's atomics make two eager CUDA runs differ too, and compiled kernels
    # round otherwise: on an H200 epoch 3's loss differed by 2.5% (graphs) and
    # 3.6% (compile). A broken replay or compile is off by far more.
    assert fast_run.column("train_loss") == pytest.approx(eager.column("train_loss"),
                                                          rel=0.06)
    # Early epochs on 1,000 test images swing by a point or two between any two
    # CUDA runs (cuDNN's atomics); a broken replay is off by far more.
    assert fast_run.column("test_acc") == pytest.approx(eager.column("test_acc"),
                                                        abs=3.0)
    assert fast_run.column("lr") == pytest.approx(eager.column("lr"))


def test_scheduled_rates_are_the_schedulers_own_step_by_step():
    """One rate a step, read before each step as `fit` trains with it: the
    one-cycle run starts at a tenth of the peak and reaches the peak where
    its warm-up ends; a constant rate stays put."""
    cycle = quick(scheduler="onecycle", epochs=2, lr=0.2, pct_start=0.25)
    rates = T.scheduled_rates(cycle, steps_per_epoch=10)
    assert len(rates) == 20
    assert rates[0] == pytest.approx(0.02) and max(rates) == pytest.approx(0.2)
    assert rates.index(max(rates)) == round(0.25 * 20) - 1 and rates[-1] < 0.001
    assert T.scheduled_rates(replace(cycle, scheduler="none"), 10) == [0.2] * 20
