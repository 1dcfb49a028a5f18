"""Receptive-field calculator against independent references.

- the empirical RF: where the gradient of one output unit w.r.t. the input is
  non-zero, for random conv/pool stacks (hypothesis);
- the real output shapes of every layer;
- published values for torchvision models.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mnist_lib.models import MODELS
from mnist_lib.rf import POINTWISE, RFError, Window, effective_rf, main, receptive_field
from mnist_lib.rf_table import SHOWN, RFRow, RFTable

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------- empirical reference
def empirical_rf(model: nn.Module, size: int):
    """((top, left, height, width) of the input pixels that reach the central
    unit, or None if none do; the unit's (row, column)).

    Weights are set positive and pools averaging, so no gradient cancels: the
    support of the gradient is exactly the receptive field (inside the image).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    i, k = out.shape[2] // 2, out.shape[3] // 2
    out[0, :, i, k].sum().backward()
    rows, cols = (x.grad[0, 0] != 0).nonzero(as_tuple=True)
    if len(rows) == 0:  # the unit sees only padding
        return None, (i, k)
    return (int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1),
            int(cols.max() - cols.min() + 1)), (i, k)


def torch_agrees_nothing_is_left(model: nn.Module, size: int) -> bool:
    """Where the calculator refuses a model, torch fails on it too, or leaves
    an empty output."""
    try:
        out = model(torch.zeros(1, 1, size, size))
    except RuntimeError:
        return True
    return out.numel() == 0


