"""Where the calculator used to be wrong without a word (issues #34 and #40):
each case now gives the right number, checked against an independent truth
(the gradient's support, or arithmetic done here), or a refusal that says
why."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import RFError, effective_rf, receptive_field
from tests.rf.helpers import (Picked, SEBlock, averaging, rows_reached, support,
                              swap)


def _support(model: nn.Module, size: int, channels: int = 1) -> list[int]:
    """For each output unit of `model` on a `size` x `size` input, the height
    of the input pixels its gradient reaches (weights made positive first)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
    x = torch.ones(1, channels, size, size, requires_grad=True)
    out = model(x)
    heights = []
    for i in range(out.shape[2]):
        for k in range(out.shape[3]):
            (grad,) = torch.autograd.grad(out[0, :, i, k].sum(), x, retain_graph=True)
            rows = (grad[0].abs().sum(0) != 0).nonzero()[:, 0]
            heights.append(int(rows.max() - rows.min() + 1))
    return heights


# ------------------------------------------------ 1. no node is dropped
class PatchAttention(nn.Module):
    """4x4 patches, self-attention over them, a residual add."""

    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 8, 4, stride=4)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.functional = functional

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        if self.functional:
            a = F.scaled_dot_product_attention(t, t, t)
        else:
            a, _ = self.attn(t, t, t, need_weights=False)
        return (t + a).mean(1)


@pytest.mark.parametrize("functional", [False, True])
def test_attention_is_refused_by_name_not_dropped(functional):
    model = PatchAttention(functional).eval()
    # The truth: one output reaches every pixel of the image, not a 4x4 patch
    # (before, the table said r = 4).
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    model(x)[0, 0].backward()
    assert bool((x.grad[0, 0] != 0).all())
    # Named as attention (not as the indexing or tuple around it), and where.
    what = ("operation 'scaled_dot_product_attention'" if functional
            else "module 'attn' (MultiheadAttention)")
    with pytest.raises(RFError, match=f"^{re.escape(what)} is attention: it mixes "
                                      r"every position\.\nFix: give the calculator "
                                      "the part before it"):
        receptive_field(model, (1, 28, 28))


class WithNone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 5, padding=2)

    def forward(self, x):
        return self.conv(x), None


class AddsItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = WithNone()

    def forward(self, x):
        x = self.stem(x)
        y, _ = self.block(x)
        return x + y


def test_a_tensor_returned_in_a_tuple_is_followed_or_refused_never_dropped():
    truth = max(_support(AddsItsInput(), 15))
    assert truth == 3 + 4 == 7
    # Traced through, the tuple is taken apart and the conv inside counts.
    assert receptive_field(AddsItsInput(), (1, 15, 15)).final.r_out == truth
    # Kept whole (a leaf), it would have been dropped (r = 3, its row gone).
    with pytest.raises(RFError, match=r"module 'block' \(WithNone\) returns its "
                                      r"tensor inside a tuple\.\n"):
        receptive_field(AddsItsInput(), (1, 15, 15), leaf_modules=[WithNone])


