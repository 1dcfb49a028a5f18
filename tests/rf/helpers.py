"""What the receptive-field tests share: the gradient-based reference, the
hypothesis strategies that build random networks, and the small models the
tests feed the calculator (each defined once, here)."""

from __future__ import annotations

import json
import math
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
from mnist_lib import cli
from mnist_lib.rf import (POINTWISE, SHOWN, RFError, RFRow, RFTable, Window, effective_rf,
                          receptive_field)


def main(argv: list[str]) -> int:
    """The rf command, as `python -m mnist_lib rf ARGV` runs it."""
    return cli.main(["rf", *argv])


ROOT = Path(__file__).resolve().parents[2]


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


def swap(model: nn.Module, cls: type, make) -> nn.Module:
    """`model` with every submodule of class `cls` replaced by `make(it)`."""
    for name, child in list(model.named_children()):
        if isinstance(child, cls):
            setattr(model, name, make(child))
        else:
            swap(child, cls, make)
    return model


_AVERAGE = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d,
            nn.MaxPool3d: nn.AvgPool3d}


def averaging(model: nn.Module) -> nn.Module:
    """`model` made a gradient probe of any depth: eval mode, float64, every
    conv (1-D, 2-D or 3-D) and Linear averaging its inputs (weights 1 /
    fan-in, no bias), every BatchNorm the identity and every max-pool an
    average pool of its window.

    Values stay positive and near 1, so no activation clips them (no sigmoid
    saturates, no ReLU cuts) and a max-pool's gradient is not sent to one
    pixel of a tie: the support of a gradient is then exactly the RF."""
    for pool, average in _AVERAGE.items():
        swap(model, pool, lambda m, average=average: average(
            m.kernel_size, m.stride, m.padding, m.ceil_mode))
    model.eval().double()
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            m.reset_parameters()
    return model


