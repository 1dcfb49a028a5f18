"""What the calculator refuses, and how: unsupported ops, upsampling, wrong
declarations, wrong input sizes; its table's renderings; the effective RF."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.models import MODELS
from mnist_lib.rf import (POINTWISE, SHOWN, RFError, RFRow, RFTable, Window, effective_rf,
                          receptive_field)
from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401
from tests.rf.test_never_silent import (AddsItsInput, AlongWidth, Corners, DynamicConv,
                                        PatchAttention, SharedReLU, Uneven, WithNone)


def _refuse_text(model, size) -> str:
    """The message of the RFError that `receptive_field(model, size)` raises."""
    with pytest.raises(RFError) as err:
        receptive_field(model, size)
    return str(err.value)


def test_misaligned_branches_raise():
    assert Misaligned()(torch.zeros(1, 1, 16, 16)).shape[-1] == 16  # torch runs it
    # a's first unit is centred on pixel 0 (0.5); b's, padded by one pixel
    # before a 2x2 window, on the corner before it (0).
    with pytest.raises(RFError) as err:
        receptive_field(Misaligned(), (1, 16, 16))
    assert str(err.value).splitlines() == [
        "branches 'a' and 'b.1' meet at 'add' misaligned in height: start 0.5 vs 0.",
        "Fix: make their strides and paddings match, or pass misaligned='union' for",
        "    the box that spans both, or stop before this merge."]


def test_resnet_d_shortcut_is_refused_naming_both_branches_and_the_option():
    # Both halve the map, but the conv's units sit on pixel 2i (centre 2i +
    # 0.5) and the pool's between pixels 2i and 2i + 1 (centre 2i + 1).
    x = torch.zeros(1, 1, 16, 16)
    assert ResNetDDown().body(x).shape == ResNetDDown().shortcut(x).shape
    with pytest.raises(RFError) as err:
        receptive_field(ResNetDDown(), (1, 16, 16))
    first, fix, *more = str(err.value).splitlines()
    assert first == ("branches 'body' and 'shortcut.1' meet at 'add' misaligned in "
                     "height: start 0.5 vs 1.")
    assert fix.startswith("Fix: make their strides and paddings match")
    assert "misaligned='union'" in fix and all(m.startswith("    ") for m in more)


class Sticking(nn.Module):
    """Two branches of the same size and jump whose boxes each stick out of
    the other's: a 3x3 conv padded 1, and a 3x3 conv padded on the far side."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Sequential(nn.ZeroPad2d((0, 2, 0, 2)), nn.Conv2d(1, 1, 3))

    def forward(self, x):
        return self.a(x) + self.b(x)


@pytest.mark.parametrize("model, r, start", [
    # conv: [2i - 1, 2i + 2); pool: [2i, 2i + 2): together [2i - 1, 2i + 2).
    (ResNetDDown, 3, 0.5),
    # a: [i - 1, i + 2); b: [i, i + 3): together [i - 1, i + 3), 4 px.
    (Sticking, 4, 1.0),
])
def test_misaligned_union_spans_both_boxes(model, r, start):
    with pytest.raises(RFError):
        receptive_field(model(), (1, 16, 16))
    t = receptive_field(model(), (1, 16, 16), misaligned="union")
    assert (t["add"].r_out, t["add"].start_out) == (r, start)
    assert t.trunk is t["add"]
    # The gradient probe: the central unit's pixels span the same box.
    top, left, bottom, right = support(averaging(model()), (16, 16))
    n, j = t["add"].n_out, t["add"].j_out
    lo = start + (n // 2) * j - r / 2
    assert (top, bottom) == (lo, lo + r) and (left, right) == (lo, lo + r)


def test_misaligned_union_still_refuses_other_jumps_and_bad_words():
    class Slices(nn.Module):  # the same size, jumps 2 and 1
        def forward(self, x):
            return x[:, :, ::2, ::2] + x[:, :, :8, :8]

    with pytest.raises(RFError, match="jump 2 vs 1") as err:
        receptive_field(Slices(), (1, 16, 16), misaligned="union")
    assert "misaligned='union'" not in str(err.value)
    with pytest.raises(ValueError, match="choose 'refuse' or 'union'"):
        receptive_field(Slices(), (1, 16, 16), misaligned="yes")


def test_concat_takes_largest_rf_and_sums_channels():
    t = receptive_field(Concat(), (1, 8, 8))
    assert (t.final.r_out, t.final.ch_out) == (5, 4)


def test_unsupported_module_is_named_with_the_fix():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.FractionalMaxPool2d(2, (4, 4)))
    with pytest.raises(RFError,
                       match=r"'1' \(FractionalMaxPool2d\) is not supported") as err:
        receptive_field(model, (1, 10, 10))
    # The fix names the class, so it can be copied as it stands.
    fix = str(err.value)
    assert "custom={FractionalMaxPool2d: 'pointwise'}" in fix
    assert ("custom={FractionalMaxPool2d: Window(kernel, stride, padding, dilation)}"
            in fix)
    assert _lines_fit(err)
    with pytest.raises(RFError, match="(?s)misaligned") as err:
        receptive_field(Misaligned(), (1, 16, 16))
    assert _lines_fit(err)