def reachable(model: nn.Module, size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), exclusive, of the input pixels that reach any
    output unit (after `empirical_rf` made the weights positive)."""
    x = torch.ones(1, 1, size, size, requires_grad=True)
    model(x).sum().backward()
    rows, cols = (x.grad[0, 0] != 0).nonzero(as_tuple=True)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


layer = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 5),
              st.integers(1, 2), st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("pool"), st.integers(2, 3), st.integers(2, 3),
              st.integers(1, 2), st.integers(0, 1), st.just(1)),
)


def build(spec) -> nn.Sequential:
    layers = []
    for kind, kh, kw, s, p, d in spec:
        if kind == "conv":
            layers.append(nn.Conv2d(1, 1, (kh, kw), stride=s, padding=p, dilation=d,
                                    bias=False))
        else:
            layers.append(nn.AvgPool2d((kh, kw), stride=s,
                                       padding=min(p, kh // 2, kw // 2)))
    return nn.Sequential(*layers)


@settings(max_examples=150, deadline=None)
@given(st.lists(layer, min_size=1, max_size=5))
def test_analytic_matches_gradient_rf(spec):
    model = build(spec)
    size = 96  # large enough that the central unit's RF lies inside the image
    try:
        table = receptive_field(model, (1, size, size))
    except RFError:
        assert torch_agrees_nothing_is_left(model, size)
        return
    out = model(torch.zeros(1, 1, size, size))
    f = table.final
    assert f.n_out == (out.shape[2] if out.shape[2] == out.shape[3]
                       else (out.shape[2], out.shape[3]))
    rh, rw = f.r_out if isinstance(f.r_out, tuple) else (f.r_out, f.r_out)
    sh, sw = f.start_out if isinstance(f.start_out, tuple) else (f.start_out,) * 2
    jh, jw = f.j_out if isinstance(f.j_out, tuple) else (f.j_out, f.j_out)
    box, (i, k) = empirical_rf(model, size)
    assume(box is not None)
    top, left, h, w = box
    a_top, a_left = sh + i * jh - rh / 2, sw + k * jw - rw / 2
    # Compare only where the *analytic* box lies inside the image: where it
    # does not, the image edge clips the gradient (hypothesis fails the test if
    # it has to discard too many examples).
    assume(a_top >= 0 and a_left >= 0 and a_top + rh <= size and a_left + rw <= size)
    assert (h, w) == (rh, rw)
    assert (top, left) == (a_top, a_left)


class Pad(nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return nn.functional.pad(x, self.pad)


class Slice(nn.Module):
    def __init__(self, start, step):
        super().__init__()
        self.start, self.step = start, step

    def forward(self, x):
        return x[:, :, self.start::self.step, self.start::self.step]


edit = st.one_of(
    st.tuples(st.just("pad"), st.tuples(*[st.integers(-2, 2)] * 4)),
    st.tuples(st.just("slice"), st.tuples(st.integers(0, 2), st.integers(1, 3))),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(layer, edit), min_size=1, max_size=5))
def test_pads_and_slices_match_gradient_rf(spec):
    """The same check as above, with F.pad (negative: a crop) and strided
    slices between the convolutions and pools."""
    layers = [Pad(e[1]) if e[0] == "pad" else Slice(*e[1]) if e[0] == "slice"
              else build([e])[0] for e in spec]
    model, size = nn.Sequential(*layers), 96
    try:
        f = receptive_field(model, (1, size, size)).final
    except RFError:
        assert torch_agrees_nothing_is_left(model, size)
        return
    out = model(torch.zeros(1, 1, size, size))
    assert f.n_out == (out.shape[2] if out.shape[2] == out.shape[3]
                       else (out.shape[2], out.shape[3]))
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    (rh, rw), (sh, sw), (jh, jw) = pair(f.r_out), pair(f.start_out), pair(f.j_out)
    box, (i, k) = empirical_rf(model, size)
    assume(box is not None)  # a unit that sees only padding has nothing to compare
    top, left, h, w = box
    a_top, a_left = sh + i * jh - rh / 2, sw + k * jw - rw / 2
    # The theoretical box may reach pixels that no unit sees: padding outside
    # the image, and pixels a crop (negative pad) cut off. Compare only boxes
    # inside the pixels that reach some output unit.
    r_top, r_left, r_bottom, r_right = reachable(model, size)
    assume(a_top >= r_top and a_left >= r_left
           and a_top + rh <= r_bottom and a_left + rw <= r_right)
    assert (h, w) == (rh, rw)
    assert (top, left) == (a_top, a_left)


@pytest.mark.parametrize("name", list(MODELS))
def test_n_out_matches_real_shapes_for_every_model(name):
    model = MODELS[name]().eval()
    table = receptive_field(model, (1, 28, 28))
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    for row in table.rows:
        if row.name in shapes:
            assert row.n_out == shapes[row.name][2], row.name
            assert row.ch_out == shapes[row.name][1], row.name


@pytest.mark.parametrize("name, rf", [("Model_1", 29), ("Model_2", 33),
                                      ("Model_3", 33), ("Model_4", 37),
                                      ("Model_5", 37)])
def test_model_output_rf(name, rf):
    assert receptive_field(MODELS[name](), (1, 28, 28)).final.r_out == rf


# --------------------------------------------------------- published values
def test_vgg16_pool5():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.vgg16().features, (3, 224, 224))
    assert (t.final.kind, t.final.r_out, t.final.j_out) == ("MaxPool2d", 212, 32)


def test_alexnet_features():
    tv = pytest.importorskip("torchvision")
    assert receptive_field(tv.models.alexnet().features, (3, 224, 224)).final.r_out == 195


def test_resnet50_trunk_and_global_pool():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.resnet50(), (3, 224, 224))
    last = [r for r in t.rows if r.name.startswith("layer4")][-1]
    assert (last.r_out, last.j_out, last.n_out) == (427, 32, 7)
    # Global average pooling sees the whole 7x7 map: 427 + 6 * 32.
    assert t["avgpool"].r_out == 427 + 6 * 32 == t.final.r_out
    assert t.final.exceeds_input


def test_inception_v3_is_traced_as_it_predicts():
    # torchvision builds it in training mode with its auxiliary head on, so
    # forward() returns two outputs; the RF is that of the prediction (eval).
    tv = pytest.importorskip("torchvision")
    model = tv.models.inception_v3(weights=None, init_weights=False)
    assert model.training and model.aux_logits
    t = receptive_field(model, (3, 299, 299))
    assert model.training  # given back as it came
    last = [r for r in t.rows if r.kind == "cat"][-1]  # Mixed_7c's output
    # Araujo et al. (Distill 2019) give Inception v3 an RF of 1311.
    assert (last.r_out, last.j_out, last.n_out) == (1311, 32, 8)
    assert t.final.name == "fc" and not any("Aux" in r.name for r in t.rows)
    g = receptive_field(tv.models.googlenet(weights=None, init_weights=False),
                        (3, 224, 224))
    assert g.final.name == "fc" and not any(r.name.startswith("aux") for r in g.rows)


@pytest.mark.parametrize("name, head", [("shufflenet_v2_x0_5", "fc"),
                                        ("mobilenet_v3_small", "classifier.3"),
                                        ("efficientnet_b0", "classifier.1")])
def test_split_shuffle_and_gated_nets_are_followed_to_the_classifier(name, head):
    tv = pytest.importorskip("torchvision")
    t = receptive_field(getattr(tv.models, name)(), (3, 224, 224))
    pool = [r for r in t.rows if r.kind in ("AdaptiveAvgPool2d", "mean")][-1]
    assert t.final.name == head and (pool.n_in, pool.j_in) == (7, 32)


# ----------------------------------------------------------------- semantics
def test_one_by_one_conv_keeps_rf():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1)),
                        (1, 28, 28))
    assert [r.r_out for r in t.rows] == [3, 3]


def test_non_square_kernel_gives_pairs():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5)), nn.Conv2d(1, 1, 3)),
                        (1, 20, 30))
    assert t.final.r_out == (5, 7)
    assert t.final.n_out == (16, 24)


# torch warns that 'same' with an even kernel pads by copying: this test means it.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_and_valid_padding():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"),
                                      nn.Conv2d(1, 1, 3, padding="valid")), (1, 10, 10))
    assert [r.n_out for r in t.rows] == [10, 8]
    # 'same' with an even kernel pads 1 before and 2 after: the centre moves.
    assert t.rows[0].start_out == 1.0


def test_adaptive_pool_real_windows():
    t = receptive_field(nn.Sequential(nn.AdaptiveAvgPool2d(2)), (1, 5, 5))
    # PyTorch's windows on 5 -> 2 are [0, 3) and [2, 5): 3 pixels wide, 2 apart.
    assert (t.final.r_out, t.final.j_out, t.final.n_out) == (3, 2, 2)


def test_ceil_mode_pool():
    model = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True))
    t = receptive_field(model, (1, 7, 7))
    assert t.final.n_out == model(torch.zeros(1, 1, 7, 7)).shape[2] == 4


def test_rf_larger_than_image_is_reported_not_clipped():
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(20)])
    t = receptive_field(model, (1, 28, 28))
    assert t.final.r_out == 41 and t.final.exceeds_input


class Residual(nn.Module):
    def __init__(self, stride_a: int, stride_b: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 1, 3, stride_a, 1), nn.Conv2d(1, 1, 3, 1, 1))
        self.b = nn.Conv2d(1, 1, 1, stride_b)

    def forward(self, x):
        return torch.relu(self.a(x) + self.b(x))


def test_aligned_residual_takes_largest_branch():
    t = receptive_field(Residual(2, 2), (1, 16, 16))
    assert t["add"].r_out == 7 and t["add"].j_out == 2


class Shuffle(nn.Module):
    """A ShuffleNet-v2 unit: split the channels, convolve half, shuffle them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 1, bias=False)
        self.branch = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.head = nn.Conv2d(4, 4, 3, bias=False)

    def forward(self, x):
        x1, x2 = self.stem(x).chunk(2, dim=1)
        x = torch.cat([x1, self.branch(x2)], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(x)


class Cropped(nn.Module):
    """A crop to align two branches (as in U-Net), then a strided slice."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 5, bias=False)
        self.c = nn.Conv2d(1, 1, 3, bias=False)

    def forward(self, x):
        x = self.a(x)[:, :, 1:-1, 1:-1] + self.b(x)
        return self.c(x[..., 1::2, 2::3])


def test_crops_and_strided_slices_match_the_gradient():
    size = 40
    f = receptive_field(Cropped(), (1, size, size)).final
    (top, left, h, w), (i, k) = empirical_rf(Cropped(), size)
    assert f.n_out == tuple(Cropped()(torch.zeros(1, 1, size, size)).shape[2:])
    # RF 5 after the add, then a 3x3 on jump 2 (height) and 3 (width).
    assert (f.r_out, f.j_out) == ((5 + 2 * 2, 5 + 2 * 3), (2, 3))
    (sh, sw), (jh, jw) = f.start_out, f.j_out
    assert (h, w) == f.r_out
    assert (top, left) == (sh + i * jh - h / 2, sw + k * jw - w / 2)
    for index in (Row(lambda x: x[:, :, 0]), Row(lambda x: x[None])):
        with pytest.raises(RFError, match="drops or adds an axis"):
            receptive_field(index, (1, 8, 8))


def test_a_slice_or_crop_that_leaves_nothing_is_named():
    """Found by the property test above: x[:, :, 1:, 1:] of a 1x1 map was
    reported as one unit, and a crop of a whole map as a window that does not
    fit; torch leaves an empty tensor for both."""
    corner = Row(lambda x: x[:, :, 1:, 1:])
    with pytest.raises(RFError, match=r"'getitem' leaves an empty tensor, shape "
                                      r"\(1, 1, 0, 0\)"):
        receptive_field(corner, (1, 1, 1))
    with pytest.raises(RFError, match="leaves an empty tensor"):
        receptive_field(Pad((0, 0, 0, -2)), (1, 2, 2))
    assert corner(torch.zeros(1, 1, 1, 1)).numel() == 0  # torch does not object


class Row(nn.Module):
    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return self.index(x)


class Pooled(nn.Module):
    """A 3x3 conv on a 10x10 image, then `pool`: one way to write a global pooling."""

    def __init__(self, pool):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(1, 4, 3, bias=False), pool

    def forward(self, x):
        return self.pool(self.conv(x))


GLOBAL_POOLS = {
    "mean over (2, 3)": lambda x: x.mean((2, 3)),
    "view, then mean": lambda x: x.view(x.size(0), x.size(1), -1).mean(dim=2),
    "flatten(2), then mean": lambda x: x.flatten(2).mean(-1),
    "tokens, mean over them": lambda x: x.flatten(2).transpose(1, 2).mean(1),
    "flatten(1), then amax": lambda x: x.flatten(1).amax(1, keepdim=True),
    "avg_pool2d over x.size()[2:]":
        lambda x: nn.functional.avg_pool2d(x, x.size()[2:]).flatten(1),
}


@pytest.mark.parametrize("pool", GLOBAL_POOLS.values(), ids=GLOBAL_POOLS.keys())
def test_global_pooling_however_written_sees_the_whole_image(pool):
    model = Pooled(pool)
    nn.init.constant_(model.conv.weight, 1.0)
    x = torch.ones(1, 1, 10, 10, requires_grad=True)
    model(x)[0, 0].backward()
    assert (x.grad != 0).all()                          # every pixel counts
    assert receptive_field(model, (1, 10, 10)).final.r_out == 10


def test_flattened_positions_are_tracked_not_guessed():
    # A Linear on (N, positions, channels) mixes channels: each token keeps RF 3.
    tokens = Pooled(lambda x: nn.functional.linear(x.flatten(2).transpose(1, 2),
                                                   torch.ones(3, 4)))
    assert receptive_field(tokens, (1, 10, 10)).final.r_out == 3
    back = Pooled(lambda x: x.flatten(2).view(x.size(0), 4, 8, 8))  # unflatten
    assert receptive_field(back, (1, 10, 10)).final.n_out == 8
    for pool, match in [(lambda x: x.view(x.size(0), 4, 32, 2), "moves pixels"),
                        (lambda x: nn.functional.avg_pool2d(x, x.size(2) // 2),
                         "computed at run time")]:
        with pytest.raises(RFError, match=match):
            receptive_field(Pooled(pool), (1, 10, 10))


def test_functional_pad_squeeze_and_elementwise_ops():
    def final(f):
        return receptive_field(Pooled(f), (1, 10, 10)).final

    padded = final(lambda x: nn.functional.pad(x, (1, 1, 2, 0), mode="reflect"))
    as_module = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3),
                                              nn.ZeroPad2d((1, 1, 2, 0))), (1, 10, 10))
    assert (padded.n_out, padded.start_out) == (as_module.final.n_out,
                                                as_module.final.start_out)
    cropped = final(lambda x: nn.functional.pad(x, (-1, -1, -1, -1)))
    assert (cropped.n_out, cropped.start_out, cropped.r_out) == (6, 2.5, 3)
    squeezed = final(lambda x: nn.functional.adaptive_avg_pool2d(x, 1).squeeze())
    assert squeezed.r_out == 10
    for op in (lambda x: x.clamp(min=0), lambda x: x ** 2,
               lambda x: torch.where(x > 0, x, 0.1 * x), lambda x: x.unsqueeze(1)):
        assert (final(op).r_out, final(op).n_out) == (3, 8)


class Gated(nn.Module):
    """A squeeze-and-excitation gate: every unit is scaled by a whole-map summary."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        # No sigmoid: with the test's all-ones weights it saturates, and its
        # zero gradient would hide the pixels the gate reaches.
        self.squeeze = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2, 2, 1))

    def forward(self, x):
        y = self.conv(x)
        return self.squeeze(y) * y


