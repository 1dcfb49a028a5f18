"""The command line, `python -m mnist_lib COMMAND` (mnist_lib.cli): the
dispatch, and the train command. The seeds, bench and data commands are
tested beside their libraries (test_tools.py, test_data.py), the rf command in
tests/rf/."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from mnist_lib import cli
from mnist_lib.config import TrainConfig
from mnist_lib.training.history import History
from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint
from mnist_lib.models import get_model

ROOT = Path(__file__).resolve().parents[1]


def _history(model: str) -> History:
    return History(model, 0, {}, {}, normalization={"mean": 0.13, "std": 0.31})


def test_no_command_prints_the_commands_and_a_wrong_one_gets_the_closest(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in cli.COMMANDS)
    assert cli.main(["--help"]) == 0
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_each_command_names_itself_in_its_usage(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([name, "--bogus"])
        err = capsys.readouterr().err
        # seeds is study seeds, shorter, and says so in its usage.
        said = "study seeds" if name == "seeds" else name
        assert f"usage: python -m mnist_lib {said} " in err, err
        assert "error: " in err  # an unknown flag, or rf's missing model


def test_console_scripts_name_functions_that_exist():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"mnist-train", "mnist-rf"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert module == "mnist_lib.cli" and callable(getattr(cli, name))


def test_only_the_cli_parses_arguments():
    """A module is library or program: argparse lives in cli.py alone."""
    for path in (ROOT / "mnist_lib").rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        assert "argparse" not in imported, path
        assert not any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)
                       for n in tree.body), f"{path} runs as a program"


@pytest.mark.parametrize("argv, msg", [
    (["--model", "Model_99"], "invalid choice: 'Model_99'"),
    (["--epochs", "zero"], "invalid int value: 'zero'"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--n-train", "-5"], "--n-train must be >= 1 (or leave the flag out for all), "
                          "got -5"),
    (["--n-test", "0"], "--n-test must be >= 1 (or leave the flag out for all), got 0"),
    (["--n-train", "70000"], "--n-train 70000, but there are only 60,000 images; "
                             "ask for at most 60000, or leave the flag out for all"),
    (["--device", "gpu"], "unknown device 'gpu': use 'auto', 'cpu', 'cuda' or 'mps'"),
    (["--scheduler", "cosine"], "invalid choice: 'cosine'"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--scale", "1.1", "0.9"], "--scale LOW HIGH must have 0 < LOW <= HIGH, e.g. "
                                "--scale 0.95 1.05"),
    (["--scale", "0.9"], "argument --scale: expected 2 arguments"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
])
def test_cli_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_cuda_without_gpu(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--device", "cuda", "--epochs", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    # The library says device='cuda'; the command line names its flag.
    assert "--device cuda requested but CUDA is not available; use --device auto " \
           "or --device cpu" in err


def test_as_flags_names_config_fields_as_flags_and_leaves_the_rest():
    assert cli.as_flags("lower it (e.g. lr=0.02); lr=0.2, optimizer=sgd, "
                        "eval_batch_size=500, n_train=10, device='cuda' requested") \
        == ("lower it (e.g. --lr 0.02); --lr 0.2, --optimizer sgd, "
            "--eval-batch-size 500, --n-train 10, --device cuda requested")
    other = "model=Net, x=1, seeds [0, 1]"  # no TrainConfig field
    assert cli.as_flags(other) == other


def test_the_first_short_run_a_student_types_trains_and_says_how(capsys, mnist):
    """`train --model Model_2 --epochs 1 --n-train 512` (round 1's final
    model): 4 steps of 128, a quarter of them warm-up, on which torch's
    OneCycleLR divides by zero. It trains, and a note says the warm-up became
    2 steps, naming the flag that would ask for that."""
    assert cli.main(["train", "--model", "Model_2", "--epochs", "1", "--n-train",
                     "512", "--n-test", "500", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("note: onecycle cannot warm the LR up over exactly 1 step "
                          "(pct_start x steps = 0.25 x 4), on which torch's "
                          "OneCycleLR divides by zero: this run's warm-up is 2 "
                          "steps, as with --pct-start 0.5\n"), out
    assert "Model_2: last-3 test accuracy" in out




def test_cli_trains_and_writes_json(tmp_path, capsys, mnist):
    out = tmp_path / "run.json"
    code = cli.main(["train", "--model", "Model_2", "--epochs", "1",
                     "--n-train", "1000", "--n-test", "500", "--quiet",
                     "--out", str(out), "--checkpoint", str(tmp_path / "w.pt")])
    assert code == 0
    hist = History.load(out)
    assert hist.model == "Model_2" and len(hist.epochs) == 1
    assert "target" in capsys.readouterr().out
    # The checkpoint holds the weights that were tested, with the run's
    # normalisation: given the raw test digits, it scores the run's last test
    # accuracy again.
    model = load_checkpoint(tmp_path / "w.pt")
    assert type(model.net).__name__ == "Model_2" and not model.training
    pred = model.predict(mnist.test_images[:500])
    correct = int((pred == mnist.test_labels[:500]).sum())
    assert 100.0 * correct / 500 == pytest.approx(hist.epochs[-1].test_acc)


def test_load_checkpoint_names_what_is_wrong_with_a_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes.pt is not a checkpoint "
                                         r"\(.*\n.*save_checkpoint.*--checkpoint FILE"):
        load_checkpoint(bad)
    # Saved from a model whose layers have changed since (here: another model's
    # weights, under Model_4's name and class).
    old = tmp_path / "old.pt"
    save_checkpoint(old, get_model("Model_2"), _history("Model_4"),
                    spec="mnist_lib.models:Model_4")
    with pytest.raises(ValueError, match=r"weights of an earlier Model_4, whose layers "
                                         r"differ(?s:.*)--model Model_4 --checkpoint"):
        load_checkpoint(old)
    with pytest.raises(ValueError, match="the History that fit \\(or run\\) returned"):
        save_checkpoint(old, get_model("Model_2"), History("Model_2", 0, {}, {}))


def test_cli_divergence_is_an_error_line_not_a_traceback():
    # As a learner runs it, in a process of its own.
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_lib", "train", "--model", "Model_1", "--lr", "1e6",
         "--epochs", "1", "--n-train", "1000", "--n-test", "500", "--quiet"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    # At most a note on the threads (a busy machine) comes before the error.
    said = [line for line in proc.stderr.splitlines()
            if not line.startswith("training on ")]
    assert said[0].startswith("error: training diverged"), proc.stderr
    assert "Traceback" not in proc.stderr and "lower it (e.g. --lr" in proc.stderr


def test_cli_says_a_run_over_the_epoch_budget_cannot_meet_the_target(capsys, mnist):
    assert cli.main(["train", "--model", "Model_5", "--epochs", "16", "--n-train",
                     "256", "--n-test", "100", "--scheduler", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("note: 16 epochs: over the target's budget")
    assert "of at most 15 epochs, < 8,000 parameters) NOT met" in out


def test_cli_has_a_flag_for_every_config_field():
    """A learner can change from the command line whatever a recipe sets
    (progress is --quiet); a field added to TrainConfig without a flag fails here."""
    parser = cli.train_parser("mnist-train")
    dests = {a.dest for a in parser._actions}
    missing = [f.name for f in fields(TrainConfig)
               if f.name != "progress" and f.name not in dests]
    assert missing == []


def test_cli_scale_reaches_the_run(tmp_path, mnist):
    out = tmp_path / "run.json"
    assert cli.main(["train", "--scale", "0.9", "1.1", "--epochs", "1", "--n-train",
                     "512", "--n-test", "100", "--quiet", "--out", str(out)]) == 0
    assert History.load(out).config["scale"] == [0.9, 1.1]


def test_cli_boolean_flags_parse_both_ways():
    """`type=bool` would read "False" as True: booleans are --x / --no-x flags."""
    parser = cli.train_parser("mnist-train")
    assert parser.parse_args(["--no-cuda-graphs"]).cuda_graphs is False
    assert parser.parse_args(["--cuda-graphs"]).cuda_graphs is True
    assert parser.parse_args([]).cuda_graphs is None  # the recipe decides


# A net of a student's own, for the train command: 2 convolutions, GAP, linear.
MY_NET = """
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.log_softmax(self.fc(x.mean((2, 3))), dim=1)
"""


@pytest.mark.parametrize("spec", ["my_net.py:Net", "train_cli_net:Net"])
def test_cli_trains_a_students_net_and_checkpoints_it(spec, tmp_path, monkeypatch,
                                                       mnist):
    """`mnist-train --model my_net.py:Net` (or MODULE:NAME) trains the
    student's net with TrainConfig's defaults, and its checkpoint loads
    without naming the class again: it scores the run's last test accuracy."""
    (tmp_path / f"{spec.split(':')[0].removesuffix('.py')}.py").write_text(MY_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path
                                      if p not in ("", str(tmp_path))])
    try:
        assert cli.main(["train", "--model", spec, "--epochs", "1", "--n-train", "1024",
                         "--n-test", "500", "--quiet", "--data", str(ROOT / "data"),
                         "--out", "run.json", "--checkpoint", "net.pt"]) == 0
        hist = History.load("run.json")
        assert hist.model == "Net" and hist.config["lr"] == TrainConfig().lr
        model = load_checkpoint("net.pt")
    finally:
        sys.modules.pop("train_cli_net", None)
    assert type(model.net).__name__ == "Net" and not model.training
    pred = model.predict(mnist.test_images[:500])
    correct = int((pred == mnist.test_labels[:500]).sum())
    assert 100.0 * correct / 500 == pytest.approx(hist.epochs[-1].test_acc)


