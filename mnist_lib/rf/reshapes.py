"""How the ops that move axes change what the calculator tracks: flatten,
view and reshape, transpose and permute, indexing and slicing, splits
(chunk, split, unbind), reductions (mean, amax, ...) and softmax. Most leave
every unit's receptive field as it is and only move the spatial axes (the
length, or height and width, or depth, height and width) to other axes; a
reduction or softmax over them is a global pooling; a slice crops."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch.fx as fx

from .axis import (Axis, RFError, Spatial, agreed, axis_name, channels_first,
                   declarations, declare_hint, flat_last, node_arg, node_shape,
                   on_positions, op_kind, op_label, settled, spatial_dims,
                   spatial_words)
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
    one axis (or a sequence's only spatial axis), it mixes them all. Over one
    axis of a map of several, each unit would see its whole column or row and
    yet keep its place: no jump and start describe that, so it is refused,
    naming `op`. Without a `dim`, PyTorch's: axis 0 of a tensor of 0, 1 or 3
    axes, else axis 1."""
    if shape is not None and dim is None:
        dim = 0 if len(shape) in (0, 1, 3) else 1  # torch's _get_softmax_dim
    if shape is None or not on_positions(state, dim, len(shape)):
        return lambda s: s
    if state.flat or state.nd == 1:
        row.spatial = True
        return lambda s: replace(s.each(Axis.whole), flat=True)
    which = state.axes.index(dim % len(shape) - len(shape))
    if state.dims[which].n == 1:
        return lambda s: s
    # Each unit would see its whole row or column but keep its place: no
    # jump and start describe that.
    raise RFError(
        f"{op} takes a softmax over the {axis_name(state, which)} of a map.\n"
        "Fix: over all positions, flatten them first, x.flatten(2); over channels, "
        "dim=1.")


def reshape_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                  ) -> Callable[[Spatial], Spatial]:
    """view / reshape / flatten / squeeze / unsqueeze. Allowed: regrouping
    other axes (a channel shuffle), adding or removing axes of size 1 that
    are not spatial, merging the spatial axes into one axis (flatten: the
    state goes `flat`) and splitting that axis back. Anything that moves
    pixels between positions is refused. Removing a spatial axis of one
    unit (x.squeeze(2) of a (N, C, 1, W) map) leaves the positions on one
    axis: merged, as by flatten."""
    row.spatial = False
    shape_in, shape_out = node_shape(src), node_shape(node)
    if not shape_in or not shape_out or tuple(shape_in) == tuple(shape_out):
        return lambda s: s
    nd_in, nd_out = len(shape_in), len(shape_out)
    if all(ax.n == 1 for ax in state.dims):  # one unit: no position to move
        return _one_unit(shape_out, state.nd)
    groups = _axis_groups(shape_in, shape_out)
    at = [nd_in + a for a in state.axes]  # where the spatial axes are, from 0
    found = [next((g for g in groups if p in g[0]), None) for p in at] if groups \
        else [None]
    # The spatial axes that stay (a squeeze drops one of a single unit).
    kept = [g for g, ax in zip(found, state.dims) if g is None or g[1] or ax.n > 1]
    new = None
    if any(g is None for g in kept):
        pass
    elif all(g[1] == kept[0][1] for g in kept) and len(kept[0][1]) == 1:
        new = (True, (kept[0][1][0] - nd_out,) * state.nd)  # merged into one axis
    elif state.flat and found[0][0] == [at[0]] and [
            shape_out[o] for o in found[0][1][-state.nd:]] == [
            ax.n for ax in state.dims]:                   # the merged axis split back
        new = (False, tuple(o - nd_out for o in found[0][1][-state.nd:]))
    elif not state.flat and all(len(g[0]) == len(g[1]) == 1 for g in found
                                if g is not None):
        new = (False, tuple(g[1][0] - nd_out for g in found))  # each kept as it is
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


def _one_unit(shape_out: tuple[int, ...], nd: int) -> Callable[[Spatial], Spatial]:
    """A reshape or an index of a map of one unit, which has no position to
    move: a map of one unit again where the output ends in `nd` axes of size
    1, as the classic squeeze-and-excitation block's y.view(b, c, 1, 1) makes
    its gate; else the unit's values on the last axis, as after flatten
    (y[:, :, 0, 0])."""
    if len(shape_out) >= nd + 2 and tuple(shape_out[-nd:]) == (1,) * nd:
        return lambda s: replace(s, flat=False, axes=channels_first(nd))
    return lambda s: replace(s, flat=True, axes=flat_last(nd))