def test_channel_split_and_shuffle_are_followed():
    t = receptive_field(Shuffle(), (1, 16, 16))
    (top, left, h, w), _ = empirical_rf(Shuffle(), 16)
    assert t.final.r_out == h == w == 5 and t.final.n_out == 14
    with pytest.raises(RFError, match="chunk along a spatial axis"):
        receptive_field(SplitRows(), (1, 16, 16))


class FunctionalConvs(nn.Module):
    """Convolutions written with F.conv2d and weights of its own, as in a
    from-scratch exercise; `modules=True` is the same net with nn.Conv2d."""

    def __init__(self, modules: bool = False):
        super().__init__()
        self.modules_ = modules
        self.a, self.b, self.c = (nn.Conv2d(1, 4, 3, stride=2, padding=1),
                                  nn.Conv2d(4, 4, 3, dilation=2, bias=False),
                                  nn.Conv2d(4, 2, 4, padding="same"))

    def forward(self, x):
        if self.modules_:
            return self.c(self.b(self.a(x)))
        x = F.conv2d(x, self.a.weight, self.a.bias, 2, 1)
        x = F.conv2d(x, self.b.weight, dilation=2)
        return torch.conv2d(x, self.c.weight, self.c.bias, padding="same")


# torch's note that an even kernel's 'same' padding copies the input.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_functional_conv_is_the_conv_module():
    cols = ["kernel", "stride", "padding", "dilation", "n_out", "j_out", "r_out",
            "start_out", "ch_out", "params"]
    t = receptive_field(FunctionalConvs(), (1, 28, 28))
    m = receptive_field(FunctionalConvs(modules=True), (1, 28, 28))
    assert [r["kind"] for r in t.to_records(columns=["kind"])] == ["conv2d"] * 3
    assert t.to_records(columns=cols) == m.to_records(columns=cols)
    assert t.final.r_out == 3 + 4 * 2 + 3 * 2 and t.final.padding == ((1, 1), (2, 2))
    (top, left, h, w), _ = empirical_rf(FunctionalConvs(), 28)
    assert (h, w) == (t.final.r_out, t.final.r_out)