def test_train_and_rf_load_a_students_net_with_the_same_messages(tmp_path, monkeypatch):
    (tmp_path / "my_net.py").write_text(MY_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for spec, msg in [("my_net.py:Nett", "Did you mean 'Net'? The models my_net.py "
                                         "defines: Net."),
                      ("nope.py:Net", "error: no file 'nope.py'"),
                      ("no_such_module:Net", "No module named 'no_such_module'")]:
        said = []
        for argv in (["rf", spec], ["train", "--model", spec, "--epochs", "1"]):
            with pytest.raises(SystemExit) as exc:
                cli.main(argv)
            said.append(str(exc.value.code))
        assert said[0] == said[1] and said[0].startswith("error: "), said
        assert msg in " ".join(said[0].split()), said[0]


def test_a_console_script_finds_a_module_in_the_current_folder(tmp_path):
    """`mnist-rf mynet:Net` as `python -m mnist_lib rf mynet:Net` does: a
    console script has no current folder on sys.path (-P makes that so
    here), yet the student's module beside them must be found."""
    (tmp_path / "mynet.py").write_text(MY_NET)
    code = ("import os, sys\n"
            "assert not {'', os.getcwd()} & set(sys.path), sys.path\n"
            "from mnist_lib.cli import rf_main\n"
            "sys.argv = ['mnist-rf', 'mynet:Net', '--columns', 'name,r_out']\n"
            "sys.exit(rf_main())")
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path,
                          text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:6] == ["name", "r_out", "conv1", "3", "conv2", "7"]


