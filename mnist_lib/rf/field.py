"""Receptive fields computed from a model's real graph (torch.fx).

    >>> from mnist_lib.rf import receptive_field
    >>> from mnist_lib.models import Model_4
    >>> table = receptive_field(Model_4(), input_size=(1, 28, 28))
    >>> table.trunk.r_out            # RF of the last map before the pooling
    29
    >>> print(table.to_markdown())   # doctest: +SKIP

A sequence (audio) is given as (C, L), a clip (video) as (C, D, H, W):

    >>> import torch.nn as nn
    >>> audio = nn.Sequential(nn.Conv1d(1, 8, 80, stride=16), nn.MaxPool1d(4),
    ...                       nn.Conv1d(8, 8, 3), nn.MaxPool1d(4))
    >>> receptive_field(audio, (1, 16000)).headline
    "RF 448 px, jump 256 px, at '3' (map 61)"

CLI:  python -m mnist_lib rf mnist_lib.models:Model_4 --input 1,28,28
      python -m mnist_lib rf torchvision.models:resnet18 --input 3,224,224
      python -m mnist_lib rf my_net.py:Net      (a file of yours)
      python -m mnist_lib rf my_audio.py:M5 --input 1,16000     (1-D)

Per spatial axis (the length of a sequence; the height and width of an image;
the depth, height and width of a clip) every tensor carries four numbers
(Araujo et al., Distill 2019; Dang Ha The Hien's "guide to receptive field
arithmetic"):

    n      feature-map size                n_out = floor((n_in + 2p - k_eff) / s) + 1
    j      jump: input pixels between      j_out = j_in * s
           neighbouring units
    r      receptive field, in pixels      r_out = r_in + (k_eff - 1) * j_in
    start  centre of the first unit,       start_out = start_in
           in input-pixel coordinates                  + ((k_eff - 1) / 2 - p) * j_in

with k_eff = dilation * (k - 1) + 1 and the input at n = size, j = 1, r = 1,
start = 0.5 (pixel i spans [i, i + 1]). The RF is the theoretical one: it may
exceed the image, which `exceeds_input` reports rather than clipping it. The
model is traced in eval mode, as it predicts: branches it runs only in
training (the auxiliary heads of GoogLeNet and Inception v3) are left out.
Branches that meet (add, cat, ...) must be aligned (same n, j and start); the
merged RF is the largest over the branches. A 1x1 map broadcast over a larger
one (the gate of a squeeze-and-excitation block) aligns with any map: it
brings its whole-map RF to every unit. A slice x[:, :, a:b:s, c:d:t] crops the
map and strides it: units keep their RF, the jump grows by the step. A
permute moves height and width to other axes; a Linear on channels-last
(ConvNeXt) is then a 1x1 convolution, and any other op asks for them back.
A flatten or view that merges height and width is tracked too, so that a
global pooling written as x.flatten(2).mean(-1) counts as one. A softmax over
the channels changes no RF, over the merged positions it is a global pooling,
and over the height or width alone (each unit then sees its whole row, in
place) it is refused. Normalisation layers count as pointwise, as in the RF
literature: the statistics GroupNorm, InstanceNorm and LayerNorm take over the
whole map are treated as constants, though a gradient (`effective_rf`) reaches
every pixel through them. A transposed conv of stride 1 is the conv it
equals (padding d * (k - 1) - p). An adaptive pooling whose windows are not
evenly spaced (10 -> 7) gives its largest RF and "uneven" for the jump, and
no window but a 1x1 may follow it. Attention (nn.MultiheadAttention,
F.scaled_dot_product_attention, any op named so, as swin's windowed one) and
a product of two tensors made from the input are refused: they mix every
position. So is a Linear or matmul over the height or width of a map (each
unit would see its whole row); over merged positions it is global. A weight
or bias computed from the input (a dynamic conv) is global when it comes from
a global pooling, else refused; one unit that is no global pooling is never
spread over a map. An in-place merge (out.add_(identity)) counts for every
later use of `out`; a tensor passed for its dtype or shape only (y in
x.type_as(y), x.view_as(y)) brings nothing. The output is what the model
returns (the first tensor of a tuple, a namedtuple or a dict); the trunk and
the headline are taken among the ops it is computed from, never a side
branch. forward()'s arguments after the image keep their defaults
(targets=None); torch.compile and DataParallel wrappers are looked through,
wherever they sit, their hooks kept. torchvision's v2 transforms inside a
model are kept whole: a crop and a pad are arithmetic, a Gaussian blur the
window of its kernel, and a resize is refused (`transforms`). A Window
declared in `custom` reads each module's own kernel, stride and dilation
where it leaves them out, and is refused where it contradicts them. An op
that returns its tensor inside a tuple or dict is
refused, never dropped. An op without a rule is refused with how to
declare it (`custom=`), unless it enlarges the map: no declaration describes
an upsampling, so that error says why and where to stop instead (a map of
one global unit upsampled, as ASPP's pooled branch, is copies of it, as
with expand). Recurrent layers (GRU, LSTM) are refused: each step sees all
those before it.

A setting computed from a tensor's size (F.avg_pool2d(x, x.size()[3])) is
taken at the input's size; one computed from a tensor's values is refused. A
pooling whose one window covers the whole map, without padding, is a global
pooling at that size (AvgPool2d(4) on a 4x4 map, as AdaptiveAvgPool2d(1)).
What the traced graph cannot see is refused, never skipped: forward hooks and pre-hooks that change
what a module kept whole computes, a TorchScript submodule. The hooks of the
model itself are traced with it. A forward replaced on an instance
(model.forward = types.MethodType(f, model)) is the one traced, for the
model and for its modules alike.

Before it answers, the calculator checks that the graph it walked computes
what the model computes (`guard`): it runs both on one random input of the
size given, the model as its user calls it (wrappers, hooks and all, in eval
mode, their random numbers seeded alike), and refuses where the outputs'
shapes or values differ beyond rounding, naming the first module call that
differs. A model that gives other values on two identical calls can be
checked for its output's shape only: an RFWarning says so. The check costs
one forward pass.

The calculator is the package `mnist_lib.rf`. This module walks the model's
graph; `rules` picks the rule for each op; `graph` makes the graph (torch.fx)
and records each op's shape, calling the model as `calls` does; `hooks`
refuses what it cannot see and `guard` checks the graph against the model;
`axis` holds the arithmetic above; `windows` the rules of convs, poolings
and pads; `layers` those of modules, Linear layers and merging branches;
`transforms` those of torchvision's v2 transforms; `reshapes` those of
reshapes, permutes, slices, splits and reductions; `table` the table that
`receptive_field` returns; `effective` the gradient-based effective RF.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import torch.fx as fx
import torch.nn as nn

from .axis import (Axis, RFError, Spatial, UnsupportedOpError, agreed, node_shape,
                   op_kind, op_label, row_name, spatial_dims)
from ..utils import unwrap
from .graph import check_model, check_size, probe_input, record_shapes, trace_graph
from .guard import check_graph
from .hooks import check_hooks
from .layers import declared_as, global_unit, spreads
from .reshapes import several_tensors, split_state
from .rules import (ATTENTION_FUNCTIONS, attention_error, in_place, is_merge,
                    is_template, is_view, refusal, rule_for, side_inputs)
from .table import RFRow, RFTable


def receptive_field(model: nn.Module, input_size: Sequence[int] = (1, 28, 28),
                    custom: dict[type, Any] | None = None,
                    leaf_modules: Sequence[type] = (),
                    misaligned: str = "refuse") -> RFTable:
    """Receptive field of every op in `model`, for one input of `input_size`:
    (C, H, W) for an image, (C, L) for a sequence (audio), (C, D, H, W) for a
    clip (video), without the batch.

    custom: {module class: "pointwise" | Window(...)} for modules the
        calculator does not know; a declared class is one op, not traced inside,
        and its declaration must give the map size the module really gives.
        A Window's settings left out are each module's own (Window(padding=
        'same') for timm's Conv2dSame); those given must agree with them.
    leaf_modules: classes to keep as one op without declaring them, e.g. your
        subclass of nn.Conv2d, which then counts as a Conv2d.
    misaligned: "refuse" (the default) refuses branches that meet with their
        units centred apart; "union" gives branches of the same map size and
        jump the box that spans each unit's boxes (a ResNet-D shortcut).
    A model that returns several tensors (a tuple, a dict) has the first as
    its output. Raises RFError, naming the op and the fix, for anything it
    cannot handle, and where the graph it traced computes other values than
    the model (`guard.check_graph`).
    """
    if misaligned not in ("refuse", "union"):
        raise ValueError(f"misaligned={misaligned!r}; choose 'refuse' or 'union'")
    union = misaligned == "union"
    input_size = check_size(input_size)
    custom = dict(custom or {})
    leaves = tuple(leaf_modules) + tuple(custom)
    check_model(model, leaves)
    called, model = model, unwrap(model)
    gm = trace_graph(model, leaves, tuple(input_size), called)
    x = probe_input(model, tuple(input_size))
    graph_out = record_shapes(gm, x)
    check_hooks(gm)
    check_graph(called, gm, x, graph_out)  # the graph walked is the model
    states: dict[fx.Node, Spatial] = {}
    rows: list[RFRow] = []
    modules = dict(gm.named_modules())
    output_row: RFRow | None = None
    row_of: dict[fx.Node, RFRow] = {}
    taken: set[str] = set()
    # The rows each node's value comes from, nearest first: a table's sources.
    made_by: dict[fx.Node, frozenset[str]] = {}
    sources: dict[str, tuple[str, ...]] = {}
    # What a tensor is now, after ops that wrote into it in place
    # (out.add_(identity) leaves `out` the sum).
    latest: dict[fx.Node, fx.Node] = {}
    image = next((n for n in gm.graph.nodes if n.op == "placeholder"), None)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if node is image:  # others are arguments fixed at their defaults
                states[node] = Spatial(tuple(Axis(n, 1, 1, 0.5)
                                             for n in input_size[1:]))
                made_by[node] = frozenset()
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            src = _first_tensor(node.args[0], states)
            if src is None and (lost := _first_tensor(node.args[0], None)) is not None \
                    and node_shape(lost):
                # A guard: a table that silently stopped early would be wrong.
                raise RFError(f"the calculator lost track of the input before the "
                              f"output ({lost.name!r}).\nFix: please report this "
                              "model; meanwhile, give it the part before that op.")
            output_row = row_of.get(latest.get(src, src))
            continue
        inputs = [latest.get(a, a) for a in node.all_input_nodes if a in states]
        if is_template(node):  # x.type_as(y): y's values never reach the output
            first = node.args[0]
            inputs = [latest.get(first, first)] if first in states else []
        if not inputs:  # e.g. x.size(0): no tensor flows through
            continue
        if (refused := refusal(node, modules, custom)) is not None:
            raise refused  # attention, a recurrent layer, TorchScript
        if in_place(node) and len(inputs) > 1 and isinstance(node.args[0], fx.Node) \
                and is_view(node.args[0]):
            raise RFError(f"{op_label(node)} writes into a view of another tensor "
                          f"({node.args[0].name!r}) in place.\nFix: write it out of "
                          "place (y = y + z), and build the whole from the pieces.")
        out_shape = node_shape(node)
        several = out_shape is None and several_tensors(node)
        if out_shape is None and not several:
            if _holds_tensor(node.meta.get("tensor_meta")):
                # A tensor the calculator would not follow: a later merge would
                # hide it and the table would be wrong without a word.
                raise _untracked(node, modules)
            continue  # else shape arithmetic (x.size(), getitem on sizes)
        if several:  # x.chunk(2, dim=1), torch.split, x.max(dim=1), ...
            src, row = inputs[0], RFRow(node.name, op_kind(node), spatial=False)
            state_out = split_state(node, src, states)
            out_shape = tuple(node.meta["tensor_meta"][0].shape)  # the first piece
        else:
            try:
                rule, row = rule_for(node, modules, custom, states, inputs, union)
            except UnsupportedOpError:
                # An op without a rule that enlarges the map gets the reason,
                # not a hint to declare it, which could not be right.
                _refuse_upsampling(node, modules, states[inputs[0]], out_shape)
                raise
            # The row's input: for gate * x, x (the gate is spread over x).
            src = (next((a for a in inputs if not spreads(a, out_shape)
                         and not global_unit(states[a])), inputs[0])
                   if is_merge(node, inputs) else inputs[0])
            state_out = rule(states[src])
            state_out = _with_side_inputs(node, row, state_out,
                                          side_inputs(node, inputs), states)
            _check_map_size(node, modules, custom, state_out, out_shape)
        states[node] = state_out
        _fill(row, states[src], state_out, node_shape(src), out_shape,
              input_size[1:])
        row.name = _unique(row_name(node), taken)
        row_of[node] = row
        rows.append(row)
        sources[row.name] = tuple(sorted(set().union(*(made_by[a] for a in inputs))))
        made_by[node] = frozenset([row.name])
        if in_place(node) and node.args[0] in states:
            latest[node.args[0]] = node

    if not rows:
        raise RFError(f"{type(model).__name__} runs no operation on its input.\n"
                      "Fix: give a model whose forward() computes from its input.")
    table = RFTable(rows, tuple(input_size), sources)
    if output_row is not None:
        table.set_final(output_row)
    return table


def _fill(row: RFRow, state_in: Spatial, state_out: Spatial,
          in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...],
          size: tuple[int, ...]) -> None:
    """Fill in `row`'s numbers from the states before and after its op, and
    the shapes; `size` is the input's, one size per spatial axis."""
    row.n_in = agreed(*(ax.n for ax in state_in.dims))
    row.n_out = agreed(*(ax.n for ax in state_out.dims))
    row.j_in, row.j_out = _jump(state_in), _jump(state_out)
    row.uneven_in, row.uneven_out = _uneven(state_in), _uneven(state_out)
    row.global_in, row.global_out = _global(state_in), _global(state_out)
    row.r_in = agreed(*(ax.r for ax in state_in.dims))
    row.r_out = agreed(*(ax.r for ax in state_out.dims))
    row.start_in = agreed(*(ax.start for ax in state_in.dims))
    row.start_out = agreed(*(ax.start for ax in state_out.dims))
    row.ch_in = in_shape[1] if in_shape and len(in_shape) > 1 else None
    row.ch_out = out_shape[1] if len(out_shape) > 1 else None
    row.activation = math.prod(out_shape[1:])
    row.exceeds_input = any(ax.r > n for ax, n in zip(state_out.dims, size))


def _first_tensor(value: Any, states: dict[fx.Node, Spatial] | None
                  ) -> fx.Node | None:
    """The first graph node in a model's output (a node, or a tuple, list or
    dict of them, nested), among those in `states` (any node, for None)."""
    if isinstance(value, fx.Node):
        return value if states is None or value in states else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            if (found := _first_tensor(v, states)) is not None:
                return found
    return None


def _with_side_inputs(node: fx.Node, row: RFRow, state: Spatial,
                      side: list[fx.Node], states: dict[fx.Node, Spatial]) -> Spatial:
    """`state`, the output of `node`'s rule, with what its `side` inputs bring:
    a weight or bias computed from a global pooling of the map (a dynamic
    convolution) makes every unit global, as a squeeze-and-excitation gate
    does. Computed from anything else, it would give each unit another
    region's pixels too: refused."""
    for other in side:
        if not global_unit(states[other]):
            raise RFError(
                f"{op_label(node)} also computes from {other.name!r}, made from the "
                "input but no global pooling.\nFix: make it from a pooling of the "
                f"whole map, x.mean({spatial_dims(state.nd)}), as a dynamic conv's "
                "kernel; or stop before this op.")
        row.spatial = True
        state = replace(state, dims=tuple(
            replace(ax, r=max(ax.r, g.r), glob=True)
            for ax, g in zip(state.dims, states[other].dims)))
    return state


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... if a row already has it."""
    new, k = name, 1
    while new in taken:
        k += 1
        new = f"{name}_{k}"
    taken.add(new)
    return new


def _jump(state: Spatial) -> Any:
    """The table's jump: a number (or one per axis); None where the units
    are not evenly spaced (after an uneven adaptive pooling: `_uneven`), for
    a single unit that pooled a whole map, which has no neighbour to step to,
    and for copies of one (`Axis.copies`)."""
    dims = state.dims
    if _uneven(state) or state.flat or any(ax.copies for ax in dims) or (
            all(ax.n == 1 for ax in dims) and _global(state)):
        return None
    return agreed(*(ax.j for ax in dims))


def _uneven(state: Spatial) -> bool:
    """Whether the units of `state` are unevenly spaced (`Axis.uneven`)."""
    return any(ax.uneven is not None for ax in state.dims)


def _global(state: Spatial) -> bool:
    """Whether the units of `state` each depend on a whole map (`Axis.glob`)."""
    return any(ax.glob for ax in state.dims)


def _holds_tensor(meta: Any) -> bool:
    """Whether a node's recorded output (a tuple, a dict, ...) holds a tensor."""
    if hasattr(meta, "shape"):
        return True
    if isinstance(meta, dict):
        meta = list(meta.values())
    return isinstance(meta, (tuple, list)) and any(map(_holds_tensor, meta))


def _untracked(node: fx.Node, modules: dict[str, nn.Module]) -> RFError:
    """The refusal for an op that returns a tensor inside something else (a
    tuple with None, a dict), which the calculator would otherwise drop."""
    if node.target in ATTENTION_FUNCTIONS:
        return attention_error(op_label(node))
    # The calculator follows one tensor an op: this one's RF would be dropped.
    box = type(node.meta["tensor_meta"]).__name__
    return RFError(
        f"{op_label(node)} returns its tensor inside a {box}.\n"
        "Fix: return the tensor alone, or do not keep the module whole (leaf_modules).")


def _map_sizes(state: Spatial, out_shape: tuple[int, ...]
               ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The sizes of the map in `state`, one per spatial axis, and of an op's
    real output on the same axes; None where there is no map (flattened, or
    an output without those axes)."""
    if state.flat or len(out_shape) < max(-a for a in state.axes) + 1:
        return None
    return (tuple(ax.n for ax in state.dims), tuple(out_shape[a] for a in state.axes))


def _size_text(n: tuple[int, ...]) -> str:
    """A map's size as the errors write it, e.g. "26x26"."""
    return "x".join(map(str, n))


def _refuse_upsampling(node: fx.Node, modules: dict[str, nn.Module], state: Spatial,
                       out_shape: tuple[int, ...]) -> None:
    """An RFError saying why, if an op without a rule makes the map larger on
    one axis or both and smaller on neither: a strided transposed conv,
    nn.Upsample, F.interpolate, nn.PixelShuffle. (Pads, and transposed convs of
    stride 1, enlarge the map too; they have rules.)"""
    sizes = _map_sizes(state, out_shape)
    if sizes is None:
        return
    n_in, n_out = sizes
    if n_out == n_in or any(o < i for i, o in zip(n_in, n_out)):
        return
    # After an upsampling, neighbouring units copy one unit (nearest) or mix
    # different numbers of units (bilinear, a transposed conv): no single jump
    # and RF describe them, and no declaration could.
    raise RFError(
        f"{op_label(node)} enlarges the map from {_size_text(n_in)} to "
        f"{_size_text(n_out)}.\n"
        "Fix: stop before this upsampling: give model.encoder, say, or model[:k]."
    ) from None


def _check_map_size(node: fx.Node, modules: dict[str, nn.Module],
                    custom: dict[type, Any], state: Spatial,
                    out_shape: tuple[int, ...]) -> None:
    """An RFError unless the map size the rule computed is the one the model
    gives: a wrong declaration (an upsampling declared pointwise, a Window
    that is not the module's) would otherwise give a wrong table silently."""
    sizes = _map_sizes(state, out_shape)
    if sizes is None or sizes[0] == sizes[1]:
        return
    rule_n, real_n = sizes
    mod = modules.get(node.target) if node.op == "call_module" else None
    declared = declared_as(mod, custom)
    real, rule = _size_text(real_n), _size_text(rule_n)
    if declared is None:
        raise RFError(f"{op_label(node)} gives a {real} map, not the {rule} its rule "
                      "computes.\nFix: please report this model.")
    raise RFError(
        f"{op_label(node)} gives a {real} map, but the declaration makes it {rule}.\n"
        "Fix: declare the Window it slides (an upsampling has none: stop before it).")