def _axis_groups(a: Sequence[int], b: Sequence[int]
                 ) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of axes of two shapes with the same number of elements, e.g.
    (1, 4, 3, 5) and (1, 4, 15): [([0], [0]), ([1], [1]), ([2, 3], [2])]. An
    axis of size 1 that the other shape lacks is a group of its own, paired
    with none: (1, 5, 7) and (1, 1, 5, 7) give [([0], [0]), ([], [1]),
    ([1], [2]), ([2], [3])]. None if the shapes hold different numbers of
    elements."""
    groups, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if i < len(a) and j < len(b) and a[i] == b[j]:  # the same axis, kept
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        elif i < len(a) and a[i] == 1:  # an axis of size 1, removed
            groups.append(([i], []))
            i += 1
        elif j < len(b) and b[j] == 1:  # an axis of size 1, added
            groups.append(([], [j]))
            j += 1
        elif i == len(a) or j == len(b):
            return None
        else:  # axes merged or split until the counts agree
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
    return groups


def index_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                ) -> Callable[[Spatial], Spatial]:
    """x[..., a:b:s, c:d:t]: a crop (and a stride, for a step) of the map, on
    whichever axes the spatial ones sit. A unit keeps its RF; the first one
    kept is `a` units in, and `s` apart. Indexing other axes changes nothing:
    an int there drops that axis (x[:, 0], one channel, as GoogLeNet's
    transform_input takes), None adds one."""
    shape_in, shape_out = node_shape(src), node_shape(node)
    if all(ax.n == 1 for ax in state.dims):  # one unit: no position to cut
        if len(shape_out) == len(shape_in):
            return lambda s: s
        return _one_unit(shape_out, state.nd)
    nd = len(shape_in)
    index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    taking = [i for i in index if i is not None and i is not Ellipsis]
    if index.count(Ellipsis) == 1:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (nd - len(taking)) + index[k + 1:]
    index = tuple(index) + (slice(None),) * (nd - len(taking))
    # Walk the index: where each input axis goes (None: dropped), and how
    # each spatial axis is cut.
    cuts: dict[int, slice] = {}
    new_at: dict[int, int] = {}
    problem, pos, out = None, 0, 0
    for item in index:
        if item is None:  # a new axis of size 1
            out += 1
            continue
        spatial = [i for i, a in enumerate(state.axes) if a + nd == pos]
        if isinstance(item, int):
            if spatial:
                problem = (f"an int that drops the {axis_name(state, spatial[0])}, "
                           "a spatial axis")
        elif not isinstance(item, slice):
            problem = "a tensor or a list (not a slice)"
        else:
            for i in spatial:
                cuts[i], new_at[i] = item, out
            out += 1
        pos += 1
    if problem is None and any(sl != slice(None) for sl in cuts.values()):
        if state.flat:
            problem = "a slice of positions merged into one axis"
        elif any(not isinstance(v, (int, type(None), fx.Node)) for sl in cuts.values()
                 for v in (sl.start, sl.step)):
            problem = "a spatial slice whose start or step is not a number"
    if problem:
        raise RFError(f"{op_label(node)} indexes a map with {problem}.\nFix: slice "
                      "by numbers, keeping every spatial axis (x[:, :, 1:-1, ::2], "
                      "x[:, :, :1]).")
    op = op_label(node)
    steps = {i: settled(sl.step, op, "step") or 1 for i, sl in cuts.items()}
    starts = {i: settled(sl.start, op, "start") or 0 for i, sl in cuts.items()}
    if any(step < 1 for step in steps.values()):
        raise RFError(f"{op} indexes a map with a step below 1.\nFix: slice with "
                      "a positive step.")
    if any(sl != slice(None) for sl in cuts.values()):
        row.stride = agreed(*(steps[i] for i in range(state.nd)))
        row.spatial = True
    axes = tuple(new_at[i] - len(shape_out) for i in range(state.nd))

    def cut(ax: Axis, i: int) -> Axis:
        if cuts[i] == slice(None):
            return ax
        first = starts[i]
        first = min(max(first + ax.n if first < 0 else first, 0), ax.n)
        # Units keep their RF (and stay global, or unevenly spaced, if they were).
        n_out = shape_out[axes[i]]
        return replace(ax, n=n_out, j=ax.j * steps[i], start=ax.start + first * ax.j)

    return lambda s: replace(s, dims=tuple(cut(ax, i) for i, ax in enumerate(s.dims)),
                             axes=axes)


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
    state = states[src]
    if kind in ("max", "min"):
        dim = node_arg(node, "dim", 1)
        shape = node_shape(src)
        if shape is not None and on_positions(state, dim, len(shape)):
            raise RFError(f"{op_label(node)} takes a {kind} with indices over space."
                          "\nFix: for a global pooling, use "
                          f"x.a{kind}(dim={spatial_dims(state.nd)}), which the "
                          "calculator follows.")
        return state
    if kind not in _SPLITS:
        raise RFError(declare_hint(f"{op_label(node)}, which returns several "
                                   "tensors,"))
    where = 1 if kind == "unbind" else 2  # the position of `dim` after the tensor
    dim = node_arg(node, "dim", where, 0)
    shape = node_shape(src)
    if shape is not None and on_positions(state, dim, len(shape)):
        # Each piece is a crop: a slice says which one.
        raise RFError(f"{op_label(node)} splits a map along its "
                      f"{spatial_words(state.nd)}.\nFix: slice it instead, "
                      "x[:, :, :h // 2] and x[:, :, h // 2:], which the calculator "
                      "follows.")
    return state


_SPLITS = {"chunk", "split", "tensor_split", "unbind"}


def axes_rule(node: fx.Node, src: fx.Node, row: RFRow
               ) -> Callable[[Spatial], Spatial]:
    """transpose / permute: the same units, with the spatial axes moved to
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
    """mean / sum / amax ... over some axes: over all the spatial axes (or the
    axis they were merged into) it is a global pooling; over other axes,
    nothing."""
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
                return s.each(Axis.whole)
            return Spatial(tuple(ax.whole() for ax in s.dims), flat=True,
                           axes=flat_last(s.nd))
        if spatial & dims:
            some = " and ".join(axis_name(s, i) for i, a in enumerate(s.axes)
                                if a in dims)
            raise RFError(f"{op_label(node)} reduces over the {some} of a map only."
                          "\nFix: reduce over all its spatial axes for a global "
                          f"pooling, x.mean({spatial_dims(s.nd)}).")
        # A removed axis before the spatial ones moves them towards the end.
        shift = 0 if kept else sum(1 for d in dims if d > max(spatial))
        return replace(s, axes=tuple(a + shift for a in s.axes))

    return reduce


