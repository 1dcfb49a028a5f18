"""Models: output shape and convention, parameter budgets (torchsummary as reference)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_lib.models import (CANDIDATES, EXERCISE_MODELS, FINAL_MODEL, MODELS,
                              RUNG_MODELS, count_parameters, get_model)
from mnist_lib.rf import receptive_field
from mnist_lib.summary import summary

# The book's models, the nets that are only rungs of its ladder, round 2's
# candidates, and the net only an exercise's record trains.
EVERY = MODELS | RUNG_MODELS | CANDIDATES | EXERCISE_MODELS
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(EVERY))
@pytest.mark.parametrize("batch", [1, 7])
def test_output_is_log_probabilities(name, batch):
    model = get_model(name).eval()
    out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(batch), atol=1e-5)


@pytest.mark.parametrize("name", list(EVERY))
def test_parameter_count_agrees_with_torchsummary(name):
    model = get_model(name)
    text = summary(model)
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert count_parameters(model) == total


def test_parameter_budgets():
    assert count_parameters(get_model(FINAL_MODEL)) < 8000
    assert count_parameters(get_model("Model_5")) <= 5000
    assert count_parameters(get_model("Model_1")) > 8000  # the skeleton is heavy
    for name in CANDIDATES:  # results/protocol2.md: every candidate under budget
        assert count_parameters(get_model(name)) < 8000, name


def test_summary_leaves_model_untouched():
    model = get_model("Model_2").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics unchanged


def test_unknown_model_names_choices():
    with pytest.raises(ValueError, match="Model_1"):
        get_model("Model_99")



# A shape comment in a model's source: "# 14x14x10, RF 3, j 2" (RF and j optional).
_SHAPE = re.compile(r"# (\d+)x(\d+)x(\d+)(?:, RF (\d+|global))?(?:, j (\d+))?$")


@pytest.mark.parametrize("name", list(EVERY))
def test_shape_comments_agree_with_the_rf_calculator(name):
    # The book shows each model's source, and readers learn from its comments:
    # every stated size, RF and jump must be what receptive_field computes.
    # A variant that only sets an argument (Model_4_dropout) shows its
    # parent's layers, so the parent's comments must hold for it too.
    said = next(shapes for cls in EVERY[name].__mro__
                if (shapes := [m.groups() for line in inspect.getsource(cls).splitlines()
                               if (m := _SHAPE.search(line))]))
    table = receptive_field(EVERY[name](), (1, 28, 28))
    rows = [r for r in table.layers()
            if r.kind in ("Conv2d", "MaxPool2d", "AdaptiveAvgPool2d")]
    assert len(said) == len(rows) > 0, [r.name for r in rows]
    for (h, w, c, rf, j), row in zip(said, rows):
        assert row.n_out in (int(h), (int(h), int(w))) and h == w, row.name
        assert int(c) == row.ch_out, row.name
        if rf == "global":  # the pooling: each unit averages the whole map
            assert row.global_out and not row.global_in, row.name
        elif rf:
            assert int(rf) == row.r_out and not row.global_out, row.name
        if j:
            assert int(j) == row.j_out, row.name


def test_a_loaded_checkpoint_takes_raw_images_as_they_come(tmp_path):
    """`load_checkpoint` gives a Classifier: it normalises as training did, so
    uint8 pixels, floats in [0, 1], with or without the channel axis, all give
    the predictions of the model on normalised input."""
    from mnist_lib.training.history import History
    from mnist_lib.training.checkpoint import Classifier, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = get_model("Model_4").eval()
    hist = History("Model_4", 0, {"lr": 0.2}, {},
                   normalization={"mean": 0.1307, "std": 0.3081})
    save_checkpoint(tmp_path / "m.pt", net, hist)
    model = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(model, Classifier) and not model.training
    pixels = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = net((pixels[:, None].float() / 255 - 0.1307) / 0.3081)
        for images in (pixels, pixels[:, None], pixels[:, None].float() / 255):
            assert torch.allclose(model(images), expected, atol=1e-5)
    assert torch.equal(model.predict(pixels), expected.argmax(1))
    # A NumPy array, a list of numbers, of arrays or of tensors, other integers:
    # the same pixels, the same answer.
    for images in (pixels.numpy(), pixels.tolist(), list(pixels.numpy()),
                   list(pixels), pixels.long(), pixels.numpy().astype("int32"),
                   (pixels.numpy() / 255.0).tolist()):
        assert torch.allclose(model(images), expected, atol=1e-5), type(images)
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\) or \(B, H, W\)"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="uint8 pixels or floats"):
        model(pixels.bool())
    # Each digit's probability: the exp of the log-probabilities, summing to 1.
    probs = model.probabilities(pixels.numpy())
    assert torch.allclose(probs, expected.exp(), atol=1e-5)
    assert torch.allclose(probs.sum(1), torch.ones(8))


def test_a_loaded_checkpoint_refuses_float_pixels_outside_0_1(tmp_path):
    """Pixels in 0-255 as floats would be taken for [0, 1] ones, 255 times too
    bright, and the model would still answer, mostly wrong: refused, with the
    fix, in one line."""
    from mnist_lib.training.checkpoint import Classifier

    model = Classifier(get_model("Model_2"), 0.1307, 0.3081).eval()
    pixels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    model.predict(pixels.float() / 255)  # the range it was trained on
    for bad, shown in [(pixels.float(), "to 255"),
                       (pixels.float() / 255 - 0.5, "from -0.5")]:
        with pytest.raises(ValueError) as err:
            model.predict(bad)
        msg = str(err.value)
        assert msg.startswith("expected float pixels in [0, 1]") and shown in msg
        assert "divide 0-255 pixels by 255, or pass uint8" in msg and "\n" not in msg


NAN = float("nan")


@pytest.mark.parametrize("images, message", [
    (torch.zeros(2, 14, 14), "expected 28x28 images, the size the model was trained "
                             "on, got 14x14: make an image of another size an MNIST "
                             "digit with mnist_lib.read_digit"),
    (np.zeros((2, 1, 32, 32), np.uint8), "expected 28x28 images, the size the model "
                                         "was trained on, got 32x32"),
    (torch.full((1, 28, 28), NAN), "the images hold 784 NaN or infinite pixel(s): "
                                   "a pixel is a float in [0, 1] or an integer 0-255"),
    (np.where(np.eye(28) > 0, np.inf, 0.5)[None], "the images hold 28 NaN or "
                                                  "infinite pixel(s)"),
    (torch.zeros(28, 28), "got shape (28, 28) (one image: pass [image] or "
                          "image[None])"),
    ([np.zeros((28, 28)), np.zeros((14, 14))], "the images differ in shape"),
    ([torch.zeros(28, 28), torch.zeros(14, 14)], "the images differ in shape"),
    (np.full((1, 28, 28), 300), "expected integer pixels in 0-255, got values from "
                                "300 to 300"),
])
def test_a_loaded_checkpoint_says_in_one_line_what_is_wrong_with_images(images,
                                                                       message):
    """A wrong size is not passed on to torch (a kernel-size error at 14x14,
    a silent answer at 32x32), NaN is not taken for 0-255 pixels: each is
    refused in one line that names the problem."""
    from mnist_lib.training.checkpoint import Classifier

    model = Classifier(get_model("Model_4"), 0.1307, 0.3081).eval()
    with pytest.raises(ValueError) as err:
        model.predict(images)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="expected images of pixels"):
        model.predict([["a"] * 28] * 28)


# A net of a student's own, in a file: Conv -> GAP -> Linear, log-probabilities.
STUDENT_NET = """
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=2)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(F.relu(self.conv(x)).mean((2, 3))), dim=1)


