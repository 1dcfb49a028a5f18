"""Which rule each op of a model's graph gets: the sets of functions and
methods by kind (pointwise, merges, reshapes, reductions, ...), gathered in
one table, `OP_RULES` (`MODULE_OVERRIDES` for the few modules whose rule
reads their input), and `rule_for`, which looks an op up there and returns
its rule, from `windows` (convs, pools, pads), `layers` (modules, Linear
layers, merges) or `reshapes` (axes, slices, reductions). Also what `field`
asks of an op before it applies the rule: whether it writes into its input
in place, and which of its inputs it merges."""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .axis import (RFError, Spatial, UnsupportedOpError, declare_hint, node_shape,
                   op_kind, op_label)
from .layers import declared_as, linear_rule, matmul_rule, merge_rule, module_rule
from .reshapes import (axes_rule, index_rule, reduce_rule, repeat_rule, reshape_rule,
                       several_tensors, softmax_over, softmax_rule, spread_unit)
from .table import RFRow
from .windows import FUNCTION_RULES, Rule, function_rule

# Which rule an op gets, by what it is.
_POINTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.mish, F.elu, F.selu,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus,
    F.celu, F.logsigmoid, F.softsign, F.threshold, F.rrelu, F.prelu,
    F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout,
    F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm,
    F.channel_shuffle,  # reorders channels; every position stays where it is
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg,
    torch.clamp, torch.sqrt, torch.rsqrt, torch.log, torch.square,
    operator.neg, operator.pos, operator.invert,
}


# Elementwise ops of one or more tensors: several tensors must be aligned.
_MERGE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv,
                    operator.iadd, operator.imul, operator.pow, operator.gt,
                    operator.lt, operator.ge, operator.le, operator.eq, operator.ne,
                    operator.and_, operator.or_, torch.add, torch.sub, torch.mul,
                    torch.div, torch.pow, torch.maximum, torch.minimum, torch.where,
                    torch.cat}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "float",
                      "double", "half", "bfloat16", "long", "int", "bool", "to",
                      "clone", "detach", "exp",
                      "abs", "neg", "type_as", "mul", "add", "sub", "div", "mul_",
                      "add_", "sub_", "div_", "clamp", "clamp_", "clip", "pow",
                      "sqrt", "rsqrt", "log", "square", "masked_fill",
                      "masked_fill_", "sigmoid_", "tanh_"}
# Methods whose tensor argument gives only a shape or a dtype (x.expand_as(y)):
# no value of it reaches the output.
_TEMPLATE_METHODS = {"expand_as", "view_as", "reshape_as", "type_as", "to",
                     "new_zeros", "new_ones", "new_empty", "new_full"}
# Ops whose output is a view of their input: writing into it in place writes
# into that input too.
_VIEWS = {"getitem", "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze",
          "transpose", "permute", "movedim", "expand", "expand_as", "view_as",
          "narrow", "select", "t", "chunk", "split", "unbind", "getattr"}
_MATMUL_FUNCTIONS = {operator.matmul, torch.matmul, torch.mm, torch.bmm}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze",
                  "view_as", "reshape_as"}
_AXES_FUNCTIONS = {torch.transpose, torch.permute}
_AXES_METHODS = {"transpose", "permute"}
_LOGSOFTMAX = {F.log_softmax, F.softmax, torch.log_softmax, torch.softmax}
_REDUCE_FUNCTIONS = {torch.mean, torch.amax, torch.amin, torch.sum,
                     torch.logsumexp, torch.max, torch.min}
_REDUCE_METHODS = {"mean", "amax", "amin", "sum", "max", "min", "logsumexp"}

# Attention mixes every position with every other: no RF arithmetic follows it.
ATTENTION_FUNCTIONS = (F.scaled_dot_product_attention, F.multi_head_attention_forward)
# Upsampling: refused (`field._refuse_upsampling`), but for a map of one unit,
# whose copies it makes (ASPP's pooled branch, brought back to the map's size).
UPSAMPLING_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
UPSAMPLING_FUNCTIONS = (F.interpolate, F.upsample, F.upsample_nearest,
                        F.upsample_bilinear)


def attention_error(what: str) -> RFError:
    """The refusal for attention at `what` (a module or an operation)."""
    return RFError(
        f"{what} is attention: it mixes every position.\n"
        "Fix: give the calculator the part before it (a ViT's patch embedding, say).")


def _recurrent_error(what: str) -> RFError:
    # A bidirectional one sees the steps after it too.
    return RFError(
        f"{what} is recurrent: each step sees all the steps before it, so its RF "
        "grows with its position.\nFix: give the calculator the part before it "
        "(the convolutional front-end).")


def _script_error(what: str) -> RFError:
    return RFError(
        f"{what} is TorchScript (torch.jit.script): torch.fx cannot look inside it."
        "\nFix: put the nn.Module it was scripted from in its place.")


