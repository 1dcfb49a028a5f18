"""The rf command (`python -m mnist_lib rf`), and the examples in the docs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mnist_lib.models import Model_4
from mnist_lib.rf import receptive_field
from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401


# Model_4's RF as its comments give it: 29 px on the 3x3 map of block2.1.0,
# jump 4, then the global average pooling.
MODEL_4 = ("RF 29 px (more than the 28x28 input), jump 4 px, at 'block2.1.0' (map 3x3);"
           " global from 'output.0' (AdaptiveAvgPool2d) onward")


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs (blank-line separated), each on one line: the
    CLI wraps the headline and the legend to fit a page."""
    return [" ".join(p.split()) for p in text.split("\n\n")]


def test_cli_formats(capsys):
    assert main(["mnist_lib.models:Model_4", "--input", "1,28,28"]) == 0
    out = capsys.readouterr().out
    assert MODEL_4 in paragraphs(out)
    assert max(map(len, out.splitlines()[-8:])) <= 76, "wrapped to the page"
    assert main(["mnist_lib.models:Model_4", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # The output is global: its r_out is the conv path's 29, flagged as such.
    assert (rows[-1]["r_out"], rows[-1]["global_out"]) == (29, True)
    assert [r["global_out"] for r in rows].index(True) == [
        r["name"] for r in rows].index("output.0")
    assert main(["mnist_lib.models:Model_4", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("name,kind,n_in")


def test_cli_columns(capsys):
    assert main(["mnist_lib.models:Model_4", "--columns", "name,stride,r_out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "stride", "r_out"]
    assert out[1].startswith("block1.0.0 ")  # names left-aligned, numbers right
    # Numbers right-aligned: each row ends where its header does, the
    # output's "global (29)" included.
    assert out[1].split() == ["block1.0.0", "2", "3"]
    assert out[10].split() == ["log_softmax", "global", "(29)"]
    assert len(out[0]) == len(out[1]) == len(out[10])
    # After the table: a blank line, the headline, a blank line, the legend.
    legend = receptive_field(Model_4(), (1, 28, 28)).legend
    assert paragraphs("\n".join(out))[-2:] == [MODEL_4, " ".join(legend.split())]
    # A CSV holds numbers: the RF, then its flag in a column of its own.
    assert main(["mnist_lib.models:Model_4", "--format", "csv",
                 "--columns", "r_out"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (lines[0], lines[-1]) == ("r_out,global_out", "29,True")


@pytest.mark.parametrize("argv, msg", [
    (["mnist_lib.models:Model_4", "--input", "0,28,28"],
     "--input must be the channels and one size per spatial axis"),
    (["mnist_lib.models:Model_4", "--input", "28"], "C,H,W (or C,L, or C,D,H,W)"),
    (["mnist_lib.models:Model_4", "--columns", "name,rf"], "unknown column(s) 'rf'"),
    (["mnist_lib.models:Model_4", "--columns", ","], "(none given)"),
    (["mnist_lib.models"], "PACKAGE.MODULE:CALLABLE"),
    (["mnist_lib.models:Nope"], "cannot load"),
    (["mnist_lib.models:model_4"], "Did you mean 'Model_4'? The models"
                                   " mnist_lib.models defines: Model_1, Model_1_BN,"),
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
    # 3x3, 3x3, 2x2 max-pool: RF 3 + 2 + 1 = 6 px, jump 2, no global op.
    assert "RF 6 px, jump 2 px, at '2' (map 12x12)" in paragraphs(capsys.readouterr().out)
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
    # wrapped in cli.quiet_on_closed_pipe, for `python -m` and the console
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


def test_readme_1d_example_holds():
    """The README's audio front-end, run, gives the headline its comment says."""
    import re

    from mnist_lib.rf import receptive_field

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "Conv1d" in b)
    *code, last = block.strip().splitlines()
    call, said = last.split("  # ")
    scope = {"receptive_field": receptive_field}
    exec("\n".join(code), scope)
    assert repr(eval(call, scope)) == said


def test_readme_rf_commands_run(capsys):
    import shlex

    readme = (ROOT / "README.md").read_text()
    commands = [shlex.split(line)[4:] for line in readme.splitlines()
                if line.startswith("python -m mnist_lib rf ")]
    assert len(commands) >= 2
    for argv in commands:
        assert main(argv) == 0, argv
        assert "r_out" in capsys.readouterr().out



def test_cli_takes_a_file_that_defines_a_dataclass(tmp_path, capsys, monkeypatch):
    # A @dataclass looks its module up in sys.modules as the class is made:
    # before, "running ... failed: AttributeError: 'NoneType' object has no
    # attribute '__dict__'". Once loaded, the module hides no other.
    (tmp_path / "cfg_net.py").write_text(
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "import torch.nn as nn\n"
        "@dataclass\n"
        "class Config:\n"
        "    width: int = 4\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self, cfg: Config = Config()):\n"
        "        super().__init__(nn.Conv2d(1, cfg.width, 5), nn.MaxPool2d(2))\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI prepends the folder
    assert main([f"{tmp_path / 'cfg_net.py'}:Net"]) == 0
    out = paragraphs(capsys.readouterr().out)
    assert "RF 6 px, jump 2 px, at '1' (map 12x12)" in out
    assert "cfg_net" not in sys.modules


def test_cli_names_the_line_of_a_module_that_raises(tmp_path, monkeypatch):
    # MODULE:NAME and FILE.py:NAME say the same, in one line: before, a module
    # that raised as it was imported gave a traceback.
    (tmp_path / "oops.py").write_text("import torch\nraise ValueError('oops')\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    file = tmp_path / "oops.py"
    for spec, what in [("oops:Net", "importing 'oops'"),
                       (f"{file}:Net", f"running '{file}'")]:
        with pytest.raises(SystemExit) as exc:
            main([spec])
        assert str(exc.value.code) == (f"error: {what} failed: ValueError: oops "
                                       f"({file}, line 2)")
        sys.modules.pop("oops", None)


_UNTRACEABLE = '''
import torch.nn as nn
import torch.nn.functional as F

class Blur(nn.Module):  # a 3x3 box blur that torch.fx cannot trace (a branch)
    def forward(self, x):
        return F.avg_pool2d(x, 3, 1, 1) if x.sum() > 0 else x

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.b = Blur()

    def forward(self, x):
        return self.b(self.c(x))
'''


def test_an_rf_hint_on_the_command_line_is_a_flag_and_following_it_works(
        tmp_path, capsys):
    """The fix an RFError suggests, said as --declare, gives the RF the
    arithmetic gives (conv 3 then a 3x3 stride-1 blur: 5)."""
    net = tmp_path / "blur_net.py"
    net.write_text(_UNTRACEABLE)
    spec = f"{net}:Net"
    assert main([spec, "--input", "1,12,12"]) == 1
    err = capsys.readouterr().err
    assert "custom=" not in err and "receptive_field(" not in err
    assert "--declare Blur=pointwise" in err
    assert '--declare "Blur=Window(kernel, stride, padding, dilation)"' in err
    assert main([spec, "--input", "1,12,12", "--format", "json",
                 "--declare", "Blur=Window(3, 1, 1)"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["r_out"] == 5 and rows[-1]["n_out"] == 10


@pytest.mark.parametrize("declare, said", [
    ("Blurr=pointwise", "no module classes named 'Blurr' (its classes: Blur, "),
    ("Blur=Window(three)", "write Blur=pointwise or \"Blur=Window(3, 2, 'same')\""),
    ("Blur=box", "write Blur=pointwise or"),
])
def test_a_declaration_the_model_cannot_take_is_named(tmp_path, capsys, declare, said):
    net = tmp_path / "blur_net.py"
    net.write_text(_UNTRACEABLE)
    with pytest.raises(SystemExit) as exit_:
        main([f"{net}:Net", "--declare", declare])
    assert exit_.value.code == 2 and said in capsys.readouterr().err
