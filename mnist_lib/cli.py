"""The command line, every command in one place:

    python -m mnist_lib data  [--root data]                 fetch and verify MNIST
    python -m mnist_lib train --model Model_4 --out run.json   (also: mnist-train)
    python -m mnist_lib train --model my_net.py:Net --checkpoint net.pt  (your own)
    python -m mnist_lib seeds --model Model_4 --seeds 0-14 --out seeds.json  (= study seeds)
    python -m mnist_lib study ladder --out results/ladder.json   (results/protocol.md)
    python -m mnist_lib bench --epochs 15 --json results/bench_cpu.json
    python -m mnist_lib rf mnist_lib.models:Model_4 --input 1,28,28  (also: mnist-rf)
    python -m mnist_lib predict --checkpoint final.pt seven.png   the digit in it
    python -m mnist_lib evaluate --checkpoint final.pt   test accuracy, per digit

This module is the program; the modules it calls are the library and parse
no arguments. Every bad argument is an argparse error (exit 2) that names the
problem and the fix; a run that fails (a diverging loss, a model the RF
calculator refuses, data that cannot be fetched) prints "error: ..." (exit 1).
Every command takes --version. The library's messages name Python arguments
(`lr=0.02`); printed here, they name the flags (`--lr 0.02`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import json
import os
import re
import sys
import textwrap
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from . import __version__, bench, protocol, protocol2, study
from .config import (OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULERS, ScheduleWarning,
                     TrainConfig, recipe, run_options)
from .data import MNIST, DataError, ensure_mnist, load_mnist
from .digit import CONVERSION, read_digit
from .evaluation import ModelOutputError, per_class_accuracy
from .hardware import default_threads, too_many_threads, use_threads
from .models import FINAL_MODEL, NAMED, get_model
from .rf import COLUMNS, POINTWISE, RFError, Window, check_columns, receptive_field
from .target import TARGET
from .train import DivergenceError, TrainingInterrupted, check_run, fit, run
from .training.checkpoint import Classifier, load_checkpoint, save_checkpoint
from .hardware import best_device
from .utils import model_spec
from .utils.files import atomic_write_json, unwritable
from .utils.seeding import set_seed

VERSION = f"mnist_lib {__version__} (torch {torch.__version__})"


# ------------------------------------------------------------------ parsers
class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, never breaking a word across lines: a default, a
    path or a MODULE:NAME must read as one, to be copied."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=False,
                             break_on_hyphens=False)


class _EpilogFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """`_HelpFormatter`, with the epilog (a table) printed as it is written."""


def new_parser(prog: str, description: str, epilog: str | None = None
               ) -> argparse.ArgumentParser:
    """A command's parser: it takes --version, and its help breaks no word."""
    p = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog,
        formatter_class=_EpilogFormatter if epilog else _HelpFormatter)
    p.add_argument("--version", action="version", version=VERSION,
                   help="print the versions of mnist_lib and torch, and exit")
    return p


# The fixes that library messages give in Python, each as a command-line
# user makes it: a flag, or an edit of their own file (`as_flags`).
CLI_FIXES: list[tuple[str, str]] = [
    (r"\bbad TrainConfig: ", ""),
    (r" \(or None for all\)", " (or leave the flag out for all)"),
    (r", or None for all\b", ", or leave the flag out for all"),
    (r"scale must be \(low, high\) with 0 < low <= high, e\.g\. "
     r"\((\S+), (\S+)\)",
     r"--scale LOW HIGH must have 0 < LOW <= HIGH, e.g. --scale \1 \2"),
    (r"\(load_mnist's root, the CLI's --data or --root\)", "(--data or --root)"),
    (r"Call load_mnist\('[^']*'\) \(it downloads by default\) or run", "Run"),
    (r"Write one with save_checkpoint\(path, model, history\), or ", "Write one with "),
    (r"pass the model to load the weights into: load_checkpoint\((?:'[^']*'|\"[^\"]*\"),"
     r" model=(\w+)\(\)\)",
     r"give its class with --model FILE.py:\1 (a file that defines \1; copy a "
     r"class written in a notebook into one)"),
    (r", or pass the model itself from Python\.", "."),
]


def as_flags(message: str) -> str:
    """A library message as the command line says it: each TrainConfig
    field given as `name=value` becomes its flag, `--name value`
    ("lower it (e.g. lr=0.02)" -> "lower it (e.g. --lr 0.02)"), and so does a
    field that "must" be something; each fix only Python could apply
    becomes one a command-line user can (`CLI_FIXES`)."""
    for pattern, fix in CLI_FIXES:
        message = re.sub(pattern, fix, message)
    names = "|".join(f.name for f in fields(TrainConfig))
    message = re.sub(rf"(?<![-\w])({names}) must\b",
                     lambda m: f"--{m[1].replace('_', '-')} must", message)
    return re.sub(rf"\b({names})=('?)([^\s,;)']+)\2",
                  lambda m: f"--{m[1].replace('_', '-')} {m[3]}", message)


