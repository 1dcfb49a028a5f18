"""The rf command (`python -m mnist_lib rf`), and the examples in the docs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401


def test_cli_formats(capsys):
    assert main(["mnist_lib.models:Model_4", "--input", "1,28,28"]) == 0
    assert "output RF 37 px" in capsys.readouterr().out
    assert main(["mnist_lib.models:Model_4", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["r_out"] == 37
    assert main(["mnist_lib.models:Model_4", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("name,kind,n_in")


def test_cli_columns(capsys):
    assert main(["mnist_lib.models:Model_4", "--columns", "name,stride,r_out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "stride", "r_out"]
    assert out[1].startswith("block1.0.0 ")  # names left-aligned, numbers right
    assert out[1].endswith(" 2      3")
    assert out[-1] == "output RF 37 px, jump 12 px (larger than the input)"
    assert main(["mnist_lib.models:Model_4", "--format", "csv",
                 "--columns", "r_out"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "37"


@pytest.mark.parametrize("argv, msg", [
    (["mnist_lib.models:Model_4", "--input", "28,28"], "three positive integers"),
    (["mnist_lib.models:Model_4", "--columns", "name,rf"], "unknown column(s) 'rf'"),
    (["mnist_lib.models:Model_4", "--columns", ","], "(none given)"),
    (["mnist_lib.models"], "PACKAGE.MODULE:CALLABLE"),
    (["mnist_lib.models:Nope"], "cannot load"),
    (["mnist_lib.models:model_4"], "Did you mean 'Model_4'? The models"
                                   " mnist_lib.models defines: Classifier, Model_1,"),
    (["torchvision.models:Resnet18"], "Did you mean 'resnet18'?"),
    (["mnist_lib.utils:Net"], "mnist_lib.utils defines no nn.Module class"),
    (["mnist_lib.models:FINAL_MODEL"], "is a str, not a model"),
    (["torch.nn:LSTM"], "calling LSTM with no arguments"),
    (["mnist_lib.models:layer_list"], "layer_list() failed"),
    (["mnist_lib.models:MODELS.copy"], "cannot load"),
    (["torch:get_default_dtype"], "returned a dtype, not a torch.nn.Module"),
])
def test_cli_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err + str(exc.value.code)
    assert msg in " ".join(err.split())  # hints are wrapped to 77 columns


def test_cli_takes_a_file_of_the_students_own(tmp_path, capsys, monkeypatch):
    # A file in another folder, which imports a file beside it, as a script can.
    (tmp_path / "blocks.py").write_text(
        "import torch.nn as nn\n"
        "def block(c_in, c_out):\n"
        "    return nn.Sequential(nn.Conv2d(c_in, c_out, 3), nn.ReLU())\n")
    (tmp_path / "my_net.py").write_text(
        "import torch.nn as nn\n"
        "from torch.nn import ReLU\n"
        "from blocks import block\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(block(1, 4), block(4, 8), nn.MaxPool2d(2))\n")
    (tmp_path / "bad.py").write_text("import torch\nraise ValueError('oops')\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI prepends the folder
    assert main([f"{tmp_path / 'my_net.py'}:Net", "--columns", "name,r_out"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "output RF 6 px, jump 2 px"
    for spec, msg in [(f"{tmp_path / 'nope.py'}:Net", "no file"),
                      (f"{tmp_path / 'bad.py'}:Net", "failed: ValueError: oops"),
                      (f"{tmp_path / 'my_net.py'}:Nett", "has no attribute 'Nett'"),
                      # The classes it defines, not those it imports (ReLU).
                      (f"{tmp_path / 'my_net.py'}:Nett", "Did you mean 'Net'? "
                       f"The models {tmp_path / 'my_net.py'} defines: Net."),
                      ]:
        with pytest.raises(SystemExit) as exc:
            main([spec])
        # The hint is wrapped to 77 columns, between words only.
        assert msg in " ".join(str(exc.value.code).split()), exc.value.code


def test_cli_names_a_module_that_fails_as_it_is_imported(tmp_path, monkeypatch):
    # An AttributeError from the module's own code is a failed load, not the
    # missing name the student typed: no hint of names it would define.
    (tmp_path / "half_done.py").write_text("import torch\ntorch.nn.Conv2 = torch.nn.Cov2d\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    with pytest.raises(SystemExit) as exc:
        main(["half_done:Net"])
    msg = str(exc.value.code)
    assert msg.startswith("error: cannot load 'half_done:Net'") and "Cov2d" in msg
    assert "Did you mean" not in msg and "defines" not in msg


def test_cli_unsupported_model_exits_1(capsys):
    assert main(["tests.rf.helpers:UpsampleNet"]) == 1
    assert "Upsample" in capsys.readouterr().err


def test_cli_stops_quietly_when_its_reader_does():
    # `python -m mnist_lib rf ... | head`: head may exit before the table is
    # written. Closing the pipe at once makes that certain. (Every command is
    # wrapped in utils.quiet_on_closed_pipe, for `python -m` and the console
    # scripts alike.)
    argv = ["mnist_lib", "rf", "mnist_lib.models:Model_4", "--all"]
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and "Traceback" not in err, err


def test_docstring_examples_hold():
    import doctest

    import mnist_lib.rf
    import mnist_lib.rf.field

    for module in (mnist_lib.rf, mnist_lib.rf.field):
        result = doctest.testmod(module)
        assert result.attempted >= 3 and result.failed == 0, module


def test_readme_rf_commands_run(capsys):
    import shlex

    readme = (ROOT / "README.md").read_text()
    commands = [shlex.split(line)[4:] for line in readme.splitlines()
                if line.startswith("python -m mnist_lib rf ")]
    assert len(commands) >= 2
    for argv in commands:
        assert main(argv) == 0, argv
        assert "r_out" in capsys.readouterr().out

