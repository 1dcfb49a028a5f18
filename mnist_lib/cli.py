"""The command line, every command in one place:

    python -m mnist_lib data  [--root data]                 fetch and verify MNIST
    python -m mnist_lib train --model Model_4 --out run.json   (also: mnist-train)
    python -m mnist_lib seeds --model Model_4 --seeds 15 --out results/seeds.json
    python -m mnist_lib bench --epochs 15 --json results/bench_cpu.json
    python -m mnist_lib rf mnist_lib.models:Model_4 --input 1,28,28  (also: mnist-rf)

This module is the program; the modules it calls are the library and parse
no arguments. Every bad argument is an argparse error (exit 2) that names the
problem and the fix; a run that fails (a diverging loss, a model the RF
calculator refuses, data that cannot be fetched) prints "error: ..." (exit 1).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import sys
import textwrap
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from . import ablation, bench, ladder, seeds
from .config import (OPTIMIZERS, PRECISIONS, SCHEDULERS, TrainConfig, recipe,
                     recipe_differences)
from .data import MNIST, DataError, ensure_mnist, load_mnist
from .models import FINAL_MODEL, MODELS, save_checkpoint
from .rf import COLUMNS, LEGEND, RFError, check_columns, receptive_field
from .target import TARGET
from .train import DivergenceError, check_run, run
from .utils import atomic_write_json, best_device, quiet_on_closed_pipe, unwritable


# ------------------------------------------------------------- config flags
def add_config_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (--batch-size for batch_size, ...), each
    defaulting to None, i.e. to the model's recipe; `config_overrides` reads
    them back. `progress` is left to each command (--quiet), and so is `exclude`."""
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


def _checked_config(p: argparse.ArgumentParser, model: str, overrides: dict):
    """The recipe with the overrides, on a device that is there, or exit 2."""
    try:
        cfg = recipe(model, **overrides)
        best_device(cfg.device)  # fail before loading data if it is not there
    except ValueError as err:
        p.error(str(err))
    return cfg


def _data_for(p: argparse.ArgumentParser, model: str, cfg: TrainConfig,
              root: str) -> MNIST:
    """MNIST, once the run is known to fit it (or exit 2); prints the note
    that a run over the target's budget cannot meet it."""
    mnist = load_mnist(root)
    try:
        note = check_run(model, cfg, mnist)
    except ValueError as err:
        p.error(str(err))
    if note:
        print(note)
    return mnist


# --------------------------------------------------------------------- data
def data(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Fetch MNIST and verify its MD5s.")
    p.add_argument("--root", default="data", help="folder to keep MNIST in")
    args = p.parse_args(argv)
    try:
        raw = ensure_mnist(args.root)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"MNIST verified (4 files, canonical MD5s) in {raw}")
    return 0


# -------------------------------------------------------------------- train
def train_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="Train one of the book's models on MNIST.")
    p.add_argument("--model", default=FINAL_MODEL, choices=list(MODELS),
                   help=f"model to train (default {FINAL_MODEL})")
    p.add_argument("--data", default="data", help="MNIST root folder (default: data)")
    p.add_argument("--out", help="write the history as JSON to this file")
    p.add_argument("--checkpoint", help="write the tested weights, with what "
                   "prediction needs, to this file (read it with "
                   "mnist_lib.load_checkpoint)")
    add_config_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def train(argv: list[str], prog: str) -> int:
    p = train_parser(prog)
    args = p.parse_args(argv)
    cfg = _checked_config(p, args.model,
                          config_overrides(args) | {"progress": not args.quiet})
    for flag, path in (("--out", args.out), ("--checkpoint", args.checkpoint)):
        if path and (why := unwritable(path)):
            p.error(f"{flag}: {why}")
    mnist = _data_for(p, args.model, cfg, args.data)
    try:
        model, hist = run(args.model, mnist, cfg)
    except DivergenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.model}: last-3 test accuracy "
          + ", ".join(f"{a:.2f}" for a in hist.last_test_acc(3))
          + f"; target ({TARGET.text()}) "
          + ("MET" if hist.meets_target() else "NOT met")
          + f"; {hist.total_seconds:.1f} s")
    if args.out:
        hist.save(args.out)
    if args.checkpoint:
        save_checkpoint(args.checkpoint, model, hist)
    return 0


