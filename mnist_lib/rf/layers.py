"""How the layers that slide over a map change its receptive field: convs and
poolings (module or functional, adaptive too), space-to-depth, pads, Linear
layers and matrix products, and branches that meet (add, cat, a
squeeze-and-excitation gate).
Each rule fills in its op's row and returns the function that maps the input's
state to the output's. `mnist_lib.rf` picks the rule for each op of the graph."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .axis import (FLAT_LAST, POINTWISE, Axis, RFError, Spatial, UnsupportedOpError,
                   Window, agreed, as_pair, declarations, declare_hint, node_arg,
                   node_shape, on_positions, op_label)
from .table import RFRow, fmt_cell

# Modules that leave every position where it is (the softmax modules depend on
# their dim: `reshapes.softmax_over`). Softmax2d, the two LRNs and
# ChannelShuffle mix or reorder channels only, at each position.
POINTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm2d,
    nn.LayerNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.Softmax2d,
    nn.ChannelShuffle,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU,
    nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.LogSigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)


def declared_as(mod: nn.Module | None, custom: dict[type, Any]) -> type | None:
    """The class in `custom` that declares `mod` (it is an instance of it), if any."""
    return next((k for k in custom if isinstance(mod, k)), None)


def module_rule(mod: nn.Module, row: RFRow, op: str, custom: dict[type, Any],
                state: Spatial) -> Callable[[Spatial], Spatial]:
    """The rule for a module's op (`op` names it in errors): a declaration in
    `custom` first, then the layers PyTorch ships; an unknown module is refused."""
    declared = declared_as(mod, custom)
    spec = custom[declared] if declared is not None else None
    if spec == POINTWISE or (spec is None and isinstance(mod, POINTWISE_MODULES)):
        row.spatial = False
        return lambda s: s
    if isinstance(spec, Window) and spec.padding == "same":
        return _tf_same_rule(row, op, spec.kernel, spec.stride, spec.dilation)
    if isinstance(spec, Window):
        return window_rule(row, op, spec.kernel, spec.stride, spec.padding,
                           spec.dilation)
    if spec is not None:
        name = type(mod).__name__
        raise RFError(f"custom declares {name} as {spec!r}, neither 'pointwise' nor "
                      f"a Window.\nFix: declare it as one of these:\n"
                      + declarations(name))
    if isinstance(mod, nn.Conv2d):
        return _conv_rule(row, op, mod.kernel_size, mod.stride, mod.padding,
                          mod.dilation)
    if isinstance(mod, nn.ConvTranspose2d) and as_pair(mod.stride) == (1, 1):
        return _transposed_rule(row, op, mod.kernel_size, mod.padding,
                                mod.output_padding, mod.dilation)
    if isinstance(mod, nn.PixelUnshuffle):
        return window_rule(row, op, mod.downscale_factor, mod.downscale_factor, 0, 1)
    if isinstance(mod, nn.MaxPool2d):
        return window_rule(row, op, mod.kernel_size, mod.stride or mod.kernel_size,
                           mod.padding, mod.dilation, ceil_mode=mod.ceil_mode)
    if isinstance(mod, nn.AvgPool2d):
        return window_rule(row, op, mod.kernel_size, mod.stride or mod.kernel_size,
                           mod.padding, 1, ceil_mode=mod.ceil_mode)
    if isinstance(mod, nn.LPPool2d):  # an average pool of x**p, without padding
        return window_rule(row, op, mod.kernel_size, mod.stride or mod.kernel_size,
                           0, 1, ceil_mode=mod.ceil_mode)
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return lambda s: adaptive_rule(s, mod.output_size, row, op)
    if isinstance(mod, _PADS):
        # A 1-d pad pads the last axis (the width), a 3-d one the last three
        # (the channels too): of a (N, C, H, W) map, left and right, then top
        # and bottom.
        left, right, top, bottom = (list(mod.padding) + [0, 0])[:4]
        rule = window_rule(row, op, 1, 1, (top, left), 1, pad_hi=(bottom, right))
        row.padding, row.dilation = agreed((top, bottom), (left, right)), None
        return rule
    if isinstance(mod, nn.Linear):
        row.ch_in, row.ch_out = mod.in_features, mod.out_features
        return linear_rule(state, row, op)
    raise UnsupportedOpError(declare_hint(op, type(mod).__name__))


_PADS = (nn.ZeroPad1d, nn.ConstantPad1d, nn.ReflectionPad1d, nn.ReplicationPad1d,
         nn.CircularPad1d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
         nn.ReplicationPad2d, nn.CircularPad2d, nn.ZeroPad3d, nn.ConstantPad3d,
         nn.ReflectionPad3d, nn.ReplicationPad3d, nn.CircularPad3d)


def window_rule(row: RFRow, op: str, kernel, stride, padding, dilation,
                ceil_mode=False, pad_hi=None) -> Callable[[Spatial], Spatial]:
    """A sliding window (a conv, a pooling); `op` names it in errors."""
    k, s, p, d = as_pair(kernel), as_pair(stride), as_pair(padding), as_pair(dilation)
    p_hi = as_pair(pad_hi) if pad_hi is not None else p
    row.kernel, row.stride, row.dilation = agreed(*k), agreed(*s), agreed(*d)
    row.padding = agreed(*p) if p == p_hi else (p, p_hi)

    def rule(st: Spatial) -> Spatial:
        if st.flat:
            raise RFError(f"{op} slides a window over a flattened tensor.\n"
                          "Fix: flatten after the last window, not before it.")
        return Spatial(st.h.window(k[0], s[0], p[0], p_hi[0], d[0], ceil_mode, op),
                       st.w.window(k[1], s[1], p[1], p_hi[1], d[1], ceil_mode, op))
    return rule


def _conv_rule(row: RFRow, op: str, kernel, stride, padding, dilation
               ) -> Callable[[Spatial], Spatial]:
    """A convolution's window; `padding` may also be 'same' or 'valid'."""
    if padding == "valid":
        padding = 0
    if padding == "same":
        k_eff = [d * (k - 1) + 1 for k, d in zip(as_pair(kernel), as_pair(dilation))]
        total = [ke - 1 for ke in k_eff]
        # PyTorch pads the extra pixel of an even total on the far side.
        return window_rule(row, op, kernel, stride, [t // 2 for t in total],
                           dilation, pad_hi=[t - t // 2 for t in total])
    return window_rule(row, op, kernel, stride, padding, dilation)


def _tf_same_rule(row: RFRow, op: str, kernel, stride, dilation
                  ) -> Callable[[Spatial], Spatial]:
    """TensorFlow's "same" padding (a declared `Window(..., padding="same")`):
    n_out = ceil(n / s), the map padded by max((n_out - 1) * s + k_eff - n, 0)
    pixels, the extra one of an odd total on the far side."""
    k, s, d = as_pair(kernel), as_pair(stride), as_pair(dilation)

    def rule(st: Spatial) -> Spatial:
        pads = []
        for n, ki, si, di in zip((st.h.n, st.w.n), k, s, d):
            total = max((-(-int(n) // si) - 1) * si + di * (ki - 1) + 1 - int(n), 0)
            pads.append((total // 2, total - total // 2))
        (lo_h, hi_h), (lo_w, hi_w) = pads
        return window_rule(row, op, k, s, (lo_h, lo_w), d, pad_hi=(hi_h, hi_w))(st)
    return rule


def _transposed_rule(row: RFRow, op: str, kernel, padding, output_padding, dilation
                     ) -> Callable[[Spatial], Spatial]:
    """A transposed convolution of stride 1: the convolution it equals, whose
    padding is d * (k - 1) - p on each side, plus output_padding on the far
    side; the row shows that padding. (With a larger stride it upsamples,
    which no window describes: `field._refuse_upsampling`.)"""
    k, p, extra, d = (as_pair(v) for v in (kernel, padding, output_padding, dilation))
    lo = [di * (ki - 1) - pi for ki, pi, di in zip(k, p, d)]
    return window_rule(row, op, k, 1, lo, d, pad_hi=[a + b for a, b in zip(lo, extra)])


def _computed(settings: list[Any]) -> bool:
    """Whether a functional op's settings (a window, a stride) are computed at
    run time: graph nodes, alone or in a tuple, rather than numbers."""
    return any(isinstance(v, fx.Node) or (isinstance(v, (tuple, list)) and any(
        isinstance(x, fx.Node) for x in v)) for v in settings)


def functional_conv(node: fx.Node, row: RFRow, transposed: bool = False
                     ) -> Callable[[Spatial], Spatial]:
    """F.conv2d(x, weight, bias, stride, padding, dilation, groups), or
    F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
    dilation) of stride 1: the kernel is the weight's last two axes."""
    weight, bias = node_arg(node, "weight", 1), node_arg(node, "bias", 2)
    stride, padding = node_arg(node, "stride", 3, 1), node_arg(node, "padding", 4, 0)
    settings = ([stride, padding, node_arg(node, "output_padding", 5, 0),
                 node_arg(node, "dilation", 7, 1)] if transposed
                else [stride, padding, node_arg(node, "dilation", 5, 1)])
    if _computed(settings):
        raise RFError(f"{op_label(node)} has a stride, padding or dilation computed "
                      "at run time.\nFix: give them as numbers, or use nn.Conv2d.")
    shape = node_shape(weight) if isinstance(weight, fx.Node) else None
    if shape is None or len(shape) != 4:
        raise RFError(f"{op_label(node)} convolves with a weight of unknown shape.\n"
                      "Fix: use nn.Conv2d, or a weight that is a tensor of the model.")
    row.spatial = True
    row.params = sum(math.prod(node_shape(t) or ()) for t in (weight, bias)
                     if isinstance(t, fx.Node))
    if not transposed:
        return _conv_rule(row, op_label(node), shape[2:], *settings)
    if as_pair(stride) != (1, 1):  # field._refuse_upsampling says why, if it enlarges
        raise UnsupportedOpError(f"{op_label(node)} is a transposed convolution of "
                                 f"stride {stride}, which no window describes.\n"
                                 "Fix: give the calculator the part before it.")
    return _transposed_rule(row, op_label(node), shape[2:], *settings[1:])


def adaptive_rule(st: Spatial, size: Any, row: RFRow, op: str) -> Spatial:
    """Adaptive pooling to `size`: global when it is 1; a window of n/size when
    that divides the map; else PyTorch's real windows, unevenly spaced. `op`
    names it in errors."""
    size = as_pair(size) if size is not None else (None, None)
    axes = []
    kernels = []
    for ax, o in zip((st.h, st.w), size):
        o = ax.n if o is None else o
        if o == 1:
            axes.append(ax.whole())
            kernels.append(ax.n)
            continue
        n = int(ax.n)
        if n % o == 0:  # an ordinary window: kernel and stride n / o
            axes.append(ax.window(n // o, n // o, 0, 0, op=op))
            kernels.append(n // o)
            continue
        # PyTorch's window i covers [floor(i*n/o), ceil((i+1)*n/o)). Where the
        # widths or the steps differ (or a map smaller than o repeats its
        # units), the units have no single jump; the largest window gives the
        # largest RF.
        starts = [(i * n) // o for i in range(o)]
        ends = [-((-(i + 1) * n) // o) for i in range(o)]
        widths = [e - b for b, e in zip(starts, ends)]
        steps = [b2 - b1 for b1, b2 in zip(starts, starts[1:])]
        even = len(set(widths)) == 1 and len(set(steps)) == 1 and steps[0] > 0
        kernels.append(tuple(sorted(set(widths))) if len(set(widths)) > 1
                       else widths[0])
        axes.append(Axis(o, max(steps) * ax.j, ax.r + (max(widths) - 1) * ax.j,
                         ax.start + (widths[0] - 1) / 2 * ax.j,
                         uneven=None if even else ax, glob=ax.glob))
    row.kernel = agreed(*kernels)
    return Spatial(axes[0], axes[1])


def linear_rule(state: Spatial, row: RFRow, op: str, axis: int = -1
                ) -> Callable[[Spatial], Spatial]:
    """A Linear mixes its input's last axis (a matrix product W @ x, `axis`
    -2): the whole map when the positions are there, merged (after
    x.flatten(1)); channels otherwise, after a permute to channels-last (a 1x1
    convolution, in ConvNeXt) or x.flatten(2).transpose(1, 2). Over the width
    (or height) of a map it is refused, naming `op`."""
    if axis not in state.axes:
        row.spatial = False
        return lambda s: s
    if not state.flat:
        # Each unit would mix its whole row (or column) and keep its place:
        # no jump and start describe that.
        what = "width" if state.axes.index(axis) == 1 else "height"
        raise RFError(
            f"{op} mixes the {what} of a map, one of its axes.\nFix: for a Linear "
            "over the whole map flatten it first, x.flatten(1); over channels, "
            "move them last, x.permute(0, 2, 3, 1).")
    row.spatial = True
    return _linear_state


def _linear_state(st: Spatial) -> Spatial:
    """A Linear after a spatial map sees all of it (its input was flattened)."""
    return Spatial(st.h.whole(), st.w.whole(), flat=True, axes=FLAT_LAST)


def matmul_rule(node: fx.Node, inputs: list[fx.Node], states: dict[fx.Node, Spatial],
                row: RFRow) -> Callable[[Spatial], Spatial]:
    """x @ W contracts x's last axis, W @ x its second to last: a Linear over
    that axis (`linear_rule`). Of two tensors computed from the input (as in
    attention) every unit mixes positions: refused."""
    op = op_label(node)
    if len(inputs) > 1:
        raise RFError(f"{op} multiplies two tensors computed from the input, as "
                      "attention does: it mixes positions.\nFix: give the "
                      "calculator the part before it.")
    src = inputs[0]
    shape_in, shape_out = node_shape(src), node_shape(node)
    first = node_arg(node, "input", 0) is src
    if shape_in is None or shape_out is None or len(shape_in) != len(shape_out) \
            or len(shape_in) < 2:
        raise RFError(f"{op} multiplies a tensor that is not a batch of matrices "
                      "by a weight.\nFix: use nn.Linear, or a weight of 2 axes.")
    return linear_rule(states[src], row, op, -1 if first else -2)


def merge_rule(node: fx.Node, inputs: list[fx.Node], states: dict[fx.Node, Spatial],
               union: bool = False) -> Spatial:
    """Branches meeting at add/cat/...: check alignment, keep the largest RF.
    With `union`, branches of the same map size and jump whose units are
    centred apart (ResNet-D's pooled shortcut) give each unit the box that
    spans both of theirs: it starts where the first starts and ends where the
    last ends. Without it they are refused, as a misalignment is most often
    a mistake (a padding off by one)."""
    if node.target is torch.cat:
        dim = node_arg(node, "dim", 1, 0)
        shape = node_shape(inputs[0])
        if shape is not None and on_positions(states[inputs[0]], dim, len(shape)):
            # Units of different maps side by side: no single jump and start.
            raise RFError(f"{op_label(node)} joins maps along their height or width."
                          "\nFix: concatenate along the channels (dim=1), or stop "
                          "before this op.")
    # A global unit spread over a map (x * gate, the squeeze-and-excitation
    # block; the gate expanded with expand_as) has no position to align: it
    # gives every unit its RF. One unit that is no global pooling cannot be
    # spread: each unit would see its own box and that unit's, far apart.
    out = node_shape(node)
    for i in inputs:
        if spreads(i, out) and not global_unit(states[i]):
            raise RFError(
                f"{op_label(node)} spreads one unit of {i.name!r}, which is no "
                "global pooling, over every position.\nFix: pool the whole map "
                "for a gate, x.mean((2, 3), keepdim=True), or stop before this op.")
    local = [i for i in inputs if not global_unit(states[i])] or inputs
    first = states[local[0]]
    apart = False
    for other in local[1:]:
        st = states[other]
        if st.axes != first.axes:
            raise RFError(f"branches {local[0].name!r} and {other.name!r} meet at "
                          f"{node.name!r} with height and width on different axes.\n"
                          "Fix: permute one of them back to (N, C, H, W) first.")
        for axis, a, b in (("height", first.h, st.h), ("width", first.w, st.w)):
            # Single units have no jump to compare: their centres must agree.
            single = a.n == 1 == b.n
            if (a.n, a.j, a.start) == (b.n, b.j, b.start) or (
                    single and (a.start == b.start or a.glob and b.glob)):
                continue
            # Units added or concatenated must be centred on the same pixels,
            # or (with `union`) at least step alike, for one box per unit.
            boxes = a.n == b.n and (a.j == b.j or single) and not (
                a.uneven or b.uneven)
            if union and boxes:
                apart = True
                continue
            fix = ("make their strides and paddings match, or pass "
                   "misaligned='union' for\n    the box that spans both"
                   if boxes else "make their strides and paddings match")
            raise RFError(
                f"branches {local[0].name!r} and {other.name!r} meet at "
                f"{node.name!r} misaligned in {axis}: {_apart(a, b)}.\n"
                f"Fix: {fix}, or stop before this merge.")
    # The merged unit sees what each branch sees: the largest RF (or the box
    # spanning the branches'), and a global one if any branch is global
    # (x * gate, after an SE block's pool).
    axes = []
    for pick in (lambda st: st.h, lambda st: st.w):
        own = [pick(states[i]) for i in local]
        every = [pick(states[i]) for i in inputs]
        ax = _span(own) if apart else max(own, key=lambda a: a.r)
        axes.append(replace(ax, r=max([ax.r] + [a.r for a in every]),
                            glob=any(a.glob for a in every)))
    return Spatial(axes[0], axes[1], any(states[i].flat for i in local), first.axes)


def _span(axes: list[Axis]) -> Axis:
    """One axis of units whose box spans the boxes of `axes` (same n and j)."""
    lo = min(a.start - a.r / 2 for a in axes)
    hi = max(a.start + a.r / 2 for a in axes)
    return replace(axes[0], r=hi - lo, start=(lo + hi) / 2)


def _apart(a: Axis, b: Axis) -> str:
    """How two branches' units differ along one axis, e.g. "start 0.5 vs 1"."""
    return ", ".join(f"{what} {fmt_cell(x)} vs {fmt_cell(y)}" for what, x, y in
                     (("n", a.n, b.n), ("jump", a.j, b.j), ("start", a.start, b.start))
                     if x != y)


def spreads(src: fx.Node, out: tuple[int, ...] | None) -> bool:
    """Whether `src` is a 1x1 map that broadcasting spreads over a larger `out`."""
    shape = node_shape(src)
    return (out is not None and shape is not None and len(out) == len(shape) == 4
            and shape[2:] == (1, 1) and out[2:] != (1, 1))


def global_unit(state: Spatial) -> bool:
    """Whether every unit of `state` is one global unit: a whole map pooled
    to one unit, or copies of it (`Axis.copies`). Spread over a map, it
    brings every unit the same whole-map summary."""
    return all(ax.copies or (ax.n == 1 and ax.glob and ax.uneven is None)
               for ax in (state.h, state.w))


def pad_rule(node: fx.Node, row: RFRow) -> Callable[[Spatial], Spatial]:
    """F.pad(x, (left, right, top, bottom)): like nn.ZeroPad2d (whatever the
    mode: a reflected pixel is still inside the RF). Negative pads crop."""
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    if not all(isinstance(v, int) for v in pad):
        raise RFError(f"{op_label(node)} pads by amounts computed at run time.\n"
                      "Fix: give them as numbers, or pad with nn.ZeroPad2d.")
    left, right, top, bottom = (list(pad) + [0, 0, 0, 0])[:4]
    row.padding = agreed((top, bottom), (left, right))
    row.kernel, row.stride = 1, 1
    op = op_label(node)
    return lambda s: replace(s, h=s.h.window(1, 1, top, bottom, op=op),
                             w=s.w.window(1, 1, left, right, op=op))


def functional_pool(node: fx.Node, row: RFRow) -> Callable[[Spatial], Spatial]:
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"]
    if node.target is F.avg_pool2d:
        names = ["input", "kernel_size", "stride", "padding", "ceil_mode"]
    args = dict(zip(names, node.args)) | dict(node.kwargs)
    k = args["kernel_size"]
    row.spatial = True
    settings = [v for name, v in args.items() if name != "input"]
    if _computed(settings):
        # A window computed at run time, F.avg_pool2d(x, x.size()[2:]): followed
        # when it pools the whole map, the usual reason to write it.
        if tuple((node_shape(node) or ())[2:]) == (1, 1):
            return lambda s: Spatial(s.h.whole(), s.w.whole())
        raise RFError(f"{op_label(node)} pools with a window computed at run time.\n"
                      "Fix: give it as numbers, or pool the whole map with "
                      "F.adaptive_avg_pool2d(x, 1).")
    return window_rule(row, op_label(node), k, args.get("stride") or k,
                       args.get("padding", 0), args.get("dilation", 1),
                       args.get("ceil_mode", False))
