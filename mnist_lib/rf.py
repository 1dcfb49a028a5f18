"""Receptive fields computed from a model's real graph (torch.fx).

    >>> from mnist_lib.rf import receptive_field
    >>> from mnist_lib.models import Model_4
    >>> table = receptive_field(Model_4(), input_size=(1, 28, 28))
    >>> table.final.r_out            # RF of the output, in input pixels
    37
    >>> print(table.to_markdown())   # doctest: +SKIP

CLI:  python -m mnist_lib.rf mnist_lib.models:Model_4 --input 1,28,28
      python -m mnist_lib.rf torchvision.models:resnet18 --input 3,224,224
      python -m mnist_lib.rf my_net.py:Net      (a file of yours)

Per spatial axis every tensor carries four numbers (Araujo et al., Distill 2019;
Dang Ha The Hien's "guide to receptive field arithmetic"):

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
equals (padding d * (k - 1) - p). An op without a rule is refused with how to
declare it (`custom=`), unless it enlarges the map: no declaration describes
an upsampling, so that error says why and where to stop instead.

The calculator is six small modules. This one walks the model's graph and
picks a rule for each op (`_rule`); `rf_trace` makes the graph (torch.fx) and
records each op's shape; `rf_state` holds the arithmetic above; `rf_layers`
the rules of convs, poolings, pads, Linear layers and merging branches;
`rf_shapes` those of reshapes, permutes, slices, splits and reductions;
`rf_table` the table that `receptive_field` returns.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import math
import operator
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .rf_layers import (_adaptive, _declared, _functional_conv, _functional_pool,
                        _linear_rule, _merge, _module_rule, _pad_rule, _spread,
                        _window_rule)
from .rf_shapes import (_axes_rule, _index_rule, _reduce_rule, _repeat_rule,
                        _reshape_rule, _several_tensors, _softmax_over, _softmax_rule,
                        _split_state)
from .rf_state import (CHANNELS_FIRST, POINTWISE, Axis, RFError, Spatial, Window,
                       UnsupportedOpError, _arg, _declare_hint, _kind, _same, _shape)
from .rf_table import COLUMNS, SHOWN, RFRow, RFTable, check_columns
from .rf_trace import _check_model, _check_size, _device_dtype, _shapes, _trace
from .utils import eval_mode, quiet_on_closed_pipe

__all__ = ["receptive_field", "effective_rf", "unit_box", "main", "RFError",
           "RFRow", "RFTable", "Window", "POINTWISE", "COLUMNS", "SHOWN",
           "check_columns"]


# ------------------------------------------- op tables: which rule an op gets
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
_REDUCE_FUNCTIONS = {torch.mean, torch.amax, torch.amin, torch.sum,
                     torch.logsumexp, torch.max, torch.min}
_REDUCE_METHODS = {"mean", "amax", "amin", "sum", "max", "min", "logsumexp"}


# ------------------------------------------------------------ the calculator
def receptive_field(model: nn.Module, input_size: Sequence[int] = (1, 28, 28),
                    custom: dict[type, Any] | None = None,
                    leaf_modules: Sequence[type] = ()) -> RFTable:
    """Receptive field of every op in `model`, for an input of `input_size` (C, H, W).

    custom: {module class: "pointwise" | Window(...)} for modules the
        calculator does not know; a declared class is one op, not traced inside,
        and its declaration must give the map size the module really gives.
    leaf_modules: classes to keep as one op without declaring them, e.g. your
        subclass of nn.Conv2d, which then counts as a Conv2d.
    Raises RFError, naming the op and the fix, for anything it cannot handle.
    """
    input_size = _check_size(input_size)
    custom = dict(custom or {})
    leaves = tuple(leaf_modules) + tuple(custom)
    _check_model(model, leaves)
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
        try:
            rule, row = _rule(node, modules, custom, states, inputs)
        except UnsupportedOpError:
            # An op without a rule that enlarges the map gets the reason, not
            # a hint to declare it, which could not be right.
            _refuse_upsampling(node, modules, states[inputs[0]], out_shape)
            raise
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
        _check_map_size(node, row, modules, custom, state_out, out_shape)
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


def _map_sizes(state: Spatial, out_shape: tuple[int, ...]
               ) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(height, width) of the map in `state`, and of an op's real output on the
    same axes; None where there is no map (flattened, or not (N, C, H, W))."""
    if state.flat or len(out_shape) != 4:
        return None
    return (state.h.n, state.w.n), (out_shape[state.axes[0]], out_shape[state.axes[1]])


