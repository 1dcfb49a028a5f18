"""How the windows that slide over a map change its receptive field, over
one, two or three spatial axes: convs (transposed ones of stride 1 too),
poolings (max, average, power-average, adaptive), space-to-depth and pads,
as modules and as functions. Two tables say which rule each gets,
`MODULE_RULES` and `FUNCTION_RULES`; each rule fills in its op's row and
returns the function that maps the input's state to the output's."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .axis import (INPUT_FORMS, Axis, RFError, Spatial, UnsupportedOpError, agreed,
                   channels_first, declare_hint, node_arg, node_shape, op_label,
                   per_axis, settled, shape_letters, spatial_words)
from .table import RFRow

Rule = Callable[[Spatial], Spatial]


def window_rule(row: RFRow, op: str, kernel, stride, padding, dilation, *,
                ceil_mode=False, pad_hi=None, nd: int | None = None) -> Rule:
    """A sliding window (a conv, a pooling) over the last `nd` axes of its
    input (None: a declared Window, over as many as the map has); `op` names
    it in errors. Each setting is one value for every axis or one per axis;
    `pad_hi`, the padding on the far side where it differs from `padding`."""

    def rule(st: Spatial) -> Spatial:
        if st.flat:
            raise RFError(f"{op} slides a window over a flattened tensor.\n"
                          "Fix: flatten after the last window, not before it.")
        n = nd or st.nd
        k, s, p, d = (per_axis(v, n) for v in (kernel, stride, padding, dilation))
        hi = per_axis(pad_hi, n) if pad_hi is not None else p
        if st.nd != n or any(len(v) != n for v in (k, s, p, d, hi)):
            raise axes_mismatch(op, n if nd else len(k), st, declared=nd is None)
        if st.axes != channels_first(n):
            raise _moved(op, st)
        row.kernel, row.stride, row.dilation = agreed(*k), agreed(*s), agreed(*d)
        row.padding = agreed(*p) if p == hi else tuple(
            v[0] if n == 1 else v for v in (p, hi))
        return Spatial(tuple(ax.window(*w, ceil_mode=ceil_mode, op=op)
                             for ax, w in zip(st.dims, zip(k, s, p, hi, d))))
    return rule


def axes_mismatch(op: str, n: int, st: Spatial, declared: bool = False) -> RFError:
    """The refusal of a window over `n` axes on a map of another number of
    spatial axes: a Conv2d given a sequence, or a `declared` Window((3, 3))
    on a clip."""
    what = "1 spatial axis" if st.nd == 1 else f"{st.nd} spatial axes"
    fix = ("declare a Window of one size for every axis, or one per axis."
           if declared else f"give input_size one size per axis it slides over, "
           f"{INPUT_FORMS.get(n, 'one size an axis')}.")
    return RFError(f"{op} slides a {n}-D window over a map of {what} "
                   f"({spatial_words(st.nd)}).\nFix: {fix}")


def _moved(op: str, st: Spatial) -> RFError:
    """The refusal of a window (a conv, a pooling), which reads the spatial
    axes as its input's last ones, on a map whose axes a permute moved."""
    last = {1: "last axis", 2: "last two axes", 3: "last three axes"}[st.nd]
    words = spatial_words(st.nd).replace(" or ", " and ")
    return RFError(f"{op} gets {words} not as its {last}.\nFix: permute the "
                   f"tensor back to (N, C, {shape_letters(st.nd)}) before this op.")


