"""Receptive fields computed from a model's real graph (torch.fx).

    >>> from mnist_lib.rf import receptive_field
    >>> from mnist_lib.models import Model_4
    >>> table = receptive_field(Model_4(), input_size=(1, 28, 28))
    >>> table.final.r_out            # RF of the output, in input pixels
    37
    >>> print(table.to_markdown())   # doctest: +SKIP

CLI:  python -m mnist_lib.rf mnist_lib.models:Model_4 --input 1,28,28
      python -m mnist_lib.rf torchvision.models:resnet18 --input 3,224,224

Per spatial axis every tensor carries four numbers (Araujo et al., Distill 2019;
Dang Ha The Hien's "guide to receptive field arithmetic"):

    n      feature-map size                n_out = floor((n_in + 2p - k_eff) / s) + 1
    j      jump: input pixels between      j_out = j_in * s
           neighbouring units
    r      receptive field, in pixels      r_out = r_in + (k_eff - 1) * j_in
    start  centre of the first unit,       start_out = start_in + ((k_eff - 1) / 2 - p) * j_in
           in input-pixel coordinates

with k_eff = dilation * (k - 1) + 1 and the input at n = size, j = 1, r = 1,
start = 0.5 (pixel i spans [i, i + 1]). The RF is the theoretical one: it may
exceed the image, which `exceeds_input` reports rather than clipping it.
Branches that meet (add, cat, ...) must be aligned (same n, j and start); the
merged RF is the largest over the branches. A 1x1 map broadcast over a larger
one (the gate of a squeeze-and-excitation block) aligns with any map: it
brings its whole-map RF to every unit. A slice x[:, :, a:b:s, c:d:t] crops the
map and strides it: units keep their RF, the jump grows by the step. A
permute moves height and width to other axes; a Linear on channels-last
(ConvNeXt) is then a 1x1 convolution, and any other op asks for them back.
A flatten or view that merges height and width is tracked too, so that a
global pooling written as x.flatten(2).mean(-1) counts as one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import operator
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp


class RFError(ValueError):
    """The calculator cannot give a correct RF; the message names the op and the fix."""


# ------------------------------------------------------------------- state
@dataclass(frozen=True)
class Axis:
    """RF arithmetic along one spatial axis."""

    n: int | float      # feature-map size
    j: float            # jump (effective stride), input pixels
    r: float            # receptive field, input pixels
    start: float        # centre of the first unit, input-pixel coordinates

    def window(self, k: int, s: int, p_lo: int, p_hi: int, d: int = 1,
               ceil_mode: bool = False) -> "Axis":
        """Apply a sliding window (conv or pool) with padding p_lo/p_hi."""
        k_eff = d * (k - 1) + 1
        span = self.n + p_lo + p_hi - k_eff
        if span < 0:
            raise RFError(f"window of {k_eff} px does not fit a {self.n}-px map")
        n_out = (math.ceil(span / s) if ceil_mode else span // s) + 1
        if ceil_mode and (n_out - 1) * s >= self.n + p_lo:
            n_out -= 1  # PyTorch: the last window must start inside the input
        return Axis(n_out, self.j * s, self.r + (k_eff - 1) * self.j,
                    self.start + ((k_eff - 1) / 2 - p_lo) * self.j)

    def whole(self) -> "Axis":
        """One unit that sees the whole map (global pooling, Linear)."""
        return Axis(1, self.j * self.n, self.r + (self.n - 1) * self.j,
                    self.start + (self.n - 1) / 2 * self.j)


@dataclass(frozen=True)
class Spatial:
    """Per-axis state of a tensor; `flat` once height and width are merged into
    one axis (by flatten or view): reducing or a Linear over it sees everything."""

    h: Axis
    w: Axis
    flat: bool = False
    # Where height and width sit, counted from the last axis: (-2, -1) for
    # (N, C, H, W); (-3, -2) after a permute to channels-last (N, H, W, C);
    # (-1, -1) when flat with the positions last, as in (N, C, H * W).
    axes: tuple[int, int] = (-2, -1)


CHANNELS_FIRST = (-2, -1)
FLAT_LAST = (-1, -1)


def _on_positions(state: Spatial, dim: int, nd: int) -> bool:
    """Whether axis `dim` of an `nd`-axis tensor in `state` holds height, width
    or the axis they were merged into."""
    return dim % nd - nd in state.axes


@dataclass(frozen=True)
class Window:
    """Declare a custom module as a sliding window (see `receptive_field(custom=...)`)."""

    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1


POINTWISE = "pointwise"  # declare a custom module as not touching space


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _same(a: Any, b: Any) -> Any:
    """An int when both axes agree, else the (h, w) pair."""
    if isinstance(a, float) and a.is_integer():
        a = int(a)
    if isinstance(b, float) and b.is_integer():
        b = int(b)
    return a if a == b else (a, b)


# --------------------------------------------------------------------- rows
@dataclass
class RFRow:
    """One op of the model, in forward order. Spatial values: int, or (h, w)."""

    name: str
    kind: str
    kernel: Any = None
    stride: Any = None
    padding: Any = None
    dilation: Any = None
    n_in: Any = None
    n_out: Any = None
    j_in: Any = None
    j_out: Any = None
    r_in: Any = None
    r_out: Any = None
    start_in: Any = None
    start_out: Any = None
    ch_in: int | None = None
    ch_out: int | None = None
    params: int = 0
    activation: int | None = None   # output values per example (C * H * W)
    exceeds_input: bool = False     # RF larger than the input image
    spatial: bool = True            # False for ops that leave RF and jump unchanged


COLUMNS = ["name", "kind", "n_in", "ch_in", "ch_out", "padding", "kernel", "stride",
           "n_out", "j_in", "j_out", "r_in", "r_out", "activation", "params"]
# What a notebook shows of the table: the layer's window (kernel, stride,
# padding), then size, jump and RF in and out, the recurrence to read row by row.
# Fewer columns than COLUMNS, so that the table fits a book page unscrolled.
SHOWN = ["name", "kind", "kernel", "stride", "padding", "n_in", "n_out", "ch_out",
         "j_in", "j_out", "r_in", "r_out"]


def check_columns(columns: Sequence[str]) -> list[str]:
    """`columns` as a list, after checking that each names a field of `RFRow`."""
    known = [f.name for f in fields(RFRow)]
    unknown = [c for c in columns if c not in known]
    if unknown or not columns:
        named = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown column(s) {named}; choose from {', '.join(known)}")
    return list(columns)


@dataclass
class RFTable:
    """The result of `receptive_field`: `rows` in forward order, `final` = output."""

    rows: list[RFRow]
    input_size: tuple[int, int, int]
    final: RFRow = field(init=False)

    def __post_init__(self) -> None:
        self.final = self.rows[-1]

    def __getitem__(self, name: str) -> RFRow:
        """The row of the op called `name` (e.g. `table["block1.0.0"]`)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no op named {name!r}; names: {[r.name for r in self.rows]}")

    def layers(self, all_ops: bool = False) -> list[RFRow]:
        """Rows that change n, j or r (convs, pools, linears, merges), or all rows."""
        return [r for r in self.rows if all_ops or r.spatial or r is self.final]

    def to_frame(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS):
        """A pandas DataFrame with the columns students know from RF write-ups."""
        import pandas as pd

        columns = check_columns(columns)
        records = [{c: getattr(r, c) for c in columns} for r in self.layers(all_ops)]
        # dtype=object keeps 3 as 3: a numeric column with a gap would be float.
        frame = pd.DataFrame(records, columns=list(columns), dtype=object)
        return frame.where(frame.notna(), "")

    def to_markdown(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS
                    ) -> str:
        """A GitHub-flavoured Markdown table."""
        columns = check_columns(columns)
        rows = [[_fmt(getattr(r, c)) for c in columns] for r in self.layers(all_ops)]
        head = "| " + " | ".join(columns) + " |"
        rule = "|" + "|".join("---" for _ in columns) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in rows])

    def to_text(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS) -> str:
        """An aligned plain-text table."""
        columns = check_columns(columns)
        rows = [[_fmt(getattr(r, c)) for c in columns] for r in self.layers(all_ops)]
        widths = [max(len(c), *(len(r[i]) for r in rows))
                  for i, c in enumerate(columns)]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
        return "\n".join([line(columns)] + [line(r) for r in rows])

    def to_records(self, all_ops: bool = True, columns: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
        """One dict a row: every field of `RFRow`, or only `columns`."""
        keep = check_columns(columns) if columns is not None else None
        return [{k: v for k, v in asdict(r).items() if keep is None or k in keep}
                for r in self.layers(all_ops)]

    def _repr_html_(self) -> str:
        # A smaller font too: at full size the last columns (RF) scroll out of view.
        table = self.to_frame(columns=SHOWN).to_html(index=False)
        return f'<div style="font-size: 80%">{table}</div>'

    def __repr__(self) -> str:
        f = self.final
        return (f"RFTable({len(self.rows)} ops, input {self.input_size}, "
                f"output RF {f.r_out}, jump {f.j_out})")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.4g}"
    return str(v)