@contextlib.contextmanager
def _warnings_as_notes():
    """While a command runs: a `ScheduleWarning` (a run's LR schedule adapted
    to its length) printed as a note line, with flags; other warnings as
    Python shows them."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def note(message, category, *where, **kwargs):
            if issubclass(category, ScheduleWarning):
                print(f"note: {as_flags(str(message))}", flush=True)
            else:
                show(message, category, *where, **kwargs)

        warnings.showwarning = note
        yield


# ------------------------------------------------------------- config flags
def add_config_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (--batch-size for batch_size, ...), each
    defaulting to None, i.e. to the model's recipe; `config_overrides` reads
    them back. `progress` is left to each command (--quiet), and so is `exclude`.
    A field the recipes set is in `recipe_table`; the help of the others gives
    the value every recipe has. The recipe's flags and the run options' are
    shown apart (`config.run_options`)."""
    varying = _recipe_fields()
    groups = {False: p.add_argument_group("the recipe (what a run learns)"),
              True: p.add_argument_group("run options (which run, where, on how "
                                         "much data)")}
    run = set(run_options())
    for f in fields(TrainConfig):
        if f.name == "progress" or f.name in exclude:
            continue
        group = groups[f.name in run]
        flag = "--" + f.name.replace("_", "-")
        default = ("(default: the model's recipe, below)" if f.name in varying else
                   f"(default: {_show(f.default)})" if f.name in run else
                   f"(default: {_show(f.default)}, in every recipe)")
        if f.name == "scale":  # a pair: --scale 0.95 1.05
            group.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"),
                               default=None,
                               help=f"zoom range {default}; 1 1 = no zoom")
        elif f.name in ("n_train", "n_test"):
            group.add_argument(flag, type=int, default=None,
                               help="subset (quick runs)")
        elif isinstance(f.default, bool):  # --cuda-graphs / --no-cuda-graphs
            group.add_argument(flag, action=argparse.BooleanOptionalAction,
                               default=None, help=default)
        else:
            choices = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                       "precision": PRECISIONS}.get(f.name)
            group.add_argument(flag, type=type(f.default), default=None,
                               choices=choices, help=default)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (`add_config_flags`)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if getattr(args, f.name, None) is not None}


def _show(value: Any) -> str:
    """A config value as its flag takes it: a pair as "0.95 1.05"."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _recipe_fields() -> list[str]:
    """The TrainConfig fields that some recipe sets apart from the default."""
    default = TrainConfig()
    return [f.name for f in fields(TrainConfig)
            if any(getattr(c, f.name) != getattr(default, f.name)
                   for c in RECIPES.values())]


def recipe_table() -> str:
    """The recipes' values, for `-h`: each field that some recipe sets apart
    from TrainConfig's default, one row a field, one column a recipe."""
    columns = {"default": TrainConfig()} | RECIPES
    rows = [["field", *columns]] + [[name, *(_show(getattr(c, name))
                                            for c in columns.values())]
                                    for name in _recipe_fields()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
                      .rstrip() for row in rows)
    return ("A book model trains with its recipe; a flag changes one field. Where\n"
            f"the recipes differ from TrainConfig's defaults:\n\n{table}")


def _checked_config(p: argparse.ArgumentParser, model: str | None, overrides: dict):
    """The recipe of `model` (a book model's name; None: TrainConfig's
    defaults, for a net of the student's own) with the overrides, on a device
    that is there, or exit 2."""
    try:
        cfg = recipe(model, **overrides) if model else TrainConfig(**overrides)
        best_device(cfg.device)  # fail before loading data if it is not there
    except ValueError as err:
        p.error(as_flags(str(err)))
    return cfg


def _data_for(p: argparse.ArgumentParser, model: str | nn.Module, cfg: TrainConfig,
              root: str) -> MNIST:
    """MNIST, once the run is known to fit it (or exit 2); prints the note
    that a run over the target's budget cannot meet it. MNIST that cannot be
    read or fetched is an error line (exit 1), not a traceback."""
    try:
        mnist = load_mnist(root)
    except DataError as err:
        raise SystemExit(f"error: {as_flags(str(err))}")
    try:
        note = check_run(model, cfg, mnist)
    except ValueError as err:
        p.error(as_flags(str(err)))
    if note:
        print(note)
    return mnist