class ComputedStride(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 1, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, stride=x.shape[-1] // 14)


def test_functional_conv_with_a_stride_computed_at_run_time_is_refused():
    with pytest.raises(RFError, match="(?s)stride, padding or dilation computed at "
                                      "run time.*nn.Conv2d"):
        receptive_field(ComputedStride(), (1, 28, 28))


class Unshuffle(nn.Module):
    """Space-to-depth (pixel_unshuffle) after a conv, as a function or a module."""

    def __init__(self, module: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.down = nn.PixelUnshuffle(2) if module else (lambda x: F.pixel_unshuffle(x, 2))

    def forward(self, x):
        return self.down(self.conv(x))


@pytest.mark.parametrize("module", [False, True])
def test_pixel_unshuffle_is_a_window_of_its_factor(module):
    t = receptive_field(Unshuffle(module), (1, 16, 16))
    window = receptive_field(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 8, 2, 2)),
                             (1, 16, 16))
    cols = ["kernel", "stride", "n_out", "j_out", "r_out", "start_out", "ch_out"]
    assert t.to_records(columns=cols)[-1] == window.to_records(columns=cols)[-1]
    (top, left, h, w), _ = empirical_rf(Unshuffle(module), 16)
    assert (h, w) == (t.final.r_out, t.final.r_out) == (4, 4)