# --------------------------------- 2. adaptive pooling off its native size
class Uneven(nn.Module):
    """A 3x3 conv (14 -> 12 here), then adaptive pooling to 7: windows of 2
    and 3 pixels that step by 1 or 2."""

    def __init__(self, then_conv: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.then = nn.Conv2d(2, 2, 3) if then_conv else nn.Identity()

    def forward(self, x):
        return self.then(self.pool(self.conv(x)))


def test_uneven_adaptive_pooling_reports_its_largest_rf_and_no_jump():
    table = receptive_field(Uneven(), (1, 14, 14))
    row = table["pool"]
    assert max(_support(Uneven(), 14)) == row.r_out == 3 + (3 - 1) * 1
    assert row.j_out is None and row.uneven_out and row.kernel == (2, 3)
    assert "jump uneven" in table.headline and "uneven" in table.to_text()
    assert all(float(row.r_out).is_integer() for row in table.rows)
    with pytest.raises(RFError, match=r"^module 'then' \(Conv2d\) slides a 3-px "
                                      "window over unevenly spaced units"):
        receptive_field(Uneven(then_conv=True), (1, 14, 14))


@pytest.mark.parametrize("size, pool5, head", [
    (224, 7, 212),            # pool5 7x7: the adaptive pooling is the identity
    (320, 10, 212 + 2 * 32),  # 10 -> 7: uneven windows of 2 or 3 units
    (64, 2, 212 + 1 * 32),    # 2 -> 7: units repeat; window i = 3 spans both
])
def test_vgg16_off_its_native_size_gives_whole_numbers(size, pool5, head):
    torchvision = pytest.importorskip("torchvision")
    table = receptive_field(torchvision.models.vgg16(), (3, size, size))
    assert table["features.30"].r_out == 212 and table["features.30"].n_out == pool5
    # The adaptive pooling's largest window (PyTorch's window i spans units
    # floor(i * n / 7) to ceil((i + 1) * n / 7)) adds (width - 1) jumps of 32:
    # the trunk's RF; the classifier's Linear is global, over the conv path's RF.
    assert (table.trunk.name, table.trunk.r_out) == ("avgpool", head)
    assert table.first_global.name == "classifier.0"
    assert table.final.global_out and table.final.r_out == head
    for row in table.rows:
        assert row.j_out != 0 and (row.j_out == "uneven" or float(row.r_out).is_integer())


def test_a_pooling_whose_window_covers_the_map_is_a_global_pooling():
    """At 32x32, VGG-16's pool5 (MaxPool2d(2)) meets a 2x2 map: its one unit
    pools the whole map, so it is global, as AdaptiveAvgPool2d(1) would be,
    and the RF quoted is the last convolution's (196 px), not the pool's
    window (212); the adaptive pooling after it makes copies of that one
    global unit. The same net, its pooling written three ways, quotes one RF."""
    torchvision = pytest.importorskip("torchvision")
    table = receptive_field(torchvision.models.vgg16(), (3, 32, 32))
    assert table.first_global.name == "features.30"
    assert (table.trunk.name, table.trunk.r_out, table.trunk.n_out) == (
        "features.28", 196, 2)

    from mnist_lib.bench import ReferenceNet

    class Functional(nn.Module):  # F.avg_pool2d with a fixed, covering window
        def __init__(self):
            super().__init__()
            self.body = ReferenceNet().net[:9]

        def forward(self, x):
            return F.avg_pool2d(self.body(x), 4)

    adaptive = ReferenceNet()
    adaptive.net[9] = nn.AdaptiveAvgPool2d(1)
    tables = [receptive_field(m, (1, 28, 28))
              for m in (ReferenceNet(), adaptive, Functional())]
    assert {(t.trunk.r_out, t.trunk.n_out) for t in tables} == {(22, 4)}
    assert all(t.final.global_out for t in tables)
    # A window that does not cover the map stays a window.
    half = ReferenceNet()
    half.net[9] = nn.AvgPool2d(2)
    row = receptive_field(half, (1, 28, 28))["net.9"]
    assert (row.global_out, row.n_out, row.r_out) == (False, 2, 22 + 1 * 2)


# --------------------------- 3. a mean over height and width that keeps them
class SqueezeExcite(nn.Module):
    def __init__(self, keepdim_mean: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.pool = None if keepdim_mean else nn.AdaptiveAvgPool2d(1)
        self.red = nn.Conv2d(8, 2, 1)
        self.expand = nn.Conv2d(2, 8, 1)

    def forward(self, x):
        x = self.conv(x)
        g = x.mean((2, 3), keepdim=True) if self.pool is None else self.pool(x)
        return x * torch.sigmoid(self.expand(torch.relu(self.red(g))))


def test_a_keepdim_mean_is_a_global_pooling_to_a_1x1_map():
    # Before, 'red' was refused as sliding "over a flattened tensor".
    mean = receptive_field(SqueezeExcite(True), (1, 28, 28))
    pool = receptive_field(SqueezeExcite(False), (1, 28, 28))
    # One global unit, over the 3x3 conv's map: r is the conv path's, 3.
    red = mean["red"]
    assert (red.n_out, red.r_out, red.global_in, red.global_out) == (1, 3, True, True)
    assert [(r.n_out, r.j_out, r.r_out, r.global_out) for r in mean.rows[1:]] == [
        (r.n_out, r.j_out, r.r_out, r.global_out) for r in pool.rows[1:]]


# ------------------- 4. a squeeze-and-excitation gate is global, not an RF
def test_a_squeeze_and_excitation_gate_is_global_over_the_conv_path():
    gated, plain = SEBlock(), SEBlock(gate=False)
    t = receptive_field(gated, (1, 16, 16))
    # Arithmetic: two 3x3 convs, jump 1: RF 3 + 2 = 5 on a 12x12 map. The
    # gate's pooling (se.0) makes every unit global from there on.
    assert t.first_global is t["se.0"] and not t["conv1"].global_out
    assert t.final is t.trunk is t["conv2"] and t.trunk.global_out
    assert (t.trunk.r_out, t.trunk.j_out, t.trunk.n_out) == (5, 1, 12)
    assert t.headline == ("RF global from 'se.0' (AdaptiveAvgPool2d) onward; without the "
                          "global ops, RF 5 px, jump 1 px, at 'conv2' (map 12x12)")
    # The gradient: through the gate, the central unit reaches every pixel
    # that conv1's map sees (all of them); without the gate, 5x5 of them.
    assert support(averaging(gated), (16, 16)) == (0, 0, 16, 16)
    top, left, bottom, right = support(averaging(plain), (16, 16))
    assert bottom - top == right - left == 5
    p = receptive_field(plain, (1, 16, 16))
    assert p.first_global is None and p.trunk.r_out == 5


@pytest.mark.parametrize("name, rf, tall", [("mobilenet_v3_small", 639, 736),
                                            ("efficientnet_b0", 851, 928),
                                            ("regnet_y_400mf", 575, 672)])
def test_se_nets_quote_the_conv_path_rf_which_does_not_grow_with_the_input(
        name, rf, tall):
    tv = pytest.importorskip("torchvision")
    from torchvision.ops import SqueezeExcitation

    model = getattr(tv.models, name)(weights=None)
    first = next(n for n, m in model.named_modules()
                 if isinstance(m, SqueezeExcitation))
    t = receptive_field(model, (3, 224, 224))
    assert t.first_global is t[f"{first}.avgpool"]
    assert t.headline.startswith(f"RF global from '{first}.avgpool' (AdaptiveAvgPool2d)"
                                 f" onward; without the global ops, RF {rf} px")
    assert t.trunk.global_out and (t.trunk.r_out, t.trunk.j_out, t.trunk.n_out) == (
        rf, 32, 7)
    # The same at a larger input: the span of the gates' pooled maps would grow.
    big = receptive_field(model, (3, 352, 352)).trunk
    assert (big.name, big.r_out, big.n_out) == (t.trunk.name, rf, 11)
    # Independently: the net with its gates taken out has that RF, without
    # a global op until its final pooling ...
    swap(model, SqueezeExcitation, lambda _: nn.Identity())
    plain = receptive_field(model, (3, 224, 224))
    assert plain.first_global is plain["avgpool"] and not plain.trunk.global_out
    assert (plain.trunk.name, plain.trunk.r_out) == (t.trunk.name, rf)
    # ... and so has the gradient through its conv path, on an input tall
    # enough that the central unit's RF is not clipped (32 px wide: the
    # height's support does not depend on the width; the kernels are square).
    path = (model.features if hasattr(model, "features")
            else nn.Sequential(model.stem, model.trunk_output))
    top, _, bottom, _ = support(averaging(path), (tall, 32), channels=3)
    assert bottom - top == rf and 0 < top and bottom < tall


# ------------------------------------- 6 (in part). rows name their block
def test_functional_rows_are_named_with_their_block():
    torchvision = pytest.importorskip("torchvision")
    table = receptive_field(torchvision.models.resnet18(), (3, 224, 224))
    adds = [r.name for r in table.rows if r.kind == "add"]
    assert adds == [f"layer{i}.{k}.add" for i in (1, 2, 3, 4) for k in (0, 1)]
    assert len({r.name for r in table.rows}) == len(table.rows)  # unique
    assert table["layer4.1.add"].r_out == 435  # the trunk: the published 435 px


# ============================ issue #40 ====================================
def _height(model: nn.Module, size: int = 20) -> int:
    """How many input rows reach the output's central unit (the gradient)."""
    top, _, bottom, _ = support(averaging(model), (size, size))
    return bottom - top


# --------------------------- 7. the output, whatever the model returns
class Outputs(nn.Module):
    """A 3x3 conv, then the output as `how` returns it; a 9x9 conv (RF 9)
    on the image runs after it, as a debug op or a second output would."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(1, 4, 3)
        self.side = nn.Conv2d(1, 4, 9, padding=3)

    def forward(self, x):
        y = self.a(x)
        out = {"dict": lambda: {"logits": y}, "max": lambda: y.max(dim=1),
               "chunk": lambda: y.chunk(2, dim=1)}[self.how]()
        side = self.side(x)
        if self.how == "dict":
            out["side"] = side
        return out


@pytest.mark.parametrize("how, pick", [
    ("dict", lambda o: o["logits"]), ("max", lambda o: o[0][:, None]),
    ("chunk", lambda o: o[0])])
def test_the_output_is_what_the_model_returns_not_the_last_op(how, pick):
    # Before, the final row and the headline were the 9x9 conv's (RF 9).
    t = receptive_field(Outputs(how), (1, 20, 20))
    assert t.final.r_out == _height(Picked(Outputs(how), pick)) == 3
    assert t.trunk.r_out == 3 and t.headline.startswith("RF 3 px, jump 1 px")
    assert t.final in list(t)  # the output is a row of the table


class AuxHead(nn.Module):
    """Two 3x3 convs, then a deep-supervision head (a 7x7 conv, its own
    global pooling) computed before the main head pools the trunk."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
        self.aux = nn.Sequential(nn.Conv2d(4, 4, 7), nn.AdaptiveAvgPool2d(1))
        self.pool, self.head = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10)

    def forward(self, x):
        f = self.body(x)
        self.aux(f)  # a side branch: its result is not returned
        return self.head(self.pool(f).flatten(1))


def test_a_side_branch_is_not_the_trunk():
    # Before: "RF 11 px ... at 'aux.0'; global from 'aux.1'".
    t = receptive_field(AuxHead(), (1, 24, 24))
    assert t.headline == ("RF 5 px, jump 1 px, at 'body.1' (map 20x20); global from "
                          "'pool' (AdaptiveAvgPool2d) onward")
    assert _height(AuxHead().body, 24) == t.trunk.r_out == 5  # two 3x3 convs
    assert t["aux.0"].r_out == 11  # still in the table, as a side branch


# --------------------------------------- 8. in-place merges are merges
class InPlace(nn.Module):
    """A 3x3 conv (padded) and a 7x7 one (padded 3), merged by `how` in place,
    the result not reassigned."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 7, padding=3)

    def forward(self, x):
        y = self.a(x)
        z = y  # another name for the same tensor
        if self.how == "add_":
            y.add_(self.b(x))
        else:
            y.mul_(self.b(x))
        return torch.relu(z)


@pytest.mark.parametrize("how", ["add_", "mul_"])
def test_in_place_merges_count(how):
    # Before, out.add_(identity) was dropped: RF 3, not 7.
    t = receptive_field(InPlace(how), (1, 20, 20))
    assert t.final.r_out == _height(InPlace(how)) == 7
    assert t.trunk.kind == how


def test_an_in_place_merge_into_a_view_is_refused():
    class IntoSlice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1)
            self.b = nn.Conv2d(1, 1, 5, padding=2)

        def forward(self, x):
            y = self.a(x)
            y[:, :1].add_(self.b(x))  # changes y's first channel only
            return y

    with pytest.raises(RFError, match=r"^operation 'add_' writes into a view of "
                                      r"another tensor \('getitem'\) in place\."):
        receptive_field(IntoSlice(), (1, 20, 20))


# ---------------------------- 9. a softmax whose dim PyTorch infers
class SoftmaxNoDim(nn.Module):
    """A 3x3 conv, then a softmax without a dim: over the flattened map
    (module or function), or over the map's channels (`flat=False`)."""

    def __init__(self, module: bool, flat: bool = True):
        super().__init__()
        self.a, self.flat = nn.Conv2d(1, 2, 3), flat
        self.softmax = nn.Softmax() if module else None

    def forward(self, x):
        y = self.a(x).flatten(1) if self.flat else self.a(x)
        return self.softmax(y) if self.softmax is not None else F.softmax(y)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("module", [False, True])
def test_a_softmax_without_dim_takes_torch_s_dim(module):
    # (N, C * H * W): PyTorch takes dim 1, the flattened map: every output
    # reaches every pixel. Before, it was pointwise (RF 3, not global).
    model = averaging(SoftmaxNoDim(module))
    x = torch.ones(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 0], x)
    assert bool((grad != 0).all())
    f = receptive_field(SoftmaxNoDim(module), (1, 20, 20)).final
    assert (f.global_out, f.r_out) == (True, 3)
    # (N, C, H, W): dim 1 is the channels, and nothing moves. (The channels'
    # weights differ, or each softmax would be 1/2 whatever the input.)
    model = averaging(SoftmaxNoDim(module, flat=False))
    with torch.no_grad():
        model.a.weight[1] *= 2
    t = receptive_field(model, (1, 20, 20))
    assert not t.final.global_out
    top, _, bottom, _ = support(Picked(model, lambda o: o[:, :1]), (20, 20))
    assert t.final.r_out == bottom - top == 3


