"""How the ops that move axes change what the calculator tracks: flatten,
view and reshape, transpose and permute, indexing and slicing, splits
(chunk, split, unbind), reductions (mean, amax, ...) and softmax. Most leave
every unit's receptive field as it is and only move height and width to other
axes; a reduction or softmax over them is a global pooling; a slice crops."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch.fx as fx

from .axis import (CHANNELS_FIRST, FLAT_LAST, Axis, RFError, Spatial, declarations,
                   agreed, declare_hint, node_arg, node_shape, op_kind, op_label,
                   on_positions)
from .table import RFRow


def softmax_rule(node: fx.Node, row: RFRow, state: Spatial
                  ) -> Callable[[Spatial], Spatial]:
    """F.softmax / F.log_softmax / x.softmax(dim): see `softmax_over`."""
    dim = node_arg(node, "dim", 1)
    return softmax_over(dim, node_shape(node.all_input_nodes[0]), row,
                        op_label(node), state)


def softmax_over(dim: int | None, shape: tuple[int, ...] | None, row: RFRow,
                 op: str, state: Spatial) -> Callable[[Spatial], Spatial]:
    """A softmax over channels changes no RF; over the positions, merged into
    one axis, it mixes them all. Over the height or the width of a map, each
    unit would see its whole column or row and yet keep its place: no jump and
    start describe that, so it is refused, naming `op`. Without a `dim`,
    PyTorch's: axis 0 of a tensor of 0, 1 or 3 axes, else axis 1."""
    if shape is not None and dim is None:
        dim = 0 if len(shape) in (0, 1, 3) else 1  # torch's _get_softmax_dim
    if shape is None or not on_positions(state, dim, len(shape)):
        return lambda s: s
    if state.flat:
        row.spatial = True
        return lambda s: replace(s, h=s.h.whole(), w=s.w.whole())
    height = dim % len(shape) - len(shape) == state.axes[0]
    if (state.h if height else state.w).n == 1:
        return lambda s: s
    # Each unit would see its whole row or column but keep its place: no
    # jump and start describe that.
    axis = "height" if height else "width"
    raise RFError(
        f"{op} takes a softmax over the {axis} of a map.\n"
        "Fix: over all positions, flatten them first, x.flatten(2); over channels, "
        "dim=1.")


def reshape_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                  ) -> Callable[[Spatial], Spatial]:
    """view / reshape / flatten. Allowed: regrouping other axes (a channel
    shuffle), merging height and width into one axis (flatten: the state goes
    `flat`) and splitting that axis back. Anything that moves pixels between
    positions is refused."""
    row.spatial = False
    shape_in, shape_out = node_shape(src), node_shape(node)
    if not shape_in or not shape_out or tuple(shape_in) == tuple(shape_out):
        return lambda s: s
    nd_in, nd_out = len(shape_in), len(shape_out)
    if state.h.n == 1 and state.w.n == 1:  # one unit: no position to move
        return _one_unit(shape_out)
    groups = _axis_groups(shape_in, shape_out)
    h_at, w_at = (nd_in + a for a in state.axes)
    g_h = next((g for g in groups if h_at in g[0]), None) if groups else None
    g_w = next((g for g in groups if w_at in g[0]), None) if groups else None
    new = None
    if g_h is None or g_w is None:
        pass
    elif g_h is g_w and len(g_h[1]) == 1:              # merged into one axis
        new = (True, (g_h[1][0] - nd_out,) * 2)
    elif state.flat and g_h[0] == [h_at] and [shape_out[o] for o in g_h[1][-2:]] \
            == [state.h.n, state.w.n]:                  # the merged axis split back
        new = (False, tuple(o - nd_out for o in g_h[1][-2:]))
    elif not state.flat and len(g_h[0]) == len(g_h[1]) == len(g_w[0]) \
            == len(g_w[1]) == 1:                        # each kept as it is
        new = (False, (g_h[1][0] - nd_out, g_w[1][0] - nd_out))
    if new is None:
        # Moving pixels between positions is no pointwise op; a space-to-depth
        # is a window.
        raise RFError(f"{op_label(node)} reshapes {tuple(shape_in)} to "
                      f"{tuple(shape_out)}, moving pixels.\nFix: for a "
                      "space-to-depth use F.pixel_unshuffle; else wrap the reshapes "
                      "in a module and\n    declare the window they amount to:\n"
                      + declarations("YourModule", pointwise=False))
    flat, axes = new
    return lambda s: replace(s, flat=flat, axes=axes)


def _one_unit(shape_out: tuple[int, ...]) -> Callable[[Spatial], Spatial]:
    """A reshape or an index of a map of one unit, which has no position to
    move: a 1x1 map again where the output ends in (1, 1), as the classic
    squeeze-and-excitation block's y.view(b, c, 1, 1) makes its gate; else the
    unit's values on the last axis, as after flatten (y[:, :, 0, 0])."""
    if len(shape_out) >= 4 and tuple(shape_out[-2:]) == (1, 1):
        return lambda s: replace(s, flat=False, axes=CHANNELS_FIRST)
    return lambda s: replace(s, flat=True, axes=FLAT_LAST)