def test_cli_with_data_it_cannot_use_prints_an_error_line(tmp_path, capsys):
    a_file = tmp_path / "data"
    a_file.write_text("")  # a file where the data folder should be
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--data", str(a_file), "--epochs", "1"])
    assert str(exc.value.code).startswith(
        f"error: MNIST cannot be saved under {a_file}")


def test_version_is_the_packages(capsys):
    import mnist_lib

    expected = f"mnist_lib {mnist_lib.__version__} (torch {torch.__version__})"
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    with pytest.raises(SystemExit) as exc:
        cli.train(["--version"], "mnist-train")
    assert exc.value.code == 0 and capsys.readouterr().out == expected + "\n"
    proc = subprocess.run([sys.executable, "-c", "import sys; from mnist_lib.cli "
                           "import rf_main; sys.argv = ['mnist-rf', '--version']; "
                           "sys.exit(rf_main())"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == expected + "\n", proc.stderr


@pytest.mark.parametrize("command", ["train", "seeds"])
def test_help_shows_each_recipes_values(command, capsys):
    """`train -h` prints, for every field a recipe sets, its value in each
    recipe and in the defaults; every other flag's help gives its value."""
    from mnist_lib.config import RECIPES

    with pytest.raises(SystemExit):
        cli.main([command, "-h"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith("  ") and not line.startswith("   ")
            and not line.lstrip().startswith("-")}
    assert rows["field"] == ["default", *RECIPES]
    shown = 0
    for f in fields(TrainConfig):
        values = [getattr(c, f.name) for c in (TrainConfig(), *RECIPES.values())]
        if len({str(v) for v in values}) > 1:
            flat = [str(x) for v in values
                    for x in (v if isinstance(v, tuple) else [v])]
            assert rows[f.name] == flat, f.name
            shown += 1
        else:
            assert f.name not in rows, f.name
    assert shown >= 5
    assert "--momentum MOMENTUM   (default: 0.9, in every recipe)" in out


@pytest.mark.parametrize("command", ["seeds", "study"])
def test_a_study_trains_on_one_thread_unless_told(command, capsys, monkeypatch):
    """The studies' records are the book build's own numbers only on its
    settings: one CPU thread by default; --threads changes it, 0 is refused."""
    import torch

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, *(["ladder"] if command == "study" else []),
                  "--out", "x.json", "--threads", "0"])
    assert exit_.value.code == 2 and "--threads must be >= 1" in capsys.readouterr().err
    assert threads == []
    parser_help = subprocess.run([sys.executable, "-m", "mnist_lib", command, "-h"],
                                 capture_output=True, text=True, cwd=ROOT).stdout
    assert "--threads" in parser_help and "default 1" in parser_help


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_takes_version_and_has_help_on_every_flag(name, capsys,
                                                                monkeypatch):
    """The README's promise: every command takes --version; and -h says what
    each flag does, with no word (a default, a path) broken across lines,
    even in a narrow terminal."""
    import argparse

    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == cli.VERSION + "\n"
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit):
        cli.main([name, "-h"])
    shown = capsys.readouterr().out.split()

    class Parsed(Exception):
        pass

    def parse_args(parser, *args, **kwargs):
        raise Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    with pytest.raises(Parsed) as parsed:
        cli.main([name])
    actions = [a for a in parsed.value.args[0]._actions if a.dest != "help"]
    assert [a.dest for a in actions if not a.help] == []
    for action in actions:
        broken = [w for w in action.help.split() if w not in shown]
        assert not broken, (action.dest, broken)