# ------------------------ 10. weights and biases computed from the input
class DynamicConv(nn.Module):
    """A 3x3 conv, then a 3x3 conv whose `what` (kernel or bias) a Linear
    makes from the map's global mean, or (`what="crop"`) a kernel that is a
    3x3 crop of the map itself."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what
        self.a = nn.Conv2d(1, 1, 3)
        self.weight = nn.Parameter(torch.ones(1, 1, 3, 3))
        self.make = nn.Linear(1, 9 if what == "kernel" else 1)

    def forward(self, x):
        y = self.a(x)
        if self.what == "crop":
            return F.conv2d(y, y[:, :, :3, :3], padding=1)
        g = self.make(y.mean((2, 3)))
        if self.what == "kernel":
            return F.conv2d(y, g.view(1, 1, 3, 3), padding=1)
        return F.conv2d(y, self.weight, g.view(1), padding=1)


@pytest.mark.parametrize("what", ["kernel", "bias"])
def test_a_dynamic_conv_is_global(what):
    # Every output unit reaches every pixel, through the global mean. Before,
    # the conv counted as a local 3x3 one: RF 5.
    assert _height(DynamicConv(what)) == 20
    t = receptive_field(DynamicConv(what), (1, 20, 20))
    assert t.final.global_out and t.final.r_out == 5  # global over the conv path
    assert t.first_global is t["mean"]


def test_a_kernel_cut_from_the_map_is_refused():
    with pytest.raises(RFError, match=r"^operation 'conv2d' also computes from "
                                      r"'getitem', made from the input but no "
                                      r"global pooling\.\nFix: "):
        receptive_field(DynamicConv("crop"), (1, 20, 20))


# ------------------- 11. a Linear or a matmul over one axis of a map
class AlongWidth(nn.Module):
    """A 3x3 conv, then a Linear over the map's width (its last axis), as a
    module, as x @ W, or over its height, as W @ x."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.a, self.fc = how, nn.Conv2d(1, 1, 3), nn.Linear(18, 18)

    def forward(self, x):
        y = self.a(x)
        return {"Linear": lambda: self.fc(y), "x @ W": lambda: y @ self.fc.weight,
                "W @ x": lambda: self.fc.weight @ y}[self.how]()