def make():
    return Net()
"""


def _student_history(name: str = "Net"):
    from mnist_lib.training.history import History

    return History(name, 0, {}, {}, normalization={"mean": 0.13, "std": 0.31})


def _outputs(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()((pixels[:, None].float() / 255 - 0.13) / 0.31)


def _loads_in_a_fresh_process(folder: Path, checkpoint: str, net: torch.nn.Module,
                              check: str = "") -> subprocess.CompletedProcess:
    """`load_checkpoint(checkpoint)` in a fresh Python process run in `folder`,
    which asserts that the model (`m`) gives `net`'s outputs on random pixels,
    after the assertions in `check`, and prints "ok"."""
    pixels = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    torch.save({"pixels": pixels, "expected": _outputs(net, pixels)},
               folder / "io.pt")
    code = ("import torch\nfrom mnist_lib import load_checkpoint\n"
            f"io = torch.load('io.pt')\nm = load_checkpoint({checkpoint!r})\n"
            f"{check}"
            "assert torch.allclose(m(io['pixels']), io['expected'], atol=1e-6)\n"
            "print('ok')")
    return subprocess.run([sys.executable, "-c", code], cwd=folder, text=True,
                          capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_a_students_net_from_a_module_is_checkpointed_and_found_again(tmp_path):
    """save_checkpoint stores the class's import path ("students_net:Net");
    load_checkpoint, in a fresh process, imports it from the current folder
    as Python would and gives the same outputs."""
    from mnist_lib.training.checkpoint import save_checkpoint

    (tmp_path / "students_net.py").write_text(STUDENT_NET)
    sys.path.insert(0, str(tmp_path))
    try:
        import students_net

        torch.manual_seed(0)
        net = students_net.Net()
        save_checkpoint(tmp_path / "net.pt", net, _student_history())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("students_net", None)
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    assert saved["spec"] == "students_net:Net"
    done = _loads_in_a_fresh_process(
        tmp_path, "net.pt", net,
        check="assert type(m.net).__module__ == 'students_net', type(m.net)\n")
    assert done.stdout == "ok\n", done.stderr


@pytest.mark.parametrize("layout", ["module", "package", "spec given"])
def test_a_checkpoint_of_a_students_net_loads_from_any_folder(tmp_path, monkeypatch,
                                                              layout):
    """Beside "MODULE:NAME", save_checkpoint stores the folder the module was
    imported from, relative to the checkpoint (as it stores a FILE.py): a
    fresh process in another folder, where no import finds the module, loads
    it from there. A package's relative imports work too."""
    import importlib

    from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint

    project = tmp_path / "project"
    project.mkdir()
    if layout == "package":
        (project / "anyfolder_pkg").mkdir()
        (project / "anyfolder_pkg" / "__init__.py").write_text("")
        (project / "anyfolder_pkg" / "layers.py").write_text(STUDENT_NET)
        (project / "anyfolder_pkg" / "model.py").write_text("from .layers import Net\n")
        name = "anyfolder_pkg.model"
    else:
        (project / "anyfolder_net.py").write_text(STUDENT_NET)
        name = "anyfolder_net"
    monkeypatch.setattr(sys, "path", [str(project), *sys.path])
    try:
        torch.manual_seed(0)
        net = importlib.import_module(name).Net()
        save_checkpoint(project / "runs" / "net.pt", net, _student_history(),
                        spec=f"{name}:Net" if layout == "spec given" else None)
    finally:
        for module in [m for m in sys.modules if m.startswith("anyfolder_")]:
            sys.modules.pop(module)
    saved = torch.load(project / "runs" / "net.pt", weights_only=True)
    assert saved["module_folder"] == ".."
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _loads_in_a_fresh_process(elsewhere, str(project / "runs" / "net.pt"), net)
    assert done.stdout == "ok\n", done.stderr
    # Moved away from its module: the message says where it was looked for.
    (project / "runs").rename(elsewhere / "runs")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(project)])
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ValueError, match=r"No module named 'anyfolder_\w+', here "
                       r"or in '.*runs/\.\.', where it was when the checkpoint was "
                       r"saved(?s:.*)model=Net\(\)"):
        load_checkpoint("runs/net.pt")