def test_train_threads_default_to_the_cores_other_work_leaves_idle(
        capsys, monkeypatch, mnist):
    """Unless told (--threads), train uses one thread a core that other work
    leaves idle as it starts, at most torch's number, and says so when that
    is fewer: PyTorch's threads stall on a core that other work holds."""
    import mnist_lib.hardware as hw

    threads = []
    most = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    run = ["train", "--model", "Model_2", "--epochs", "1", "--n-train", "256",
           "--n-test", "100", "--quiet"]
    for idle, expected in ((2.0, 2), (1.8, 2), (1.5, 1), (0.9, 1), (0.0, 1), (7.0, 2)):
        monkeypatch.setattr(hw, "idle_cores", lambda: idle)
        assert cli.main(run) == 0 and threads[-1] == expected, idle
        err = capsys.readouterr().err
        said = f"training on {expected} CPU thread(s) of 2: {idle:.1f} of"
        assert (said in err) == (expected < 2), err
    monkeypatch.setattr(hw, "idle_cores", lambda: None)  # no CPU counters
    assert cli.main(run) == 0 and threads[-1] == 2
    assert cli.main([*run, "--threads", "1"]) == 0 and threads[-1] == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: most)
    help_text = " ".join(cli.train_parser("mnist-train").format_help().split())
    assert ("default: one for each core that other work leaves idle as the run "
            f"starts, at most {most} here") in help_text