# -------------------------------------------------------------- op tables
_POINTWISE_MODULES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.Softmax, nn.LogSoftmax,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Softplus,
)
_POINTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.mish, F.elu, F.selu,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus,
    F.dropout, F.dropout2d, F.batch_norm, F.layer_norm, F.group_norm,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg,
    torch.clamp, torch.sqrt, torch.rsqrt, torch.log, torch.square,
    operator.neg, operator.pos, operator.invert,
}
try:  # torchvision's drop-path: the identity outside training (EfficientNet)
    from torchvision.ops import stochastic_depth
    _POINTWISE_FUNCTIONS.add(stochastic_depth)
except ImportError:
    pass
# Elementwise ops of one or more tensors: several tensors must be aligned.
_MERGE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv,
                    operator.iadd, operator.imul, operator.pow, operator.gt,
                    operator.lt, operator.ge, operator.le, operator.eq, operator.ne,
                    operator.and_, operator.or_, torch.add, torch.sub, torch.mul,
                    torch.div, torch.pow, torch.maximum, torch.minimum, torch.where,
                    torch.cat}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "float",
                      "double", "half", "bfloat16", "to", "clone", "detach", "exp",
                      "abs", "neg", "type_as", "mul", "add", "sub", "div", "mul_",
                      "add_", "sub_", "div_", "clamp", "clamp_", "clip", "pow",
                      "sqrt", "rsqrt", "log", "square", "masked_fill"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_SHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_AXES_FUNCTIONS = {torch.transpose, torch.permute}