def test_unsupported_function_says_to_wrap_it_in_a_module():
    with pytest.raises(RFError, match=r"^operation 'roll' is not supported\.\n"
                                      r"Fix: wrap it in an nn\.Module \(YourModule\)"):
        receptive_field(Roll(), (1, 8, 8))


@pytest.mark.parametrize("make, what", [
    (lambda: nn.ConvTranspose2d(1, 1, 2, stride=2), "module '0' (ConvTranspose2d)"),
    (lambda: nn.Upsample(scale_factor=2), "module '0' (Upsample)"),
    (lambda: nn.UpsamplingBilinear2d(scale_factor=2),
     "module '0' (UpsamplingBilinear2d)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 1), nn.PixelShuffle(2)),
     "module '0.1' (PixelShuffle)"),
    (lambda: Resize(), "operation 'interpolate'"),
])
def test_upsampling_is_refused_with_the_reason_not_a_declaration(make, what):
    # A declaration cannot describe an upsampling, so none is suggested.
    with pytest.raises(RFError) as err:
        receptive_field(nn.Sequential(make()), (1, 8, 8))
    message = str(err.value)
    assert message.startswith(f"{what} enlarges the map from 8x8 to 16x16.\n"
                              "Fix: stop before this upsampling")
    assert "custom=" not in message and "model.encoder" in message
    assert _lines_fit(err)


def test_declared_upsampling_meets_the_map_size_check():
    # Declared all the same, it is refused for the map size it really gives.
    with pytest.raises(RFError, match="gives a 16x16 map, but the declaration"):
        receptive_field(nn.Sequential(nn.Upsample(scale_factor=2)), (1, 8, 8),
                        custom={nn.Upsample: POINTWISE})


def test_ops_that_enlarge_the_map_with_a_rule_are_not_called_upsampling():
    # Pads, and a conv padded more than its kernel needs, enlarge the map too.
    for model in (nn.Conv2d(1, 1, 1, padding=1), nn.ZeroPad2d(2),
                  nn.CircularPad2d(1)):
        assert receptive_field(nn.Sequential(model), (1, 8, 8)).final.n_out > 8


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("settings", [
    {}, {"padding": 1}, {"padding": (3, 0), "dilation": 2},
    {"padding": 2, "output_padding": 1, "dilation": 2},
])
def test_transposed_conv_of_stride_1_is_the_conv_it_equals(functional, settings):
    # A transposed conv of stride 1 enlarges the map (unless padded), but it
    # is a convolution, not an upsampling: checked against torch's size and
    # the gradient's support.
    model = Transposed(functional, **settings)
    nn.init.constant_(model.up.weight, 1.0)
    size = 41
    t = receptive_field(model, (1, size, size))
    out = model(torch.zeros(1, 1, size, size))
    assert (t.final.n_out if isinstance(t.final.n_out, tuple)
            else (t.final.n_out,) * 2) == tuple(out.shape[2:])
    box, (i, k) = empirical_rf(model, size)
    (rh, rw), (jh, jw), (sh, sw) = (
        v if isinstance(v, tuple) else (v, v)
        for v in (t.final.r_out, t.final.j_out, t.final.start_out))
    assert box == (sh + i * jh - rh / 2, sw + k * jw - rw / 2, rh, rw)


def test_transposed_conv_with_a_stride_is_an_upsampling():
    for functional in (False, True):
        model = Transposed(functional, stride=2)
        with pytest.raises(RFError, match="enlarges the map") as err:
            receptive_field(model, (1, 28, 28))
        assert "custom=" not in str(err.value)