@pytest.mark.parametrize("how, axis", [("Linear", "width"), ("x @ W", "width"),
                                       ("W @ x", "height")])
def test_a_linear_over_one_axis_of_a_map_is_refused(how, axis):
    # The gradient: each unit sees its whole row (column) of the map, 3 px
    # across: neither a box around it nor the whole image. Before: "global".
    top, left, bottom, right = support(averaging(AlongWidth(how)), (20, 20))
    assert sorted([bottom - top, right - left]) == [3, 20]
    with pytest.raises(RFError, match=f"mixes the {axis} of a map") as err:
        receptive_field(AlongWidth(how), (1, 20, 20))
    assert "'pointwise'" not in str(err.value) and "x.flatten(1)" in str(err.value)


# ----------------------------------- 12. 1x1 maps that are no pooling
class Corners(nn.Module):
    """A 3x3 conv; then its top-left unit plus its bottom-right one (`both`),
    or the top-left unit spread over the whole map."""

    def __init__(self, both: bool):
        super().__init__()
        self.a, self.both = nn.Conv2d(1, 1, 3), both

    def forward(self, x):
        y = self.a(x)
        if self.both:
            return y[:, :, :1, :1] + y[:, :, -1:, -1:]
        return y * y[:, :, :1, :1]


def test_crops_of_two_regions_merged_are_misaligned_or_their_union():
    # Before: RF 3 (one corner's). The unit sees both corners: rows 0-2 and
    # 17-19 of the 20x20 image.
    assert rows_reached(Corners(both=True), 20) == [0, 1, 2, 17, 18, 19]
    with pytest.raises(RFError, match="misaligned in height: start 1.5 vs 18.5"):
        receptive_field(Corners(both=True), (1, 20, 20))
    f = receptive_field(Corners(both=True), (1, 20, 20), misaligned="union").final
    assert (f.r_out, f.start_out) == (20, 10)  # the box spanning both