class ThreeChannels(nn.Module):
    """A grey digit copied to three channels for a three-channel net (an
    ImageNet model, say); `how` copies along the height instead."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.net = how, nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))

    def forward(self, x):
        if self.how == "repeat":
            return self.net(x.repeat(1, 3, 1, 1))
        if self.how == "expand":
            return self.net(x.expand(-1, 3, -1, -1))
        if self.how == "rows":
            return self.net(x.repeat(1, 3, 2, 1))
        return x.mean((2, 3), keepdim=True).expand(-1, -1, 28, 28) * x  # "spread"


@pytest.mark.parametrize("how", ["repeat", "expand"])
def test_copies_along_the_channels_leave_the_rf_alone(how):
    t = receptive_field(ThreeChannels(how), (1, 28, 28))
    plain = receptive_field(ThreeChannels(how).net, (3, 28, 28))
    cols = ["n_out", "j_out", "r_out", "start_out"]
    assert t.to_records(columns=cols)[-1] == plain.to_records(columns=cols)[-1]
    assert t.rows[0].kind == how and t.rows[0].ch_out == 3


@pytest.mark.parametrize("how", ["rows", "spread"])
def test_copies_along_height_or_width_are_refused(how):
    with pytest.raises(RFError, match="copies a map along its height or width.\n"
                                      "Let broadcasting spread it"):
        receptive_field(ThreeChannels(how), (1, 28, 28))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: mean and max over channels, a 7x7 conv, a gate.
    (CBAM's sigmoid is left out: with the oracle's all-positive weights it
    saturates and passes no gradient.)"""

    def __init__(self, values: bool = False):
        super().__init__()
        self.conv, self.gate = nn.Conv2d(1, 4, 3), nn.Conv2d(2, 1, 7, padding=3)
        self.values = values

    def forward(self, x):
        x = self.conv(x)
        peak = x.max(dim=1, keepdim=True)
        peak = peak.values if self.values else peak[0]
        a = torch.cat([x.mean(1, keepdim=True), peak], dim=1)
        return x * self.gate(a)


@pytest.mark.parametrize("values", [False, True], ids=["[0]", ".values"])
def test_max_over_channels_with_indices_is_followed(values):
    t = receptive_field(SpatialAttention(values), (1, 21, 21))
    (top, left, h, w), _ = empirical_rf(SpatialAttention(values), 21)
    assert t.final.r_out == h == w == 3 + 6 and t.final.n_out == 19
    with pytest.raises(RFError, match=r"max over a spatial axis.*amax\(dim=\(2, 3\)\)"):
        receptive_field(Pooled(lambda x: x.max(dim=3)[0]), (1, 10, 10))


class TwoBranches(nn.Module):
    """A 3x3 and a padded 5x5 conv, aligned, then `f` of the two maps."""

    def __init__(self, f):
        super().__init__()
        self.a, self.b, self.f = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 4, 5, padding=1), f

    def forward(self, x):
        return self.f(self.a(x), self.b(x))


def test_max_of_two_maps_is_elementwise_and_of_one_a_reduction():
    def final(f):
        return _final(TwoBranches(f), (1, 28, 28))

    # torch.max(a, b) (maxout) is torch.maximum; torch.max(a), a global pooling.
    assert final(torch.max) == final(torch.min) == final(torch.maximum)
    assert final(lambda a, b: a.max(b)) == final(lambda a, b: a.min(b)) \
        == final(torch.maximum)
    assert final(lambda a, b: torch.max(a)) == final(lambda a, b: a.amax())
    assert final(torch.max)[2] == 5 and final(lambda a, b: torch.max(a))[:3] == (1, 26, 28)


class SplitRows(nn.Module):
    def forward(self, x):
        top, bottom = x.chunk(2, dim=2)
        return top + bottom


def test_gate_spread_over_the_map_brings_the_whole_map():
    t = receptive_field(Gated(), (1, 16, 16))
    (top, left, h, w), _ = empirical_rf(Gated(), 16)
    assert (h, w) == (16, 16)                    # every pixel moves every unit
    assert t.final.r_out == 16 and t.final.n_out == 14 and t.final.j_out == 1


class ChannelsLastBlock(nn.Module):
    """A ConvNeXt block: depthwise 7x7, then LayerNorm and an MLP applied
    channels-last (Linear on the channel axis: a 1x1 convolution)."""

    def __init__(self, c=4):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)       # (N, H, W, C)
        y = self.mlp(self.norm(y)).permute(0, 3, 1, 2)
        return x + y


def test_channels_last_is_followed_and_guarded():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), ChannelsLastBlock(), ChannelsLastBlock())
    t = receptive_field(model, (1, 32, 32))
    assert t.final.r_out == 3 + 6 + 6 and t.final.n_out == 30  # Linears add nothing
    assert not t["1.mlp.0"].spatial

    class PoolChannelsLast(nn.Module):
        def forward(self, x):
            return nn.functional.avg_pool2d(x.permute(0, 2, 3, 1), 2)

    with pytest.raises(RFError, match="not its last two axes"):
        receptive_field(PoolChannelsLast(), (4, 8, 8))


def _final(model, size=(2, 20, 20)):
    f = receptive_field(model, size).final
    return f.n_out, f.j_out, f.r_out, f.start_out


@pytest.mark.parametrize("layer", [
    nn.LocalResponseNorm(2), nn.Softmax2d(), nn.Softmax(dim=1), nn.LogSoftmax(dim=1),
    nn.Softmin(dim=-3), nn.Softsign(), nn.Threshold(0.1, 0.0), nn.FeatureAlphaDropout(),
    nn.SyncBatchNorm(2)], ids=lambda m: type(m).__name__)