def test_channel_only_modules_are_pointwise_and_circular_pad_is_a_pad():
    base = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)),
                           (1, 10, 10))
    for layer in (nn.ChannelShuffle(2), nn.CrossMapLRN2d(3)):
        t = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3), layer,
                                          nn.Conv2d(4, 4, 3)), (1, 10, 10))
        assert not t.rows[1].spatial
        assert (t.final.r_out, t.final.n_out) == (base.final.r_out, base.final.n_out)
    shuffled = receptive_field(Pooled(lambda x: F.channel_shuffle(x, 2)), (1, 10, 10))
    assert shuffled.final.r_out == 3
    pads = [receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3), pad(1)), (1, 10, 10))
            for pad in (nn.ZeroPad2d, nn.CircularPad2d)]
    assert pads[0].to_records() == [{**r, "kind": r["kind"].replace(
        "CircularPad2d", "ZeroPad2d")} for r in pads[1].to_records()]


def test_custom_declarations():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), Gate(), Blur())
    with pytest.raises(RFError, match="(?s)could not trace.*custom="):
        receptive_field(model, (1, 10, 10))
    # What the message says to do works: Gate is declared, so not traced inside.
    t = receptive_field(model, (1, 10, 10), custom={Gate: POINTWISE, Blur: Window(3, 1, 1)})
    assert t.final.r_out == 5 and t.final.n_out == 8


def test_untraceable_module_is_named_with_its_declaration():
    # The innermost module being traced is the one to declare, however deep.
    model = nn.Sequential(nn.Conv2d(1, 4, 3), GatedBlock(), nn.Conv2d(4, 4, 3))
    with pytest.raises(RFError) as err:
        receptive_field(model, (1, 16, 16))
    message = str(err.value)
    assert message.startswith("torch.fx could not trace module '1.gate' (Gate) "
                              "(below).\nFix: ")
    assert "custom={Gate: 'pointwise'}" in message and _lines_fit(err)
    # torch's own words come through, wrapped to the message's width.
    assert "control flow" in message
    # In the model's own forward() there is no module to declare but one's own.
    with pytest.raises(RFError, match=r"^torch.fx could not trace Branchy.forward\(\)"
                                      r" \(below\)\.\nFix: .* declared module:\n"
                                      r" +custom=\{YourModule: 'pointwise'\}") as err:
        receptive_field(Branchy(), (1, 16, 16))
    assert _lines_fit(err)


def test_linear_sees_the_whole_map():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    t = receptive_field(model, (1, 28, 28))
    averaging(model)
    # The gradient: each output reaches every pixel; the conv alone, 3x3.
    assert support(model, (28, 28)) == (0, 0, 28, 28)
    top, left, bottom, right = support(model[0], (28, 28))
    f = t.final
    assert f.kind == "Linear" and f.global_out and not f.global_in
    assert (f.n_out, f.j_out) == (1, None)  # one unit: no jump
    assert f.r_out == bottom - top == right - left == 3  # the conv path's RF
    assert t.first_global is f and t.trunk.name == "0"


def test_model_mode_and_weights_untouched():
    model = MODELS["Model_4"]().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model, (1, 28, 28))
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_columns_are_chosen_and_checked():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    cols = ["name", "kernel", "j_out", "r_out"]
    assert t.to_text(columns=cols).splitlines()[0].split() == cols
    head = t.to_markdown(columns=cols).splitlines()[0]
    assert head == "| name | kernel | j_out | r_out |"
    # An RF column comes with its flag, so that a global RF never reads as a
    # plain number; a jump column with its own where some jump is uneven (not
    # in Model_4: a column of False would say nothing).
    flagged = cols + ["global_out"]
    assert list(t.to_frame(columns=cols).columns) == flagged
    assert list(t.to_records(columns=cols)[0]) == flagged
    vgg = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(7))  # 10 -> 7
    uneven = receptive_field(vgg, (1, 12, 12)).to_records(columns=cols)
    assert list(uneven[0]) == cols + ["uneven_out", "global_out"]
    assert uneven[-1]["uneven_out"] and uneven[-1]["j_out"] is None
    records = t.to_records(columns=["name", "r_in", "r_out"])
    assert list(records[0]) == ["name", "r_in", "r_out", "global_in", "global_out"]
    names = [r["name"] for r in records]  # global from the pooling, output.0, on
    assert [r["global_out"] for r in records] == [
        k >= names.index("output.0") for k in range(len(names))]
    with pytest.raises(ValueError, match="unknown column.*'rf'.*choose from name"):
        t.to_text(columns=["name", "rf"])


