"""What the receptive-field calculator (`mnist_lib.rf`) knows about a tensor.

Per spatial axis, four numbers (`Axis`): size n, jump j, receptive field r and
the centre of the first unit, start. A sliding window updates them with

    n_out = floor((n_in + 2p - k_eff) / s) + 1
    j_out = j_in * s
    r_out = r_in + (k_eff - 1) * j_in
    start_out = start_in + ((k_eff - 1) / 2 - p) * j_in

(`Axis.window`). `Spatial` holds one `Axis` for each spatial axis (the length
of a sequence, the height and width of an image, the depth, height and width
of a clip) and where they sit in the tensor. Also here: the error the
calculator raises and the help it gives, and the two ways to declare a module
it does not know (`Window`, `POINTWISE`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.fx as fx


class RFError(ValueError):
    """The calculator cannot give a correct RF. Its message: a line that names
    the op (or the argument) and what is wrong, then a line "Fix: ...", and
    only then any code to copy or the error the model itself raised."""


class RFWarning(UserWarning):
    """The calculator gave its table, but could not check all of it: what it
    left unchecked, and why."""


class UnsupportedOpError(RFError):
    """An RFError for an op the calculator has no rule for, and that the model
    does not declare. `receptive_field` tells it apart from other RFErrors, so
    that an op that enlarges the map is refused as an upsampling instead."""


@dataclass(frozen=True)
class Axis:
    """RF arithmetic along one spatial axis."""

    n: int | float      # feature-map size
    j: float            # jump (effective stride), input pixels
    r: float            # receptive field, input pixels
    start: float        # centre of the first unit, input-pixel coordinates
    # After an adaptive pooling whose windows are not evenly spaced (10 -> 7,
    # say): the axis it pooled, whose whole extent the units still cover. The
    # units then have no single jump, `j` is the largest step and `r` the
    # largest RF, and no window but a 1x1 one can follow.
    uneven: "Axis | None" = None
    # From a global operation on (a global pooling, a Linear over the whole
    # map, the squeeze-and-excitation gate it feeds): every unit depends on a
    # whole map, so its RF is "global". `r` then stays the RF of the
    # convolutional path, as if the global operations were not there.
    glob: bool = False
    # Every unit a copy of one global unit (a gate expanded over the map with
    # expand_as): the units have no jump or centre of their own, and a merge
    # spreads them as it spreads a 1x1 gate.
    copies: bool = False

    def window(self, k: int, s: int, p_lo: int, p_hi: int, d: int = 1,
               ceil_mode: bool = False, op: str = "a window") -> "Axis":
        """Apply a sliding window (conv or pool) with padding p_lo/p_hi; `op`
        names it in an error (e.g. "'pool' (MaxPool2d)")."""
        k_eff = d * (k - 1) + 1
        if self.copies:  # copies of one unit stay copies of it
            n_out = (self.n + p_lo + p_hi - k_eff) // s + 1
            return Axis(n_out, self.j, self.r, self.start, glob=True, copies=True)
        if self.uneven is not None:
            # Its units would have different RFs and no single jump.
            if (k_eff, s, p_lo, p_hi) != (1, 1, 0, 0):
                raise RFError(
                    f"{op} slides a {k_eff}-px window over unevenly spaced units.\n"
                    f"Fix: before it, adaptive-pool the {int(self.uneven.n)}-unit map "
                    "to a size that divides it.")
            return self
        span = self.n + p_lo + p_hi - k_eff
        if span < 0:
            raise RFError(f"{op}: a {k_eff}-px window does not fit a {self.n}-px map.\n"
                          "Fix: declare the Window the module slides, or give a "
                          "larger input.")
        n_out = (math.ceil(span / s) if ceil_mode else span // s) + 1
        if ceil_mode and (n_out - 1) * s >= self.n + p_lo:
            n_out -= 1  # PyTorch: the last window must start inside the input
        return Axis(n_out, self.j * s, self.r + (k_eff - 1) * self.j,
                    self.start + ((k_eff - 1) / 2 - p_lo) * self.j, glob=self.glob)

    def whole(self) -> "Axis":
        """One unit that pools the whole map (global pooling, a Linear): a
        global operation. Its RF is "global", and `r` keeps the RF of the
        convolutional path: the r + (n - 1) * j pixels the map spans would
        only grow with the input. Over a map of one unit nothing is pooled."""
        if self.n == 1 and self.uneven is None and not self.copies:
            return self
        if self.copies:  # one global unit, copied: pooling them gives it back
            return Axis(1, self.j, self.r, self.start, glob=True)
        # After an uneven adaptive pooling, the units cover the map it pooled.
        span = self.uneven or self
        return Axis(1, span.j * span.n, self.r, span.start + (span.n - 1) / 2 * span.j,
                    glob=True)


@dataclass(frozen=True)
class Spatial:
    """Per-axis state of a tensor: one `Axis` for each spatial axis (a
    sequence's length; an image's height and width; a clip's depth, height
    and width), and where they sit in the tensor; `flat` once they are merged
    into one axis (by flatten or view): reducing or a Linear over it sees
    everything."""

    dims: tuple[Axis, ...]
    flat: bool = False
    # Where the spatial axes sit, counted from the last axis: (-2, -1) for
    # (N, C, H, W); (-3, -2) after a permute to channels-last (N, H, W, C);
    # all -1 when flat with the positions last, as in (N, C, H * W). Left
    # out: channels first, the spatial axes last (`channels_first`).
    axes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.axes:
            object.__setattr__(self, "axes", channels_first(len(self.dims)))

    @property
    def nd(self) -> int:
        """How many spatial axes: 1 (a sequence), 2 (an image) or 3 (a clip)."""
        return len(self.dims)

    def each(self, f: Callable[[Axis], Axis]) -> "Spatial":
        """This state with `f` applied to every spatial axis."""
        return replace(self, dims=tuple(f(a) for a in self.dims))


def channels_first(nd: int) -> tuple[int, ...]:
    """Where `nd` spatial axes sit in (N, C, *spatial): (-2, -1) for an image."""
    return tuple(range(-nd, 0))


def flat_last(nd: int) -> tuple[int, ...]:
    """Where `nd` spatial axes sit once merged into the last axis (N, C, H * W)."""
    return (-1,) * nd


# An input's size, without the batch, by its number of spatial axes: the
# channels, then one size an axis (a sequence's, an image's, a clip's).
INPUT_FORMS = {1: "(C, L)", 2: "(C, H, W)", 3: "(C, D, H, W)"}
# What the errors call the spatial axes of a sequence, an image and a clip.
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def axis_name(state: Spatial, i: int) -> str:
    """The name of spatial axis `i` of `state`, e.g. "height"."""
    return AXIS_NAMES[state.nd][i]


def spatial_words(nd: int) -> str:
    """The spatial axes of an `nd`-axis map, as errors say them: "length",
    "height or width", "depth, height or width"."""
    names = AXIS_NAMES[nd]
    return names[0] if nd == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def spatial_dims(nd: int) -> str:
    """The spatial axes of an (N, C, ...) map of `nd` of them as a `dim`
    argument, as fixes write it: "(2, 3)" for an image, "2" for a sequence."""
    return "2" if nd == 1 else f"({', '.join(str(d) for d in range(2, nd + 2))})"


def shape_letters(nd: int) -> str:
    """The spatial axes of a shape as (N, C, H, W) writes them: "H, W"."""
    return {1: "L", 2: "H, W", 3: "D, H, W"}[nd]


def on_positions(state: Spatial, dim: int, nd: int) -> bool:
    """Whether axis `dim` of an `nd`-axis tensor in `state` holds a spatial
    axis or the axis they were merged into."""
    return dim % nd - nd in state.axes


@dataclass(frozen=True)
class Window:
    """Declare a custom module as a sliding window.

    Pass it as `receptive_field(model, custom={ModuleClass: Window(...)})`.
    Each setting is one number for every spatial axis, or one per axis:
    (h, w) for an image, (d, h, w) for a clip. A setting left out is each
    module's own (its kernel_size, stride, padding or dilation, as a subclass
    of nn.Conv2d has them), else stride 1, padding 0 and dilation 1. A kernel,
    stride or dilation given must be each module's own, where it has one:
    one declaration serves every module of the class.
    """

    kernel: int | tuple[int, ...] | None = None
    stride: int | tuple[int, ...] | None = None
    # Or "same": TensorFlow's, which pads the map so that n_out = ceil(n / s),
    # the extra pixel of an odd total on the far side (timm's Conv2dSame).
    padding: int | tuple[int, ...] | str | None = None
    dilation: int | tuple[int, ...] | None = None

    def __str__(self) -> str:
        """As a declaration writes it: Window(3, 2, 'same'), Window(padding=1)."""
        names = ("kernel", "stride", "padding", "dilation")
        values = [getattr(self, n) for n in names]
        given = [i for i, v in enumerate(values) if v is not None]
        # By position up to the first setting left out, then by name.
        lead = next((i for i, v in enumerate(values) if v is None), len(values))
        parts = [repr(values[i]) if i < lead else f"{names[i]}={values[i]!r}"
                 for i in given]
        return f"Window({', '.join(parts)})"


POINTWISE = "pointwise"  # declare a custom module as not touching space


def per_axis(v: Any, nd: int) -> tuple[Any, ...]:
    """One value per spatial axis, from a value for all `nd` of them (an int,
    a float) or from a sequence of them (of any length: the caller checks)."""
    return tuple(v) if isinstance(v, (tuple, list, torch.Size)) else (v,) * nd


def agreed(*values: Any) -> Any:
    """One value when the axes agree, else the tuple of them ((h, w), say);
    a float that is a whole number as an int."""
    values = tuple(int(v) if isinstance(v, float) and v.is_integer() else v
                   for v in values)
    return values[0] if all(v == values[0] for v in values) else values


def declarations(name: str, window: str = "kernel, stride, padding, dilation",
                 pointwise: bool = True) -> str:
    """The ways to declare module class `name` to receptive_field(...), as the
    lines of code that follow a "Fix:" line: 'pointwise' (unless `pointwise`
    is False: an op known to move pixels) and the Window, with `window`'s
    arguments."""
    line = f"    custom={{{name}: Window({window})}}"
    if not pointwise:
        return line
    return f"    custom={{{name}: 'pointwise'}}  # if it moves no pixel, else\n{line}"


def declare_fix(module: str | None = None) -> str:
    """The "Fix:" line and the declarations, for module class `module`; an op
    that is not a module is first wrapped in one (YourModule)."""
    fix = ("Fix: declare it to receptive_field(...):" if module
           else "Fix: wrap it in an nn.Module (YourModule) and declare that:")
    return f"{fix}\n{declarations(module or 'YourModule')}"


def declare_hint(what: str, module: str | None = None) -> str:
    """The refusal of `what`, an op (e.g. "module '1' (Roll)"): it is not
    supported, then how to declare it (`module` is its class name)."""
    return f"{what} is not supported.\n{declare_fix(module)}"


def op_label(node: fx.Node) -> str:
    """An op as an error names it: "module 'block1.0' (Conv2d)", or for a
    function or method "operation 'add' (graph node 'add_3')" (the graph
    node only where its name is not the op's)."""
    if node.op == "call_module":
        mod = node.graph.owning_module.get_submodule(node.target)
        return f"module {node.target!r} ({type(mod).__name__})"
    kind = op_kind(node)
    node_name = f" (graph node {node.name!r})" if node.name != kind else ""
    return f"operation {kind!r}{node_name}"


def row_name(node: fx.Node) -> str:
    """A row's name: a module's path (`layer1.0.conv1`); a function or method
    called inside a module, that module's path and the op (`layer1.0.add`,
    not fx's `add_7`), so that a row says which block it belongs to."""
    if node.op == "call_module":
        return node.target
    stack = node.meta.get("nn_module_stack")
    if not stack:  # called in the model's own forward()
        return node.name
    key, value = list(stack.items())[-1]
    path = value[0] if isinstance(value, tuple) else key  # torch versions differ
    base = re.sub(r"_\d+$", "", node.name)
    return f"{path}.{base}" if path else node.name


def node_shape(node: Any) -> tuple[int, ...] | None:
    """A graph node's shape, from the shape pass; None if it is not a tensor."""
    meta = getattr(node, "meta", {}).get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def node_arg(node: fx.Node, name: str, position: int, default: Any = None) -> Any:
    """An argument of a call, given by keyword or at `position` (e.g. the `dim`
    of x.softmax(1), torch.cat(xs, dim=1) or torch.max(x, 1))."""
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[position] if len(node.args) > position else default


def op_kind(node: fx.Node) -> str:
    """The op a function or method node calls, e.g. "add", "chunk"."""
    return node.target if isinstance(node.target, str) else getattr(
        node.target, "__name__", str(node.target))


def settled(value: Any, op: str, what: str) -> Any:
    """`value`, an argument `what` of the call `op` (a window, a pad), as
    numbers. One computed from a tensor's size (x.size(-1), x.shape[2] // 2)
    is what it was for the input given, as `graph.record_shapes` recorded it:
    the table is for that size. One computed from a tensor's values could
    differ from image to image: an RFError."""
    if isinstance(value, (tuple, list)):
        return type(value)(settled(v, op, what) for v in value)
    if not isinstance(value, fx.Node):
        return value
    if not _from_sizes(value) or "value" not in value.meta:
        raise RFError(f"{op} has a {what} computed from a tensor's values, not "
                      "its size.\nFix: give it as numbers.")
    return value.meta["value"]


def _from_sizes(node: fx.Node) -> bool:
    """Whether graph node `node` is computed from tensors' sizes only
    (x.size(), x.shape, x.dim() and arithmetic on them), never their values."""
    if (node.op == "call_method" and node.target in ("size", "dim")) or (
            node.target is getattr and node.args[1:2] in (("shape",), ("ndim",))):
        return True
    if node.op in ("placeholder", "get_attr") or node_shape(node) is not None:
        return False  # a tensor, whose values it would read
    return all(_from_sizes(a) for a in node.all_input_nodes)