def add_threads_flag(p: argparse.ArgumentParser, default: int | None = 1) -> None:
    """--threads: the CPU threads to train on. A study's default is one, as
    the book build trains, so that a run repeats bit for bit on the same CPU
    however many cores it has;
    None (train's): one a core that other work leaves idle as the run starts
    (`hardware.default_threads`)."""
    what = ("default 1, as the book build trains" if default == 1 else
            "default: one for each core that other work leaves idle as the "
            f"run starts, at most {torch.get_num_threads()} here")
    p.add_argument("--threads", type=int, default=default,
                   help=f"CPU threads ({what})")


def set_threads(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check --threads, or exit 2; set it before any work (the record names it).
    None: as many as the cores other work leaves idle (`default_threads`),
    said on stderr where that is fewer than torch's own number. More than the
    cores are taken, with a warning line: they only slow a run."""
    if args.threads is None:
        args.threads, why = default_threads()
        if args.threads < torch.get_num_threads():
            print(f"training on {args.threads} CPU thread(s) of "
                  f"{torch.get_num_threads()}: {why} (--threads sets it)",
                  file=sys.stderr)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if why := too_many_threads(args.threads):
        print(f"warning: --threads {args.threads}: {why}", file=sys.stderr)
    use_threads(args.threads)  # chosen: the trainer leaves it as it is


# --------------------------------------------------------------------- data
def data(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "Fetch MNIST and verify its MD5s.")
    p.add_argument("--root", default="data",
                   help="folder to keep MNIST in (default: data)")
    args = p.parse_args(argv)
    try:
        raw = ensure_mnist(args.root)
    except DataError as err:
        print(f"error: {as_flags(str(err))}", file=sys.stderr)
        return 1
    print(f"MNIST verified (4 files, canonical MD5s) in {raw}")
    return 0


# -------------------------------------------------------------------- train
def train_parser(prog: str) -> argparse.ArgumentParser:
    p = new_parser(prog, "Train one of the book's models, or a net of your own, "
                   "on MNIST.", epilog=recipe_table() + "\n\nA net of your own "
                   "trains with the defaults (the first column)\nand the flags "
                   "given.")
    p.add_argument("--model", default=FINAL_MODEL, metavar="MODEL",
                   help=f"a book model ({', '.join(RECIPES)}; default {FINAL_MODEL}), "
                   "or a net of your own, FILE.py:NAME or MODULE:NAME (e.g. "
                   "my_net.py:Net), built by calling NAME() as mnist-rf does")
    p.add_argument("--data", default="data", help="MNIST root folder (default: data)")
    p.add_argument("--out", help="write the history as JSON to this file")
    p.add_argument("--checkpoint", help="write the tested weights, with what "
                   "prediction needs, to this file (read it with "
                   "mnist_lib.load_checkpoint)")
    add_config_flags(p)
    add_threads_flag(p, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def train(argv: list[str], prog: str) -> int:
    p = train_parser(prog)
    args = p.parse_args(argv)
    book = args.model in RECIPES  # a book model with its recipe, else the student's
    if not book and ":" not in args.model:
        p.error(f"argument --model: invalid choice: {args.model!r} (choose from "
                f"{', '.join(RECIPES)}, or name a net of your own: FILE.py:NAME or "
                "MODULE:NAME)")
    cfg = _checked_config(p, args.model if book else None,
                          config_overrides(args) | {"progress": not args.quiet})
    for flag, path in (("--out", args.out), ("--checkpoint", args.checkpoint)):
        if path and (why := unwritable(path)):
            p.error(f"{flag}: {why}")
    set_threads(p, args)
    if not book:
        set_seed(cfg.seed)  # before building: the initial weights, as run() does
        net = load_model(args.model)
    try:
        mnist = _data_for(p, args.model if book else net, cfg, args.data)
        if book:
            model, hist = run(args.model, mnist, cfg)
        else:
            model, hist = net, fit(net, mnist, cfg)
    except (DivergenceError, ModelOutputError) as err:
        print(f"error: {as_flags(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C: one line, not a traceback
        print(_stopped(stop, cfg.epochs, args.out, args.checkpoint), file=sys.stderr)
        return 130  # as a shell reports a program that SIGINT ended
    print(f"{hist.model}: last-3 test accuracy "
          + ", ".join(f"{a:.2f}" for a in hist.last_test_acc(3))
          + f"; target ({TARGET.text()}) "
          + ("MET" if hist.meets_target() else "NOT met")
          + f"; {hist.total_seconds:.1f} s")
    if args.out:
        hist.save(args.out)
    if args.checkpoint:
        save_checkpoint(args.checkpoint, model, hist,
                        spec=None if book else args.model)
    return 0


def _stopped(stop: KeyboardInterrupt, epochs: int, out: str | None,
             checkpoint: str | None) -> str:
    """Where Ctrl-C stopped a run of `epochs` epochs and what was written: the
    finished epochs' history to `out` (`TrainingInterrupted` holds it), no
    checkpoint, since the weights were part-way through an epoch."""
    done = stop.history.epochs if isinstance(stop, TrainingInterrupted) else []
    at = stop.epoch if isinstance(stop, TrainingInterrupted) else 1
    line = (f"stopped by Ctrl-C in epoch {at} of {epochs}" if at <= epochs
            else f"stopped by Ctrl-C after epoch {epochs}, its last")
    if not done:
        return line + "; no epoch had finished, nothing written"
    finished = "epoch 1" if len(done) == 1 else f"epochs 1-{len(done)}"
    if out:
        stop.history.save(out)
        line += f"; wrote the history of {finished} to {out}"
    else:
        line += f"; nothing written (--out FILE keeps the history of {finished})"
    if checkpoint:
        line += (f"; no checkpoint: the weights were part-way through epoch {at}"
                 if at <= epochs else "; no checkpoint: the run did not end")
    return line


# -------------------------------------------------------------------- seeds
def seeds_cmd(argv: list[str], prog: str) -> int:
    """`seeds ...` is `study seeds ...`: one runner, one meaning of --seeds."""
    return study_cmd(["seeds", *argv], prog.replace(" seeds", " study seeds"))


def quiet_on_closed_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command-line `main` so that, when the program reading its output
    stops early (`python -m mnist_lib rf ... | head`), it stops quietly with
    exit code 1 instead of printing a BrokenPipeError traceback."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            # Python's documented recipe: send what is still buffered to
            # devnull, or the flush at exit raises the same error again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1

    return wrapped


# -------------------------------------------------------------------- study
def _seed_list(text: str) -> list[int]:
    """'0-9' or '3' or '0,2,5' as a list of seeds (argparse type)."""
    try:
        out: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        out = []
    if not out or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed list: write 0-9 (seeds 0 to 9), 7 (seed 7 "
            "alone) or 0,2,5, each seed once")
    return out


def _part(text: str) -> tuple[int, int]:
    """'k/n' (argparse type): the k-th of n processes sharing one record."""
    k, _, n = text.partition("/")
    try:
        k_, n_ = int(k), int(n)
    except ValueError:
        k_ = n_ = 0
    if not 1 <= k_ <= n_:
        raise argparse.ArgumentTypeError(f"{text!r} is not a part: write k/n with "
                                         "1 <= k <= n, e.g. 1/2")
    return k_, n_


def study_cmd(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "A study of results/protocol.md (round 1: the held-out "
                   "ladder, the ablation of its candidate, the confirmation, the "
                   "final test) or results/protocol2.md (round 2: screen, select, "
                   "gap, final2), the step chapters' exercises (exercises, "
                   "results/exercises.md; exercise_pool; exercise_layout), or a book model over "
                   "seeds (seeds), every arm with the same seeds, resumable; two processes may "
                   "share one --out with --part 1/2 and 2/2.", epilog=recipe_table())
    p.add_argument("design", choices=[*protocol.DESIGNS, "confirm", "final", "seeds",
                                      *protocol2.SEEDS],
                   help="which study to run: confirm and final read round 1's "
                        "decision from --ablation (and --confirm); select reads "
                        "round 2's screen from --screen, final2 its deciding "
                        "stage from --select; seeds trains --model with its "
                        "recipe on held-out digits")
    p.add_argument("--model", choices=sorted(RECIPES),
                   help=f"seeds: the book model to train (default {FINAL_MODEL})")
    p.add_argument("--split", choices=study.SPLITS, default="holdout",
                   help="seeds: judge on the last 10,000 training digits "
                        "(holdout, the default: what a choice may rest on) or "
                        "train on all 60,000 and judge on the test set (test)")
    p.add_argument("--recipe-from", metavar="RECORD",
                   help="seeds: train with the recipe this record's runs had "
                        "(e.g. results/final_test.json), not the model's own")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="the seeds, e.g. 0-9 (default: the protocol's: selection "
                        "seeds 0-9, or test seeds 1000-1019 for final)")
    p.add_argument("--part", type=_part, default=(1, 1),
                   help="k/n: train every n-th seed from the k-th (default 1/1)")
    p.add_argument("--out", required=True,
                   help="the record (JSON): created, or gone on with; each run is "
                        "added as it ends")
    p.add_argument("--reuse", action="append", default=[], metavar="RECORD",
                   help="another study's record whose identical runs (same model, "
                        "config, split, seed, machine) are copied, not retrained")
    p.add_argument("--ablation", metavar="RECORD",
                   help="confirm, final: the ablation's record, which decides")
    p.add_argument("--confirm", metavar="RECORD",
                   help="final: the confirmation's record, where the rule needs it")
    p.add_argument("--screen", metavar="RECORD",
                   help="select: round 2's screen record, which names its arms")
    p.add_argument("--select", metavar="RECORD",
                   help="final2: round 2's deciding stage's record, which decides")
    p.add_argument("--record", metavar="FILE",
                   help="final, final2: once every seed has run, write the final "
                        "test's record here too (results/final_test.json)")
    add_threads_flag(p)
    p.add_argument("--data", default="data", help="the MNIST folder (default: data)")
    # seeds: the recipe's fields, to study a change of it (e.g. --optimizer adamw
    # --lr 0.01); the record's config says what was trained.
    add_config_flags(p, exclude=("seed",))
    args = p.parse_args(argv)
    overrides = config_overrides(args)
    if overrides and args.design != "seeds":
        p.error(f"--{next(iter(overrides)).replace('_', '-')} changes a recipe: only "
                "the design seeds takes it (the protocols' designs are fixed)")
    if args.split != "holdout" and args.design != "seeds":
        p.error("--split goes with the design seeds (each protocol's designs "
                "name their own)")
    for flag in ("out", "record"):
        if getattr(args, flag) and (why := unwritable(getattr(args, flag))):
            p.error(f"--{flag}: {why}")
    for path in [*args.reuse, args.ablation, args.confirm, args.recipe_from,
                 args.screen, args.select]:
        if path and not Path(path).is_file():
            p.error(f"{path}: no such file")
    if args.design in ("confirm", "final") and not args.ablation:
        p.error(f"{args.design} needs --ablation RECORD: the decision comes from it")
    for design, flag in (("select", "screen"), ("final2", "select")):
        if args.design == design and not getattr(args, flag):
            p.error(f"{design} needs --{flag} RECORD: its arms come from it")
    if args.record and (why := _replaces_a_record(args.record, args.design)):
        p.error(f"--record {args.record}: {why}")
    if args.model and args.design != "seeds":
        p.error("--model goes with the design seeds (each protocol's designs name "
                "their models)")
    if args.design == "seeds":
        args.model = args.model or FINAL_MODEL
    set_threads(p, args)
    if args.design == "seeds":  # a subset larger than MNIST is refused here
        mnist = _data_for(p, args.model, _checked_config(p, args.model, overrides),
                          args.data)
    else:
        mnist = load_mnist(args.data)
    seeds = args.seeds or protocol2.SEEDS.get(args.design) or (
        protocol.TEST_SEEDS if args.design == "final" else protocol.SELECTION_SEEDS)
    command = " ".join(["python -m mnist_lib study", args.design, "--threads",
                        str(args.threads), "--out", args.out]
                       + [f"--reuse {r}" for r in args.reuse]
                       + [f"--{f.replace('_', '-')} {getattr(args, f)}" for f in
                          ("model", "recipe_from", "ablation", "confirm",
                           "screen", "select", "record") if getattr(args, f)]
                       + ([f"--split {args.split}"] if args.split != "holdout" else [])
                       + [f"--{k.replace('_', '-')} {_show(v)}"
                          for k, v in overrides.items()])
    try:
        config = (protocol.config_of(json.loads(Path(args.recipe_from).read_text()))
                  if args.recipe_from else recipe(args.model) if args.model else None)
        if config is not None and overrides:
            config = replace(config, **overrides)
        design = (protocol.seed_study(args.model, config, args.split)
                  if args.design == "seeds"
                  else _design(args, args.ablation, args.confirm))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        record = study.run_study(design, mnist, seeds, args.out, args.part,
                                 [json.loads(Path(r).read_text()) for r in args.reuse],
                                 command=command)
    except (DivergenceError, ValueError) as err:
        print(f"error: {as_flags(str(err))}", file=sys.stderr)
        return 1
    print(study.table(record))
    if args.record:
        try:
            atomic_write_json(args.record, protocol.final_test_record(record))
            print(f"saved {args.record}")
        except ValueError as err:  # another part is still running
            print(f"not yet: {err}; run again once every part has ended")
    return 0


def _replaces_a_record(path: str, design: str) -> str | None:
    """Why writing a final test's record to `path` would lose another: the
    file is there and holds another protocol's final test (round 1's, where
    round 2 writes), or is no record at all. None where it may be written."""
    if not Path(path).is_file():
        return None
    try:
        held = json.loads(Path(path).read_text()).get("protocol", "results/protocol.md")
    except (ValueError, AttributeError):
        return "the file there is not a final test's record; name another file"
    wanted = protocol2.PROTOCOL if design == "final2" else "results/protocol.md"
    if held == wanted:
        return None  # the same test, written again once every part has ended
    return (f"it holds the final test of {held}, which this run would replace; "
            "move it first (round 1's to results/final_test_round1.json, as "
            f"{protocol2.PROTOCOL} says)")


def _design(args: argparse.Namespace, ablation_path: str | None,
            confirm_path: str | None):
    """The design `args.design` names: round 2's from protocol2 (select and
    final2 read the record they build on); round 1's confirm and final
    decided by the ablation's (and confirmation's) record."""
    name = args.design
    if name in ("screen", "gap", "exercise_layout"):
        return getattr(protocol2, name)()
    if name == "select":
        return protocol2.selection(json.loads(Path(args.screen).read_text()))
    if name == "final2":
        return protocol2.final_test(json.loads(Path(args.select).read_text()))
    if name in protocol.DESIGNS:
        return protocol.DESIGNS[name]()
    decision = protocol.decide(json.loads(Path(ablation_path).read_text()))
    if name == "confirm":
        return protocol.confirmation(decision)
    held = [json.loads(Path(p).read_text()) for p in (ablation_path, confirm_path) if p]
    return protocol.final_test(*protocol.final_recipe(decision, held))



# -------------------------------------------------------------------- bench
def bench_cmd(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "Library pipeline vs the usual pipeline; or, with "
                   "--loops, the library's loop with and without its speed-ups.")
    p.add_argument("--epochs", type=int, default=TARGET.max_epochs,
                   help=f"epochs each pipeline trains (default {TARGET.max_epochs})")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of each pipeline, alternating, seeds 0 .. N-1, "
                        "each in a fresh process (default 1)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps "
                        "(default: auto)")
    p.add_argument("--data", default="data", help="the MNIST folder (default: data)")
    p.add_argument("--quick", action="store_true",
                   help="1 epoch on 2,000 images, no loader workers (for tests)")
    p.add_argument("--loops", action="store_true",
                   help="instead: the library's loop eager, with CUDA graphs "
                        "(on a GPU) and with torch.compile, on --device")
    p.add_argument("--model", default=FINAL_MODEL,
                   help=f"the model the library's pipeline trains with its recipe "
                        f"(default {FINAL_MODEL}, the final model); not with --loops")
    p.add_argument("--json", help="write the report as JSON to this file")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        p.error("--epochs and --repeats must be >= 1")
    if args.model not in RECIPES:
        p.error(f"--model {args.model}: no such model; choose one of "
                f"{', '.join(RECIPES)}")
    if args.loops and args.model != FINAL_MODEL:
        p.error("--model is for the pipeline benchmark; --loops always times "
                f"the final model, {FINAL_MODEL}")
    if args.json and (why := unwritable(args.json)):
        p.error(f"--json: {why}")
    try:
        best_device(args.device)
    except ValueError as err:
        p.error(as_flags(str(err)))
    if args.loops:
        rep = bench.loops(args.data, 1 if args.quick else args.epochs, args.device,
                          args.quick)
        print(bench.loops_table(rep))
    else:
        rep = bench.benchmark(args.data, 1 if args.quick else args.epochs,
                              args.repeats, args.device, args.quick,
                              model=args.model)
        print(bench.table(rep))
    if args.json:
        atomic_write_json(args.json, rep)
    return 0


# ---------------------------------------------------------- predict, evaluate
def _classifier(p: argparse.ArgumentParser, path: str, device: str,
                spec: str | None = None) -> Classifier:
    """The checkpoint at `path` on `device`, its weights loaded into the model
    `spec` names (--model) where given, or exit: 2 for a file or device that
    is not there, 1 (an error line) for a file that cannot be loaded."""
    if not Path(path).is_file():
        p.error(f"--checkpoint {path}: no such file (write one with train "
                "--checkpoint FILE)")
    try:
        best_device(device)
    except ValueError as err:
        p.error(as_flags(str(err)))
    net = None if spec is None else (get_model(spec) if spec in NAMED
                                     else load_model(spec))
    try:
        return load_checkpoint(path, device, model=net)
    except ValueError as err:
        raise SystemExit(f"error: {as_flags(str(err))}")


def add_model_flag(p: argparse.ArgumentParser) -> None:
    """--model, for a checkpoint whose model's class no import finds."""
    p.add_argument("--model", metavar="MODEL",
                   help="the model to load the weights into: a book model, or "
                        "FILE.py:NAME or MODULE:NAME (default: the one the "
                        "checkpoint names; needed where its class was written in "
                        "a notebook: copy the class into a file)")