def test_renderings():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    frame = t.to_frame()
    assert list(frame.columns)[:4] == ["name", "kind", "n_in", "ch_in"]
    assert "Conv2d" in t.to_markdown() and "<table" in t._repr_html_()
    # Integers stay integers: a column with blanks (the pool has no padding)
    # must not turn a 3x3 kernel into "3.0".
    assert str(frame["kernel"].dtype) == "Int64"
    assert list(frame["kernel"][:3]) == [3] * 3
    assert frame.loc[frame["kind"] == "AdaptiveAvgPool2d", "padding"].isna().item()
    # A notebook shows the RF recurrence, not every column (it must fit a page):
    # words left, numbers right, each header aligned as its column.
    cells = re.findall(r'<(th|td) style="text-align: (\w+);[^"]*">([^<]*)</\1>',
                       t._repr_html_())
    head = [(align, text) for tag, align, text in cells if tag == "th"]
    assert [text for _, text in head] == SHOWN
    assert "params" not in SHOWN and "activation" not in SHOWN
    body = [align for tag, align, _ in cells if tag == "td"]
    assert len(body) == len(SHOWN) * len(t.layers())
    for k, (align, column) in enumerate(head):
        assert align == ("left" if column in ("name", "kind") else "right"), column
        assert set(body[k::len(SHOWN)]) == {align}, column
    assert ">AdaptiveAvgPool2d<" in t._repr_html_()
    odd = RFTable([RFRow("a<b", "x&y", kernel=3)], (1, 28, 28))
    assert ">a&lt;b<" in odd._repr_html_() and ">x&amp;y<" in odd._repr_html_()
    assert "BatchNorm2d" not in t.to_markdown()
    assert "BatchNorm2d" in t.to_markdown(all_ops=True)


def test_effective_rf_lies_inside_theoretical_box():
    model = MODELS["Model_4"]()
    img = torch.rand(1, 28, 28)
    erf = effective_rf(model, img, "block1.2")
    t = receptive_field(model, (1, 28, 28))
    row = t["block1.2.0"]
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    centre = row.start_out + (row.n_out // 2) * row.j_out
    assert rows.min() >= centre - row.r_out / 2 and rows.max() < centre + row.r_out / 2
    assert erf.max() == 1.0


def test_effective_rf_of_a_model_without_parameters():
    # No weights to take a device and dtype from: the CPU in float32.
    erf = effective_rf(nn.Sequential(nn.AvgPool2d(3, 1, 1)), torch.rand(1, 9, 9), "0")
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 5, 3, 5)
    assert erf.dtype == torch.float32


@pytest.mark.parametrize("image, layer, unit, msg", [
    (torch.rand(1, 1, 28, 28), "block1.2", None, "pass image[0]"),
    (torch.rand(28, 28), "block1.2", None, "image[None]"),
    (torch.rand(1, 28, 28), "block9", None, "no submodule 'block9'"),
    (torch.rand(1, 28, 28), "block1.2", (10, 0), "unit (10, 0) is outside block1.2's"),
    (torch.rand(1, 28, 28), "block1.2", (0, -1), "columns 0-9"),
])
def test_effective_rf_names_a_wrong_image_layer_or_unit(image, layer, unit, msg):
    model = MODELS["Model_4"]().train()
    with pytest.raises(RFError, match=re.escape(msg)):
        effective_rf(model, image, layer, unit)
    assert all(m.training for m in model.modules())  # its modes are given back


@pytest.mark.parametrize("size", [28, (28,), "1,28,28", (1, 0, 28), (1.0, 28, 28),
                                  (True, 28, 28), (1, 2, 28, 28, 1)])
def test_input_size_must_be_the_channels_and_one_size_per_axis(size):
    with pytest.raises(RFError, match=r"^input_size must be the channels and one "
                                      r"size per spatial axis, positive integers"):
        receptive_field(MODELS["Model_4"](), size)


def test_a_batch_shape_is_told_to_drop_the_batch():
    # (1, 1, 28, 28) is a clip's size too: the first layer, a Conv2d, says
    # which form the model takes.
    with pytest.raises(RFError, match=r"without the batch: \(C, H, W\), not \(N, C"):
        receptive_field(MODELS["Model_4"](), (1, 1, 28, 28))


def test_an_input_of_another_form_is_told_the_form_the_first_layer_takes():
    # (28, 28) is a sequence's size: 28 channels of 28 steps.
    with pytest.raises(RFError) as err:
        receptive_field(MODELS["Model_4"](), (28, 28))
    fix, where = str(err.value).splitlines()[1:3]
    assert fix == "Fix: give input_size as (C, H, W), one size per spatial axis."
    assert where == "    (module 'block1.0.0' (Conv2d) slides over 2 spatial axes.)"