_AXES_METHODS = {"transpose", "permute"}
_LOGSOFTMAX = {F.log_softmax, F.softmax, torch.log_softmax, torch.softmax}


def _declare_hint(what: str, module: str | None = None) -> str:
    """Say that `what` is not supported and how to declare it. `module` is its
    class name; an op that is not a module must first be wrapped in one."""
    name = module or "YourModule"
    wrap = "" if module else "\nWrap it in an nn.Module of your own (YourModule below)."
    # One short line each, so the message reads in a terminal and on a page.
    return (f"{what} is not supported.{wrap}\n"
            "Declare it to receptive_field(...): if it does not move pixels (like\n"
            "an activation), with\n"
            f"    custom={{{name}: 'pointwise'}}\n"
            "and if it is a sliding window (like a pooling), with\n"
            f"    custom={{{name}: Window(kernel, stride, padding, dilation)}}\n"
            "Anything else (an upsampling, say) is beyond this calculator.")


# ---------------------------------------------------------------- tracing
class _Tracer(fx.Tracer):
    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, leaves: tuple[type, ...]) -> fx.GraphModule:
    try:
        graph = _Tracer(leaves).trace(model)
    except Exception as err:
        raise RFError(
            f"torch.fx could not trace {type(model).__name__}: {err}\n"
            "Make forward() free of data-dependent Python control flow, or declare\n"
            "the submodule that fails with custom={ThatModule: 'pointwise'} (or a\n"
            "Window): a declared module is not traced inside."
        ) from err
    return fx.GraphModule(model, graph)


def _shapes(gm: fx.GraphModule, model: nn.Module, input_size: tuple[int, ...]) -> None:
    """Run the graph once on zeros (eval mode) to record every node's shape."""
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_size,
                    device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None else torch.float32)
    try:
        model.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as err:
        raise RFError(f"the model does not run on an input of shape "
                      f"(1, {', '.join(map(str, input_size))}): {err}") from err
    finally:
        for m, mode in modes.items():
            m.training = mode


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


# ------------------------------------------------------------ the calculator
def receptive_field(model: nn.Module, input_size: Sequence[int] = (1, 28, 28),
                    custom: dict[type, Any] | None = None,
                    leaf_modules: Sequence[type] = ()) -> RFTable:
    """Receptive field of every op in `model`, for an input of `input_size` (C, H, W).

    custom: {module class: "pointwise" | Window(...)} for modules the
        calculator does not know; a declared class is one op, not traced inside.
    leaf_modules: classes to keep as one op without declaring them, e.g. your
        subclass of nn.Conv2d, which then counts as a Conv2d.
    Raises RFError, naming the op and the fix, for anything it cannot handle.
    """
    if len(input_size) != 3:
        raise RFError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    custom = dict(custom or {})
    leaves = tuple(leaf_modules) + tuple(custom)
    gm = _trace(model, leaves)
    _shapes(gm, model, tuple(input_size))
    c, h, w = input_size
    states: dict[fx.Node, Spatial] = {}
    rows: list[RFRow] = []
    modules = dict(gm.named_modules())
    output_row: RFRow | None = None

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            states[node] = Spatial(Axis(h, 1, 1, 0.5), Axis(w, 1, 1, 0.5))
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            src = node.args[0]
            src = src[0] if isinstance(src, (tuple, list)) else src
            if isinstance(src, fx.Node) and src not in states and _shape(src):
                # A guard: a table that silently stopped early would be wrong.
                raise RFError(f"the calculator lost track of the input before the "
                              f"output ({src.name!r}); please report this model")
            output_row = next((r for r in reversed(rows) if r.name == _name(src)), None)
            continue
        inputs = [a for a in node.all_input_nodes if a in states]
        if not inputs:  # e.g. x.size(0): no tensor flows through
            continue
        out_shape = _shape(node)
        if out_shape is None:
            if _several_tensors(node):  # x.chunk(2, dim=1), torch.split, ...
                states[node] = _split_state(node, inputs[0], states)
            continue  # else shape arithmetic (x.size(), getitem on sizes)
        rule, row = _rule(node, modules, custom, states, inputs)
        moved = [a for a in inputs
                 if not states[a].flat and states[a].axes != CHANNELS_FIRST]
        if moved and row.spatial and not _is_merge(node, inputs):
            # Every other rule reads height and width as the last two axes.
            raise RFError(f"{row.name!r} ({row.kind}) gets a tensor whose height and "
                          "width are not its last two axes (channels-last?).\n"
                          "Permute it back to (N, C, H, W) before this op.")
        # The row's input: for gate * x, x (the gate is a 1x1 map spread over x).
        src = next((a for a in inputs if not _spread(a, out_shape)), inputs[0])
        state_in = states[src]
        state_out = rule(state_in)
        states[node] = state_out
        in_shape = _shape(src)
        row.n_in, row.n_out = _same(state_in.h.n, state_in.w.n), _same(state_out.h.n,
                                                                        state_out.w.n)
        row.j_in, row.j_out = _same(state_in.h.j, state_in.w.j), _same(state_out.h.j,
                                                                       state_out.w.j)
        row.r_in, row.r_out = _same(state_in.h.r, state_in.w.r), _same(state_out.h.r,
                                                                       state_out.w.r)
        row.start_in = _same(state_in.h.start, state_in.w.start)
        row.start_out = _same(state_out.h.start, state_out.w.start)
        row.ch_in = in_shape[1] if in_shape and len(in_shape) > 1 else None
        row.ch_out = out_shape[1] if len(out_shape) > 1 else None
        row.activation = math.prod(out_shape[1:])
        row.exceeds_input = state_out.h.r > h or state_out.w.r > w
        rows.append(row)

    if not rows:
        raise RFError("the model runs no operation on its input")
    table = RFTable(rows, tuple(input_size))
    if output_row is not None:
        table.final = output_row
    return table