def test_a_students_net_from_a_file_is_found_beside_the_checkpoint(tmp_path,
                                                                   monkeypatch):
    """A FILE.py:NAME spec (what `mnist-train --model my_net.py:Net` stores) is
    kept relative to the checkpoint's folder: the two can move together, and
    load from any current folder."""
    from mnist_lib.utils.model_spec import build
    from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint

    (tmp_path / "my_net.py").write_text(STUDENT_NET)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader prepends the folder
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    net = build("my_net.py:make")
    save_checkpoint("runs/net.pt", net, _student_history(), spec="my_net.py:make")
    assert torch.load("runs/net.pt", weights_only=True)["spec"] == "../my_net.py:make"
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("runs", "my_net.py"):
        (tmp_path / name).rename(moved / name)
    monkeypatch.chdir(ROOT)
    pixels = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    model = load_checkpoint(moved / "runs" / "net.pt")
    assert torch.allclose(model(pixels), _outputs(net, pixels), atol=1e-6)
    # Gone: the message names what failed, and the way that imports nothing.
    (moved / "my_net.py").unlink()
    with pytest.raises(ValueError, match=r"holds a Net, which cannot be built from "
                       r"'../my_net.py:make': no file .*\nOr pass the model to load "
                       r"the weights into: load_checkpoint\(.*, model=Net\(\)\)"):
        load_checkpoint(moved / "runs" / "net.pt")