# -------------------------------------------------------------------- seeds
def seeds_cmd(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Train a model with several seeds.")
    p.add_argument("--model", default=FINAL_MODEL, choices=list(MODELS))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--data", default="data")
    p.add_argument("--out", help="write the summary as JSON to this file")
    # The recipe's fields, to study a change of it (e.g. --optimizer adamw
    # --lr 0.01) over seeds; the summary's config records what was trained.
    add_config_flags(p, exclude=("seed",))
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.out and (why := unwritable(args.out)):
        p.error(f"--out: {why}")
    overrides = config_overrides(args)
    cfg = _checked_config(p, args.model, overrides)
    mnist = _data_for(p, args.model, cfg, args.data)
    chosen = list(range(args.first_seed, args.first_seed + args.seeds))
    changed = recipe_differences({"config": asdict(cfg)}, args.model)
    if changed:  # so that the table cannot pass for the recipe's
        print(f"{args.model}'s recipe, changed: "
              + ", ".join(f"{k}={getattr(cfg, k)}" for k in changed))
    print(seeds.HEADER)
    t0 = time.perf_counter()
    try:
        summary = seeds.run_seeds(args.model, mnist, chosen, **overrides)
    except DivergenceError as err:  # a changed recipe can diverge
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary["wall_seconds"] = time.perf_counter() - t0
    print(seeds.summary_line(summary))  # the rows were printed as the seeds finished
    if args.out:
        atomic_write_json(args.out, summary)
        print(f"saved {args.out}")
    return 0 if summary["passed"] == summary["n_seeds"] else 1


# ------------------------------------------------------------------- ablate
def ablate_cmd(argv: list[str], prog: str) -> int:
    names = [v.name for v in ablation.variants()]
    p = argparse.ArgumentParser(
        prog=prog, description=f"Step 3's ablation study: {ablation.BASE}'s recipe "
                               "with one ingredient taken out at a time, over seeds.")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    p.add_argument("--variant", action="append", choices=names, metavar="NAME",
                   help="run only this variant (repeatable; default: all): "
                        + "; ".join(names))
    p.add_argument("--data", default="data", help="the MNIST folder (default: data)")
    p.add_argument("--out", help="write the record as JSON to this file, after "
                                 "each variant")
    p.add_argument("--resume", action="store_true",
                   help="keep the arms already in --out and run only the others")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.out and (why := unwritable(args.out)):
        p.error(f"--out: {why}")
    if args.resume and not (args.out and Path(args.out).exists()):
        p.error("--resume needs an existing --out file to go on from")
    if args.out and Path(args.out).exists() and not args.resume:
        p.error(f"--out {args.out} exists: add --resume to keep its arms and run "
                "the rest, or choose another file (nothing is overwritten)")
    mnist = _data_for(p, ablation.BASE, recipe(ablation.BASE), args.data)
    try:
        ablation.run_ablation(mnist, list(range(args.seeds)), args.out,
                              args.variant and list(dict.fromkeys(args.variant)),
                              resume=args.resume)
    except (DivergenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.out:
        print(f"saved {args.out}")
    return 0


# ------------------------------------------------------------------- ladder
def ladder_cmd(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(
        prog=prog, description="The design ladder: from Model_1's recipe to the "
        "final one, one change a rung, every rung with the same seeds.")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1, as the book build trains)")
    p.add_argument("--data", default="data", help="the MNIST folder (default: data)")
    p.add_argument("--out", help="write the record as JSON to this file, after "
                                 "each run")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --out and train the others")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.out and (why := unwritable(args.out)):
        p.error(f"--out: {why}")
    if args.resume and not (args.out and Path(args.out).exists()):
        p.error("--resume needs an existing --out file to go on from")
    if args.out and Path(args.out).exists() and not args.resume:
        p.error(f"--out {args.out} exists: add --resume to keep its runs and train "
                "the rest, or choose another file (nothing is overwritten)")
    torch.set_num_threads(args.threads)  # before any work: the record names it
    mnist = load_mnist(args.data)
    command = f"python -m mnist_lib ladder --seeds {args.seeds} --threads " \
              f"{args.threads} --out {args.out or '-'}"
    try:
        record = ladder.run_ladder(mnist, list(range(args.seeds)), args.out,
                                   resume=args.resume, command=command)
    except (DivergenceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(ladder.table(ladder.summarise(record)))
    if args.out:
        print(f"saved {args.out}")
    return 0


# -------------------------------------------------------------------- bench
def bench_cmd(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Library pipeline vs the usual pipeline.")
    p.add_argument("--epochs", type=int, default=TARGET.max_epochs)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default="data")
    p.add_argument("--quick", action="store_true",
                   help="1 epoch on 2,000 images, no loader workers (for tests)")
    p.add_argument("--json", help="write the report as JSON to this file")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        p.error("--epochs and --repeats must be >= 1")
    if args.json and (why := unwritable(args.json)):
        p.error(f"--json: {why}")
    try:
        best_device(args.device)
    except ValueError as err:
        p.error(str(err))
    rep = bench.benchmark(args.data, 1 if args.quick else args.epochs, args.repeats,
                          args.device, args.quick)
    print(bench.table(rep))
    if args.json:
        atomic_write_json(args.json, rep)
    return 0


# ----------------------------------------------------------------------- rf
def _import_file(path: Path) -> Any:
    """The module in a .py file, imported as a script would be: its folder
    first on sys.path, so that it can import the files beside it."""
    if not path.is_file():
        raise SystemExit(f"error: no file {str(path)!r}")
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise SystemExit(f"error: running {str(path)!r} failed: "
                         f"{type(err).__name__}: {err}")
    return module


def _models_hint(module: Any, where: str, attr: str) -> str:
    """What `module` (named `where`) offers instead of `attr`, a student's typo:
    the closest public name, then the models (nn.Module classes) it defines."""
    public = {name: obj for name, obj in vars(module).items()
              if not name.startswith("_")}
    # Its own classes and its submodules' (torch.nn's Conv2d lives in
    # torch.nn.modules.conv), not those it imports (a file's `nn.Conv2d`).
    models = sorted(name for name, obj in public.items()
                    if isinstance(obj, type) and issubclass(obj, nn.Module)
                    and (obj.__module__ + ".").startswith(module.__name__ + "."))
    close = difflib.get_close_matches(attr, public, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    if not models:
        hint += (f"{where} defines no nn.Module class: name the class or the "
                 "function that builds your model.")
    else:
        more = f" and {len(models) - 12} more" if len(models) > 12 else ""
        hint += f"The models {where} defines: {', '.join(models[:12])}{more}."
    # Never break inside a name or a path: it must read as one, to be copied.
    return textwrap.fill(hint, 77, break_long_words=False, break_on_hyphens=False)


def load_model(spec: str) -> nn.Module:
    """The model `spec` names, PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE,
    built by calling CALLABLE(); a SystemExit with the fix if it cannot be."""
    if ":" not in spec:
        raise SystemExit(f"error: {spec!r} is not PACKAGE.MODULE:CALLABLE or "
                         "FILE.py:CALLABLE (e.g. mnist_lib.models:Model_4, "
                         "my_net.py:Net)")
    mod_name, attr = spec.rsplit(":", 1)
    try:
        module = (_import_file(Path(mod_name)) if mod_name.endswith(".py")
                  else importlib.import_module(mod_name))
    except (ImportError, AttributeError) as err:  # also raised by a module's code
        raise SystemExit(f"error: cannot load {spec!r}: {err}")
    try:
        obj = getattr(module, attr)
    except AttributeError as err:
        raise SystemExit(f"error: cannot load {spec!r}: {err}\n"
                         + _models_hint(module, mod_name, attr))
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SystemExit(f"error: {spec!r} is a {type(obj).__name__}, not a model "
                         "or a class or function that builds one")
    try:
        model = obj()
    except TypeError as err:
        # The usual cause: a constructor that needs arguments (nn.LSTM, say).
        raise SystemExit(
            f"error: {attr}() failed: {err}\n"
            f"The CLI builds the model by calling {attr} with no arguments. Name a\n"
            "function that needs none (e.g. `def make(): return MyNet(10)` in your\n"
            "module), or call receptive_field(model, (C, H, W)) from Python.")
    if not isinstance(model, nn.Module):
        raise SystemExit(f"error: {attr}() returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model


def rf(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog,
                                description="Receptive-field table of a PyTorch model.")
    p.add_argument("model",
                   help="PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE, e.g. "
                        "mnist_lib.models:Model_4 or my_net.py:Net")
    p.add_argument("--input", default="1,28,28", help="C,H,W (default 1,28,28)")
    p.add_argument("--format", default="table",
                   choices=["table", "markdown", "csv", "json"])
    p.add_argument("--all", action="store_true",
                   help="list every op, not only those that change the RF")
    p.add_argument("--columns", default=",".join(COLUMNS),
                   help="comma-separated columns, e.g. name,kernel,stride,j_out,r_out "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        columns = check_columns([c.strip() for c in args.columns.split(",")
                                 if c.strip()])
    except ValueError as err:
        p.error(f"--columns: {err}")
    try:
        size = tuple(int(v) for v in args.input.split(","))
        if len(size) != 3 or min(size) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--input must be three positive integers C,H,W, got {args.input!r}")
    model = load_model(args.model)
    try:
        table = receptive_field(model, size)
    except RFError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.format == "table":
        print(table.to_text(args.all, columns))
        print(f"\n{textwrap.fill(table.headline, 76)}\n\n"
              f"{textwrap.fill(LEGEND, 76)}")
    elif args.format == "markdown":
        print(table.to_markdown(args.all, columns))
    elif args.format == "csv":
        print(table.to_frame(args.all, columns).to_csv(index=False), end="")
    else:
        print(json.dumps(table.to_records(args.all, columns), indent=2, default=str))
    return 0


# ----------------------------------------------------------------- dispatch
COMMANDS: dict[str, tuple[Callable[[list[str], str], int], str]] = {
    "data": (data, "fetch MNIST and verify it"),
    "train": (train, "train one of the book's models"),
    "seeds": (seeds_cmd, "train a model with several seeds, report the spread"),
    "ablate": (ablate_cmd, "Step 3's ablation study over seeds"),
    "ladder": (ladder_cmd, "the design ladder: one change a rung, over seeds"),
    "bench": (bench_cmd, "the library's pipeline against the usual one"),
    "rf": (rf, "receptive-field table of a PyTorch model"),
}
USAGE = ("usage: python -m mnist_lib COMMAND [options]   (COMMAND -h for its "
         "options)\n\ncommands:\n" + "\n".join(f"  {name:<7}{what}" for name, (_, what)
                                                in COMMANDS.items()))


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """`python -m mnist_lib COMMAND ...`: run one command, return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"{USAGE}\n\nerror: unknown command {argv[0]!r}{hint}", file=sys.stderr)
        return 2
    command, _ = COMMANDS[argv[0]]
    return command(argv[1:], f"python -m mnist_lib {argv[0]}")


@quiet_on_closed_pipe
def train_main() -> int:
    """The `mnist-train` console script."""
    return train(sys.argv[1:], "mnist-train")


@quiet_on_closed_pipe
def rf_main() -> int:
    """The `mnist-rf` console script."""
    return rf(sys.argv[1:], "mnist-rf")