def predict_cmd(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "The digit in each image, as a trained model reads it. "
                   "An image of any size is first made an MNIST digit, as the "
                   "output says.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="a PNG or JPEG of one digit, any size, dark on light or "
                        "light on dark")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="the trained model (from train --checkpoint FILE, or "
                        "save_checkpoint)")
    p.add_argument("--device", default="cpu",
                   help="where the model runs: cpu, cuda, mps or auto (default: cpu)")
    add_model_flag(p)
    args = p.parse_args(argv)
    model = _classifier(p, args.checkpoint, args.device, args.model)
    read, bad = [], []  # every image that can be read is answered
    for path in args.images:
        try:
            read.append((path, read_digit(path)))
        except FileNotFoundError:
            bad.append(f"{path}: no such file")
        except IsADirectoryError:
            bad.append(f"{path}: a folder, not an image (name the image files "
                       "in it)")
        except (OSError, ValueError) as err:  # not an image, or nothing on it
            bad.append(f"{path}: {err}")
    if read:
        pixels = torch.stack([digit.pixels for _, digit in read])
        probs = model.probabilities(pixels).cpu()
        print(textwrap.fill(CONVERSION[0].upper() + CONVERSION[1:] + ".", 79))
        width = max(len(path) for path, _ in read)
        for (path, digit), p_ in zip(read, probs):
            print(f"{path + ':':<{width + 1}} {int(p_.argmax())}, probability "
                  f"{p_.max().item():.3f}  ({digit})")
    for why in bad:
        print(f"error: {why}", file=sys.stderr)
    return 1 if bad else 0