@pytest.mark.parametrize("model, msg", [
    (lambda: MODELS["Model_4"], r"Model_4 is a class, not a model\.\nFix: .*"
                                r"receptive_field\(Model_4\(\), \.\.\.\)"),
    (lambda: (lambda x: x), r"must be a torch.nn.Module, got a function\.\nFix: "),
    (_scripted, r"TorchScript module cannot be traced.*\nFix: pass the nn.Module it"),
])
def test_what_is_not_a_traceable_model_is_named(model, msg):
    # Before, each of these reached torch.fx and came back as "could not trace",
    # with advice about control flow that does not apply.
    with pytest.raises(RFError, match=msg):
        receptive_field(model(), (1, 28, 28))


@pytest.mark.parametrize("kwargs", [{"custom": {"Upsample": POINTWISE}},
                                    {"leaf_modules": [nn.Conv2d(1, 1, 3)]}])
def test_declarations_must_be_module_classes(kwargs):
    model = nn.Sequential(nn.Conv2d(1, 1, 3), Gate())
    with pytest.raises(RFError, match=r"must be module classes, got .*\.\n"
                                      "Fix: pass the class itself, e.g. nn.Upsample"):
        receptive_field(model, (1, 28, 28), **kwargs)
    # What the message asks for works.
    t = receptive_field(model, (1, 28, 28), custom={Gate: POINTWISE})
    assert t.final.kind == "Gate" and t.final.r_out == 3


@pytest.mark.parametrize("model, spec, real, wrong", [
    (lambda: UpsampleNet(), {nn.Upsample: POINTWISE}, "52x52", "26x26"),
    # (A Window that contradicts a module's own kernel_size is refused before
    # this: test_graph_checked.py.)
    (lambda: nn.Sequential(nn.Conv2d(1, 1, 3), Blur()), {Blur: Window(3)},
     "26x26", "24x24"),
])
def test_a_declaration_that_contradicts_the_model_is_refused(model, spec, real, wrong):
    # Before, the table went on with the declared map size: a silently wrong RF.
    model = model()
    with pytest.raises(RFError) as exc:
        receptive_field(model, (1, 28, 28), custom=spec)
    msg = str(exc.value)
    assert f"'1' ({type(model[1]).__name__}) gives a {real} map" in msg
    assert f"the declaration makes it {wrong}.\nFix: declare the Window it" in msg
    assert max(map(len, msg.splitlines())) <= 80


def test_a_rule_that_gets_the_map_size_wrong_is_caught(monkeypatch):
    # The same check guards the calculator's own rules: here max-pooling is
    # wrongly made pointwise, as a bug in a rule might.
    from mnist_lib.rf import layers
    monkeypatch.setattr(layers, "POINTWISE_MODULES",
                        layers.POINTWISE_MODULES + (nn.MaxPool2d,))
    with pytest.raises(RFError, match=r"\(MaxPool2d\) gives a 5x5 map, not the 10x10"
                                      r" its rule computes\.\nFix: please report"):
        receptive_field(MODELS["Model_4"](), (1, 28, 28))


def test_input_size_takes_any_sequence_of_ints():
    import numpy as np

    for size in ([1, 28, 28], torch.Size([1, 28, 28]), np.array([1, 28, 28])):
        assert receptive_field(MODELS["Model_4"](), size).trunk.r_out == 29


@pytest.mark.parametrize("size, where, cause", [
    ((3, 28, 28), "module 'block1.0.0' (Conv2d) raised",
     "to have 1 channels, but got 3"),
    ((1, 8, 8), "module 'block1.2.0' (Conv2d) raised",
     "Kernel size can't be greater"),
])
def test_wrong_input_size_names_the_layer_the_cause_and_the_fix(size, where, cause,
                                                                capsys):
    with pytest.raises(RFError) as exc:
        receptive_field(MODELS["Model_4"](), size)
    msg = " ".join(str(exc.value).split())  # the cause is wrapped to 80 columns
    assert msg.startswith(f"{where} on a (1, {', '.join(map(str, size))}) input")
    assert cause in msg and "--input C,H,W" in msg
    assert max(map(len, str(exc.value).splitlines())) <= 80
    # torch's shape pass prints a traceback before it re-raises: none shown.
    assert capsys.readouterr().err == ""



class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        x = self.conv(x)
        raise ValueError("a bug in my model")


