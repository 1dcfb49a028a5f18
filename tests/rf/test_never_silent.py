"""Where the calculator used to be wrong without a word (issue #34): each case
now gives the right number, checked against an independent truth (the
gradient's support, or arithmetic done here), or a refusal that says why."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import RFError, receptive_field
from tests.rf.helpers import SEBlock, averaging, support, swap


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
    assert row.j_out == "uneven" and row.kernel == (2, 3)
    assert all(float(row.r_out).is_integer() for row in table.rows)
    with pytest.raises(RFError, match=r"^module 'then' \(Conv2d\) slides a 3-px "
                                      "window over unevenly spaced units"):
        receptive_field(Uneven(then_conv=True), (1, 14, 14))


@pytest.mark.parametrize("size, pool5, head", [
    (224, 7, 212),            # pool5 7x7: the adaptive pooling is the identity
    (320, 10, 212 + 2 * 32),  # 10 -> 7: uneven windows of 2 or 3 units
    (64, 2, 212 + 1 * 32),    # 2 -> 7: units repeat; window i = 3 spans both
    (32, 1, 212),             # 1 -> 7: one unit, seven copies
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
    assert t.headline == ("RF global from 'se.0' (AdaptiveAvgPool2d) on; without the "
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
                                 f" on; without the global ops, RF {rf} px")
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