def evaluate_cmd(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "A trained model's accuracy on MNIST's test images, in "
                   "all and for each digit.")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="the trained model (from train --checkpoint FILE, or "
                        "save_checkpoint)")
    p.add_argument("--data", default="data", help="the MNIST folder (default: data)")
    p.add_argument("--n-test", type=int, default=None, metavar="N",
                   help="the first N test images only (default: all 10,000)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps "
                        "(default: auto)")
    add_model_flag(p)
    args = p.parse_args(argv)
    if args.n_test is not None and args.n_test < 1:
        p.error(f"--n-test must be >= 1, got {args.n_test}")
    model = _classifier(p, args.checkpoint, args.device, args.model)
    try:
        mnist = load_mnist(args.data)
    except DataError as err:
        raise SystemExit(f"error: {as_flags(str(err))}")
    try:
        mnist = mnist.subset(n_test=args.n_test)
    except ValueError as err:
        p.error(as_flags(str(err)))
    images, labels = mnist.test_images, mnist.test_labels
    batch = TrainConfig().eval_batch_size  # as the test pass of training
    pred = torch.cat([model.predict(images[i:i + batch]).cpu()
                      for i in range(0, len(labels), batch)])
    correct = int((pred == labels).sum())
    print(f"{args.checkpoint} ({type(model.net).__name__}): test accuracy "
          f"{100 * correct / len(labels):.2f}% ({correct:,}/{len(labels):,})")
    print("digit  images  accuracy")
    for d, acc in enumerate(per_class_accuracy(pred, labels)):
        print(f"{d:5d}  {int((labels == d).sum()):6,}  {acc:7.2f}%")
    return 0