def _is_merge(node: fx.Node, inputs: list[fx.Node]) -> bool:
    return len(inputs) > 1 and (node.target in _MERGE_FUNCTIONS or (
        node.op == "call_method" and node.target in _POINTWISE_METHODS))


def _name(node: fx.Node) -> str:
    return node.target if node.op == "call_module" else node.name


def _kind(node: fx.Node) -> str:
    """The op a function or method node calls, e.g. "add", "chunk"."""
    return node.target if isinstance(node.target, str) else getattr(
        node.target, "__name__", str(node.target))


def _rule(node: fx.Node, modules: dict[str, nn.Module], custom: dict[type, Any],
          states: dict[fx.Node, Spatial], inputs: list[fx.Node]
          ) -> tuple[Callable[[Spatial], Spatial], RFRow]:
    """Return (state transform, partly filled row) for one graph node."""
    if node.op == "call_module":
        mod = modules[node.target]
        row = RFRow(node.target, type(mod).__name__,
                    params=sum(p.numel() for p in mod.parameters()))
        if isinstance(mod, nn.Flatten) and type(mod) not in custom:
            return _reshape_rule(node, inputs[0], row, states[inputs[0]]), row
        return _module_rule(mod, row, custom, states[inputs[0]]), row
    kind = _kind(node)
    row = RFRow(node.name, kind, spatial=False)
    target = node.target

    if node.op == "call_function" and (target in _MERGE_FUNCTIONS) or (
            node.op == "call_method" and target in _POINTWISE_METHODS and len(inputs) > 1):
        if len(inputs) > 1:
            row.spatial = True
            return (lambda _: _merge(node, inputs, states)), row
        return (lambda s: s), row
    if node.op == "call_function" and target in _POINTWISE_FUNCTIONS:
        return (lambda s: s), row
    if target is operator.getitem and _several_tensors(inputs[0]):
        return (lambda s: s), row  # one of the pieces of a split
    if target is operator.getitem and _shape(inputs[0]) is not None:
        return _index_rule(node, inputs[0], row, states[inputs[0]]), row
    if node.op == "call_method" and target in _POINTWISE_METHODS:
        return (lambda s: s), row
    if target in _LOGSOFTMAX or (node.op == "call_method" and target in
                                 ("softmax", "log_softmax")):
        return _softmax_rule(node, row, states[inputs[0]]), row
    if (node.op == "call_function" and target in _SHAPE_FUNCTIONS) or (
            node.op == "call_method" and target in _SHAPE_METHODS):
        return _reshape_rule(node, inputs[0], row, states[inputs[0]]), row
    if (node.op == "call_function" and target in _AXES_FUNCTIONS) or (
            node.op == "call_method" and target in _AXES_METHODS):
        return _axes_rule(node, inputs[0], row), row
    if node.op == "call_function" and target in (F.max_pool2d, F.avg_pool2d):
        return _functional_pool(node, row), row
    if node.op == "call_function" and target is F.pad:
        return _pad_rule(node, row), row
    if node.op == "call_function" and target in (F.adaptive_avg_pool2d,
                                                 F.adaptive_max_pool2d):
        size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
        row.spatial = True
        return (lambda s: _adaptive(s, size, row)), row
    if (node.op == "call_function" and target in _REDUCE_FUNCTIONS) \
            or (node.op == "call_method" and target in _REDUCE_METHODS):
        return _reduce_rule(node, inputs[0], row), row
    if node.op == "call_function" and target is F.linear:
        return _linear_rule(states[inputs[0]], row), row
    raise RFError(_declare_hint(f"operation {kind!r} (graph node {node.name!r})"))