def repeat_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                 ) -> Callable[[Spatial], Spatial]:
    """expand / expand_as / repeat: copies along the channels (a grey digit made
    three-channel for an ImageNet model, x.repeat(1, 3, 1, 1)) leave every
    unit where it is; copies over positions are `spread_unit`'s."""
    before, after = node_shape(src), node_shape(node)
    if before is None or after is None or len(before) != len(after):
        raise RFError(declare_hint(f"{op_label(node)}, which adds axes,"))
    # A pooled (flat) map, (N, C) or (N, C, 1, 1): a copy along any axis after
    # the channels spreads it over positions.
    spatial = range(2, len(before)) if state.flat else [len(before) + a
                                                        for a in state.axes]
    if all(before[a] == after[a] for a in spatial):
        return lambda s: s
    return spread_unit(state, after, row, op_label(node))


def spread_unit(state: Spatial, after: tuple[int, ...], row: RFRow, op: str
                ) -> Callable[[Spatial], Spatial]:
    """Copies of one global unit over a map of shape `after`, channels first
    (a gate, gate.expand_as(x); ASPP's pooled branch, upsampled from 1x1):
    copies (`Axis.copies`), which a merge spreads. Other copies over
    positions put one unit in many places, which no jump and start can
    describe: refused, naming `op`."""
    single = all(ax.n == 1 for ax in state.dims)
    if single and any(ax.glob for ax in state.dims) and not state.flat \
            and len(after) == state.nd + 2 and state.axes == channels_first(state.nd):
        row.spatial = True
        return lambda s: replace(s, dims=tuple(
            replace(ax, n=n, copies=True, glob=True)
            for ax, n in zip(s.dims, after[2:])))
    pool = f"x.mean({spatial_dims(state.nd)}, keepdim=True)"
    if single and not state.flat:
        raise RFError(f"{op} copies one unit, which is no global pooling, "
                      f"over a map.\nFix: pool the whole map for a gate, {pool}, "
                      "or stop before this op.")
    raise RFError(f"{op} copies a map along its {spatial_words(state.nd)}.\n"
                  f"Fix: for a gate, pool the map to one unit, {pool}, and let\n"
                  "    broadcasting spread it; else stop before this op.")