def test_idle_cores_come_from_the_kernels_counters(tmp_path, monkeypatch):
    import mnist_lib.hardware as hw

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal, in ticks: the machine's
    # sum, then each of its 4 CPUs
    def write(cpus):
        lines = [f"cpu{i} {b} 0 0 {d} 0 0 0 0 0 0" for i, (b, d) in enumerate(cpus)]
        busy, idle = sum(b for b, _ in cpus), sum(d for _, d in cpus)
        stat.write_text("\n".join([f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0", *lines,
                                   "intr 12345"]) + "\n")

    ticks = [(0, 0)] * 4
    write(ticks)

    def meanwhile(seconds):  # CPUs 0 and 1 work all the time, 2 and 3 idle
        ticks[:] = [(b + 100 * (i < 2), d + 100 * (i >= 2))
                    for i, (b, d) in enumerate(ticks)]
        write(ticks)

    monkeypatch.setattr(hw.time, "sleep", meanwhile)
    monkeypatch.setattr(hw.os, "cpu_count", lambda: 4)
    # The whole machine: two of four idle; a job pinned to the busy two
    # (taskset, a container's cpuset) has none.
    assert hw.idle_cores(stat=stat, cpus=set()) == pytest.approx(2.0)
    assert hw.idle_cores(stat=stat, cpus={0, 1}) == pytest.approx(0.0)
    assert hw.idle_cores(stat=stat, cpus={1, 2}) == pytest.approx(1.0)
    monkeypatch.setattr(hw.time, "sleep", lambda seconds: None)  # no ticks
    assert hw.idle_cores(stat=stat, cpus={0}) is None
    assert hw.idle_cores(stat=tmp_path / "missing") is None


def _digit_files(folder: Path, mnist) -> dict[str, torch.Tensor]:
    """Three MNIST test digits as a student's files: one as it is (28x28 PNG),
    one enlarged black on white (PNG), one enlarged as a JPEG; with the
    digits they hold."""
    from PIL import Image

    files = {}
    for i, (name, fmt) in enumerate([("as_is.png", "PNG"), ("large.png", "PNG"),
                                     ("photo.jpg", "JPEG")]):
        pixels = mnist.test_images[i].numpy()
        image = Image.fromarray(pixels if i == 0 else 255 - pixels)
        if i:
            image = image.resize((140, 140), Image.Resampling.NEAREST)
        image.convert("RGB").save(folder / name, fmt)
        files[name] = mnist.test_labels[i]
    return files


