"""Benchmark: the library's pipeline against the usual MNIST pipeline, and
the library's loop with and without its speed-ups for a GPU.

    python -m mnist_lib bench --epochs 15 --repeats 2 --json results/bench_cpu.json
    python -m mnist_lib bench --quick        # seconds; what the tests run
    python -m mnist_lib bench --loops --device cuda --json results/bench_loops_cuda.json

(a) library: the book's final model, data on the device, batched tensor
    augmentation (`mnist_lib.train.run`).
(b) reference: the way this exercise is usually trained: torchvision's MNIST
    dataset with PIL `RandomRotation`, `ToTensor`, `Normalize`, a `DataLoader`
    (batch 128, 2 workers), a ~6k-parameter net, SGD with StepLR.

`step_profile` says where one training step's time goes, operation by
operation (`torch.profiler`). Both pipelines run alternating, for the same
epochs on the same device; each epoch's time includes its test-set
evaluation. Each run has a fresh Python process of
its own, so that its peak memory is its own: in one process, the memory one
run's allocator kept for reuse would count in the next run's peak.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import load_mnist
from .hardware import describe_hardware, environment
from .models import FINAL_MODEL
from .target import TARGET
from .train import run
from .hardware import best_device, keep_freed_memory
from .utils.seeding import set_seed


class ReferenceNet(nn.Module):
    """The usual ~6k-parameter design: convs 1->4->10, max-pool, 1x1 10->8->4,
    convs 4->10->16->12->16, AvgPool 4, 1x1 to 10; ReLU, BatchNorm and 5% dropout
    after each convolution."""

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=False), nn.ReLU(),
                                 nn.BatchNorm2d(c_out), nn.Dropout(dropout))

        self.net = nn.Sequential(
            block(1, 4), block(4, 10),                  # 28 -> 26 -> 24
            nn.MaxPool2d(2),                            # 12
            block(10, 8, 1), block(8, 4, 1),            # 12
            block(4, 10), block(10, 16), block(16, 12), block(12, 16),  # 10, 8, 6, 4
            nn.AvgPool2d(4),                            # 1
            nn.Conv2d(16, 10, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.net(x).flatten(1), dim=-1)


def _peak_memory(device: torch.device) -> float:
    """Peak memory in MiB: GPU allocations on CUDA, else the peak resident
    memory of this process (not of DataLoader workers) since it started, or
    since /proc/self/clear_refs last reset it (Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10   # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if platform.system() == "Darwin" else 2**10)


def reference_run(root: str, epochs: int, device: torch.device, seed: int = 0,
                  n_train: int | None = None, n_test: int | None = None,
                  workers: int = 2) -> dict[str, Any]:
    """Train the reference pipeline; return per-epoch times and accuracies."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    set_seed(seed)
    norm = transforms.Normalize((0.1307,), (0.3081,))
    train_tf = transforms.Compose([transforms.RandomRotation((-7.0, 7.0), fill=(0,)),
                                   transforms.ToTensor(), norm])
    test_tf = transforms.Compose([transforms.ToTensor(), norm])
    train_set = datasets.MNIST(root, train=True, download=False, transform=train_tf)
    test_set = datasets.MNIST(root, train=False, download=False, transform=test_tf)
    if n_train:
        train_set = Subset(train_set, range(n_train))
    if n_test:
        test_set = Subset(test_set, range(n_test))
    cuda = device.type == "cuda"
    kwargs = dict(batch_size=128, num_workers=workers, pin_memory=cuda,
                  persistent_workers=workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, **kwargs)
    test_loader = DataLoader(test_set, shuffle=False, **kwargs)
    model = ReferenceNet().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.1)
    seconds, accs = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
        seconds.append(time.perf_counter() - t0)
        accs.append(100.0 * correct / len(test_set))
    return {"seconds": seconds, "test_acc": accs, "n_train": len(train_set),
            "params": sum(p.numel() for p in model.parameters())}


def library_run(root: str, epochs: int, device: torch.device, seed: int = 0,
                model: str = FINAL_MODEL, **overrides) -> dict[str, Any]:
    """Train the book's final model with its recipe; same report as `reference_run`."""
    data = load_mnist(root, verbose=False)
    _, hist = run(model, data, epochs=epochs, device=str(device), seed=seed,
                  progress=False, **overrides)
    n_train = overrides.get("n_train") or len(data.train_labels)
    return {"seconds": hist.column("seconds"), "test_acc": hist.column("test_acc"),
            "n_train": n_train, "params": hist.params, "config": hist.config,
            "env": hist.env, "layers": hist.layers}


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_epoch = [s for r in runs for s in r["seconds"]]
    med = statistics.median(per_epoch)

    def until_rule(r: dict[str, Any]) -> float | None:
        end = TARGET.first_epoch(r["test_acc"])
        return None if end is None else sum(r["seconds"][:end])

    untils = [until_rule(r) for r in runs]
    return {
        "epoch_s_median": med, "epoch_s_min": min(per_epoch),
        "epoch_s_max": max(per_epoch),
        "images_per_s": runs[0]["n_train"] / med,
        "run_s": statistics.median(sum(r["seconds"]) for r in runs),
        "until_rule_s": untils[0] if len(untils) == 1 else (
            statistics.median([u for u in untils if u is not None])
            if any(u is not None for u in untils) else None),
        "final_acc": statistics.fmean(r["test_acc"][-1] for r in runs),
        "rule_met": [u is not None for u in untils],
        "params": runs[0]["params"],
        "peak_mem_mib": (None if any(r["peak_mem_mib"] is None for r in runs)
                         else max(r["peak_mem_mib"] for r in runs)),
        # Each run's own numbers; what the library trained with and on is the
        # same for every run and is recorded once, in the report.
        "runs": [{k: v for k, v in r.items() if k not in ("config", "env", "layers")}
                 for r in runs],
    }


def _measured(run_fn, device: torch.device, *args, **kwargs) -> dict[str, Any]:
    """`run_fn(*args, **kwargs)`'s report, with this process's peak memory."""
    # `fit` sets this for the library's run, and it is for the whole process:
    # set it before either pipeline runs, so both run with it from the start.
    if device.type == "cpu":
        keep_freed_memory()
    return run_fn(*args, **kwargs) | {"peak_mem_mib": _peak_memory(device)}


def in_fresh_process(run_fn, device: torch.device, *args, **kwargs
                     ) -> dict[str, Any]:
    """`run_fn(device, *args, **kwargs)`, with its peak memory, in a new Python
    process (spawned: no memory, threads or CUDA state of this one)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(_measured, run_fn, device, *args, **kwargs).result()


def benchmark(root: str = "data", epochs: int = TARGET.max_epochs, repeats: int = 1,
              device: str = "auto", quick: bool = False, progress: bool = True,
              model: str = FINAL_MODEL) -> dict[str, Any]:
    """Run both pipelines `repeats` times, alternating, each run in a process
    of its own; return the report. The library trains `model` (the book's
    final model unless told), the reference its own small net."""
    dev = best_device(device)
    sizes = dict(n_train=2000, n_test=1000) if quick else {}
    load_mnist(root, verbose=False)  # fetched and checked once, before any run
    lib, ref = [], []
    for rep in range(repeats):
        for name, runs in (("library", lib), ("reference", ref)):
            if progress:
                print(f"repeat {rep + 1}/{repeats}: {name} ...", flush=True)
            if name == "library":
                runs.append(in_fresh_process(library_run, dev, root, epochs, dev,
                                             seed=rep, model=model, **sizes))
            else:
                runs.append(in_fresh_process(reference_run, dev, root, epochs, dev,
                                             seed=rep, workers=0 if quick else 2,
                                             **sizes))
    a, b = _summarise(lib), _summarise(ref)
    return {
        "library": a, "reference": b,
        "speedup_epoch": b["epoch_s_median"] / a["epoch_s_median"],
        "speedup_run": b["run_s"] / a["run_s"],
        "epochs": epochs, "repeats": repeats, "quick": quick,
        "model": model,
        # What the library trained with and on, as its History recorded it (its
        # precision is the recipe's; the reference always runs in fp32).
        "config": lib[0]["config"],
        "env": lib[0]["env"],
        "layers": lib[0]["layers"],
    }


def table(rep: dict[str, Any]) -> str:
    """The human-readable report."""
    def fmt(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    rows = [("parameters", "params", ",d"),
            ("s / epoch (median)", "epoch_s_median", ".2f"),
            ("s / epoch (min)", "epoch_s_min", ".2f"),
            ("s / epoch (max)", "epoch_s_max", ".2f"),
            ("images / s", "images_per_s", ",.0f"),
            ("full run (s)", "run_s", ".1f"),
            (f"first {TARGET.last} in a row >={TARGET.accuracy:g}% (s)", "until_rule_s",
             ".1f"),
            ("final test acc (%)", "final_acc", ".2f"),
            (f"last {TARGET.last} >={TARGET.accuracy:g}% (runs)", "last_met", ""),
            ("peak memory (MiB)", "peak_mem_mib", ".0f")]

    def last_met(side: dict[str, Any]) -> str | None:  # runs meeting the target
        runs = side.get("runs")
        if not runs:
            return None
        met = sum(TARGET.met_by(r["test_acc"], side["params"]) for r in runs)
        return f"{met} of {len(runs)}"
    env = rep["env"]
    # Short header lines: the book shows this table in a box ~80 characters wide.
    out = [f"device: {env['device']} ({describe_hardware(env)})",
           f"torch {env['torch']}, {_count(rep['epochs'], 'epoch')} x "
           f"{_count(rep['repeats'], 'repeat')}"
           + (", QUICK" if rep["quick"] else ""),
           f"library in {env.get('precision', 'fp32')}, reference in fp32",
           f"{'':28}{'library':>12}{'reference':>12}"]
    sides = [{**rep[s], "last_met": last_met(rep[s])} for s in ("library", "reference")]
    for label, key, spec in rows:
        lib, ref = (side[key] for side in sides)
        out.append(f"{label:28}{fmt(lib, spec):>12}{fmt(ref, spec):>12}")
    out.append("speed-up (reference / library): "
               f"{rep['speedup_epoch']:.2f}x per epoch, "
               f"{rep['speedup_run']:.2f}x per full run")
    if any(rep[side]["until_rule_s"] is None for side in ("library", "reference")):
        out.append(f"—: no {TARGET.last} epochs in a row reached the target")
    if rep["library"]["peak_mem_mib"] is not None:
        out.append("peak memory: the main process's; the reference's loader "
                   "workers not counted")
    else:
        out.append("peak memory: not in this record (it was not measured for "
                   "each run on its own)")
    return "\n".join(out)


# ------------------------------------------------- the loop and its speed-ups
# The same loop (`train.fit`) as it is, with each step replayed as a CUDA
# graph, and with the model compiled: what each option of TrainConfig buys.
LOOPS = {"eager": dict(cuda_graphs=False, compile=False),
         "cuda graphs": dict(cuda_graphs=True, compile=False),
         "torch.compile": dict(cuda_graphs=False, compile=True)}


def loops(root: str = "data", epochs: int = TARGET.max_epochs, device: str = "auto",
          quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the final model once with each of `LOOPS` (seed 0, a fresh
    process each) on `device`; return each one's epoch times and accuracies.
    Epoch 1 includes the capture or the compilation, reported on its own."""
    dev = best_device(device)
    sizes = dict(n_train=2000, n_test=1000) if quick else {}
    load_mnist(root, verbose=False)
    env = environment(dev)
    modes = LOOPS if dev.type == "cuda" else {"eager": LOOPS["eager"],
                                              "torch.compile": LOOPS["torch.compile"]}
    out: dict[str, Any] = {}
    for name, options in modes.items():
        if progress:
            print(f"{name} ...", flush=True)
        try:
            r = in_fresh_process(library_run, dev, root, epochs, dev, seed=0,
                                 **sizes, **options)
        except Exception as err:  # a mode that fails here is reported, not fatal
            out[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        later = r["seconds"][1:] or r["seconds"]
        out[name] = {"first_epoch_s": r["seconds"][0],
                     "epoch_s_median": statistics.median(later),
                     "run_s": sum(r["seconds"]), "test_acc": r["test_acc"],
                     "peak_mem_mib": r["peak_mem_mib"], "options": options}
        env = r["env"]  # as the run recorded it (its precision, its threads)
    return {"modes": out, "epochs": epochs, "quick": quick, "model": FINAL_MODEL,
            "env": env}


def _count(n: int, noun: str) -> str:
    """'1 epoch', '15 epochs': a quick build's tables run one."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def loops_table(rep: dict[str, Any]) -> str:
    """The loop comparison as text: one line a mode."""
    env = rep["env"]
    lines = [f"device: {env['device']} ({describe_hardware(env)}), torch "
             f"{env['torch']}, {_count(rep['epochs'], 'epoch')}"
             + (", QUICK" if rep["quick"] else ""),
             f"{'loop':16}{'epoch 1 (s)':>12}{'later (s)':>11}{'run (s)':>9}"
             f"{'last acc':>10}"]
    eager = rep["modes"].get("eager", {}).get("epoch_s_median")
    for name, m in rep["modes"].items():
        if "error" in m:
            lines.append(f"{name:16}failed: {m['error'][:60]}")
            continue
        lines.append(f"{name:16}{m['first_epoch_s']:12.2f}{m['epoch_s_median']:11.3f}"
                     f"{m['run_s']:9.1f}{m['test_acc'][-1]:10.2f}"
                     + (f"   {eager / m['epoch_s_median']:.2f}x eager"
                        if eager and name != "eager" else ""))
    return "\n".join(lines)


# ------------------------------------------------------------ one step, profiled
def step_profile(model: nn.Module, device: torch.device, batch: int = 128,
                 steps: int = 10) -> tuple[list[tuple[str, float]], int]:
    """Where a training step's CPU time goes: `model` trained on random
    `batch`-image batches (SGD with momentum, 32-bit), 3 warm-up steps, then
    `steps` under `torch.profiler`. Returns each operation's share of the
    CPU time spent in it alone (its self time), largest first, and the
    operations a step runs. On a GPU the CPU's time is mostly the launching
    of work. The profiler's own messages to stderr are silenced."""
    from torch.profiler import ProfilerActivity, profile

    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def train_step() -> None:
        opt.zero_grad()
        F.nll_loss(model(x), y).backward()
        opt.step()

    for _ in range(3):
        train_step()
    saved = os.dup(2)  # the profiler's C++ side logs to file descriptor 2
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    train_step()
            ops = list(prof.key_averages())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    total = sum(op.self_cpu_time_total for op in ops) or 1.0
    shares = sorted(((op.key, op.self_cpu_time_total / total) for op in ops),
                    key=lambda kv: -kv[1])
    return shares, sum(op.count for op in ops) // steps


# Where a profiled operation's time belongs, by the fragments of its name
# (first match wins): the layer kinds' own operations on CPU and CUDA, then
# the work around them. The autograd engine's own bookkeeping comes first,
# since its events name the layer they differentiate.
OP_KINDS = (("autograd engine", ("autograd::",)),
            ("convolution", ("conv",)),
            ("BatchNorm", ("batch_norm",)),
            ("pooling", ("pool",)),
            ("ReLU", ("relu", "threshold", "clamp_min")),
            ("loss", ("nll_loss", "log_softmax")),
            ("optimizer", ("Optimizer", "_foreach", "sgd")),
            ("memory", ("fill_", "zero_", "empty", "copy_", "resize_")))
LAYER_KINDS = ("convolution", "BatchNorm", "pooling", "ReLU", "loss")


def profile_by_kind(shares: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """`step_profile`'s shares summed by what the operations do (`OP_KINDS`),
    largest first: for a layer kind its forward and backward pass (an
    operation whose name says "backward") and their total; for the rest
    (optimizer, memory, autograd engine, other) the total only. An operation
    no fragment names goes to "other", never to a guessed kind."""
    rows: dict[str, dict[str, float]] = {}
    for name, share in shares:
        kind = next((k for k, frags in OP_KINDS if any(f in name for f in frags)),
                    "other")
        row = rows.setdefault(kind, {"forward": 0.0, "backward": 0.0, "total": 0.0}
                              if kind in LAYER_KINDS else {"total": 0.0})
        if kind in LAYER_KINDS:
            row["backward" if "backward" in name.lower() else "forward"] += share
        row["total"] += share
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["total"]))