def test_one_unit_spread_over_the_map_is_refused():
    # Before: RF 3. The central unit sees its own 3x3 box and the corner's.
    assert rows_reached(Corners(both=False), 20) == [0, 1, 2, 9, 10, 11]
    with pytest.raises(RFError, match=r"^operation 'mul' spreads one unit of "
                                      r"'getitem', which is no global pooling, over "
                                      r"every position\.\nFix: pool the whole map"):
        receptive_field(Corners(both=False), (1, 20, 20))


# ------------------------- 13. effective_rf of a module that runs twice
class SharedReLU(nn.Module):
    """Two 3x3 convs and one ReLU module, run after each (torchvision's
    BasicBlock shares its self.relu so)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.relu = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.ReLU()

    def forward(self, x):
        return self.relu(self.c2(self.relu(self.c1(x))))


def test_effective_rf_of_a_shared_module_names_its_run():
    model = SharedReLU()
    for m in (model.c1, model.c2):
        nn.init.constant_(m.weight, 1.0)
        nn.init.constant_(m.bias, 1.0)  # positive: no ReLU cuts a gradient
    t = receptive_field(model, (1, 20, 20))
    image = torch.rand(1, 20, 20)
    # Before, "relu" measured the last run (5 px) while the table's "relu"
    # row is the first (3 px).
    with pytest.raises(RFError, match=r"'relu' runs 2 times in a forward pass\.\n"
                                      r"Fix: say which run to measure: call=1"):
        effective_rf(model, image, "relu")
    for call, row in [(1, "relu"), (2, "relu_2")]:
        erf = effective_rf(model, image, "relu", call=call)
        rows = (erf > 0).nonzero()[:, 0]
        assert int(rows.max() - rows.min() + 1) == t[row].r_out == 2 * call + 1
    with pytest.raises(RFError, match=r"call=3, but 'relu' runs 2 time"):
        effective_rf(model, image, "relu", call=3)


def test_effective_rf_of_a_size_says_to_pass_an_image():
    # Before: AttributeError: 'tuple' object has no attribute 'any'.
    with pytest.raises(RFError, match=r"image is a tuple, not a tensor\.\nFix: "
                                      r"pass an image \(C, H, W\)"):
        effective_rf(SharedReLU(), (1, 20, 20), "c1")


# ------------- 14. a tensor that gives a dtype or a shape is no branch
class Template(nn.Module):
    """A 3x3 conv (RF 3) and a 7x7 one (RF 7), both padded; the output is the
    first, called with the second as a template (`how`: x.type_as(y), ...)."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 7, padding=3)

    def forward(self, x):
        return getattr(self.a(x), self.how)(self.b(x))