class BranchesOnData(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else -self.conv(x)


def test_a_forward_that_raises_is_named_as_the_model_s_own_failure():
    with pytest.raises(RFError) as err:
        receptive_field(RaisesInForward(), (1, 28, 28))
    msg = str(err.value)
    assert msg.startswith("RaisesInForward.forward() raised on a (1, 1, 28, 28) "
                          "input (below).\nFix: ")
    assert msg.endswith("\n  ValueError: a bug in my model")  # the model's own words
    assert "control flow" not in msg and _lines_fit(err)
    # A forward that runs but that torch.fx cannot follow keeps that advice.
    with pytest.raises(RFError, match="torch.fx could not trace(?s:.*)control flow"):
        receptive_field(BranchesOnData(), (1, 28, 28))


def test_effective_rf_of_a_blank_image_warns():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))
    with pytest.warns(UserWarning, match="all-zero image"):
        effective_rf(model, torch.zeros(1, 12, 12), "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        effective_rf(model, torch.rand(1, 12, 12), "2")


# ------------------------- issue #40: refusals that named the wrong cause
class ClassicSE(nn.Module):
    """A 3x3 conv, the classic squeeze-and-excitation gate (pool, view(b, c),
    two Linears, view(b, c, 1, 1), with or without expand_as), a 3x3 conv."""

    def __init__(self, expand: bool):
        super().__init__()
        self.expand = expand
        self.conv, self.pool = nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 4),
                                nn.Sigmoid())
        self.conv2 = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        b, c, _, _ = x.size()
        y = self.fc(self.pool(x).view(b, c)).view(b, c, 1, 1)
        return self.conv2(x * y.expand_as(x) if self.expand else x * y)


@pytest.mark.parametrize("expand", [False, True])
def test_the_classic_squeeze_and_excitation_gate_is_global(expand):
    # Before: refused ("copies a map along its height or width"), and without
    # expand_as, refused again ("slides a window over a flattened tensor").
    t = receptive_field(ClassicSE(expand), (1, 16, 16))
    assert t.headline == ("RF global from 'pool' (AdaptiveAvgPool2d) onward; without "
                          "the global ops, RF 5 px, jump 1 px, at 'conv2' (map 12x12)")
    # The gradient: every unit reaches every pixel, through the gate.
    assert support(averaging(ClassicSE(expand)), (16, 16)) == (0, 0, 16, 16)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x, y):
        return self.conv(x) + self.conv(y)