def _axis_groups(a: Sequence[int], b: Sequence[int]
                 ) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of axes of two shapes with the same number of elements, e.g.
    (1, 4, 3, 5) and (1, 4, 15): [([0], [0]), ([1], [1]), ([2, 3], [2])].
    None if the shapes hold different numbers of elements."""
    groups, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        ins, outs, pa, pb = [i], [j], a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(a):
                pa, i = pa * a[i], i + 1
                ins.append(i - 1)
            elif pb < pa and j < len(b):
                pb, j = pb * b[j], j + 1
                outs.append(j - 1)
            else:
                return None
        groups.append((ins, outs))
    if not groups or any(a[k] != 1 for k in range(i, len(a))) or any(
            b[k] != 1 for k in range(j, len(b))):
        return None
    groups[-1][0].extend(range(i, len(a)))  # trailing axes of size 1
    groups[-1][1].extend(range(j, len(b)))
    return groups


def index_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                ) -> Callable[[Spatial], Spatial]:
    """x[..., a:b:s, c:d:t]: a crop (and a stride, for a step) of the map. A
    unit keeps its RF; the first one kept is `a` units in, and `s` apart.
    Indexing other axes (channels, logits) changes nothing."""
    shape_in, shape_out = node_shape(src), node_shape(node)
    if state.h.n == 1 and state.w.n == 1:  # one unit: no position to cut
        if len(shape_out) == len(shape_in):
            return lambda s: s
        return _one_unit(shape_out)  # y[:, :, 0, 0] of a pooled map
    nd = len(shape_in)
    index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    if index.count(Ellipsis) == 1:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (nd + 1 - len(index)) + index[k + 1:]
    index = tuple(index) + (slice(None),) * (nd - len(index))
    cuts = [i for d, i in enumerate(index) if on_positions(state, d, nd)]
    problem = None
    if len(shape_out) != nd or len(index) != nd or any(
            i is None or not isinstance(i, slice) for i in index):
        problem = "an index that drops or adds an axis"
    elif all(i == slice(None) for i in cuts):
        return lambda s: s
    elif state.flat or state.axes != CHANNELS_FIRST:
        problem = "a slice of positions that are not (N, C, H, W)'s last two axes"
    elif any(not isinstance(v, (int, type(None))) for i in cuts
             for v in (i.start, i.step)) or any((i.step or 1) < 1 for i in cuts):
        problem = "a spatial slice whose start or step is not a positive constant"
    if problem:
        raise RFError(f"{op_label(node)} indexes a map with {problem}.\nFix: slice "
                      "by constants, keeping every axis (x[:, :, 1:-1, ::2], "
                      "x[:, :, :1]).")
    (h_cut, w_cut), (h_out, w_out) = cuts, shape_out[2:]
    row.stride = agreed(h_cut.step or 1, w_cut.step or 1)
    row.spatial = True

    def cut(ax: Axis, sl: slice, n_out: int) -> Axis:
        first = sl.start or 0
        first = min(max(first + ax.n if first < 0 else first, 0), ax.n)
        # Units keep their RF (and stay global, or unevenly spaced, if they were).
        return replace(ax, n=n_out, j=ax.j * (sl.step or 1),
                       start=ax.start + first * ax.j)

    return lambda s: replace(s, h=cut(s.h, h_cut, h_out), w=cut(s.w, w_cut, w_out))


def several_tensors(node: fx.Node) -> bool:
    """Whether `node` returns several tensors (chunk, split, unbind)."""
    meta = node.meta.get("tensor_meta")
    return isinstance(meta, (tuple, list)) and len(meta) > 0 and all(
        hasattr(m, "shape") for m in meta)


def split_state(node: fx.Node, src: fx.Node, states: dict[fx.Node, Spatial]
                 ) -> Spatial:
    """chunk / split / unbind along channels: each piece keeps every pixel.
    So does max / min over channels, which returns (values, indices): the
    channel pooling of CBAM's spatial attention, `x.max(dim=1)[0]`."""
    kind = op_kind(node)
    if kind in ("max", "min"):
        dim = node_arg(node, "dim", 1)
        shape = node_shape(src)
        if shape is not None and on_positions(states[src], dim, len(shape)):
            raise RFError(f"{op_label(node)} takes a {kind} with indices over space."
                          "\nFix: for a global pooling, use "
                          f"x.a{kind}(dim=(2, 3)), which the calculator follows.")
        return states[src]
    if kind not in _SPLITS:
        raise RFError(declare_hint(f"{op_label(node)}, which returns several "
                                   "tensors,"))
    where = 1 if kind == "unbind" else 2  # the position of `dim` after the tensor
    dim = node_arg(node, "dim", where, 0)
    shape = node_shape(src)
    if shape is not None and on_positions(states[src], dim, len(shape)):
        # Each piece is a crop: a slice says which one.
        raise RFError(f"{op_label(node)} splits a map along its height or width.\n"
                      "Fix: slice it instead, x[:, :, :h // 2] and x[:, :, h // 2:], "
                      "which the calculator follows.")
    return states[src]