# Modules refused whatever their input, with the reason: no declaration
# could describe attention or recurrence.
REFUSED_MODULES: dict[type, Callable[[str], RFError]] = {
    nn.MultiheadAttention: attention_error,
    nn.RNNBase: _recurrent_error,  # RNN, LSTM, GRU
}


def refusal(node: fx.Node, modules: dict[str, nn.Module], custom: dict[type, Any]
            ) -> RFError | None:
    """The RFError for a module `REFUSED_MODULES` names; unless `custom`
    declares it, for a TorchScript module too, or one named as attention (as
    swin's or timm's blocks are). None for any other op."""
    if node.op != "call_module":
        return None
    mod = modules[node.target]
    error = next((f for cls, f in REFUSED_MODULES.items() if isinstance(mod, cls)),
                 None)
    if error is None and declared_as(mod, custom) is None:
        if isinstance(mod, torch.jit.ScriptModule):
            error = _script_error
        elif "attention" in type(mod).__name__.lower():
            error = attention_error
    return error(op_label(node)) if error is not None else None


def is_merge(node: fx.Node, inputs: list[fx.Node]) -> bool:
    """Whether `node` merges its tensor `inputs` elementwise (add, cat, a gate,
    torch.max of two maps): its rule reads all of them."""
    two_maps = node.target in (torch.max, torch.min, "max", "min")
    return len(inputs) > 1 and (node.target in _MERGE_FUNCTIONS or two_maps or (
        node.op == "call_method" and node.target in _POINTWISE_METHODS))


def is_template(node: fx.Node) -> bool:
    """Whether `node` is a method whose tensor argument gives only a dtype or a
    shape (x.type_as(y), x.to(y), x.expand_as(y)): no value of it reaches the
    output, so `field` reads only the tensor it is called on."""
    return node.op == "call_method" and node.target in _TEMPLATE_METHODS


def side_inputs(node: fx.Node, inputs: list[fx.Node]) -> list[fx.Node]:
    """The tensor inputs of `node` besides the map its rule reads (`inputs[0]`):
    a dynamic convolution's weight, a computed bias, statistics. None for a
    merge, whose rule reads them all."""
    if is_merge(node, inputs):
        return []
    if node.op == "call_function" and node.target in _MATMUL_FUNCTIONS:
        return []  # matmul_rule refuses two
    return inputs[1:]


def in_place(node: fx.Node) -> bool:
    """Whether `node` writes its result into its first argument: a method
    ending in "_" (out.add_(identity)). (torch.fx records `out += y` as
    out = out + y, which is the same unless another name holds the old out.)"""
    return (node.op == "call_method" and node.target.endswith("_")
            and not node.target.startswith("_"))


def is_view(node: fx.Node) -> bool:
    """Whether `node`'s output shares its input's memory (a slice, a view)."""
    return node.op in ("call_function", "call_method") and op_kind(node) in _VIEWS


# ------------------------------------------------------------ the rule table
# A rule maker takes the op's node, its tensor inputs, the states and its row,
# and returns the rule; None where the op has no rule after all (x[i] of a
# tensor of unknown shape, an upsampling of more than one unit).
Maker = Callable[[fx.Node, list[fx.Node], dict[fx.Node, Spatial], RFRow],
                 Rule | None]


def _unchanged(s: Spatial) -> Spatial:
    return s


def _pointwise(node, inputs, states, row) -> Rule:  # every unit stays
    return _unchanged


def _piece(node, inputs, states, row) -> Rule | None:
    """A piece of a split, or .values of x.max(1): the tensor it came from."""
    return _unchanged if several_tensors(inputs[0]) else None


def _index(node, inputs, states, row) -> Rule | None:
    if several_tensors(inputs[0]):
        return _unchanged
    if node_shape(inputs[0]) is None:
        return None
    return index_rule(node, inputs[0], row, states[inputs[0]])


def _softmax(node, inputs, states, row) -> Rule:
    return softmax_rule(node, row, states[inputs[0]])


def _reshape(node, inputs, states, row) -> Rule:
    return reshape_rule(node, inputs[0], row, states[inputs[0]])


def _repeat(node, inputs, states, row) -> Rule:
    return repeat_rule(node, inputs[0], row, states[inputs[0]])


def _axes(node, inputs, states, row) -> Rule:
    return axes_rule(node, inputs[0], row)


def _window(node, inputs, states, row) -> Rule | None:  # convs, pools, pads
    return function_rule(node, row)


def _upsample(node, inputs, states, row) -> Rule | None:
    if not _one_unit(states[inputs[0]]):
        return None  # `field._refuse_upsampling` says why
    return spread_unit(states[inputs[0]], node_shape(node), row, op_label(node))


def _reduce(node, inputs, states, row) -> Rule:
    return reduce_rule(node, inputs[0], row)


def _linear(node, inputs, states, row) -> Rule:
    return linear_rule(states[inputs[0]], row, op_label(node))


def _matmul(node, inputs, states, row) -> Rule:
    return matmul_rule(node, inputs, states, row)