def test_modules_that_mix_only_channels_change_no_rf(layer):
    """Norms, activations and softmaxes over the channels, between two convs:
    the same RF, jump, size and centre as without them."""
    def net(*middle):
        return nn.Sequential(nn.Conv2d(2, 2, 3, stride=2), *middle, nn.Conv2d(2, 2, 3))

    model = net(layer).eval()
    assert _final(model) == _final(net())
    assert receptive_field(model, (2, 20, 20)).final.n_out == model(
        torch.zeros(1, 2, 20, 20)).shape[-1]


@pytest.mark.parametrize("op", [
    lambda x: F.local_response_norm(x, 2), lambda x: F.instance_norm(x),
    lambda x: F.logsigmoid(x), lambda x: F.threshold(x, 0.1, 0.0),
    lambda x: F.prelu(x, torch.full((1,), 0.25))],
    ids=["local_response_norm", "instance_norm", "logsigmoid", "threshold", "prelu"])
def test_functions_that_mix_only_channels_change_no_rf(op):
    class Net(nn.Module):
        def __init__(self, middle):
            super().__init__()
            self.a, self.b, self.middle = nn.Conv2d(2, 2, 3, 2), nn.Conv2d(2, 2, 3), middle

        def forward(self, x):
            return self.b(self.middle(self.a(x)))

    assert _final(Net(op)) == _final(Net(lambda x: x))


@pytest.mark.parametrize("kernel, stride, ceil", [(2, 2, False), (3, 2, True),
                                                  ((2, 3), None, False)])
def test_lp_pool_is_the_window_of_an_average_pool(kernel, stride, ceil):
    def net(pool):
        return nn.Sequential(nn.Conv2d(1, 1, 3), pool, nn.Conv2d(1, 1, 3))

    lp = net(nn.LPPool2d(2, kernel, stride, ceil_mode=ceil))
    assert _final(lp, (1, 21, 21)) == _final(
        net(nn.AvgPool2d(kernel, stride, ceil_mode=ceil)), (1, 21, 21))
    n = receptive_field(lp, (1, 21, 21)).final.n_out
    n = n if isinstance(n, tuple) else (n, n)
    assert n == tuple(lp(torch.ones(1, 1, 21, 21)).shape[-2:])


def test_softmax_over_the_height_or_width_of_a_map_is_refused():
    """Over one position axis, every unit sees its whole row (or column) but
    stays where it is: no jump and start describe it, so the calculator says
    so. Over all positions, flattened first, it is a global pooling."""
    conv = nn.Conv2d(1, 4, 3)
    for softmax, axis in [(nn.Softmax(dim=-1), "width"),
                          (nn.LogSoftmax(dim=2), "height"),
                          (lambda x: x.softmax(3), "width")]:
        with pytest.raises(RFError, match=f"softmax over the {axis} of a map.*"
                                          r"x\.flatten\(2\).*dim=1"):
            receptive_field(Pooled(softmax), (1, 10, 10))
    flat = receptive_field(nn.Sequential(conv, nn.Flatten(2), nn.Softmax(dim=-1)),
                           (1, 10, 10)).final
    assert (flat.n_out, flat.r_out) == (1, 10)
    # A 1-unit axis (after global pooling) has nothing to mix.
    pooled = nn.Sequential(conv, nn.AdaptiveAvgPool2d((1, 1)), nn.Softmax(dim=-1))
    assert receptive_field(pooled, (1, 10, 10)).final.r_out == 10


def test_ops_on_moved_or_merged_positions_find_them():
    """softmax, chunk, cat and slices look for the positions where the state
    says they are, not at axes 2 and 3."""
    def final(f):
        return receptive_field(Pooled(f), (1, 10, 10)).final

    def to_nhwc(x):
        return x.permute(0, 2, 3, 1)

    def to_nchw(x):
        return x.permute(0, 3, 1, 2)

    # Over positions merged into one axis: every unit sees the whole image.
    assert final(lambda x: nn.functional.softmax(x.flatten(2), dim=-1)).r_out == 10
    # Over the channels of a channels-last map: nothing changes.
    for op in (lambda x: nn.functional.softmax(to_nhwc(x), -1),
               lambda x: to_nhwc(x).chunk(2, dim=-1)[0],
               lambda x: torch.cat([to_nhwc(x)] * 2, -1)):
        assert (final(lambda x: to_nchw(op(x))).r_out,
                final(lambda x: to_nchw(op(x))).n_out) == (3, 8)
    for op, match in [(lambda x: x.flatten(2).chunk(2, dim=-1)[0], "spatial axis"),
                      (lambda x: x.flatten(2)[:, :, 2:], "slice of positions"),
                      (lambda x: to_nchw(to_nhwc(x)[:, 1:]), "slice of positions")]:
        with pytest.raises(RFError, match=match):
            final(op)


def test_convnext_tiny_by_hand():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.convnext_tiny(), (3, 224, 224))
    # Stem 4x4 stride 4: RF 4, jump 4. Stages of 3, 3, 9, 3 blocks, each a 7x7
    # depthwise conv (+6 jumps); a 2x2 stride-2 downsampling (+1 jump) between.
    rf = 4 + 3 * 6 * 4 + 4 + 3 * 6 * 8 + 8 + 9 * 6 * 16 + 16 + 3 * 6 * 32
    assert t["avgpool"].r_in == rf == 1688 and t["avgpool"].j_in == 32
    assert t.final.r_out == rf + 6 * 32        # the 7x7 map, pooled