# ----------------------------------------------------------------------- rf
def load_model(spec: str) -> nn.Module:
    """The model `spec` names, PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE,
    built by calling CALLABLE() (`mnist_lib.utils.model_spec.build`, which
    `load_checkpoint` uses too); a SystemExit with the fix if it cannot be."""
    try:
        return model_spec.build(spec)
    except model_spec.SpecError as err:
        raise SystemExit(f"error: {as_flags(str(err))}")


def declared(model: nn.Module, declarations: list[str]) -> dict[type, Any]:
    """`--declare CLASS=pointwise` or `CLASS=Window(...)`, each naming a class
    of the model's modules, as receptive_field's `custom`; a ValueError
    names what is wrong with one."""
    import ast

    classes: dict[str, set[type]] = {}
    for m in model.modules():
        classes.setdefault(type(m).__name__, set()).add(type(m))
    custom: dict[type, Any] = {}
    for text in declarations:
        name, _, how = (part.strip() for part in text.partition("="))
        found = classes.get(name, set())
        if len(found) != 1:
            raise ValueError(f"{text!r}: the model has {'no' if not found else 'several'}"
                             f" module classes named {name!r}" + (
                                 f" (its classes: {', '.join(sorted(classes))})"
                                 if not found else ""))
        if how.strip("'\"") == POINTWISE:
            custom[found.pop()] = POINTWISE
            continue
        try:
            call = ast.parse(how, mode="eval").body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == "Window"):
                raise ValueError
            custom[found.pop()] = Window(
                *(ast.literal_eval(a) for a in call.args),
                **{k.arg: ast.literal_eval(k.value) for k in call.keywords})
        except (SyntaxError, ValueError, TypeError):
            raise ValueError(f"{text!r}: write {name}=pointwise or "
                             f"\"{name}=Window(3, 2, 'same')\" (numbers, or "
                             "'same' for the padding)") from None
    return custom