def _size_text(n: tuple[int, int]) -> str:
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
    if n_out == n_in or n_out[0] < n_in[0] or n_out[1] < n_in[1]:
        return
    mod = modules.get(node.target) if node.op == "call_module" else None
    what = (f"module {node.target!r} ({type(mod).__name__})" if mod is not None
            else f"operation {_kind(node)!r} (graph node {node.name!r})")
    size_in, size_out = _size_text(n_in), _size_text(n_out)
    raise RFError(
        f"{what} enlarges the map\nfrom {size_in} to {size_out}: an upsampling. "
        "The RF arithmetic here follows\n"
        "layers that keep or shrink the map. After an upsampling, neighbouring\n"
        "units copy the same unit (nearest) or mix different numbers of units\n"
        "(bilinear, a transposed conv), so no single jump and RF describe them.\n"
        "For an encoder-decoder (an autoencoder, a U-Net), give the calculator\n"
        "the part before the first upsampling: model.encoder, say, or model[:k]\n"
        "for an nn.Sequential."
    ) from None


def _check_map_size(node: fx.Node, row: RFRow, modules: dict[str, nn.Module],
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
    declared = _declared(mod, custom)
    real, rule = _size_text(real_n), _size_text(rule_n)
    if declared is None:
        raise RFError(f"{row.name!r} ({row.kind}) gives a {real} map, not the {rule} "
                      "its rule computes;\nplease report this model")
    raise RFError(
        f"{row.name!r} ({row.kind}) gives a {real} map, but the declaration\n"
        f"    custom={{{declared.__name__}: {custom[declared]!r}}}\n"
        f"makes it {rule}. Declare the Window(kernel, stride, padding, dilation)\n"
        "it slides; a module that resamples the map (an upsampling, say) is\n"
        "beyond this calculator.")


def _is_merge(node: fx.Node, inputs: list[fx.Node]) -> bool:
    return len(inputs) > 1 and (node.target in _MERGE_FUNCTIONS or (
        node.op == "call_method" and node.target in _POINTWISE_METHODS))


def _name(node: fx.Node) -> str:
    return node.target if node.op == "call_module" else node.name


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
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax, nn.Softmin)) \
                and type(mod) not in custom:
            rule = _softmax_over(mod.dim, _shape(inputs[0]), row, states[inputs[0]])
            return rule, row
        return _module_rule(mod, row, custom, states[inputs[0]]), row
    kind = _kind(node)
    row = RFRow(node.name, kind, spatial=False)
    target = node.target

    # max / min of two maps (torch.max(a, b), a.max(b)) is elementwise, as in
    # maxout; of one map it is a reduction (with a dim it returns indices too:
    # see _split_state).
    two_maps = target in (torch.max, torch.min, "max", "min") and len(inputs) > 1
    merge_fn = node.op == "call_function" and target in _MERGE_FUNCTIONS
    merge_method = (node.op == "call_method" and target in _POINTWISE_METHODS
                    and len(inputs) > 1)
    if merge_fn or merge_method or two_maps:
        if len(inputs) > 1:
            row.spatial = True
            return (lambda _: _merge(node, inputs, states)), row
        return (lambda s: s), row
    if node.op == "call_function" and target in _POINTWISE_FUNCTIONS:
        return (lambda s: s), row
    if target in (operator.getitem, getattr) and _several_tensors(inputs[0]):
        return (lambda s: s), row  # a piece of a split, or .values of x.max(1)
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
    if node.op == "call_method" and target in ("expand", "expand_as", "repeat"):
        return _repeat_rule(node, inputs[0], row, states[inputs[0]]), row
    if (node.op == "call_function" and target in _AXES_FUNCTIONS) or (
            node.op == "call_method" and target in _AXES_METHODS):
        return _axes_rule(node, inputs[0], row), row
    if node.op == "call_function" and target in (F.max_pool2d, F.avg_pool2d):
        return _functional_pool(node, row), row
    if node.op == "call_function" and target in (F.conv2d, torch.conv2d):
        return _functional_conv(node, row), row
    if node.op == "call_function" and target in (F.conv_transpose2d,
                                                 torch.conv_transpose2d):
        return _functional_conv(node, row, transposed=True), row
    if node.op == "call_function" and target in (F.pixel_unshuffle,
                                                 torch.pixel_unshuffle):
        # Each r x r block becomes one position's channels: a window r, stride r.
        factor = _arg(node, "downscale_factor", 1)
        row.spatial = True
        return _window_rule(row, factor, factor, 0, 1), row
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
    what = f"operation {kind!r} (graph node {node.name!r})"
    raise UnsupportedOpError(_declare_hint(what))


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
    Returns an (H, W) map, normalised to a maximum of 1. Raises RFError for
    an unknown layer, an image that is not (C, H, W) or a unit off the map.
    """
    _check_model(model, ())
    modules = dict(model.named_modules())
    if layer not in modules:
        raise RFError(f"no submodule {layer!r}; try one of {list(modules)[1:]}")
    if image.dim() != 3:
        raise RFError(f"image must be one (C, H, W) image, got shape "
                      f"{tuple(image.shape)}: for a (1, C, H, W) batch pass image[0], "
                      "for an (H, W) digit image[None]")
    grabbed = {}
    handle = modules[layer].register_forward_hook(
        lambda m, i, o: grabbed.__setitem__("out", o))
    try:
        with eval_mode(model):
            device, dtype = _device_dtype(model)
            x = image.to(device, dtype).unsqueeze(0).requires_grad_(True)
            model(x)
            out = grabbed["out"]
            if out.dim() == 4:
                size = tuple(out.shape[2:])
                i, k = unit if unit is not None else (size[0] // 2, size[1] // 2)
                if not (0 <= i < size[0] and 0 <= k < size[1]):
                    raise RFError(f"unit {(i, k)} is outside {layer}'s {size} map: "
                                  f"rows 0-{size[0] - 1}, columns 0-{size[1] - 1}")
                target = out[0, :, i, k].sum()
            else:
                target = out[0].sum()
            (grad,) = torch.autograd.grad(target, x)
    finally:
        handle.remove()
    g = grad[0].abs().sum(0)
    return (g / g.max().clamp_min(1e-12)).cpu()


# ---------------------------------------------------------------------- CLI
def _import_file(path: Path) -> Any:
    """The module in a .py file, imported as a script would be: its folder
    first on sys.path, so that it can import the files beside it."""
    if not path.is_file():
        raise SystemExit(f"error: no file {str(path)!r}")
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise SystemExit(f"error: running {str(path)!r} failed: "
                         f"{type(err).__name__}: {err}")
    return module


def _models_hint(module: Any, where: str, attr: str) -> str:
    """What `module` (named `where`) offers instead of `attr`, a student's typo:
    the closest public name, then the models (nn.Module classes) it defines."""
    public = {name: obj for name, obj in vars(module).items()
              if not name.startswith("_")}
    # Its own classes and its submodules' (torch.nn's Conv2d lives in
    # torch.nn.modules.conv), not those it imports (a file's `nn.Conv2d`).
    models = sorted(name for name, obj in public.items()
                    if isinstance(obj, type) and issubclass(obj, nn.Module)
                    and (obj.__module__ + ".").startswith(module.__name__ + "."))
    close = difflib.get_close_matches(attr, public, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    if not models:
        hint += (f"{where} defines no nn.Module class: name the class or the "
                 "function that builds your model.")
    else:
        more = f" and {len(models) - 12} more" if len(models) > 12 else ""
        hint += f"The models {where} defines: {', '.join(models[:12])}{more}."
    # Never break inside a name or a path: it must read as one, to be copied.
    return textwrap.fill(hint, 77, break_long_words=False, break_on_hyphens=False)


def _load(spec: str) -> nn.Module:
    if ":" not in spec:
        raise SystemExit(f"error: {spec!r} is not PACKAGE.MODULE:CALLABLE or "
                         "FILE.py:CALLABLE (e.g. mnist_lib.models:Model_4, "
                         "my_net.py:Net)")
    mod_name, attr = spec.rsplit(":", 1)
    try:
        module = (_import_file(Path(mod_name)) if mod_name.endswith(".py")
                  else importlib.import_module(mod_name))
    except (ImportError, AttributeError) as err:  # also raised by a module's code
        raise SystemExit(f"error: cannot load {spec!r}: {err}")
    try:
        obj = getattr(module, attr)
    except AttributeError as err:
        raise SystemExit(f"error: cannot load {spec!r}: {err}\n"
                         + _models_hint(module, mod_name, attr))
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SystemExit(f"error: {spec!r} is a {type(obj).__name__}, not a model "
                         "or a class or function that builds one")
    try:
        model = obj()
    except TypeError as err:
        # The usual cause: a constructor that needs arguments (nn.LSTM, say).
        raise SystemExit(
            f"error: {attr}() failed: {err}\n"
            f"The CLI builds the model by calling {attr} with no arguments. Name a\n"
            "function that needs none (e.g. `def make(): return MyNet(10)` in your\n"
            "module), or call receptive_field(model, (C, H, W)) from Python.")
    if not isinstance(model, nn.Module):
        raise SystemExit(f"error: {attr}() returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnist_lib.rf",
                                description="Receptive-field table of a PyTorch model.")
    p.add_argument("model",
                   help="PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE, e.g. "
                        "mnist_lib.models:Model_4 or my_net.py:Net")
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
