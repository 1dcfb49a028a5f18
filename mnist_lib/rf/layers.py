"""How the layers besides windows change the receptive field: which rule a
module gets (a declaration, a pointwise layer, a window of `windows`), Linear
layers and matrix products, and branches that meet (add, cat, a
squeeze-and-excitation gate). Each rule fills in its op's row and returns
the function that maps the input's state to the output's. `mnist_lib.rf`
picks the rule for each op of the graph."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn

from .axis import (POINTWISE, Axis, RFError, Spatial, UnsupportedOpError, Window,
                   agreed, axis_name, declarations, declare_hint, flat_last, node_arg,
                   node_shape, on_positions, op_label, per_axis, row_name, shape_letters,
                   spatial_dims, spatial_words)
from .table import RFRow, fmt_cell
from .transforms import transform_entry
from .windows import axes_mismatch, module_entry, tf_same_rule, window_rule

Rule = Callable[[Spatial], Spatial]
# Modules that leave every position where it is (the softmax modules depend on
# their dim: `reshapes.softmax_over`). Softmax2d, the two LRNs and
# ChannelShuffle mix or reorder channels only, at each position.
POINTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LayerNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.Softmax2d,
    nn.ChannelShuffle,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU,
    nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.LogSigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold,
)


def declared_as(mod: nn.Module | None, custom: dict[type, Any]) -> type | None:
    """The class in `custom` that declares `mod` (it is an instance of it), if any."""
    return next((k for k in custom if isinstance(mod, k)), None)


def module_rule(mod: nn.Module, row: RFRow, op: str, custom: dict[type, Any],
                state: Spatial) -> Rule:
    """The rule for a module's op (`op` names it in errors): a declaration in
    `custom` first, then the layers PyTorch ships (`windows.MODULE_RULES`); an
    unknown module is refused."""
    declared = declared_as(mod, custom)
    spec = custom[declared] if declared is not None else None
    if spec == POINTWISE or (spec is None and isinstance(mod, POINTWISE_MODULES)):
        row.spatial = False
        return lambda s: s
    if isinstance(spec, Window):
        k, s, p, d = _declared_window(spec, mod, op, declared.__name__, state)
        if p == "same":
            return tf_same_rule(row, op, k, s, d)
        return window_rule(row, op, k, s, p, d)
    if spec is not None:
        name = type(mod).__name__
        raise RFError(f"custom declares {name} as {spec!r}, neither 'pointwise' nor "
                      f"a Window.\nFix: declare it as one of these:\n"
                      + declarations(name))
    if isinstance(mod, nn.Linear):
        row.ch_in, row.ch_out = mod.in_features, mod.out_features
        return linear_rule(state, row, op)
    found = module_entry(type(mod)) or transform_entry(type(mod))
    if found is None:
        raise UnsupportedOpError(declare_hint(op, type(mod).__name__))
    nd, make = found
    return make(mod, row, op, nd)


# A Window's settings and the attributes of a module that hold them, with the
# value of a setting that neither gives.
_SETTINGS = (("kernel", "kernel_size", None), ("stride", "stride", 1),
             ("padding", "padding", 0), ("dilation", "dilation", 1))


def _declared_window(spec: Window, mod: nn.Module, op: str, name: str,
                     state: Spatial) -> tuple[Any, Any, Any, Any]:
    """The kernel, stride, padding and dilation of module `mod` (`op` in
    errors), declared as `spec` for its class `name`: each setting left out
    is the module's own (`Window`). An RFError where a kernel, stride or
    dilation given is not the module's own: the declaration, made for the
    class, would be wrong for this module (a k5 Conv2dSame declared k3)."""
    values = []
    for setting, attr, default in _SETTINGS:
        given, own = getattr(spec, setting), getattr(mod, attr, None)
        if own == "valid":
            own = 0
        if given is None:
            if isinstance(own, (tuple, list)) and len(own) != state.nd:
                # A Conv3d on an image: what the undeclared module gets.
                raise axes_mismatch(op, len(own), state)
            values.append(own if own is not None else default)
            continue
        n = len(own) if isinstance(own, (tuple, list)) else state.nd
        if setting != "padding" and own is not None and not isinstance(own, str) \
                and per_axis(given, n) != per_axis(own, n):
            own_text = agreed(*own) if isinstance(own, (tuple, list)) else own
            fix = Window(padding=spec.padding)
            raise RFError(
                f"{op} has {setting} {own_text}, but custom declares {spec} for "
                f"every {name}.\nFix: declare only what the modules do not hold; "
                "each one's kernel, stride\n    and dilation are then its own:\n"
                f"    custom={{{name}: {fix}}}")
        values.append(given)
    if values[0] is None:
        raise RFError(f"custom declares {name} as {spec}, without a kernel, and "
                      f"{op} has no kernel_size.\nFix: give the kernel:\n"
                      + declarations(name, pointwise=False))
    return tuple(values)


def linear_rule(state: Spatial, row: RFRow, op: str, axis: int = -1) -> Rule:
    """A Linear mixes its input's last axis (a matrix product W @ x, `axis`
    -2): the whole map when the positions are there, merged (after
    x.flatten(1)) or the only spatial axis of a sequence; channels otherwise,
    after a permute to channels-last (a 1x1 convolution, in ConvNeXt) or
    x.flatten(2).transpose(1, 2). Over one axis of a map of several it is
    refused, naming `op`."""
    if axis not in state.axes:
        row.spatial = False
        return lambda s: s
    if not state.flat and state.nd > 1:
        # Each unit would mix its whole row (or column) and keep its place:
        # no jump and start describe that.
        what = axis_name(state, state.axes.index(axis))
        last = ", ".join(str(d) for d in range(2, state.nd + 2)) + ", 1"
        raise RFError(
            f"{op} mixes the {what} of a map, one of its axes.\nFix: for a Linear "
            "over the whole map flatten it first, x.flatten(1); over channels, "
            f"move them last, x.permute(0, {last}).")
    row.spatial = True
    return _linear_state


def _linear_state(st: Spatial) -> Spatial:
    """A Linear after a spatial map sees all of it (its input was flattened)."""
    return Spatial(tuple(ax.whole() for ax in st.dims), flat=True,
                   axes=flat_last(st.nd))


def matmul_rule(node: fx.Node, inputs: list[fx.Node], states: dict[fx.Node, Spatial],
                row: RFRow) -> Rule:
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
        state = states[inputs[0]]
        if shape is not None and on_positions(state, dim, len(shape)):
            # Units of different maps side by side: no single jump and start.
            raise RFError(f"{op_label(node)} joins maps along their "
                          f"{spatial_words(state.nd)}.\nFix: concatenate along the "
                          "channels (dim=1), or stop before this op.")
    # A global unit spread over a map (x * gate, the squeeze-and-excitation
    # block; the gate expanded with expand_as) has no position to align: it
    # gives every unit its RF. One unit that is no global pooling cannot be
    # spread: each unit would see its own box and that unit's, far apart.
    out = node_shape(node)
    for i in inputs:
        if spreads(i, out) and not global_unit(states[i]):
            dims = spatial_dims(states[i].nd)
            raise RFError(
                f"{op_label(node)} spreads one unit of {i.name!r}, which is no "
                "global pooling, over every position.\nFix: pool the whole map "
                f"for a gate, x.mean({dims}, keepdim=True), or stop before this op.")
    local = [i for i in inputs if not global_unit(states[i])] or inputs
    first = states[local[0]]
    apart = False
    for other in local[1:]:
        st = states[other]
        if st.axes != first.axes:
            raise RFError(f"branches {row_name(local[0])!r} and "
                          f"{row_name(other)!r} meet at "
                          f"{row_name(node)!r} with their {spatial_words(st.nd)} on "
                          "different axes.\nFix: permute one of them back to (N, C, "
                          f"{shape_letters(st.nd)}) first.")
        for i, (a, b) in enumerate(zip(first.dims, st.dims)):
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
                f"branches {row_name(local[0])!r} and {row_name(other)!r} meet at "
                f"{row_name(node)!r} misaligned in {axis_name(st, i)}: {_apart(a, b)}.\n"
                f"Fix: {fix}, or stop before this merge.")
    # The merged unit sees what each branch sees: the largest RF (or the box
    # spanning the branches'), and a global one if any branch is global
    # (x * gate, after an SE block's pool).
    axes = []
    for i in range(first.nd):
        own = [states[k].dims[i] for k in local]
        every = [states[k].dims[i] for k in inputs]
        ax = _span(own) if apart else max(own, key=lambda a: a.r)
        axes.append(replace(ax, r=max([ax.r] + [a.r for a in every]),
                            glob=any(a.glob for a in every)))
    return Spatial(tuple(axes), any(states[i].flat for i in local), first.axes)


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
    """Whether `src` is a map of one unit (1x1, say) that broadcasting spreads
    over a larger `out`, channels first."""
    shape = node_shape(src)
    return (out is not None and shape is not None and len(out) == len(shape) >= 3
            and all(n == 1 for n in shape[2:]) and any(n != 1 for n in out[2:]))


def global_unit(state: Spatial) -> bool:
    """Whether every unit of `state` is one global unit: a whole map pooled
    to one unit, or copies of it (`Axis.copies`). Spread over a map, it
    brings every unit the same whole-map summary."""
    return all(ax.copies or (ax.n == 1 and ax.glob and ax.uneven is None)
               for ax in state.dims)