def _module_rule(mod: nn.Module, row: RFRow, custom: dict[type, Any], state: Spatial
                 ) -> Callable[[Spatial], Spatial]:
    spec = next((v for k, v in custom.items() if isinstance(mod, k)), None)
    if spec == POINTWISE or (spec is None and isinstance(mod, _POINTWISE_MODULES)):
        row.spatial = False
        return lambda s: s
    if isinstance(spec, Window):
        return _window_rule(row, spec.kernel, spec.stride, spec.padding, spec.dilation)
    if spec is not None:
        raise RFError(f"custom spec for {type(mod).__name__} must be 'pointwise' or "
                      f"a Window(...), got {spec!r}")
    if isinstance(mod, nn.Conv2d):
        pad = mod.padding
        if isinstance(pad, str):  # 'same' / 'valid'
            if pad == "valid":
                pad = (0, 0)
            else:
                k_eff = [d * (k - 1) + 1 for k, d in zip(mod.kernel_size, mod.dilation)]
                total = [ke - 1 for ke in k_eff]
                # PyTorch pads the extra pixel of an even total on the far side.
                return _window_rule(row, mod.kernel_size, mod.stride,
                                    [t // 2 for t in total], mod.dilation,
                                    pad_hi=[t - t // 2 for t in total])
        return _window_rule(row, mod.kernel_size, mod.stride, pad, mod.dilation)
    if isinstance(mod, nn.MaxPool2d):
        return _window_rule(row, mod.kernel_size, mod.stride or mod.kernel_size,
                            mod.padding, mod.dilation, ceil_mode=mod.ceil_mode)
    if isinstance(mod, nn.AvgPool2d):
        return _window_rule(row, mod.kernel_size, mod.stride or mod.kernel_size,
                            mod.padding, 1, ceil_mode=mod.ceil_mode)
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return lambda s: _adaptive(s, mod.output_size, row)
    if isinstance(mod, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
                        nn.ReplicationPad2d)):
        left, right, top, bottom = mod.padding
        row.padding = _same((top, bottom), (left, right))
        row.kernel, row.stride = 1, 1
        return lambda s: Spatial(s.h.window(1, 1, top, bottom),
                                 s.w.window(1, 1, left, right), s.flat)
    if isinstance(mod, nn.Linear):
        row.ch_in, row.ch_out = mod.in_features, mod.out_features
        return _linear_rule(state, row)
    raise RFError(_declare_hint(f"module {row.name!r} ({type(mod).__name__})",
                                type(mod).__name__))


def _window_rule(row: RFRow, kernel, stride, padding, dilation, ceil_mode=False,
                 pad_hi=None) -> Callable[[Spatial], Spatial]:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    p_hi = _pair(pad_hi) if pad_hi is not None else p
    row.kernel, row.stride, row.dilation = _same(*k), _same(*s), _same(*d)
    row.padding = _same(*p) if p == p_hi else (p, p_hi)

    def rule(st: Spatial) -> Spatial:
        if st.flat:
            raise RFError(f"{row.name!r} ({row.kind}) slides over a flattened tensor")
        return Spatial(st.h.window(k[0], s[0], p[0], p_hi[0], d[0], ceil_mode),
                       st.w.window(k[1], s[1], p[1], p_hi[1], d[1], ceil_mode))
    return rule


def _adaptive(st: Spatial, size: Any, row: RFRow) -> Spatial:
    """Adaptive pooling: global when the output is 1, else PyTorch's real windows."""
    size = _pair(size) if size is not None else (None, None)
    axes = []
    kernels = []
    for ax, o in zip((st.h, st.w), size):
        o = ax.n if o is None else o
        if o == 1:
            axes.append(ax.whole())
            kernels.append(ax.n)
            continue
        n = int(ax.n)
        # PyTorch's window i covers [floor(i*n/o), ceil((i+1)*n/o)).
        starts = [(i * n) // o for i in range(o)]
        ends = [-((-(i + 1) * n) // o) for i in range(o)]
        widths = [e - b for b, e in zip(starts, ends)]
        steps = {b2 - b1 for b1, b2 in zip(starts, starts[1:])}
        k = max(widths)
        stride: float = steps.pop() if len(steps) == 1 else n / o
        kernels.append(k if len(set(widths)) == 1 else tuple(sorted(set(widths))))
        axes.append(Axis(o, ax.j * stride, ax.r + (k - 1) * ax.j,
                         ax.start + (widths[0] - 1) / 2 * ax.j))
    row.kernel = _same(*kernels)
    return Spatial(axes[0], axes[1])


def _linear_rule(state: Spatial, row: RFRow) -> Callable[[Spatial], Spatial]:
    """A Linear mixes its input's last axis: the whole map when the positions
    are there (after x.flatten(1)); channels otherwise, after a permute to
    channels-last (a 1x1 convolution, in ConvNeXt) or x.flatten(2).transpose(1, 2)."""
    if -1 not in state.axes:
        row.spatial = False
        return lambda s: s
    row.spatial = True
    return _linear_state


def _linear_state(st: Spatial) -> Spatial:
    """A Linear after a spatial map sees all of it (its input was flattened)."""
    return Spatial(st.h.whole(), st.w.whole(), flat=True, axes=FLAT_LAST)


def _merge(node: fx.Node, inputs: list[fx.Node], states: dict[fx.Node, Spatial]
           ) -> Spatial:
    """Branches meeting at add/cat/...: check alignment, keep the largest RF."""
    if node.target is torch.cat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        shape = _shape(inputs[0])
        if shape is not None and _on_positions(states[inputs[0]], dim, len(shape)):
            raise RFError(_declare_hint(
                f"torch.cat along a spatial dimension ({node.name!r})"))
    # A 1x1 map spread over a larger one (x * gate, the squeeze-and-excitation
    # block) has no position to align: it gives every unit its RF.
    out = _shape(node)
    local = [i for i in inputs if not _spread(i, out)] or inputs
    first = states[local[0]]
    for other in local[1:]:
        st = states[other]
        if st.axes != first.axes:
            raise RFError(f"branches meeting at {node.name!r} hold height and width "
                          f"on different axes ({first.axes} and {st.axes}): permute "
                          "one of them first.")
        for axis, a, b in (("height", first.h, st.h), ("width", first.w, st.w)):
            if (a.n, a.j, a.start) != (b.n, b.j, b.start) and not (a.n == 1 == b.n):
                names = [repr(local[0].name), repr(other.name)]
                width = max(map(len, names))
                raise RFError(
                    f"branches meeting at {node.name!r} are misaligned along {axis}:\n"
                    f"  {names[0]:<{width}} has n={_fmt(a.n)}, jump={_fmt(a.j)}, "
                    f"start={_fmt(a.start)}\n"
                    f"  {names[1]:<{width}} has n={_fmt(b.n)}, jump={_fmt(b.j)}, "
                    f"start={_fmt(b.start)}\n"
                    "Units that are added or concatenated must be centred on the same\n"
                    "input pixels: make the strides and paddings of the branches match.")
    h = max((states[i].h for i in local), key=lambda a: a.r)
    w = max((states[i].w for i in local), key=lambda a: a.r)
    return Spatial(replace(h, r=max(states[i].h.r for i in inputs)),
                   replace(w, r=max(states[i].w.r for i in inputs)),
                   any(states[i].flat for i in inputs), first.axes)


def _spread(src: fx.Node, out: tuple[int, ...] | None) -> bool:
    """Whether `src` is a 1x1 map that broadcasting spreads over a larger `out`."""
    shape = _shape(src)
    return (out is not None and shape is not None and len(out) == len(shape) == 4
            and shape[2:] == (1, 1) and out[2:] != (1, 1))


def _softmax_rule(node: fx.Node, row: RFRow, state: Spatial
                  ) -> Callable[[Spatial], Spatial]:
    """A softmax over channels changes no RF; over positions it mixes them all."""
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    shape = _shape(node.all_input_nodes[0])
    if shape is not None and dim is not None and _on_positions(state, dim, len(shape)):
        row.spatial = True
        return lambda s: replace(s, h=s.h.whole(), w=s.w.whole())
    return lambda s: s


def _reshape_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                  ) -> Callable[[Spatial], Spatial]:
    """view / reshape / flatten. Allowed: regrouping other axes (a channel
    shuffle), merging height and width into one axis (flatten: the state goes
    `flat`) and splitting that axis back. Anything that moves pixels between
    positions is refused."""
    row.spatial = False
    shape_in, shape_out = _shape(src), _shape(node)
    if not shape_in or not shape_out or tuple(shape_in) == tuple(shape_out):
        return lambda s: s
    nd_in, nd_out = len(shape_in), len(shape_out)
    if state.h.n == 1 and state.w.n == 1:  # one unit: no position to move
        if not state.flat and shape_out[-2:] == (1, 1) and nd_out >= 4:
            return lambda s: replace(s, axes=CHANNELS_FIRST)
        return lambda s: replace(s, flat=True, axes=FLAT_LAST)
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
        raise RFError(f"{node.name!r} reshapes {tuple(shape_in)} to {tuple(shape_out)},"
                      " which moves pixels between positions.\n"
                      + _declare_hint("This reshape"))
    flat, axes = new
    return lambda s: replace(s, flat=flat, axes=axes)


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


def _index_rule(node: fx.Node, src: fx.Node, row: RFRow, state: Spatial
                ) -> Callable[[Spatial], Spatial]:
    """x[..., a:b:s, c:d:t]: a crop (and a stride, for a step) of the map. A
    unit keeps its RF; the first one kept is `a` units in, and `s` apart.
    Indexing other axes (channels, logits) changes nothing."""
    shape_in, shape_out = _shape(src), _shape(node)
    if state.h.n == 1 and state.w.n == 1:  # one unit: no position to cut
        return lambda s: s
    nd = len(shape_in)
    index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    if index.count(Ellipsis) == 1:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (nd + 1 - len(index)) + index[k + 1:]
    index = tuple(index) + (slice(None),) * (nd - len(index))
    cuts = [i for d, i in enumerate(index) if _on_positions(state, d, nd)]
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
        raise RFError(f"{node.name!r} indexes a map with {problem}.\n"
                      "Slices of height and width with constant starts and steps,\n"
                      "such as x[:, :, 1:-1, ::2], are followed.\n"
                      + _declare_hint("This indexing"))
    (h_cut, w_cut), (h_out, w_out) = cuts, shape_out[2:]
    row.stride = _same(h_cut.step or 1, w_cut.step or 1)
    row.spatial = True

    def cut(ax: Axis, sl: slice, n_out: int) -> Axis:
        first = sl.start or 0
        first = min(max(first + ax.n if first < 0 else first, 0), ax.n)
        return Axis(n_out, ax.j * (sl.step or 1), ax.r, ax.start + first * ax.j)

    return lambda s: replace(s, h=cut(s.h, h_cut, h_out), w=cut(s.w, w_cut, w_out))


def _several_tensors(node: fx.Node) -> bool:
    """Whether `node` returns several tensors (chunk, split, unbind)."""
    meta = node.meta.get("tensor_meta")
    return isinstance(meta, (tuple, list)) and len(meta) > 0 and all(
        hasattr(m, "shape") for m in meta)


def _split_state(node: fx.Node, src: fx.Node, states: dict[fx.Node, Spatial]
                 ) -> Spatial:
    """chunk / split / unbind along channels: each piece keeps every pixel."""
    kind = _kind(node)
    if kind not in _SPLITS:
        raise RFError(_declare_hint(f"operation {kind!r} (graph node {node.name!r}),"
                                    " which returns several tensors,"))
    where = 1 if kind == "unbind" else 2  # the position of `dim` after the tensor
    dim = node.kwargs.get("dim", node.args[where] if len(node.args) > where else 0)
    shape = _shape(src)
    if shape is not None and _on_positions(states[src], dim, len(shape)):
        raise RFError(_declare_hint(f"{kind} along a spatial axis ({node.name!r})"))
    return states[src]


_SPLITS = {"chunk", "split", "tensor_split", "unbind"}


def _axes_rule(node: fx.Node, src: fx.Node, row: RFRow
               ) -> Callable[[Spatial], Spatial]:
    """transpose / permute: the same units, with height and width moved to
    other axes (a channel shuffle leaves them last; ConvNeXt moves channels
    last and back)."""
    shape = _shape(src)
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


_REDUCE_FUNCTIONS = {torch.mean, torch.amax, torch.amin, torch.sum,
                     torch.logsumexp}
_REDUCE_METHODS = {"mean", "amax", "amin", "sum", "max", "min", "logsumexp"}


def _reduce_rule(node: fx.Node, src: fx.Node, row: RFRow
                 ) -> Callable[[Spatial], Spatial]:
    """mean / sum / amax ... over some axes: over height and width (or the axis
    they were merged into) it is a global pooling; over other axes, nothing."""
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    shape = _shape(src)
    if shape is None:
        return lambda s: s
    nd = len(shape)
    dims = range(nd) if dims is None else (dims,) if isinstance(dims, int) else dims
    dims = {d % nd - nd for d in dims}  # counted from the last axis, like `axes`

    def reduce(s: Spatial) -> Spatial:
        spatial = set(s.axes)
        if spatial <= dims:
            row.spatial = True
            return Spatial(s.h.whole(), s.w.whole(), flat=True, axes=FLAT_LAST)
        if spatial & dims:
            raise RFError(f"{node.name!r} reduces over one spatial axis only.\n"
                          + _declare_hint("This reduction"))
        # A removed axis before height and width moves them towards the end.
        kept = node.kwargs.get("keepdim", False) or (
            len(node.args) > 2 and node.args[2] is True)
        shift = 0 if kept else sum(1 for d in dims if d > max(spatial))
        return replace(s, axes=tuple(a + shift for a in s.axes))

    return reduce


def _pad_rule(node: fx.Node, row: RFRow) -> Callable[[Spatial], Spatial]:
    """F.pad(x, (left, right, top, bottom)): like nn.ZeroPad2d (whatever the
    mode: a reflected pixel is still inside the RF). Negative pads crop."""
    pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
    if not all(isinstance(v, int) for v in pad):
        raise RFError(f"{node.name!r} pads by amounts computed at run time.\n"
                      "Give them as numbers, or pad with nn.ZeroPad2d.")
    left, right, top, bottom = (list(pad) + [0, 0, 0, 0])[:4]
    row.padding = _same((top, bottom), (left, right))
    row.kernel, row.stride = 1, 1
    return lambda s: replace(s, h=s.h.window(1, 1, top, bottom),
                             w=s.w.window(1, 1, left, right))


def _functional_pool(node: fx.Node, row: RFRow) -> Callable[[Spatial], Spatial]:
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"]
    if node.target is F.avg_pool2d:
        names = ["input", "kernel_size", "stride", "padding", "ceil_mode"]
    args = dict(zip(names, node.args)) | dict(node.kwargs)
    k = args["kernel_size"]
    row.spatial = True
    settings = [v for name, v in args.items() if name != "input"]
    if any(isinstance(v, fx.Node) or (isinstance(v, (tuple, list)) and any(
            isinstance(x, fx.Node) for x in v)) for v in settings):
        # A window computed at run time, F.avg_pool2d(x, x.size()[2:]): followed
        # when it pools the whole map, the usual reason to write it.
        if tuple((_shape(node) or ())[2:]) == (1, 1):
            return lambda s: Spatial(s.h.whole(), s.w.whole())
        raise RFError(f"{node.name!r} pools with a window computed at run time.\n"
                      "Give the window as numbers, or pool the whole map with\n"
                      "F.adaptive_avg_pool2d(x, 1).")
    return _window_rule(row, k, args.get("stride") or k, args.get("padding", 0),
                        args.get("dilation", 1), args.get("ceil_mode", False))


# -------------------------------------------------------- empirical and plots
def unit_box(row: RFRow, i: int, k: int) -> tuple[float, float, float, float]:
    """(top, left, height, width), in input pixels, of unit (i, k)'s RF at `row`."""
    (sh, sw), (jh, jw), (rh, rw) = (_pair_any(row.start_out), _pair_any(row.j_out),
                                    _pair_any(row.r_out))
    return sh + i * jh - rh / 2, sw + k * jw - rw / 2, rh, rw


def _pair_any(v: Any) -> tuple[Any, Any]:
    return tuple(v) if isinstance(v, tuple) else (v, v)


def effective_rf(model: nn.Module, image: torch.Tensor, layer: str,
                 unit: tuple[int, int] | None = None) -> torch.Tensor:
    """|d(unit) / d(input)|: the effective receptive field (Luo et al., 2016).

    image: (C, H, W). `layer` names a submodule (e.g. "block2.1"); the unit is
    the sum over channels at spatial position `unit` (default: the centre).
    Returns an (H, W) map, normalised to a maximum of 1.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise KeyError(f"no submodule {layer!r}; try one of {list(modules)[1:]}")
    grabbed = {}
    handle = modules[layer].register_forward_hook(
        lambda m, i, o: grabbed.__setitem__("out", o))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = image.to(param.device, param.dtype).unsqueeze(0).requires_grad_(True)
        model(x)
        out = grabbed["out"]
        if out.dim() == 4:
            i, k = unit if unit is not None else (out.shape[2] // 2, out.shape[3] // 2)
            target = out[0, :, i, k].sum()
        else:
            target = out[0].sum()
        (grad,) = torch.autograd.grad(target, x)
    finally:
        handle.remove()
        model.train(was_training)
    g = grad[0].abs().sum(0)
    return (g / g.max().clamp_min(1e-12)).cpu()


# ---------------------------------------------------------------------- CLI
def _load(spec: str) -> nn.Module:
    if ":" not in spec:
        raise SystemExit(f"error: {spec!r} is not PACKAGE.MODULE:CALLABLE "
                         "(e.g. mnist_lib.models:Model_4)")
    mod_name, attr = spec.split(":", 1)
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"error: cannot load {spec!r}: {err}")
    return obj() if not isinstance(obj, nn.Module) else obj


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnist_lib.rf",
                                description="Receptive-field table of a PyTorch model.")
    p.add_argument("model", help="PACKAGE.MODULE:CALLABLE, e.g. mnist_lib.models:Model_4")
    p.add_argument("--input", default="1,28,28", help="C,H,W (default 1,28,28)")
    p.add_argument("--format", default="table",
                   choices=["table", "markdown", "csv", "json"])
    p.add_argument("--all", action="store_true",
                   help="list every op, not only those that change the RF")
    p.add_argument("--columns", default=",".join(COLUMNS),
                   help="comma-separated columns, e.g. name,kernel,stride,j_out,r_out "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        columns = check_columns([c.strip() for c in args.columns.split(",")
                                 if c.strip()])
    except ValueError as err:
        p.error(f"--columns: {err}")
    try:
        size = tuple(int(v) for v in args.input.split(","))
        if len(size) != 3 or min(size) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--input must be three positive integers C,H,W, got {args.input!r}")
    model = _load(args.model)
    try:
        table = receptive_field(model, size)
    except RFError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.format == "table":
        print(table.to_text(args.all, columns))
        f = table.final
        print(f"\noutput RF {f.r_out} px, jump {f.j_out} px"
              + (" (larger than the input)" if f.exceeds_input else ""))
    elif args.format == "markdown":
        print(table.to_markdown(args.all, columns))
    elif args.format == "csv":
        print(table.to_frame(args.all, columns).to_csv(index=False), end="")
    else:
        print(json.dumps(table.to_records(args.all, columns), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