@pytest.mark.parametrize("how", ["type_as", "to", "view_as", "reshape_as",
                                 "expand_as"])
def test_a_template_s_values_do_not_reach_the_output(how):
    # Before: type_as and to merged the two (RF 7); view_as and reshape_as
    # were refused as unknown ops.
    t = receptive_field(Template(how), (1, 20, 20))
    assert t.final.r_out == _height(Template(how)) == 3
    assert t.trunk.name == "a" and t.headline.startswith("RF 3 px, jump 1 px")


# ---------------- 15. the one unit of a pooled map, indexed out of it
class IndexedPool(nn.Module):
    """A 3x3 conv, a global pooling (module or amax), y[:, :, 0, 0], a Linear."""

    def __init__(self, amax: bool):
        super().__init__()
        self.amax, self.a, self.fc = amax, nn.Conv2d(1, 4, 3), nn.Linear(4, 10)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        y = self.a(x)
        y = y.amax((2, 3), keepdim=True) if self.amax else self.pool(y)
        return self.fc(y[:, :, 0, 0])


@pytest.mark.parametrize("amax", [False, True])
def test_a_linear_on_the_unit_indexed_out_of_a_pooled_map(amax):
    # Before: "module 'fc' (Linear) mixes the width of a map" (the index left
    # height and width where they were, on the logits' axis).
    top, left, bottom, right = support(averaging(IndexedPool(amax)), (20, 20))
    assert (top, left, bottom, right) == (0, 0, 20, 20)  # every pixel: global
    f = receptive_field(IndexedPool(amax), (1, 20, 20)).final
    assert (f.name, f.global_out, f.r_out) == ("fc", True, 3)