class WithTargets(nn.Module):
    """A model that returns its loss when given targets, as many do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x, targets=None):
        out = self.conv(x)
        if targets is not None:
            return F.mse_loss(out, targets)
        return out


def test_a_forward_of_two_inputs_is_named_and_defaults_are_kept():
    # Before: "operation 'y' raised ... give the size the model expects".
    with pytest.raises(RFError, match=r"^TwoInputs\.forward\(x, y\) takes 2 inputs; "
                                      r"the calculator gives it one image\.\nFix: "):
        receptive_field(TwoInputs(), (1, 16, 16))
    # Before: "operation 'mse_loss' raised"; targets=None is what predicts.
    t = receptive_field(WithTargets(), (1, 16, 16))
    assert (t.final.name, t.final.r_out) == ("conv", 3)


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel],
                         ids=["compile", "DataParallel"])
def test_wrapped_models_are_the_models_they_wrap(wrap):
    # Before: "torch.fx could not trace OptimizedModule.forward() ... drop its
    # data-dependent control flow".
    model = MODELS["Model_4"]()
    assert (receptive_field(wrap(model), (1, 28, 28)).to_records()
            == receptive_field(model, (1, 28, 28)).to_records())
    img = torch.rand(1, 28, 28)
    assert torch.equal(effective_rf(wrap(model), img, "block1.2"),
                       effective_rf(model, img, "block1.2"))


def test_windowed_attention_is_refused_as_attention():
    tv = pytest.importorskip("torchvision")
    # Before: "operation 'shifted_window_attention' is not supported", with a
    # suggestion to declare it 'pointwise'.
    with pytest.raises(RFError, match=r"^operation 'shifted_window_attention' is "
                                      r"attention: it mixes every position\.") as err:
        receptive_field(tv.models.swin_t(), (3, 224, 224))
    assert "'pointwise'" not in str(err.value)


@pytest.mark.parametrize("kernel, stride, size", [(3, 2, 20), (3, 2, 21), (4, 1, 20),
                                                  (5, 3, 23)])
def test_tf_same_padding_is_named_and_its_window_declared(kernel, stride, size):
    model = nn.Sequential(Conv2dSame(1, 1, kernel, stride, bias=False),
                          nn.Conv2d(1, 1, 3, bias=False))
    # Before: "remove its data-dependent control flow, or declare it:
    # custom={Conv2dSame: 'pointwise'} ...".
    with pytest.raises(RFError) as err:
        receptive_field(model, (1, size, size))
    first, fix, code, *_ = str(err.value).splitlines()
    assert first == ("torch.fx could not trace module '0' (Conv2dSame): it computes "
                     "from its input's size (below).")
    assert fix == "Fix: declare the window it slides, with TensorFlow's padding='same':"
    # The kernel and stride left out: each module's own (#57: one declaration
    # for a k3 and a k5 Conv2dSame gave the k5 one the k3's window).
    assert code == "    custom={Conv2dSame: Window(padding='same')}"
    # What it says to do gives the map size torch gives, and the gradient's box.
    t = receptive_field(model, (1, size, size),
                        custom={Conv2dSame: Window(padding="same")})
    assert (t.final.n_out,) * 2 == tuple(model(torch.zeros(1, 1, size, size)).shape[2:])
    box, (i, k) = empirical_rf(model, size)
    f = t.final
    assert box == (f.start_out + i * f.j_out - f.r_out / 2,
                   f.start_out + k * f.j_out - f.r_out / 2, f.r_out, f.r_out)


@pytest.mark.parametrize("pad", [nn.ZeroPad1d((2, 1)), nn.ConstantPad1d(2, 0.5),
                                 nn.ZeroPad3d((1, 2, 0, 1, 0, 0))])
def test_1d_and_3d_pads_pad_the_map_they_are_no_upsampling(pad):
    # Before: "module '1' (ZeroPad1d) enlarges the map ... stop before this
    # upsampling".
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), pad,
                          nn.Conv2d(1, 1, 3, bias=False))
    t = receptive_field(model, (1, 19, 19))
    n = tuple(model(torch.zeros(1, 1, 19, 19)).shape[2:])
    assert t.final.n_out == (n[0] if n[0] == n[1] else n)
    box, (i, k) = empirical_rf(model, 19)
    f = t.final
    sh, sw = f.start_out if isinstance(f.start_out, tuple) else (f.start_out,) * 2
    assert box == (sh + i - 2.5, sw + k - 2.5, 5, 5)


# Refusals of ops that move or mix positions: declaring one 'pointwise'
# would give a wrong number, so no fix suggests it.
MIXING = {
    "moving reshape": _refuse_text(Pooled(lambda x: x.view(x.size(0), 4, 32, 2)),
                                   (1, 10, 10)),
    "dropped axis": _refuse_text(Row(lambda x: x[:, :, 0]), (1, 8, 8)),
    "spatial chunk": _refuse_text(SplitRows(), (1, 16, 16)),
    "cat along height": _refuse_text(Pooled(lambda x: torch.cat([x, x], 2)),
                                     (1, 10, 10)),
    "mean over height": _refuse_text(Pooled(lambda x: x.mean(2)), (1, 10, 10)),
    "Linear over width": _refuse_text(AlongWidth("Linear"), (1, 20, 20)),
    "tf same": _refuse_text(nn.Sequential(Conv2dSame(1, 1, 3, 2)), (1, 20, 20)),
    "spread unit": _refuse_text(Corners(both=False), (1, 20, 20)),
}


@pytest.mark.parametrize("text", MIXING.values(), ids=MIXING.keys())
def test_no_fix_declares_an_op_that_moves_pixels_pointwise(text):
    assert "Fix: " in text and "'pointwise'" not in text, text


def _refuse(model, size=(1, 16, 16), **kwargs):
    return lambda: receptive_field(model() if isinstance(model, type) else model,
                                   size, **kwargs)


# Refusals the tests above provoke, each with what its first line must name.
REFUSALS = {
    "misaligned branches": (_refuse(Misaligned), "branches 'a' and 'b.1'"),
    "ResNet-D shortcut": (_refuse(ResNetDDown), "branches 'body' and 'shortcut.1'"),
    "unknown module": (_refuse(nn.Sequential(nn.Conv2d(1, 1, 3),
                                             nn.FractionalMaxPool2d(2, (4, 4))),
                               (1, 10, 10)), "module '1' (FractionalMaxPool2d)"),
    "unknown function": (_refuse(Roll, (1, 8, 8)), "operation 'roll'"),
    "upsampling": (_refuse(Resize, (1, 8, 8)), "operation 'interpolate'"),
    "untraceable module": (_refuse(nn.Sequential(nn.Conv2d(1, 4, 3), GatedBlock())),
                           "module '1.gate' (Gate)"),
    "untraceable forward": (_refuse(Branchy), "Branchy.forward()"),
    "wrong declaration": (_refuse(UpsampleNet, custom={nn.Upsample: POINTWISE}),
                          "module '1' (Upsample)"),
    "wrong input size": (_refuse(MODELS["Model_4"], (3, 28, 28)),
                         "module 'block1.0.0' (Conv2d)"),
    "a class": (lambda: receptive_field(MODELS["Model_4"], (1, 28, 28)),
                "Model_4 is a class"),
    "a bad input size": (_refuse(MODELS["Model_4"], (1, 0, 28)), "input_size"),
    "a batch shape": (_refuse(MODELS["Model_4"], (1, 1, 28, 28)),
                      "module 'block1.0.0' (Conv2d)"),
    "attention": (_refuse(PatchAttention(functional=True).eval(), (1, 28, 28)),
                  "operation 'scaled_dot_product_attention' is attention"),
    "a tuple": (_refuse(AddsItsInput, (1, 15, 15), leaf_modules=[WithNone]),
                "module 'block' (WithNone)"),
    "uneven units": (_refuse(Uneven(then_conv=True), (1, 14, 14)),
                     "module 'then' (Conv2d)"),
    "window on uneven units, functional": (
        _refuse(Pooled(lambda x: F.max_pool2d(F.adaptive_avg_pool2d(x, 7), 2)),
                (1, 14, 14)), "operation 'max_pool2d'"),
    "moving reshape": (_refuse(Pooled(lambda x: x.view(x.size(0), 4, 32, 2)),
                               (1, 10, 10)), "operation 'view'"),
    "dropped axis": (_refuse(Row(lambda x: x[:, :, 0]), (1, 8, 8)),
                     "operation 'getitem'"),
    "spatial chunk": (_refuse(SplitRows), "operation 'chunk'"),
    "copy along height": (_refuse(ThreeChannels("rows"), (1, 28, 28)),
                          "operation 'repeat'"),
    "max with indices": (_refuse(Pooled(lambda x: x.max(dim=3)[0]), (1, 10, 10)),
                         "operation 'max'"),
    "softmax over width": (_refuse(Pooled(nn.Softmax(dim=-1)), (1, 10, 10)),
                           "module 'pool' (Softmax)"),
    "window from values": (_refuse(Pooled(lambda x: F.avg_pool2d(
        x, 1 + (x.mean() < 1).long().item())), (1, 10, 10)), "operation 'avg_pool2d'"),
    "stride from values": (_refuse(ComputedStride(values=True), (1, 28, 28)),
                           "operation 'conv2d'"),
    "empty map": (_refuse(Row(lambda x: x[:, :, 1:, 1:]), (1, 1, 1)), "'getitem'"),
    "two inputs": (_refuse(TwoInputs), "TwoInputs.forward(x, y)"),
    "Linear over width": (_refuse(AlongWidth("Linear"), (1, 20, 20)),
                          "module 'fc' (Linear)"),
    "matmul of two maps": (_refuse(Pooled(lambda x: x @ x.transpose(2, 3)),
                                   (1, 10, 10)), "operation 'matmul'"),
    "one unit spread": (_refuse(Corners(both=False), (1, 20, 20)), "operation 'mul'"),
    "kernel from the map": (_refuse(DynamicConv("crop"), (1, 20, 20)),
                            "operation 'conv2d'"),
    "shared effective_rf": (lambda: effective_rf(SharedReLU(), torch.rand(1, 9, 9),
                                                 "relu"), "'relu' runs 2 times"),
    "cat along height": (_refuse(Pooled(lambda x: torch.cat([x, x], 2)), (1, 10, 10)),
                         "operation 'cat'"),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_each_refusal_says_what_and_where_then_the_fix(refusal):
    """One line that names the op (or the argument) and what is wrong; one
    that starts "Fix: "; after them only indented lines: code to copy, or the
    error the model itself raised. No essay."""
    call, named = refusal
    with pytest.raises(RFError) as err:
        call()
    first, fix, *rest = str(err.value).splitlines()
    assert named in first and first.endswith(".") and "Fix" not in first, first
    assert fix.startswith("Fix: "), fix
    assert all(line.startswith("  ") for line in rest), rest