def spans(model: nn.Module, size: tuple[int, ...], channels: int = 1,
          centre: bool = True) -> list[tuple[int, int]]:
    """For each spatial axis of an input of `size` (L; H, W; or D, H, W), the
    first and last + 1 of the positions that reach the output's central unit
    (with `centre=False`, any unit); `averaging(model)` first, so that no
    gradient cancels. `support`, for any number of spatial axes."""
    x = torch.ones(1, channels, *size, dtype=torch.float64, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in `support`: small maps on a busy machine
    try:
        out = model(x)
        if centre and out.dim() == len(size) + 2:
            out = out[(0, slice(None), *(n // 2 for n in out.shape[2:]))]
        (grad,) = torch.autograd.grad(out.sum(), x)
    finally:
        torch.set_num_threads(threads)
    reached = (grad[0].abs().sum(0) != 0).nonzero()
    return [(int(reached[:, d].min()), int(reached[:, d].max()) + 1)
            for d in range(len(size))]


def boxes(row: RFRow, size: tuple[int, ...], clip: bool = False
          ) -> list[tuple[float, float]]:
    """For each spatial axis, the first and last + 1 input position of the
    theoretical RF of the central unit of `row`'s map (an input of `size`);
    with `clip`, cut to the input, as a gradient sees it."""
    nd = len(size)

    def each(v):
        return tuple(v) if isinstance(v, tuple) else (v,) * nd

    found = []
    for n, j, r, start, length, n_in, j_in, r_in, start_in in zip(
            each(row.n_out), each(row.j_out), each(row.r_out), each(row.start_out),
            size, each(row.n_in), each(row.j_in), each(row.r_in), each(row.start_in)):
        if j is None:  # one global unit on this axis: every input unit's RF
            lo, hi = start_in - r_in / 2, start_in + (n_in - 1) * j_in + r_in / 2
        else:
            lo = start + (n // 2) * j - r / 2
            hi = lo + r
        found.append((max(lo, 0), min(hi, length)) if clip else (lo, hi))
    return found


def support(model: nn.Module, size: tuple[int, int], channels: int = 1,
            centre: bool = True) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), exclusive, of the input pixels that reach the
    output's central unit (with `centre=False`, any unit), for an input of
    `size` (H, W); `averaging(model)` first, so that no gradient cancels."""
    x = torch.ones(1, channels, *size, dtype=torch.float64, requires_grad=True)
    # One thread: these small maps gain nothing from more, and on a busy
    # two-core machine two threads waiting on each other took mobilenet's
    # probe from 0.1 s to 30 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = model(x)
        if out.dim() == 4 and centre:
            out = out[0, :, out.shape[2] // 2, out.shape[3] // 2]
        (grad,) = torch.autograd.grad(out.sum(), x)
    finally:
        torch.set_num_threads(threads)
    rows, cols = (grad[0].abs().sum(0) != 0).nonzero(as_tuple=True)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


class Picked(nn.Module):
    """`model`, its output narrowed to one tensor by `pick` (a dict's entry, a
    tuple's first), for the gradient probe (`support`)."""

    def __init__(self, model: nn.Module, pick) -> None:
        super().__init__()
        self.model, self.pick = model, pick

    def forward(self, x):
        return self.pick(self.model(x))


def rows_reached(model: nn.Module, size: int) -> list[int]:
    """The input rows that reach the output's central unit, after
    `averaging(model)`: a set with gaps where a unit sees two regions."""
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = averaging(model)(x)
    (grad,) = torch.autograd.grad(out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum(),
                                  x)
    return sorted(set((grad[0, 0] != 0).nonzero()[:, 0].tolist()))


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


class Residual(nn.Module):
    def __init__(self, stride_a: int, stride_b: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 1, 3, stride_a, 1), nn.Conv2d(1, 1, 3, 1, 1))
        self.b = nn.Conv2d(1, 1, 1, stride_b)

    def forward(self, x):
        return torch.relu(self.a(x) + self.b(x))


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


class SEBlock(nn.Module):
    """A 3x3 conv, a squeeze-and-excitation gate over its map (pool, two 1x1
    convs, sigmoid; x * gate), then a 3x3 conv; `gate=False` leaves the gate
    out (nn.Identity in its place)."""

    def __init__(self, gate: bool = True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 2, 1), nn.ReLU(),
                                nn.Conv2d(2, 4, 1), nn.Sigmoid()) if gate else None

    def forward(self, x):
        y = self.conv1(x)
        return self.conv2(y * self.se(y) if self.se is not None else y)


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


class ComputedStride(nn.Module):
    """A 3x3 conv whose stride forward() computes: from the input's size (2
    on a 28-px image) or, with `values`, from its values (2 where its mean is
    below 1, as for the zeros the calculator runs it on)."""

    def __init__(self, values: bool = False):
        super().__init__()
        self.values = values
        self.weight = nn.Parameter(torch.ones(2, 1, 3, 3))

    def forward(self, x):
        stride = (1 + (x.mean() < 1).long().item() if self.values
                  else x.shape[-1] // 14)
        return F.conv2d(x, self.weight, stride=stride)


class Unshuffle(nn.Module):
    """Space-to-depth (pixel_unshuffle) after a conv, as a function or a module."""

    def __init__(self, module: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.down = nn.PixelUnshuffle(2) if module else (lambda x: F.pixel_unshuffle(x, 2))

    def forward(self, x):
        return self.down(self.conv(x))


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


class TwoBranches(nn.Module):
    """A 3x3 and a padded 5x5 conv, aligned, then `f` of the two maps."""

    def __init__(self, f):
        super().__init__()
        self.a, self.b, self.f = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 4, 5, padding=1), f

    def forward(self, x):
        return self.f(self.a(x), self.b(x))


class SplitRows(nn.Module):
    def forward(self, x):
        top, bottom = x.chunk(2, dim=2)
        return top + bottom


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


def _final(model, size=(2, 20, 20)):
    f = receptive_field(model, size).final
    return f.n_out, f.j_out, f.r_out, f.start_out


class Misaligned(nn.Module):
    """Both branches give 16x16 maps, but b's units sit half a pixel off a's."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(1, 1, 2))

    def forward(self, x):
        return self.a(x) + self.b(x)


def _lines_fit(err: pytest.ExceptionInfo) -> bool:
    return max(map(len, str(err.value).splitlines())) <= 77


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 5, padding=2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Resize(nn.Module):
    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2.0)


class Roll(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, -1)


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


class Blur(nn.Module):
    def forward(self, x):
        return nn.functional.avg_pool2d(x, 3, 1, 1)


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


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


def _scripted():
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated, not gone
        return torch.jit.script(nn.Conv2d(1, 1, 3))


class ResNetDDown(nn.Module):
    """ResNet-D's downsampling shortcut: a 2x2 average pool, then a 1x1 conv,
    beside a 3x3 conv of stride 2 with padding 1."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(1, 8, 1))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class UpsampleNet(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2))


class Conv2dSame(nn.Conv2d):
    """timm's Conv2dSame: TensorFlow's "same" padding, computed from the map's
    size at run time, the extra pixel on the far side."""

    def forward(self, x):
        ih, iw = x.size()[-2:]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        if ph > 0 or pw > 0:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation,
                        self.groups)


# What `from tests.rf.helpers import *` gives each test file (the private
# helpers and the modules too).
__all__ = ['json', 're', 'subprocess', 'sys', 'Path', 'pytest', 'torch', 'nn', 'F', 'assume', 'given', 'settings', 'st', 'MODELS', 'cli', 'POINTWISE', 'SHOWN', 'RFError', 'RFRow', 'RFTable', 'Window', 'effective_rf', 'receptive_field', 'main', 'ROOT', 'empirical_rf', 'torch_agrees_nothing_is_left', 'reachable', 'swap', 'averaging', 'spans', 'boxes', 'support', 'Picked', 'rows_reached', 'layer', 'build', 'Pad', 'Slice', 'edit', 'Residual', 'Shuffle', 'Cropped', 'Row', 'Pooled', 'GLOBAL_POOLS', 'SEBlock', 'Gated', 'FunctionalConvs', 'ComputedStride', 'Unshuffle', 'ThreeChannels', 'SpatialAttention', 'TwoBranches', 'SplitRows', 'ChannelsLastBlock', '_final', 'Misaligned', '_lines_fit', 'Concat', 'Resize', 'Roll', 'Transposed', 'Blur', 'Gate', 'GatedBlock', 'Branchy', '_scripted', 'ResNetDDown', 'UpsampleNet', 'Conv2dSame']