class Misaligned(nn.Module):
    """Both branches give 16x16 maps, but b's units sit half a pixel off a's."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(1, 1, 2))

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_misaligned_branches_raise():
    assert Misaligned()(torch.zeros(1, 1, 16, 16)).shape[-1] == 16  # torch runs it
    with pytest.raises(RFError, match=r"(?s)along height.*start=0\.5\n.*start=0\n"):
        receptive_field(Misaligned(), (1, 16, 16))


# The book prints these messages in a code box that shows 77 characters.
def _lines_fit(err: pytest.ExceptionInfo) -> bool:
    return max(map(len, str(err.value).splitlines())) <= 77


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 5, padding=2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


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


class Resize(nn.Module):
    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2.0)


class Roll(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, -1)


def test_unsupported_function_says_to_wrap_it_in_a_module():
    with pytest.raises(RFError, match="(?s)'roll'.*Wrap it in an nn.Module"):
        receptive_field(Roll(), (1, 8, 8))


@pytest.mark.parametrize("make, what", [
    (lambda: nn.ConvTranspose2d(1, 1, 2, stride=2), "module '0' (ConvTranspose2d)"),
    (lambda: nn.Upsample(scale_factor=2), "module '0' (Upsample)"),
    (lambda: nn.UpsamplingBilinear2d(scale_factor=2),
     "module '0' (UpsamplingBilinear2d)"),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 1), nn.PixelShuffle(2)),
     "module '0.1' (PixelShuffle)"),
    (lambda: Resize(), "operation 'interpolate' (graph node 'interpolate')"),
])
def test_upsampling_is_refused_with_the_reason_not_a_declaration(make, what):
    # A declaration cannot describe an upsampling, so none is suggested.
    with pytest.raises(RFError, match="an upsampling") as err:
        receptive_field(nn.Sequential(make()), (1, 8, 8))
    message = str(err.value)
    assert f"{what} enlarges the map\nfrom 8x8 to 16x16" in message
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


class Transposed(nn.Module):
    """A conv, then a transposed conv of stride 1 (a 'full' convolution that
    enlarges the map), as a module or with F.conv_transpose2d."""

    def __init__(self, functional: bool = False, **settings):
        super().__init__()
        self.functional = functional
        self.conv = nn.Conv2d(1, 2, 3, stride=2, bias=False)
        self.up = nn.ConvTranspose2d(2, 1, (3, 5), bias=False, **settings)

    def forward(self, x):
        x, up = self.conv(x), self.up
        if self.functional:
            return F.conv_transpose2d(x, up.weight, None, up.stride, up.padding,
                                      up.output_padding, 1, up.dilation)
        return up(x)


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


class Blur(nn.Module):
    def forward(self, x):
        return nn.functional.avg_pool2d(x, 3, 1, 1)


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


def test_custom_declarations():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), Gate(), Blur())
    with pytest.raises(RFError, match="(?s)could not trace.*custom="):
        receptive_field(model, (1, 10, 10))
    # What the message says to do works: Gate is declared, so not traced inside.
    t = receptive_field(model, (1, 10, 10), custom={Gate: POINTWISE, Blur: Window(3, 1, 1)})
    assert t.final.r_out == 5 and t.final.n_out == 8


class GatedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.gate = nn.Conv2d(4, 4, 3), Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


class Branchy(nn.Module):
    """Control flow in the model's own forward(), not in a submodule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        return x if x.mean() > 0 else -x


def test_untraceable_module_is_named_with_its_declaration():
    # The innermost module being traced is the one to declare, however deep.
    model = nn.Sequential(nn.Conv2d(1, 4, 3), GatedBlock(), nn.Conv2d(4, 4, 3))
    with pytest.raises(RFError) as err:
        receptive_field(model, (1, 16, 16))
    message = str(err.value)
    assert message.startswith("torch.fx could not trace module '1.gate' (Gate):\n  ")
    assert "custom={Gate: 'pointwise'}" in message and _lines_fit(err)
    # torch's own words come through, wrapped to the message's width.
    assert "control flow" in message
    # In the model's own forward() there is no module to declare but one's own.
    with pytest.raises(RFError, match=r"(?s)could not trace Branchy.forward\(\):"
                                      r".*a module of its own.*YourModule") as err:
        receptive_field(Branchy(), (1, 16, 16))
    assert _lines_fit(err)


def test_linear_sees_the_whole_map():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    t = receptive_field(model, (1, 28, 28))
    assert t.final.kind == "Linear" and t.final.r_out == 28 and t.final.n_out == 1


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
    assert list(t.to_frame(columns=cols).columns) == cols
    assert list(t.to_records(columns=cols)[0]) == ["name", "kernel", "j_out", "r_out"]
    with pytest.raises(ValueError, match="unknown column.*'rf'.*choose from name"):
        t.to_text(columns=["name", "rf"])


def test_renderings():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    frame = t.to_frame()
    assert list(frame.columns)[:4] == ["name", "kind", "n_in", "ch_in"]
    assert "Conv2d" in t.to_markdown() and "<table" in t._repr_html_()
    # Integers stay integers: a column with blanks (the pool has no padding)
    # must not turn a 3x3 kernel into "3.0".
    assert [type(v) for v in frame["kernel"][:3]] == [int] * 3
    assert frame.loc[frame["kind"] == "AdaptiveAvgPool2d", "padding"].item() == ""
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