def test_a_net_defined_in_a_notebook_loads_into_the_model_given(tmp_path):
    """A class no import can find (defined in a notebook, a script, here a
    function) is saved without a spec; loading asks for the model, and puts
    the weights into the one given, which must fit them."""
    from mnist_lib.utils.model_spec import class_spec
    from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint

    class Net(torch.nn.Sequential):
        def __init__(self, width: int = 4):
            super().__init__(torch.nn.Conv2d(1, width, 5, stride=4), torch.nn.Flatten(),
                             torch.nn.LazyLinear(10), torch.nn.LogSoftmax(1))

    torch.manual_seed(0)
    net = Net()
    net(torch.zeros(1, 1, 28, 28))  # the lazy layer takes its shape
    assert class_spec(net) is None and class_spec(get_model("Model_4")) == (
        "mnist_lib.models:Model_4")
    save_checkpoint(tmp_path / "net.pt", net, _student_history())
    with pytest.raises(ValueError, match=r"holds a Net whose class no import finds "
                       r"\(it was defined in a notebook or a script\): pass the model"
                       r" .*model=Net\(\)\)"):
        load_checkpoint(tmp_path / "net.pt")
    pixels = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    fresh = Net()
    fresh(torch.zeros(1, 1, 28, 28))
    model = load_checkpoint(tmp_path / "net.pt", model=fresh)
    assert model.net is fresh and not model.training
    assert torch.allclose(model(pixels), _outputs(net, pixels), atol=1e-6)
    other = Net(width=3)
    other(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"the weights in .*net.pt, a Net's, do not "
                                         r"fit the model given:\n"):
        load_checkpoint(tmp_path / "net.pt", model=other)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_load_checkpoint_on_a_device_that_is_not_there_says_so(tmp_path):
    from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", get_model("Model_2"),
                    _student_history("Model_2"))
    with pytest.raises(ValueError, match="device='cuda' requested but CUDA is not "
                                         "available") as err:
        load_checkpoint(tmp_path / "m.pt", device="cuda")
    assert "not a checkpoint" not in str(err.value)
    assert type(load_checkpoint(tmp_path / "m.pt").net).__name__ == "Model_2"


def test_layers_text_lists_each_convolution_and_pooling_in_order():
    from mnist_lib.summary import layers_text

    assert layers_text(get_model("Model_4")) == (
        "3×3/2 10, 3×3 16, 3×3 16, max-pool, 1×1 10, 3×3 16, 3×3 14, GAP, 1×1 10")
    assert layers_text(get_model("Model_1")).endswith("3×3 16, 8×8 10")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, (3, 5), stride=2),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    assert layers_text(net) == "3×5/2 4, avg-pool, linear 10"


@pytest.mark.parametrize("wrap", [torch.nn.DataParallel, torch.compile],
                         ids=["DataParallel", "compile"])
def test_a_wrapped_model_is_saved_and_loaded_as_the_net_inside(tmp_path, wrap):
    """torch.compile and DataParallel wrap a net without changing what it
    computes: the checkpoint names the net's class and its weights' own names,
    so that it loads into the net, wrapped or not."""
    from mnist_lib.training.checkpoint import load_checkpoint, save_checkpoint
    from mnist_lib.training.history import History

    torch.manual_seed(0)
    net = get_model("Model_4").eval()
    hist = History("Model_4", 0, {}, {}, normalization={"mean": 0.1, "std": 0.3})
    save_checkpoint(tmp_path / "w.pt", wrap(net), hist)
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert saved["spec"] == "mnist_lib.models:Model_4"
    assert set(saved["state_dict"]) == set(net.state_dict())
    pixels = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    expected = load_checkpoint(tmp_path / "w.pt").predict(pixels)
    into = load_checkpoint(tmp_path / "w.pt", model=wrap(get_model("Model_4")))
    assert torch.equal(into.predict(pixels), expected)
    assert isinstance(into.net, type(net))


def test_multiply_adds_count_each_weight_read_per_output_value():
    """By hand: a 3x3 conv 1->4 on 28x28 (26x26 out, 9 each), then a Linear
    4*26*26 -> 10; BatchNorm and ReLU add nothing; grouped convolutions read
    only their group's channels."""
    import torch.nn as nn

    from mnist_lib.models import count_multiply_adds

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    assert count_multiply_adds(net) == 4 * 26 * 26 * 9 + 10 * 4 * 26 * 26
    grouped = nn.Conv2d(4, 8, 3, groups=2, padding=1)
    assert count_multiply_adds(grouped, (4, 5, 5)) == 8 * 5 * 5 * 2 * 9
    net.train()
    count_multiply_adds(net)
    assert net.training, "the model's mode is restored"
