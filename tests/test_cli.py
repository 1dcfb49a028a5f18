"""The command line, `python -m mnist_lib COMMAND` (mnist_lib.cli): the
dispatch, and the train command. The seeds, bench and data commands are
tested beside their libraries (test_tools.py, test_data.py), the rf command in
tests/rf/."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from mnist_lib import cli
from mnist_lib.config import TrainConfig
from mnist_lib.history import History
from mnist_lib.models import get_model, load_checkpoint, save_checkpoint

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
        assert f"usage: python -m mnist_lib {name}" in err, err
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
    (["--n-train", "-5"], "n_train must be >= 1 (or None for all), got -5"),
    (["--n-test", "0"], "n_test must be >= 1 (or None for all), got 0"),
    (["--n-train", "70000"], "n_train=70000, but there are only 60,000 images"),
    (["--scheduler", "cosine"], "invalid choice: 'cosine'"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--scale", "1.1", "0.9"], "scale must be (low, high) with 0 < low <= high"),
    (["--scale", "0.9"], "argument --scale: expected 2 arguments"),
    # 4 steps of 256 images, a quarter of them warm-up: torch divided by zero.
    (["--model", "Model_4", "--epochs", "1", "--n-train", "1000"],
     "onecycle cannot warm the LR up over exactly 1 step (pct_start x steps "
     "= 0.25 x 4)"),
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
    assert "CUDA is not available" in capsys.readouterr().err




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
    with pytest.raises(ValueError, match=r"notes.pt is not a checkpoint of a book "
                                         r"model .*\n.*--checkpoint FILE"):
        load_checkpoint(bad)
    # Saved from a model whose layers have changed since (here: another model).
    old = tmp_path / "old.pt"
    save_checkpoint(old, get_model("Model_2"), _history("Model_4"))
    with pytest.raises(ValueError, match=r"weights of an earlier Model_4, whose layers "
                                         r"differ(?s:.*)--model Model_4 --checkpoint"):
        load_checkpoint(old)
    with pytest.raises(ValueError, match="the History of a book model's run"):
        save_checkpoint(old, get_model("Model_2"), _history("Model_9"))


def test_cli_divergence_is_an_error_line_not_a_traceback():
    # As a learner runs it, in a process of its own.
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_lib", "train", "--model", "Model_1", "--lr", "1e6",
         "--epochs", "1", "--n-train", "1000", "--n-test", "500", "--quiet"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: training diverged"), proc.stderr
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