# ----------------------------------------------------------------------- CLI
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
                                   " mnist_lib.models defines: Model_1,"),
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


@pytest.mark.parametrize("size", [(28, 28), 28, "1,28,28", (1, 0, 28), (1.0, 28, 28),
                                  (True, 28, 28), (1, 28, 28, 1)])
def test_input_size_must_be_three_positive_ints(size):
    with pytest.raises(RFError, match=r"three positive integers \(C, H, W\)"):
        receptive_field(MODELS["Model_4"](), size)


def test_a_batch_shape_is_told_to_drop_the_batch():
    with pytest.raises(RFError, match=r"without the batch: \(C, H, W\), not \(N, C"):
        receptive_field(MODELS["Model_4"](), (1, 1, 28, 28))


def _scripted():
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated, not gone
        return torch.jit.script(nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("model, msg", [
    (lambda: MODELS["Model_4"], r"Model_4 is a class, not a model: .*"
                                r"receptive_field\(Model_4\(\), \.\.\.\)"),
    (lambda: (lambda x: x), r"must be a torch.nn.Module; got a function"),
    (_scripted, r"TorchScript module cannot be traced.*the nn.Module it was"),
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
    with pytest.raises(RFError, match="must be module classes, e.g. nn.Upsample"):
        receptive_field(model, (1, 28, 28), **kwargs)
    # What the message asks for works.
    t = receptive_field(model, (1, 28, 28), custom={Gate: POINTWISE})
    assert t.final.kind == "Gate" and t.final.r_out == 3


@pytest.mark.parametrize("model, spec, real, wrong", [
    (lambda: UpsampleNet(), {nn.Upsample: POINTWISE}, "52x52", "26x26"),
    (lambda: nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)),
     {nn.MaxPool2d: Window(3)}, "13x13", "24x24"),
])
def test_a_declaration_that_contradicts_the_model_is_refused(model, spec, real, wrong):
    # Before, the table went on with the declared map size: a silently wrong RF.
    model = model()
    with pytest.raises(RFError) as exc:
        receptive_field(model, (1, 28, 28), custom=spec)
    msg = str(exc.value)
    assert f"'1' ({type(model[1]).__name__}) gives a {real} map" in msg
    assert f"makes it {wrong}. Declare the Window(" in msg
    assert max(map(len, msg.splitlines())) <= 80


def test_a_rule_that_gets_the_map_size_wrong_is_caught(monkeypatch):
    # The same check guards the calculator's own rules: here max-pooling is
    # wrongly made pointwise, as a bug in a rule might.
    from mnist_lib import rf_layers
    monkeypatch.setattr(rf_layers, "_POINTWISE_MODULES",
                        rf_layers._POINTWISE_MODULES + (nn.MaxPool2d,))
    with pytest.raises(RFError, match=r"\(MaxPool2d\) gives a 5x5 map, not the 10x10"
                                      r" its rule computes;\nplease report"):
        receptive_field(MODELS["Model_4"](), (1, 28, 28))


def test_input_size_takes_any_sequence_of_ints():
    import numpy as np

    for size in ([1, 28, 28], torch.Size([1, 28, 28]), np.array([1, 28, 28])):
        assert receptive_field(MODELS["Model_4"](), size).final.r_out == 37


@pytest.mark.parametrize("size, where, cause", [
    ((3, 28, 28), "block1.0.0 (Conv2d) raised", "to have 1 channels, but got 3"),
    ((1, 8, 8), "block1.2.0 (Conv2d) raised", "Kernel size can't be greater"),
])
def test_wrong_input_size_names_the_layer_the_cause_and_the_fix(size, where, cause,
                                                                capsys):
    with pytest.raises(RFError) as exc:
        receptive_field(MODELS["Model_4"](), size)
    msg = " ".join(str(exc.value).split())  # the cause is wrapped to 80 columns
    assert f"input of shape (1, {', '.join(map(str, size))}): {where}" in msg
    assert cause in msg and "--input C,H,W" in msg
    assert max(map(len, str(exc.value).splitlines())) <= 80
    # torch's shape pass prints a traceback before it re-raises: none shown.
    assert capsys.readouterr().err == ""


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
    assert main(["tests.test_rf:UpsampleNet"]) == 1
    assert "Upsample" in capsys.readouterr().err


def test_cli_stops_quietly_when_its_reader_does():
    # `python -m mnist_lib.rf ... | head`: head may exit before the table is
    # written. Closing the pipe at once makes that certain. (Every CLI's main
    # is wrapped in utils.quiet_on_closed_pipe, for `python -m` and the
    # console scripts alike.)
    argv = ["mnist_lib.rf", "mnist_lib.models:Model_4", "--all"]
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and "Traceback" not in err, err


class UpsampleNet(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2))


def test_docstring_examples_hold():
    import doctest

    import mnist_lib.rf

    result = doctest.testmod(mnist_lib.rf)
    assert result.attempted >= 3 and result.failed == 0


def test_readme_rf_commands_run(capsys):
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    commands = [shlex.split(line)[3:] for line in readme.splitlines()
                if line.startswith("python -m mnist_lib.rf ")]
    assert len(commands) >= 2
    for argv in commands:
        assert main(argv) == 0, argv
        assert "r_out" in capsys.readouterr().out
