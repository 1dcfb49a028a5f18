"""The numbers the chapters' exercise solutions and architecture figures state,
checked here rather than in hidden cells of the chapters: a reader does not
scroll past them, and a change to a model that makes a solution wrong still
fails `make test`."""

from __future__ import annotations

import contextlib
import io
import math
import re
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mnist_lib import count_parameters, plots
from mnist_lib.config import recipe
from mnist_lib.models import Model_1, conv_block
from mnist_lib.rf import receptive_field


def test_step1_exercise_numbers():
    per_layer = [p.numel() for p in Model_1().parameters()]
    assert per_layer == [144, 16, 2304, 16, 2304, 16, 2304, 16, 10240, 10]
    # Exercise 1: the table of parameters, and the output's share.
    assert count_parameters(Model_1()) == 160 + 3 * 2320 + 10250 == 17370
    assert 10250 / 17370 > 0.5
    # Exercise 2: half the width.
    block = partial(conv_block, bn=False)
    narrow = nn.Sequential(
        block(1, 8, stride=2, padding=1), block(8, 8), block(8, 8), block(8, 8),
        nn.Conv2d(8, 10, kernel_size=8), nn.Flatten(),
    )
    assert count_parameters(narrow) == 80 + 3 * 584 + 5130 == 6962 < 8000
    assert count_parameters(narrow[4]) == 5130
    rf1 = receptive_field(Model_1(), (1, 28, 28))
    assert receptive_field(narrow, (1, 28, 28)).trunk.r_out == rf1.trunk.r_out == 29
    # Exercise 3: steps in one epoch of 1,000 and of 10,000 images.
    cfg = recipe("Model_1")
    assert cfg.batch_size == 128
    assert [math.ceil(n / cfg.batch_size) for n in (1_000, 10_000)] == [8, 79]
    # The Analysis: the 8x8 output convolution adds (8 - 1) x 2 pixels to 15.
    before = rf1["block2.0.0"]
    assert (before.r_out, before.j_out, before.n_out) == (15, 2, 8)
    assert rf1["output"].r_out == 15 + (8 - 1) * 2 == 29