def test_predict_and_evaluate_use_a_trained_checkpoint(tmp_path, capsys, mnist):
    """`predict` prints each image's digit and probability, as the Classifier
    gives them for the image made an MNIST digit, and says how it made it;
    `evaluate` prints the run's own test accuracy again, and each digit's."""
    from mnist_lib.digit import CONVERSION, read_digit

    ckpt, out = str(tmp_path / "w.pt"), tmp_path / "run.json"
    assert cli.main(["train", "--model", "Model_2", "--epochs", "1", "--n-train",
                     "2000", "--n-test", "500", "--quiet", "--checkpoint", ckpt,
                     "--out", str(out)]) == 0
    capsys.readouterr()
    files = _digit_files(tmp_path, mnist)
    paths = [str(tmp_path / name) for name in files]
    assert cli.main(["predict", "--checkpoint", ckpt, *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    said = " ".join(lines[:-3])
    assert said == CONVERSION[0].upper() + CONVERSION[1:] + "."
    model = load_checkpoint(ckpt)
    digits = [read_digit(path) for path in paths]
    probs = model.probabilities(torch.stack([d.pixels for d in digits]))
    for line, path, digit, p in zip(lines[-3:], paths, digits, probs):
        assert line.split() == [f"{path}:", f"{int(p.argmax())},", "probability",
                                f"{p.max().item():.3f}", *f"({digit})".split()]
    assert "(28x28, not inverted, digit" in lines[-3]
    assert "(140x140, inverted, digit" in lines[-1]

    assert cli.main(["evaluate", "--checkpoint", ckpt, "--n-test", "500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hist = History.load(out)
    correct = round(hist.epochs[-1].test_acc * 5)
    assert lines[0] == (f"{ckpt} (Model_2): test accuracy "
                        f"{hist.epochs[-1].test_acc:.2f}% ({correct}/500)")
    assert lines[1].split() == ["digit", "images", "accuracy"] and len(lines) == 12
    labels = mnist.test_labels[:500]
    for d, line in enumerate(lines[2:]):
        assert line.split()[:2] == [str(d), str(int((labels == d).sum()))]


def test_predict_and_evaluate_say_what_is_wrong(tmp_path, capsys):
    from PIL import Image

    ckpt = tmp_path / "w.pt"
    save_checkpoint(ckpt, get_model("Model_2"), _history("Model_2"))
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("not an image")
    for argv, code, msg in [
            (["predict", "--checkpoint", str(ckpt), "nope.png"], 1,
             "error: nope.png: no such file"),
            (["predict", "--checkpoint", "none.pt", str(tmp_path / "blank.png")], 2,
             "--checkpoint none.pt: no such file (write one with train "
             "--checkpoint FILE)"),
            (["predict", "--checkpoint", str(ckpt), str(tmp_path / "notes.txt")], 1,
             "cannot identify image file"),
            (["predict", "--checkpoint", str(ckpt), str(tmp_path / "blank.png")], 1,
             "blank.png: no digit in"),
            (["evaluate", "--checkpoint", str(ckpt), "--n-test", "0"], 2,
             "--n-test must be >= 1, got 0"),
            (["evaluate", "--checkpoint", str(tmp_path / "notes.txt")], 1,
             "notes.txt is not a checkpoint")]:
        try:
            result = cli.main(argv)
        except SystemExit as exit_:
            result = exit_.code
        said = capsys.readouterr().err + (result if isinstance(result, str) else "")
        assert (result if isinstance(result, int) else 1) == code, (argv, said)
        assert msg in said, (argv, said)


# ------------------------------------------------------ a student's rough edges
def _interrupt_in_epoch(monkeypatch, epoch: int, step: int = 2) -> None:
    """Ctrl-C (a KeyboardInterrupt) at `step` of `epoch` of the next run."""
    import mnist_lib.train as train_module

    real, calls = train_module.batch_indices, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        for i, idx in enumerate(real(*args, **kwargs), 1):
            if len(calls) == epoch and i == step:
                raise KeyboardInterrupt
            yield idx

    monkeypatch.setattr(train_module, "batch_indices", interrupted)


def test_ctrl_c_in_train_says_where_it_stopped_and_what_it_wrote(tmp_path, capsys,
                                                                monkeypatch, mnist):
    """Ctrl-C in epoch 2: no traceback but one line, the finished epoch's
    history written to --out, no checkpoint (its weights were mid-epoch), and
    exit 130; without --out it says how to keep them next time."""
    out, ckpt = tmp_path / "run.json", tmp_path / "w.pt"
    run = ["train", "--model", "Model_2", "--epochs", "3", "--n-train", "512",
           "--n-test", "200", "--quiet", "--threads", "1"]
    _interrupt_in_epoch(monkeypatch, 2)
    assert cli.main([*run, "--out", str(out), "--checkpoint", str(ckpt)]) == 130
    err = capsys.readouterr().err
    assert err == (f"stopped by Ctrl-C in epoch 2 of 3; wrote the history of epoch "
                   f"1 to {out}; no checkpoint: the weights were part-way through "
                   "epoch 2\n")
    hist = History.load(out)
    assert [e.epoch for e in hist.epochs] == [1] and hist.config["epochs"] == 3
    assert not ckpt.exists()
    _interrupt_in_epoch(monkeypatch, 3)
    assert cli.main(run) == 130
    assert capsys.readouterr().err == ("stopped by Ctrl-C in epoch 3 of 3; nothing "
                                       "written (--out FILE keeps the history of "
                                       "epochs 1-2)\n")
    _interrupt_in_epoch(monkeypatch, 1)
    assert cli.main([*run, "--out", str(tmp_path / "none.json")]) == 130
    assert capsys.readouterr().err == ("stopped by Ctrl-C in epoch 1 of 3; no epoch "
                                       "had finished, nothing written\n")
    assert not (tmp_path / "none.json").exists()


@pytest.mark.slow
def test_ctrl_c_sent_to_train_ends_it_with_a_line_not_a_traceback(tmp_path):
    """As a learner presses it: SIGINT to `python -m mnist_lib train` once an
    epoch has finished. The process ends with 130 and one line naming the
    epochs whose history it wrote. The child starts with SIGINT's default
    action: a test run started in the background (`make test &`) passes SIGINT
    on ignored, and Python then installs no KeyboardInterrupt handler, so the
    signal would do nothing. The run is long enough (14 epochs of 20,000
    digits after the first) that it cannot end before the signal lands."""
    import signal

    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_lib", "train", "--model", "Model_2",
         "--epochs", "15", "--n-train", "20000", "--n-test", "500", "--threads", "1",
         "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "MNIST_PROGRESS": "static"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # an epoch's test line: it has finished
            if line.startswith("Test set:"):
                break
        assert proc.poll() is None, "the run ended before the signal was sent"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    done = len(History.load(out).epochs)
    finished = "epoch 1" if done == 1 else f"epochs 1-{done}"
    assert err.splitlines()[-1] == (f"stopped by Ctrl-C in epoch {done + 1} of 15; "
                                    f"wrote the history of {finished} to {out}")


def test_threads_above_the_cores_are_taken_with_a_warning(capsys, monkeypatch):
    """--threads above the cores this process may use: one warning line on
    stderr, naming the cores, and the number is still taken (it is the
    user's); at or below the cores, nothing is said."""
    import argparse

    import mnist_lib.hardware as hw

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(hw, "usable_cpus", lambda: {0, 1})
    parser = cli.train_parser("mnist-train")
    cli.set_threads(parser, argparse.Namespace(threads=64))
    err = capsys.readouterr().err
    assert err == ("warning: --threads 64: more than the 2 CPU core(s) this process "
                   "may use: PyTorch's threads wait for each other at every "
                   "operation, so those beyond the cores only slow each step (2 or "
                   "fewer run faster)\n")
    assert threads == [64]
    cli.set_threads(parser, argparse.Namespace(threads=2))
    assert capsys.readouterr().err == "" and threads == [64, 2]


def test_predict_answers_every_readable_image_and_names_each_bad_one(tmp_path,
                                                                    capsys, mnist):
    """`predict good.png bad.png ...`: each image it can read is answered, as
    if given alone; each other one is named on stderr with what is wrong (no
    such file, a folder, not an image, no digit); the exit code is 1."""
    from PIL import Image

    from mnist_lib.digit import read_digit

    ckpt = tmp_path / "w.pt"
    save_checkpoint(ckpt, get_model("Model_2"), _history("Model_2"))
    good = _digit_files(tmp_path, mnist)
    first, last = (str(tmp_path / name) for name in ("as_is.png", "photo.jpg"))
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    (tmp_path / "drawings").mkdir()
    bad = {str(tmp_path / "nope.png"): "no such file",
           str(tmp_path / "drawings"): "a folder, not an image (name the image "
                                      "files in it)",
           str(tmp_path / "notes.txt"): "cannot identify image file",
           str(tmp_path / "blank.png"): "no digit in"}
    argv = ["predict", "--checkpoint", str(ckpt), first, *bad, last]
    assert cli.main(argv) == 1
    said = capsys.readouterr()
    model = load_checkpoint(ckpt)
    answers = said.out.splitlines()[-2:]
    for line, path in zip(answers, (first, last)):
        digit = read_digit(path)
        p = model.probabilities(digit.pixels[None])[0]
        assert line.split()[:4] == [f"{path}:", f"{int(p.argmax())},", "probability",
                                    f"{p.max().item():.3f}"]
    errors = said.err.splitlines()
    assert len(errors) == len(bad) and len(good) == 3
    for line, (path, why) in zip(errors, bad.items()):
        assert line.startswith(f"error: {path}: {why}"), line
    assert cli.main(["predict", "--checkpoint", str(ckpt), first, last]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == answers


# What only Python can do, in a hint that a command-line user reads.
PYTHON_ONLY = re.compile(r"\w=\w+\(|\w+\([^()]*\w=|None for all|from Python|"
                         r"TrainConfig|save_checkpoint\(|load_checkpoint\(")


def test_cli_hints_are_fixes_a_command_line_user_can_make(tmp_path, capsys,
                                                         monkeypatch):
    """Library messages printed by the CLI give flags or edits of the user's
    own file, never a Python call; and following the hint works: a checkpoint
    of a class written in a notebook loads with --model FILE.py:NAME once the
    class is in that file."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(MY_NET, namespace)  # a class written in a notebook: no import finds it
    Image.new("L", (40, 40), 255).save("blank.png")
    img = Image.new("L", (40, 40), 255)
    img.paste(0, (15, 5, 25, 35))
    img.save("one.png")
    save_checkpoint("net.pt", namespace["Net"](), _history("Net"))
    (tmp_path / "needs_args.py").write_text(MY_NET + "\n\ndef make(width):\n"
                                            "    return Net()\n")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    cases = [
        (["predict", "--checkpoint", "net.pt", "one.png"],
         "give its class with --model FILE.py:Net (a file that defines Net; copy a "
         "class written in a notebook into one)"),
        (["evaluate", "--checkpoint", "net.pt"], "--model FILE.py:Net"),
        (["predict", "--checkpoint", "notes.pt", "one.png"],
         "Write one with `python -m mnist_lib train --checkpoint FILE`."),
        (["train", "--model", "needs_args.py:make", "--epochs", "1"],
         "Name a function that needs none (e.g. `def make(): return MyNet(10)` in "
         "your module)."),
        (["train", "--n-train", "0"], "--n-train must be >= 1 (or leave the flag "
                                      "out for all)"),
        (["train", "--scale", "1.2", "0.8"], "--scale 0.95 1.05"),
        (["train", "--data", str(tmp_path / "notes.pt" / "x"), "--epochs", "1",
          "--n-train", "100"], "(--data or --root)"),
    ]
    for argv, hint in cases:
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
        said = capsys.readouterr().err + (code if isinstance(code, str) else "")
        assert hint in " ".join(said.split()), (argv, said)
        assert not PYTHON_ONLY.search(said), (argv, said)
    (tmp_path / "my_net.py").write_text(MY_NET)
    assert cli.main(["predict", "--checkpoint", "net.pt", "--model", "my_net.py:Net",
                     "one.png"]) == 0
    model = load_checkpoint("net.pt", model=namespace["Net"]())
    from mnist_lib.digit import read_digit

    expected = int(model.predict(read_digit("one.png").pixels[None])[0])
    assert capsys.readouterr().out.splitlines()[-1].split()[1] == f"{expected},"


def test_save_checkpoint_names_the_folder_it_cannot_write_and_the_fix(tmp_path,
                                                                     monkeypatch):
    """Into a folder it may not write (simulated: this may run as root, whom
    permissions do not stop), `save_checkpoint` names the folder, why and the
    fix, not its temporary file; a folder given as the file is named as one."""
    import mnist_lib.utils.files as files

    model, hist = get_model("Model_2"), _history("Model_2")
    with pytest.raises(IsADirectoryError, match=rf"cannot save a checkpoint as "
                       rf"{re.escape(str(tmp_path))}: it is a folder; name a file "
                       "in it, e.g. .*net.pt"):
        save_checkpoint(tmp_path, model, hist)

    def refuse(dir, prefix, suffix):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x1{suffix}")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as err:
        save_checkpoint(tmp_path / "read_only" / "net.pt", model, hist)
    assert str(err.value) == (f"cannot save net.pt in the folder {tmp_path}/read_only:"
                              " Permission denied; save it in a folder you can write "
                              "to (your home folder, or a new one of your own)")
    assert ".tmp" not in str(err.value) and "x1" not in str(err.value)