def _table(*groups: tuple[Any, Maker]) -> dict[Any, Maker]:
    """One table from (targets, maker) groups; a target in two groups is a
    ValueError: the table, unlike an if chain, has no order to settle it."""
    table: dict[Any, Maker] = {}
    for targets, make in groups:
        for target in targets:
            if table.get(target, make) is not make:
                raise ValueError(f"{target!r} has two rules")
            table[target] = make
    return table


# The rule of each function (keyed by the function) and method (by its name)
# of the graph. A merge of several tensors (`is_merge`) and attention are
# told apart before it is read.
OP_RULES: dict[Any, Maker] = _table(
    (_POINTWISE_FUNCTIONS | _MERGE_FUNCTIONS | _POINTWISE_METHODS, _pointwise),
    ((getattr,), _piece),
    ((operator.getitem,), _index),
    (_LOGSOFTMAX | {"softmax", "log_softmax"}, _softmax),
    (_SHAPE_FUNCTIONS | _SHAPE_METHODS, _reshape),
    ({"expand", "expand_as", "repeat"}, _repeat),
    (_AXES_FUNCTIONS | _AXES_METHODS, _axes),
    (FUNCTION_RULES, _window),
    (UPSAMPLING_FUNCTIONS, _upsample),
    (_REDUCE_FUNCTIONS | _REDUCE_METHODS, _reduce),
    ((F.linear,), _linear),
    (_MATMUL_FUNCTIONS | {"matmul", "mm", "bmm"}, _matmul),
)
# torchvision.ops functions, by name: importing torchvision.ops to look them
# up costs every `import mnist_lib` a second. Drop-path is the identity
# outside training (EfficientNet).
TORCHVISION_OPS: dict[str, Maker] = {"stochastic_depth": _pointwise}


def _flatten_module(mod, node, inputs, states, row) -> Rule:
    return reshape_rule(node, inputs[0], row, states[inputs[0]])


def _softmax_module(mod, node, inputs, states, row) -> Rule:
    return softmax_over(mod.dim, node_shape(inputs[0]), row, op_label(node),
                        states[inputs[0]])


def _upsample_module(mod, node, inputs, states, row) -> Rule | None:
    return _upsample(node, inputs, states, row)


# Modules whose rule reads their input's shape or state, unless `custom`
# declares their class; any other module gets `layers.module_rule` (a
# declaration, then `windows.MODULE_RULES`). A subclass gets its base's.
MODULE_OVERRIDES: dict[type, Callable[..., Rule | None]] = {
    nn.Flatten: _flatten_module,
    **dict.fromkeys((nn.Softmax, nn.LogSoftmax, nn.Softmin), _softmax_module),
    **dict.fromkeys(UPSAMPLING_MODULES, _upsample_module),
}


def rule_for(node: fx.Node, modules: dict[str, nn.Module], custom: dict[type, Any],
             states: dict[fx.Node, Spatial], inputs: list[fx.Node], union: bool = False
             ) -> tuple[Rule, RFRow]:
    """Return (state transform, partly filled row) for one graph node, from
    `MODULE_OVERRIDES` and `layers.module_rule` for a module, `OP_RULES` for
    a function or method; `union` is `receptive_field`'s misaligned="union"
    (`layers.merge_rule`). An op without a rule: UnsupportedOpError."""
    op = op_label(node)  # how an error names this node
    if node.op == "call_module":
        mod = modules[node.target]
        row = RFRow(node.target, type(mod).__name__,
                    params=sum(p.numel() for p in mod.parameters()))
        make = next((MODULE_OVERRIDES[c] for c in type(mod).__mro__
                     if c in MODULE_OVERRIDES), None)
        if make is not None and type(mod) not in custom \
                and (rule := make(mod, node, inputs, states, row)) is not None:
            return rule, row
        return module_rule(mod, row, op, custom, states[inputs[0]]), row
    kind = op_kind(node)
    row = RFRow(node.name, kind, spatial=False)
    # By name too: torchvision's swin wraps its windowed attention in one
    # function, shifted_window_attention.
    if node.target in ATTENTION_FUNCTIONS or (node.op == "call_function"
                                              and "attention" in kind.lower()):
        raise attention_error(op)
    # max / min of two maps (torch.max(a, b), a.max(b)) is elementwise, as in
    # maxout; of one map it is a reduction (with a dim it returns indices too:
    # see split_state).
    if is_merge(node, inputs):
        row.spatial = True
        return (lambda _: merge_rule(node, inputs, states, union)), row
    make = OP_RULES.get(node.target) or (
        TORCHVISION_OPS.get(kind) if node.op == "call_function" and getattr(
            node.target, "__module__", "").startswith("torchvision.ops") else None)
    if make is not None and (rule := make(node, inputs, states, row)) is not None:
        return rule, row
    raise UnsupportedOpError(declare_hint(op))


def _one_unit(state: Spatial) -> bool:
    """Whether `state` is a map of one unit (1x1, for an image)."""
    return not state.flat and all(ax.n == 1 for ax in state.dims)