_SPLITS = {"chunk", "split", "tensor_split", "unbind"}


def axes_rule(node: fx.Node, src: fx.Node, row: RFRow
               ) -> Callable[[Spatial], Spatial]:
    """transpose / permute: the same units, with height and width moved to
    other axes (a channel shuffle leaves them last; ConvNeXt moves channels
    last and back)."""
    shape = node_shape(src)
    if shape is None or len(shape) < 2:
        return lambda s: s
    nd, args = len(shape), list(node.args[1:])
    order = list(range(nd))
    if row.kind == "transpose":
        a, b = args[:2] if len(args) >= 2 else (node.kwargs["dim0"],
                                                 node.kwargs["dim1"])
        order[a % nd], order[b % nd] = order[b % nd], order[a % nd]
    else:
        dims = args[0] if len(args) == 1 else args or node.kwargs["dims"]
        order = [d % nd for d in dims]

    def move(s: Spatial) -> Spatial:
        return replace(s, axes=tuple(order.index(a % nd) - nd for a in s.axes))

    return move


def reduce_rule(node: fx.Node, src: fx.Node, row: RFRow
                 ) -> Callable[[Spatial], Spatial]:
    """mean / sum / amax ... over some axes: over height and width (or the axis
    they were merged into) it is a global pooling; over other axes, nothing."""
    dims = node_arg(node, "dim", 1)
    shape = node_shape(src)
    if shape is None:
        return lambda s: s
    nd = len(shape)
    dims = range(nd) if dims is None else (dims,) if isinstance(dims, int) else dims
    dims = {d % nd - nd for d in dims}  # counted from the last axis, like `axes`

    kept = node.kwargs.get("keepdim", False) or (
        len(node.args) > 2 and node.args[2] is True)

    def reduce(s: Spatial) -> Spatial:
        spatial = set(s.axes)
        if spatial <= dims:
            row.spatial = True
            if kept and not s.flat:
                # x.mean((2, 3), keepdim=True), as in a squeeze-and-excitation
                # block: a global pooling to a 1x1 map, which stays a map.
                return replace(s, h=s.h.whole(), w=s.w.whole())
            return Spatial(s.h.whole(), s.w.whole(), flat=True, axes=FLAT_LAST)
        if spatial & dims:
            raise RFError(f"{op_label(node)} reduces over one spatial axis only.\n"
                          "Fix: reduce over height and width together for a global "
                          "pooling, x.mean((2, 3)).")
        # A removed axis before height and width moves them towards the end.
        shift = 0 if kept else sum(1 for d in dims if d > max(spatial))
        return replace(s, axes=tuple(a + shift for a in s.axes))

    return reduce


def repeat_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                 ) -> Callable[[Spatial], Spatial]:
    """expand / expand_as / repeat: copies along the channels (a grey digit made
    three-channel for an ImageNet model, x.repeat(1, 3, 1, 1)) leave every
    unit where it is. Copies of one global unit over a map (a gate,
    gate.expand_as(x)) are copies (`Axis.copies`), which a merge spreads;
    other copies along height or width put one unit in many places, which
    no jump and start can describe."""
    before, after = node_shape(src), node_shape(node)
    if before is None or after is None or len(before) != len(after):
        raise RFError(declare_hint(f"{op_label(node)}, which adds axes,"))
    # A pooled (flat) map, (N, C) or (N, C, 1, 1): a copy along any axis after
    # the channels spreads it over positions.
    spatial = range(2, len(before)) if state.flat else state.axes
    if all(before[a] == after[a] for a in spatial):
        return lambda s: s
    single = state.h.n == 1 and state.w.n == 1
    if single and (state.h.glob or state.w.glob) and not state.flat \
            and len(after) == 4 and state.axes == CHANNELS_FIRST:
        row.spatial = True
        return lambda s: replace(s, h=replace(s.h, n=after[2], copies=True, glob=True),
                                 w=replace(s.w, n=after[3], copies=True, glob=True))
    if single and not state.flat:
        raise RFError(f"{op_label(node)} copies one unit, which is no global pooling, "
                      "over a map.\nFix: pool the whole map for a gate, "
                      "x.mean((2, 3), keepdim=True), or stop before this op.")
    raise RFError(f"{op_label(node)} copies a map along its height or width.\n"
                  "Fix: for a gate, pool the map to one unit, x.mean((2, 3), "
                  "keepdim=True), and let\n    broadcasting spread it; else stop "
                  "before this op.")