def as_declare_flags(message: str) -> str:
    """An RFError as the rf command says it: a declaration to write in Python,
    `custom={Blur: 'pointwise'}`, becomes the flag that makes it,
    `--declare Blur=pointwise`."""
    message = message.replace("declare it to receptive_field(...)",
                              "declare it with --declare")
    message = re.sub(r"custom=\{(\w+): '?pointwise'?\}", r"--declare \1=pointwise",
                     message)
    return re.sub(r"custom=\{(\w+): (Window\([^\n]*\))\}", r'--declare "\1=\2"',
                  message)


def rf(argv: list[str], prog: str) -> int:
    p = new_parser(prog, "Receptive-field table of a PyTorch model.")
    p.add_argument("model",
                   help="PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE, e.g. "
                        "mnist_lib.models:Model_4 or my_net.py:Net")
    p.add_argument("--input", default="1,28,28",
                   help="one input's size: C,H,W for an image (default 1,28,28), "
                        "C,L for a sequence (audio: 1,16000), C,D,H,W for a clip")
    p.add_argument("--format", default="table",
                   choices=["table", "markdown", "csv", "json"],
                   help="table (with its headline and legend), markdown, csv or "
                        "json (default: table)")
    p.add_argument("--all", action="store_true",
                   help="list every op, not only those that change the RF")
    p.add_argument("--columns",
                   help="comma-separated columns, e.g. name,kernel,stride,j_out,r_out "
                        f"(default: {', '.join(COLUMNS)}, and dilation after "
                        "kernel where a layer is dilated)")
    p.add_argument("--declare", action="append", default=[], metavar="CLASS=HOW",
                   help="declare a module class of the model the calculator cannot "
                        "follow, as an error asks: CLASS=pointwise (it moves no "
                        "pixel) or 'CLASS=Window(...)' with Window's settings, e.g. "
                        "\"Conv2dSame=Window(padding='same')\" (repeat for "
                        "several classes)")
    args = p.parse_args(argv)
    columns = None  # the table's default columns
    try:
        if args.columns is not None:
            columns = check_columns([c.strip() for c in args.columns.split(",")
                                     if c.strip()])
    except ValueError as err:
        p.error(f"--columns: {err}")
    try:
        size = tuple(int(v) for v in args.input.split(","))
        if not 2 <= len(size) <= 4 or min(size) < 1:
            raise ValueError
    except ValueError:
        p.error("--input must be the channels and one size per spatial axis, "
                f"positive integers: C,H,W (or C,L, or C,D,H,W), got {args.input!r}")
    model = load_model(args.model)
    try:
        custom = declared(model, args.declare)
    except ValueError as err:
        p.error(f"--declare: {err}")
    try:
        table = receptive_field(model, size, custom=custom)
    except RFError as err:
        print(f"error: {as_declare_flags(str(err))}", file=sys.stderr)
        return 1
    if args.format == "table":  # the table, its headline and legend: str(table)
        print(table.to_text(args.all, columns, notes=True))
    elif args.format == "markdown":
        print(table.to_markdown(args.all, columns))
    elif args.format == "csv":
        print(table.to_frame(args.all, columns).to_csv(index=False), end="")
    else:  # the same columns as the other formats, each RF with its flag
        records = table.to_records(args.all, columns or table.columns())
        print(json.dumps(records, indent=2, default=str))
    return 0