def _conv_rule(row: RFRow, op: str, nd: int, kernel, stride, padding, dilation
               ) -> Rule:
    """A convolution's window; `padding` may also be 'same' or 'valid'."""
    if padding == "valid":
        padding = 0
    if padding == "same":
        k_eff = [d * (k - 1) + 1 for k, d in zip(per_axis(kernel, nd),
                                                 per_axis(dilation, nd))]
        total = [ke - 1 for ke in k_eff]
        # PyTorch pads the extra pixel of an even total on the far side.
        return window_rule(row, op, kernel, stride, [t // 2 for t in total],
                           dilation, pad_hi=[t - t // 2 for t in total], nd=nd)
    return window_rule(row, op, kernel, stride, padding, dilation, nd=nd)


def tf_same_rule(row: RFRow, op: str, kernel, stride, dilation) -> Rule:
    """TensorFlow's "same" padding (a declared `Window(..., padding="same")`):
    n_out = ceil(n / s), the map padded by max((n_out - 1) * s + k_eff - n, 0)
    pixels, the extra one of an odd total on the far side."""

    def rule(st: Spatial) -> Spatial:
        k, s, d = (per_axis(v, st.nd) for v in (kernel, stride, dilation))
        lo, hi = [], []
        for ax, ki, si, di in zip(st.dims, k, s, d):
            n = int(ax.n)
            total = max((-(-n // si) - 1) * si + di * (ki - 1) + 1 - n, 0)
            lo.append(total // 2)
            hi.append(total - total // 2)
        return window_rule(row, op, k, s, lo, d, pad_hi=hi)(st)
    return rule


def _transposed_rule(row: RFRow, op: str, nd: int, kernel, padding, output_padding,
                     dilation) -> Rule:
    """A transposed convolution of stride 1: the convolution it equals, whose
    padding is d * (k - 1) - p on each side, plus output_padding on the far
    side; the row shows that padding. (With a larger stride it upsamples,
    which no window describes: `field._refuse_upsampling`.)"""
    k, p, extra, d = (per_axis(v, nd) for v in (kernel, padding, output_padding,
                                                dilation))
    lo = [di * (ki - 1) - pi for ki, pi, di in zip(k, p, d)]
    return window_rule(row, op, k, 1, lo, d, pad_hi=[a + b for a, b in zip(lo, extra)],
                       nd=nd)


# ------------------------------------------------------------- modules
def _conv(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    return _conv_rule(row, op, nd, mod.kernel_size, mod.stride, mod.padding,
                      mod.dilation)


def _conv_transpose(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    if any(s != 1 for s in per_axis(mod.stride, nd)):
        # field._refuse_upsampling says why, where it enlarges the map.
        raise UnsupportedOpError(declare_hint(op, type(mod).__name__))
    return _transposed_rule(row, op, nd, mod.kernel_size, mod.padding,
                            mod.output_padding, mod.dilation)


def pool_rule(row: RFRow, op: str, nd: int, kernel, stride, padding, dilation=1,
              ceil_mode=False) -> Rule:
    """A pooling window. One that covers the whole map, without padding
    (AvgPool2d(4) on a 4x4 map), is a global pooling at this input's size:
    its one unit depends on every unit of the map, as after
    AdaptiveAvgPool2d(1), so the table marks it global and quotes the RF
    before it, whichever way the pooling is written."""
    window = window_rule(row, op, kernel, stride, padding, dilation,
                         ceil_mode=ceil_mode, nd=nd)

    def rule(st: Spatial) -> Spatial:
        if (st.nd == nd and st.axes == channels_first(nd)
                and not any(per_axis(padding, nd))
                and all(d == 1 for d in per_axis(dilation, nd))
                and per_axis(kernel, nd) == tuple(ax.n for ax in st.dims)):
            row.kernel = agreed(*per_axis(kernel, nd))
            return st.each(Axis.whole)
        return window(st)
    return rule


def _max_pool(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    return pool_rule(row, op, nd, mod.kernel_size, mod.stride or mod.kernel_size,
                     mod.padding, mod.dilation, ceil_mode=mod.ceil_mode)


def _avg_pool(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    return pool_rule(row, op, nd, mod.kernel_size, mod.stride or mod.kernel_size,
                     mod.padding, ceil_mode=mod.ceil_mode)


def _lp_pool(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    # An average pool of x**p, without padding.
    return pool_rule(row, op, nd, mod.kernel_size, mod.stride or mod.kernel_size,
                     0, ceil_mode=mod.ceil_mode)


def _adaptive(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    return lambda s: adaptive_rule(s, mod.output_size, row, op, nd)


def _unshuffle(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    # Each r x r block becomes one position's channels: a window r, stride r.
    return window_rule(row, op, mod.downscale_factor, mod.downscale_factor, 0, 1,
                       nd=nd)


def _pad(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    return pad_rule(mod.padding, row, op)


# Which rule a module gets, and over how many spatial axes (its last ones) it
# slides; None: any (a pad names the axes it pads). A subclass gets its
# base's rule.
MODULE_RULES: dict[type, tuple[int | None, Callable[..., Rule]]] = {
    nn.Conv1d: (1, _conv), nn.Conv2d: (2, _conv), nn.Conv3d: (3, _conv),
    nn.ConvTranspose1d: (1, _conv_transpose), nn.ConvTranspose2d: (2, _conv_transpose),
    nn.ConvTranspose3d: (3, _conv_transpose),
    nn.MaxPool1d: (1, _max_pool), nn.MaxPool2d: (2, _max_pool),
    nn.MaxPool3d: (3, _max_pool),
    nn.AvgPool1d: (1, _avg_pool), nn.AvgPool2d: (2, _avg_pool),
    nn.AvgPool3d: (3, _avg_pool),
    nn.LPPool1d: (1, _lp_pool), nn.LPPool2d: (2, _lp_pool), nn.LPPool3d: (3, _lp_pool),
    nn.AdaptiveAvgPool1d: (1, _adaptive), nn.AdaptiveAvgPool2d: (2, _adaptive),
    nn.AdaptiveAvgPool3d: (3, _adaptive), nn.AdaptiveMaxPool1d: (1, _adaptive),
    nn.AdaptiveMaxPool2d: (2, _adaptive), nn.AdaptiveMaxPool3d: (3, _adaptive),
    nn.PixelUnshuffle: (2, _unshuffle),
    **{pad: (None, _pad) for pad in (
        nn.ZeroPad1d, nn.ConstantPad1d, nn.ReflectionPad1d, nn.ReplicationPad1d,
        nn.CircularPad1d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
        nn.ReplicationPad2d, nn.CircularPad2d, nn.ZeroPad3d, nn.ConstantPad3d,
        nn.ReflectionPad3d, nn.ReplicationPad3d, nn.CircularPad3d)},
}


def module_entry(cls: type) -> tuple[int | None, Callable[..., Rule]] | None:
    """`MODULE_RULES`' entry for module class `cls` or the nearest class it
    derives from (a subclass of nn.Conv2d kept whole is a Conv2d); None if
    none."""
    return next((MODULE_RULES[c] for c in cls.__mro__ if c in MODULE_RULES), None)


# ----------------------------------------------------------- functions
def _call_args(node: fx.Node, names: list[str]) -> dict[str, Any]:
    """A call's arguments by name, whether given by position or keyword."""
    return dict(zip(names, node.args)) | dict(node.kwargs)


def _functional_conv(node: fx.Node, row: RFRow, nd: int) -> Rule:
    """F.conv2d(x, weight, bias, stride, padding, dilation, groups), and its
    1-D and 3-D forms: the kernel is the weight's last `nd` axes."""
    args = _call_args(node, ["input", "weight", "bias", "stride", "padding",
                             "dilation", "groups"])
    op = op_label(node)
    settings = [settled(args.get(name, default), op, name) for name, default in
                (("stride", 1), ("padding", 0), ("dilation", 1))]
    shape = _weight_shape(node, args, nd, row)
    return _conv_rule(row, op, nd, shape[2:], *settings)


def _functional_transposed(node: fx.Node, row: RFRow, nd: int) -> Rule:
    """F.conv_transpose2d(x, weight, bias, stride, padding, output_padding,
    groups, dilation) of stride 1, and its 1-D and 3-D forms."""
    args = _call_args(node, ["input", "weight", "bias", "stride", "padding",
                             "output_padding", "groups", "dilation"])
    op = op_label(node)
    stride, padding, extra, dilation = (
        settled(args.get(name, default), op, name) for name, default in
        (("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1)))
    shape = _weight_shape(node, args, nd, row)
    if any(s != 1 for s in per_axis(stride, nd)):
        # field._refuse_upsampling says why, where it enlarges the map.
        raise UnsupportedOpError(f"{op} is a transposed convolution of stride "
                                 f"{stride}, which no window describes.\n"
                                 "Fix: give the calculator the part before it.")
    return _transposed_rule(row, op, nd, shape[2:], padding, extra, dilation)


def _weight_shape(node: fx.Node, args: dict[str, Any], nd: int, row: RFRow
                  ) -> tuple[int, ...]:
    """The shape of a functional conv's weight (its kernel is the last `nd`
    axes); an RFError if unknown. Fills in the row's parameters."""
    weight, bias = args.get("weight"), args.get("bias")
    shape = node_shape(weight) if isinstance(weight, fx.Node) else None
    if shape is None or len(shape) != nd + 2:
        raise RFError(f"{op_label(node)} convolves with a weight of unknown shape.\n"
                      f"Fix: use nn.Conv{nd}d, or a weight that is a tensor of the "
                      "model.")
    row.params = sum(math.prod(node_shape(t) or ()) for t in (weight, bias)
                     if isinstance(t, fx.Node))
    return shape


_POOL_ARGS = {
    "max": ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"],
    "avg": ["input", "kernel_size", "stride", "padding", "ceil_mode"],
    "lp": ["input", "norm_type", "kernel_size", "stride", "ceil_mode"],
}


def _functional_pool(node: fx.Node, row: RFRow, nd: int, kind: str) -> Rule:
    """F.max_pool2d, F.avg_pool2d, F.lp_pool2d and their 1-D and 3-D forms,
    as the modules (`pool_rule`). A window computed from the map's size
    (F.avg_pool2d(x, x.size()[2:])) is what it is at the input's size: a
    global pooling where it covers the whole map, the usual reason to write
    it; else that window (on a 12x7 map, x.size(3) is a 7x7 window, which
    leaves rows 7-11 out)."""
    args = _call_args(node, _POOL_ARGS[kind])
    op = op_label(node)
    k, stride, padding, dilation = (
        settled(args.get(name, default), op, name) for name, default in
        (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1)))
    ceil_mode = settled(args.get("ceil_mode", False), op, "ceil_mode")
    return pool_rule(row, op, nd, k, stride or k, padding, dilation,
                     ceil_mode=ceil_mode)


def _functional_adaptive(node: fx.Node, row: RFRow, nd: int) -> Rule:
    size = settled(node_arg(node, "output_size", 1), op_label(node), "output_size")
    return lambda s: adaptive_rule(s, size, row, op_label(node), nd)


def _functional_unshuffle(node: fx.Node, row: RFRow, nd: int) -> Rule:
    op = op_label(node)
    factor = settled(node_arg(node, "downscale_factor", 1), op, "downscale_factor")
    return window_rule(row, op, factor, factor, 0, 1, nd=nd)


def _functional_pad(node: fx.Node, row: RFRow, nd: int) -> Rule:
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    return pad_rule(settled(pad, op_label(node), "pad"), row, op_label(node))


def _pools(kind: str, *functions: Any) -> dict[Any, tuple[int, Callable[..., Rule]]]:
    """Table entries for the 1-D, 2-D and 3-D forms of a pooling `kind`."""
    return {f: (nd, lambda node, row, nd, kind=kind: _functional_pool(
        node, row, nd, kind)) for nd, f in functions}


# Which rule a function gets, and over how many spatial axes (its input's
# last ones) it slides; None: any (a pad names the axes it pads).
FUNCTION_RULES: dict[Any, tuple[int | None, Callable[..., Rule]]] = {
    **{f: (nd, _functional_conv) for nd, f in (
        (1, F.conv1d), (2, F.conv2d), (3, F.conv3d),
        (1, torch.conv1d), (2, torch.conv2d), (3, torch.conv3d))},
    **{f: (nd, _functional_transposed) for nd, f in (
        (1, F.conv_transpose1d), (2, F.conv_transpose2d), (3, F.conv_transpose3d),
        (1, torch.conv_transpose1d), (2, torch.conv_transpose2d),
        (3, torch.conv_transpose3d))},
    **_pools("max", (1, F.max_pool1d), (2, F.max_pool2d), (3, F.max_pool3d),
             (1, torch.max_pool1d), (2, torch.max_pool2d), (3, torch.max_pool3d)),
    **_pools("avg", (1, F.avg_pool1d), (2, F.avg_pool2d), (3, F.avg_pool3d)),
    **_pools("lp", (1, F.lp_pool1d), (2, F.lp_pool2d), (3, F.lp_pool3d)),
    **{f: (nd, _functional_adaptive) for nd, f in (
        (1, F.adaptive_avg_pool1d), (2, F.adaptive_avg_pool2d),
        (3, F.adaptive_avg_pool3d), (1, F.adaptive_max_pool1d),
        (2, F.adaptive_max_pool2d), (3, F.adaptive_max_pool3d))},
    F.pixel_unshuffle: (2, _functional_unshuffle),
    torch.pixel_unshuffle: (2, _functional_unshuffle),
    F.pad: (None, _functional_pad),
}


def function_rule(node: fx.Node, row: RFRow) -> Rule | None:
    """The rule `FUNCTION_RULES` gives the function `node` calls; None if it
    has none there."""
    found = FUNCTION_RULES.get(node.target) if node.op == "call_function" else None
    if found is None:
        return None
    nd, make = found
    row.spatial = make is not _functional_pad  # a pad leaves RF and jump
    return make(node, row, nd)


# ---------------------------------------------------- adaptive, pads
def adaptive_rule(st: Spatial, size: Any, row: RFRow, op: str, nd: int) -> Spatial:
    """Adaptive pooling of the last `nd` axes to `size`: global along an axis
    where it is 1; a window of n/size where that divides the map; else
    PyTorch's real windows, unevenly spaced. `op` names it in errors."""
    if st.flat:
        # Positions merged into the last axis, pooled to one: a global pooling
        # (x.flatten(2), then F.adaptive_avg_pool1d(x, 1)).
        if nd == 1 and st.axes[0] == -1 and per_axis(size, 1) == (1,):
            row.kernel = math.prod(int(ax.n) for ax in st.dims)
            return st.each(Axis.whole)
        raise RFError(f"{op} pools positions merged into one axis.\nFix: pool "
                      "before flattening, or pool them all to one.")
    if st.nd != nd:
        raise axes_mismatch(op, nd, st)
    if st.axes != channels_first(nd):
        raise _moved(op, st)
    sizes = per_axis(size, nd) if size is not None else (None,) * nd
    axes, kernels = [], []
    for ax, o in zip(st.dims, sizes):
        o = int(ax.n) if o is None else o
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
    return Spatial(tuple(axes))


def pad_rule(pad: Any, row: RFRow, op: str) -> Rule:
    """F.pad(x, pad) or a pad module (nn.ZeroPad2d, ...): `pad` holds (before,
    after) pairs for the last axis first, then the one before it, and so on.
    Each pair pads the spatial axis that sits there, wherever a permute put
    it; a pair on the channels changes no RF. Whatever the mode, like zeros:
    a reflected pixel is still inside the RF. Negative pads crop."""
    pad = list(pad)
    if not all(isinstance(v, int) for v in pad):
        raise RFError(f"{op} pads by amounts that are not whole numbers ({pad}).\n"
                      "Fix: give them as ints, or pad with nn.ZeroPad2d.")
    pairs = [tuple(pad[i:i + 2]) for i in range(0, len(pad), 2)]  # last axis first

    def pads_of(axis: int) -> tuple[int, int]:
        return pairs[-axis - 1] if -axis - 1 < len(pairs) else (0, 0)

    row.kernel, row.stride, row.dilation = 1, 1, None

    def rule(st: Spatial) -> Spatial:
        sides = [pads_of(a) for a in st.axes]
        if st.flat and any(sides[0]):
            raise RFError(f"{op} pads a flattened map.\nFix: pad before flattening.")
        row.padding = agreed(*sides)
        return replace(st, dims=tuple(ax.window(1, 1, lo, hi, op=op)
                                      for ax, (lo, hi) in zip(st.dims, sides)))
    return rule