def descend(momentum: float, lr: float, steps: int = 30) -> float:
    """Step 1's valley, 0.1 w1^2 + 2 w2^2 from (-5, -2): the distance to the
    minimum after `steps` steps of torch's SGD."""
    w = torch.tensor([-5.0, -2.0], requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        (0.1 * w[0] ** 2 + 2 * w[1] ** 2).backward()
        opt.step()
    return w.detach().norm().item()


def test_step1_momentum_on_the_valley_as_exercise_4_answers():
    """Momentum 0.9 at the figure's rate ends farther from the minimum than
    plain SGD; at a tenth of the rate it ends nearer than plain SGD there."""
    assert descend(0.9, 0.45) > descend(0.0, 0.45) > descend(0.5, 0.45)
    assert descend(0.9, 0.045) < descend(0.0, 0.045)
    assert descend(0.0, 0.9) > 1e6  # plain SGD at twice the rate diverges


def test_step1_text_and_figure_describe_model_1():
    rf1 = receptive_field(Model_1(), (1, 28, 28))
    said = plots.architecture_alt(rf1, "Model_1")
    assert "conv 8x8 to 1x1" in said and "RF 29 px at the output" in said
    # "The skeleton's RF covers the digit; its output is not a global pool",
    # and more than half of its parameters sit in the output convolution.
    assert rf1.trunk is rf1["output"] and not rf1.final.global_out
    assert rf1.trunk.r_out >= 20
    out = sum(p.numel() for p in Model_1().output.parameters())
    assert count_parameters(Model_1()) > 8000 and out / count_parameters(Model_1()) > 0.5
    cfg = recipe("Model_1")
    assert (cfg.optimizer, cfg.scheduler, cfg.lr) == ("sgd", "none", 0.01)


def test_step2_exercise_and_concept_numbers():
    import torch

    from mnist_lib.models import Model_1_BN, Model_1_GAP, Model_2, Model_3

    # The concept box's BatchNorm example standardises its batch.
    torch.manual_seed(0)
    x = 5 + 3 * torch.randn(64, 4, 8, 8)
    with torch.no_grad():
        y = nn.BatchNorm2d(4).train()(x)
    assert abs(y.mean()) < 1e-4 and abs(y.std() - 1) < 1e-2
    # The GAP rung's counts: the 8x8 head against GAP and a 1x1 convolution.
    assert count_parameters(Model_1_BN().output) == 16 * 10 * 64 + 10 == 10250
    # Step 2, Exercise 3: BatchNorm adds 4 x 2 x 16, the biases go: +64.
    assert count_parameters(Model_1_BN()) - count_parameters(Model_1()) == 128 - 64
    assert count_parameters(Model_1_GAP().output) == 16 * 10 + 10 == 170
    assert count_parameters(Model_1_GAP()) < 8000 < count_parameters(Model_1_BN())
    rf_gap = receptive_field(Model_1_GAP(), (1, 28, 28)).trunk.r_out
    rf2 = receptive_field(Model_2(), (1, 28, 28))
    assert rf_gap < 20 and rf2.trunk.r_out == rf_gap + 4 == 19
    assert abs(count_parameters(Model_2()) - count_parameters(Model_1_GAP())) < 100
    assert recipe("Model_3").scheduler == "none"  # "a rate that stays constant"
    assert recipe("Model_3").lr / recipe("Model_1").lr == 5
    rf3 = receptive_field(Model_3(), (1, 28, 28))
    assert "RF 19 px before the global pooling" in plots.architecture_alt(rf3, "Model_3")
    assert rf3.trunk.n_out == 8 and rf3.first_global.kind == "AdaptiveAvgPool2d"
    assert count_parameters(Model_2()) == 7308 == count_parameters(Model_3())
    # The GAP head's saving: an 8x8 convolution in its place.
    no_gap = Model_2()
    no_gap.output = nn.Conv2d(16, 10, kernel_size=8)
    assert count_parameters(no_gap) == 7308 - 170 + 10250 == 17388
    assert tuple(no_gap(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    rf_no_gap = receptive_field(no_gap, (1, 28, 28))
    assert rf_no_gap.first_global is None and rf_no_gap.trunk.name == "output"
    assert rf_no_gap.trunk.r_out == 19 + (8 - 1) * 2 == 33
    # Exercise 2: dropout masks differ between two calls in training only.
    torch.manual_seed(0)
    net, x_in = Model_3(), torch.randn(4, 1, 28, 28)
    net.train()
    assert not torch.equal(net(x_in), net(x_in))
    net.eval()
    assert torch.equal(net(x_in), net(x_in))
    # Exercise 3: BatchNorm's parameters and buffers.
    bn_layers = [m for m in Model_2().modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in bn_layers] == [10, 12, 14, 16, 16]
    assert sum(p.numel() for m in bn_layers for p in m.parameters()) == 2 * 68 == 136
    assert all(c.bias is None for c in Model_2().modules()
               if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3))
    assert {n.split(".")[-1] for n, _ in Model_2().named_buffers()} == {
        "running_mean", "running_var", "num_batches_tracked"}
    # Exercise 4: a sixth 3x3 convolution reaches the digit but breaks the budget.
    deeper = Model_2()
    deeper.block2.append(conv_block(16, 16, padding=1))
    assert count_parameters(deeper) == 7308 + 9 * 16 * 16 + 2 * 16 == 9644 > 8000
    assert receptive_field(deeper, (1, 28, 28)).trunk.r_out == 23
    # "Step 3 tries one (Model_4's transition block), and round 1's recipe
    # leaves it out again, so round 1's final model, Model_2, keeps its RF
    # of 19 pixels. Round 2's final model pools once, after two
    # full-resolution convolutions, and reaches 22 pixels within the budget."
    from mnist_lib.models import FINAL_MODEL, MODELS, get_model

    def pools(net):
        return [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]

    assert pools(MODELS["Model_4"]()) and not pools(MODELS["Model_2"]())
    assert rf2.trunk.r_out == 19
    final = get_model(FINAL_MODEL)
    assert len(pools(final)) == 1 and count_parameters(final) < 8000
    convs = [m for m in final.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs[:2]] == [(1, 1), (1, 1)]
    assert receptive_field(final, (1, 28, 28)).trunk.r_out == 22


def test_step2a_exercise_2_steeper_bowl():
    """Step 2, continued, Exercise 2: at curvature 10 the plain limit is
    2/c = 0.2 and only 0.25 diverges; 0.1 lands on the minimum in one step;
    with momentum 0.9 the limit is 2(1 + 0.9)/c = 0.38 and none diverges,
    though after 100 steps |w| is still near 0.001."""
    c, beta = 10.0, 0.9
    assert (2 / c, round(2 * (1 + beta) / c, 2)) == (0.2, 0.38)
    plain, momentum = {}, {}
    for lr in (0.1, 0.15, 0.25):
        w_plain, w, v = 1.0, 1.0, 0.0
        for step in range(100):
            w_plain -= lr * c * w_plain
            v = beta * v + c * w
            w -= lr * v
            if step == 0 and lr == 0.1:
                assert w_plain == 0.0
        plain[lr], momentum[lr] = abs(w_plain), abs(w)
    assert [lr for lr in plain if plain[lr] > 1] == [0.25]
    assert all(5e-4 < m < 2e-3 for m in momentum.values())  # "near 0.001"


def test_step2_exercise_1_running_averages():
    """Step 2, Exercise 1: a fresh BatchNorm fed the page's made-up batch
    needs 34 training passes before its testing-mode mean is within 0.05 of
    0, as the 10% rule predicts (log(0.03) / log(0.9) = 33.3); one epoch of
    the book's training (50,000 digits in batches of 128) has 391 batches."""
    import math

    torch.manual_seed(0)
    x = 5 + 3 * torch.randn(64, 4, 8, 8)
    layer = nn.BatchNorm2d(4)
    for k in range(1, 101):
        with torch.no_grad():
            layer.train()(x)
            m = layer.eval()(x).mean().item()
        if abs(m) < 0.05:
            break
    assert k == 34 and round(math.log(0.05 * 3 / 5) / math.log(0.9)) == 33
    assert math.ceil(50_000 / recipe("Model_1").batch_size) == 391


def test_step4_exercise_numbers():
    """Step 4's solutions, recomputed from the records: the fewest passes
    whose one-sided 95% bound lies above 80% (45 of 50, and all 20 of 20);
    the seed SD of the winner's lead; the choice a 0.05-point margin would
    have made (the simplest arm within 0.05 of the best: a Model_6 arm, so
    the margin decides); and the log share of the last 10,000 digits."""
    import statistics

    from mnist_lib import book, protocol2, study
    from mnist_lib.stats import pass_rate_lower_bound as lower

    def need(m):
        return next(k for k in range(m + 1) if lower(k, m) > 0.8)

    assert (need(50), need(20)) == (45, 20) and need(50) == protocol2.AIM
    selection = book.load_record("selection")
    decision = protocol2.decide(selection)
    means = decision["means"]
    runner = sorted(means, key=means.get)[-2]
    top = study.compare(selection, decision["chosen"], runner)
    d = [a - b for a, b in zip(*(
        [statistics.fmean(r["last3"]) for r in study.arm(selection, n)["runs"]]
        for n in (decision["chosen"], runner)))]
    sd = top["delta_se"] * math.sqrt(top["n_seeds"])
    assert sd == pytest.approx(statistics.stdev(d), abs=1e-9)
    wide = [n for n in means if means[decision["best"]] - means[n] <= 0.05]
    simplest = min(wide, key=lambda n: protocol2.simplicity(
        study.arm(selection, n)))
    assert simplest != decision["chosen"] and simplest.startswith("Model_6")
    assert math.log(6 / 5) / math.log(5 / 4) == pytest.approx(0.817, abs=1e-3)


# ------------------------------------------- printouts typed into solutions
# A solution may show what its code prints as a ```text block right after
# the ```python block (e.g. rf_tool's table of the book's models). Those
# lines are typed, so they are checked here: the page's code runs in order
# (its executed cells and its python blocks, as a reader would run them)
# and each such block must be what the python block before it prints.
_FENCE = re.compile(r"^```(\{code-cell\} ipython3|python|text)[^\n]*\n(.*?)^```$",
                    re.S | re.M)


def _printout_pairs(text: str) -> int:
    """How many ```text blocks follow a ```python block within a few lines."""
    fences = list(_FENCE.finditer(text))
    return sum(a.group(1) == "python" and b.group(1) == "text"
               and text[a.end():b.start()].count("\n") < 8
               for a, b in zip(fences, fences[1:]))


def _run_and_compare(text: str) -> list[tuple[str, str]]:
    namespace: dict = {}
    printed, kind_before, end_before, wrong = "", "", 0, []
    for m in _FENCE.finditer(text):
        kind, body = m.groups()
        if kind == "text":
            if kind_before == "python" and text[end_before:m.start()].count("\n") < 8:
                if printed.strip() != body.strip():
                    wrong.append((body.strip(), printed.strip()))
            continue
        if kind.startswith("{"):
            if "skip-execution" in body.split("\n\n")[0]:
                continue
            body = re.sub(r"\A---\n.*?\n---\n", "", body, flags=re.S)
            body = "\n".join(line for line in body.splitlines()
                             if not line.startswith(":tags:"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, "cell", "exec"), namespace)
        printed, kind_before, end_before = out.getvalue(), kind, m.end()
    return wrong


_ROOT = Path(__file__).resolve().parents[1]
_WITH_PRINTOUTS = [p for p in sorted((_ROOT / "book").glob("*.md"))
                   if _printout_pairs(p.read_text())]


def test_printout_pairs_are_found():
    """The finder sees a typed printout, and only right after its code."""
    code = "```python\nprint(1 + 1)\n```\n\nIt prints:\n\n```text\n2\n```\n"
    assert _printout_pairs(code) == 1
    assert _printout_pairs("```python\nx = 1\n```\n" + "\n" * 9 + "```text\n2\n```\n") == 0
    assert _run_and_compare(code.replace("\n2\n", "\n3\n")) == [("3", "2")]
    assert {p.stem for p in _WITH_PRINTOUTS} >= {"rf_tool", "step4"}


@pytest.mark.parametrize("md", _WITH_PRINTOUTS, ids=lambda p: p.stem)
def test_typed_printouts_are_what_the_code_prints(md, monkeypatch):
    monkeypatch.chdir(_ROOT)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    wrong = _run_and_compare(md.read_text())
    assert not wrong, f"{md.name}: a typed printout differs from the output " \
        f"of the code before it (typed, then printed): {wrong}"