# ----------------------------------------------------------------- dispatch
COMMANDS: dict[str, tuple[Callable[[list[str], str], int], str]] = {
    "data": (data, "fetch MNIST and verify it"),
    "train": (train, "train one of the book's models, or your own"),
    "seeds": (seeds_cmd, "a book model over several seeds: study seeds, shorter"),
    "study": (study_cmd, "a study of results/protocol.md or protocol2.md (held-out)"),
    "bench": (bench_cmd, "the library's pipeline against the usual one"),
    "rf": (rf, "receptive-field table of a PyTorch model"),
    "predict": (predict_cmd, "the digit in each image (PNG, JPEG), by a checkpoint"),
    "evaluate": (evaluate_cmd, "a checkpoint's test accuracy, in all and per digit"),
}
USAGE = ("usage: python -m mnist_lib COMMAND [options]   (COMMAND -h for its "
         "options)\n       python -m mnist_lib --version\n\ncommands:\n"
         + "\n".join(f"  {name:<10}{what}" for name, (_, what) in COMMANDS.items()))


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """`python -m mnist_lib COMMAND ...`: run one command, return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(VERSION)
        return 0
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"{USAGE}\n\nerror: unknown command {argv[0]!r}{hint}", file=sys.stderr)
        return 2
    command, _ = COMMANDS[argv[0]]
    with _warnings_as_notes():
        return command(argv[1:], f"python -m mnist_lib {argv[0]}")


@quiet_on_closed_pipe
def train_main() -> int:
    """The `mnist-train` console script."""
    with _warnings_as_notes():
        return train(sys.argv[1:], "mnist-train")


@quiet_on_closed_pipe
def rf_main() -> int:
    """The `mnist-rf` console script."""
    return rf(sys.argv[1:], "mnist-rf")
