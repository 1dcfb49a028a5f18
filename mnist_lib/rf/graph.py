"""From a model to a graph with shapes, for the calculator in `field`.

`trace_graph` turns it into a torch.fx graph (declared modules
stay opaque leaves, arguments after the image keep their defaults, the hooks
of the model itself and of its wrappers are traced with it);
`record_shapes` runs it once on a random input (`probe_input`) and records
every node's shape, and the output that `guard` checks. Each
turns what can go wrong (control flow fx cannot follow, an input size the
model cannot take, an op that leaves nothing) into an `RFError` that names
the op and the fix.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import operator
import os
import sys
import textwrap
import traceback
import types
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from .axis import INPUT_FORMS, RFError, declarations, node_shape, op_label
from .calls import call_as_user, held, outer_hooks, seeded, with_hooks
from .transforms import is_transform
from .windows import FUNCTION_RULES, module_entry
from ..utils import eval_mode


def check_size(input_size: Any) -> tuple[int, ...]:
    """`input_size` as a tuple of two to four positive ints (`INPUT_FORMS`),
    or an RFError."""
    try:
        if isinstance(input_size, (str, bytes)):
            raise TypeError
        # operator.index takes ints (numpy's too) and refuses floats.
        size = tuple(operator.index(v) for v in input_size)
    except TypeError:
        size = ()
    if not 2 <= len(size) <= 4 or min(size) < 1 or any(
            isinstance(v, bool) for v in input_size):
        raise RFError("input_size must be the channels and one size per spatial "
                      f"axis, positive integers, got {input_size!r}.\nFix: give one "
                      "input's size, without the batch: (C, H, W) for an image, e.g. "
                      "(1, 28, 28),\n    (C, L) for a sequence, (C, D, H, W) for a "
                      "clip.")
    return size


def check_model(model: Any, declared: Sequence[Any]) -> None:
    """An RFError, saying what to pass instead, unless `model` is a model the
    calculator can trace and `declared` (custom's keys, leaf_modules) are
    module classes."""
    if isinstance(model, type) and issubclass(model, nn.Module):
        # The easiest slip: the class where a model built from it belongs.
        raise RFError(f"{model.__name__} is a class, not a model.\nFix: pass one "
                      f"built from it: receptive_field({model.__name__}(), ...).")
    if isinstance(model, torch.jit.ScriptModule):
        raise RFError("a TorchScript module cannot be traced by torch.fx.\n"
                      "Fix: pass the nn.Module it was scripted from.")
    if not isinstance(model, nn.Module):
        raise RFError(f"the model must be a torch.nn.Module, got a "
                      f"{type(model).__name__}.\nFix: pass the network itself, "
                      "e.g. receptive_field(Model_4(), ...).")
    for cls in declared:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise RFError("custom's keys and leaf_modules must be module classes, "
                          f"got {cls!r}.\nFix: pass the class itself, e.g. "
                          "nn.Upsample, not an instance or a name.")


def fixed_arguments(model: nn.Module) -> dict[str, Any]:
    """forward()'s arguments after the image, at their defaults (a model's
    `targets=None`), for torch.fx to trace the code a prediction runs; an
    RFError that says so if one has no default."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a forward without a signature to read
        return {}
    rest = [p for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    needed = [p.name for p in rest if p.default is p.empty]
    if needed:
        names = ", ".join(p.name for p in params)
        raise RFError(
            f"{type(model).__name__}.forward({names}) takes {len(needed) + 1} inputs; "
            "the calculator gives it one image.\nFix: give the others defaults, or "
            "give it a module whose forward(x) calls the model.")
    return {p.name: p.default for p in rest}


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in what precision the model computes: its parameters' (an
    input must match them), or the CPU in float32 for a model without any."""
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping `leaves` opaque and knowing, in `inside`,
    the submodules (name, module) whose forward() it is tracing. A forward
    replaced on an instance (model.forward = types.MethodType(f, model), as
    one cuts a torchvision net for its features) is the one traced: torch.fx
    would trace the class's."""

    def __init__(self, leaves: tuple[type, ...], forward: Callable | None = None
                 ) -> None:
        super().__init__()
        self.leaves, self.forward = leaves, forward
        self.inside: list[tuple[str, nn.Module]] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if m is getattr(self, "root", None):
            return False  # called as a module when its hooks are traced
        if isinstance(m, self.leaves) or isinstance(m, torch.jit.ScriptModule):
            return True  # a ScriptModule cannot be traced into: `rules` says so
        if is_transform(m):
            return True  # torchvision's v2 transforms pass a traced value through
        if "forward" in m.__dict__:
            return False  # its own forward, not the one its class's rule reads
        return super().is_leaf_module(m, qualname)

    def create_args_for_root(self, root_fn: Any, is_module: bool,
                             concrete_args: Any = None) -> Any:
        if is_module and self.forward is not None:
            root_fn = self.forward
        return super().create_args_for_root(root_fn, is_module, concrete_args)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if (inner := held(m)) is not None:
            # A wrapper (DataParallel, wherever it sits): its hooks, around
            # the module it holds, which is traced as any other.
            return with_hooks(m, inner, args, kwargs)
        if m is self.root:  # its own forward(), no module within it
            return super().call_module(m, forward, args, kwargs)
        self.inside.append((self.path_of_module(m), m))
        out = super().call_module(m, forward, args, kwargs)
        # Not popped if it raised: the last one is then the module that failed.
        self.inside.pop()
        return out


def _instance_forward(model: nn.Module) -> Callable | None:
    """The forward set on `model` itself, as a function of (self, x) for the
    tracer; None if it has its class's."""
    forward = model.__dict__.get("forward")
    if forward is None:
        return None
    if isinstance(forward, types.MethodType) and forward.__self__ is model:
        return forward.__func__

    def call(self: nn.Module, x: Any) -> Any:  # a lambda, or another callable
        return forward(x)
    return call


def trace_graph(model: nn.Module, leaves: tuple[type, ...],
                input_size: tuple[int, ...], called: nn.Module | None = None
                ) -> fx.GraphModule:
    """The model as a torch.fx graph, its `leaves` kept whole; an RFError that
    says why if torch.fx cannot trace it, or if the model's own forward fails.

    `called`: what the user calls, the model or a wrapper around it
    (DataParallel, torch.compile). torch.fx traces a model's forward(), not
    its call: the forward hooks and pre-hooks of the model itself and of its
    wrappers are traced by calling it as the user does. Hooks that torch.fx
    cannot follow are left out, and named in the graph's meta["untraced"]
    for `guard.check_graph`, which then tells whether they change anything."""
    called = model if called is None else called
    hooks = outer_hooks(called)
    if hooks:
        try:
            return _trace(model, leaves, input_size, called)
        except RFError:
            gm = _trace(model, leaves, input_size)
            gm.meta["untraced"] = hooks
            return gm
    return _trace(model, leaves, input_size)


def _trace(model: nn.Module, leaves: tuple[type, ...], input_size: tuple[int, ...],
           called: nn.Module | None = None) -> fx.GraphModule:
    """`trace_graph`'s trace: of model.forward(), or with `called`, of the
    call `called(x)` (through its wrappers and with their hooks)."""
    forward = _instance_forward(model)
    # forward()'s arguments after the image, at their defaults; a replaced
    # forward that is no method of the model takes the image alone.
    own = forward is None or getattr(model.forward, "__func__", None) is forward
    fixed = fixed_arguments(model) if own else {}
    if called is not None:
        def forward(self: nn.Module, x: Any) -> Any:  # the defaults are kept
            return call_as_user(called, x)
        fixed = {}
    tracer = _Tracer(leaves, forward)
    try:
        # In eval mode, as the shapes are taken: a model's training-only
        # branches (the auxiliary heads of GoogLeNet and Inception v3) are not
        # what it computes for a prediction.
        with eval_mode(model):
            graph = tracer.trace(model, concrete_args=fixed or None)
    except Exception as err:
        # A bug in the model fails its plain forward too: say that, not how
        # to write a forward that torch.fx can follow.
        if (failure := _forward_failure(model, input_size)) is not None:
            raise RFError(failure) from err
        raise RFError(_untraceable(model, tracer.inside, err,
                                   _reads_size(tracer.graph))) from err
    _unpack_namedtuples(graph)
    return fx.GraphModule(model, graph)


def _unpack_namedtuples(graph: fx.Graph) -> None:
    """Take apart, in `graph`, each namedtuple that forward() builds (a model
    that returns Out(logits, aux)): a field read from it (out.logits, out[0])
    becomes the value put in, and the output holds a plain tuple. A
    namedtuple is a tuple: the first tensor in it is the model's output."""
    for node in list(graph.nodes):
        cls = node.target
        if node.op != "call_function" or not (
                isinstance(cls, type) and issubclass(cls, tuple)
                and hasattr(cls, "_fields")):
            continue
        values = {**cls._field_defaults, **dict(zip(cls._fields, node.args)),
                  **node.kwargs}
        if set(values) != set(cls._fields):
            continue
        for user in list(node.users):
            if user.op == "output":
                plain = tuple(values[f] for f in cls._fields)
                user.args = fx.node.map_arg(user.args,
                                            lambda n: plain if n is node else n)
                continue
            field = _field_read(user, cls._fields)
            if field is not None and isinstance(values[field], fx.Node):
                user.replace_all_uses_with(values[field])
                graph.erase_node(user)
        if not node.users:
            graph.erase_node(node)


def _field_read(node: fx.Node, fields: tuple[str, ...]) -> str | None:
    """The field of a namedtuple that `node` reads (out.logits, out[0]);
    None if it does anything else with it."""
    key = node.args[1] if len(node.args) > 1 else None
    if node.target is getattr and key in fields:
        return key
    if node.target is operator.getitem and isinstance(key, int) \
            and -len(fields) <= key < len(fields):
        return fields[key]
    return None


def _reads_size(graph: fx.Graph) -> bool:
    """Whether the value torch.fx failed on (the last node it made) is computed
    from a tensor's size (x.size(), x.shape), not from its values: a padding
    computed from the map size, as TensorFlow's "same" needs."""
    nodes = list(graph.nodes)
    todo, seen = nodes[-1:], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if (node.op == "call_method" and node.target in ("size", "dim")) or (
                node.target is getattr and node.args[1:2] in (("shape",), ("ndim",))):
            return True
        todo.extend(node.all_input_nodes)
    return False


def _forward_failure(model: nn.Module, input_size: tuple[int, ...]) -> str | None:
    """What the model's own forward raises on zeros of `input_size`, run
    plainly in eval mode, as a message with the fix; None if it runs."""
    device, dtype = device_dtype(model)
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    except Exception as err:
        why = textwrap.fill(f"{type(err).__name__}: {err}", 77,
                            initial_indent="  ", subsequent_indent="  ")
        return (f"{type(model).__name__}.forward() raised on a "
                f"(1, {', '.join(map(str, input_size))}) input (below).\n"
                "Fix: make it run on that input, or give the size it expects "
                f"as (C, H, W).\n{why}")
    return None


def _untraceable(model: nn.Module, inside: list[tuple[str, nn.Module]],
                 err: Exception, size: bool = False) -> str:
    """Why torch.fx failed, naming the innermost module it was tracing, and
    the fix. By what it failed on: an `assert` (on a shape, say) or a write
    into a slice (a[:, :2] = b), which have fixes of their own; else
    data-dependent control flow, whose fix is Python free of it or a
    declaration (a declared module is not traced inside). `size`: what
    failed is computed from the input's size (`_reads_size`), which no
    rewrite avoids: then the fix is the declaration, for a conv or pooling
    the Window it slides."""
    why = "\n".join(textwrap.fill(line, 77, initial_indent="  ",
                                  subsequent_indent="  ")
                    for line in f"{err}".splitlines())
    where = (f"{type(model).__name__}.forward()" if not inside
             else f"module {inside[-1][0]!r} ({type(inside[-1][1]).__name__})")
    line = _failing_line(err)
    if line.startswith("assert"):
        return (f"torch.fx could not trace {where}: it asserts on a traced value, "
                f"`{_short(line)}` (below).\nFix: check that outside forward(), "
                "or drop the assert: torch.fx cannot evaluate it.\n" + why)
    if isinstance(err, TypeError) and "does not support item assignment" in str(err):
        return (f"torch.fx could not trace {where}: it writes into a slice of a "
                f"tensor, `{_short(line)}` (below).\nFix: build the tensor from its "
                "pieces instead, e.g. torch.cat([b, a[:, 2:]], dim=1) for "
                "a[:, :2] = b.\n" + why)
    cause = ": it computes from its input's size" if size else ""
    if not inside:  # the model's own forward()
        fix = ("move that code into a module and declare it:" if size else
               "drop its data-dependent control flow, or move it into a "
               "declared module:")
        return (f"torch.fx could not trace {where}{cause} "
                f"(below).\nFix: {fix}\n{declarations('YourModule')}\n{why}")
    path, mod = inside[-1]
    name = type(mod).__name__
    if isinstance(mod, _WINDOWS):
        # A conv or pooling of a subclass: a Window, never 'pointwise'; its
        # settings left out, so that each module of the class has its own.
        fix = ("declare the window it slides, with TensorFlow's padding='same':"
               if size else "declare the window it slides:")
        fix += "\n" + declarations(name, "padding='same'" if size else "",
                                   pointwise=False)
        fix += ("\n    # each module's own kernel_size, stride"
                + (" and dilation" if size else ", padding and dilation"))
    else:
        fix = "declare it:" if size else ("remove its data-dependent control flow, "
                                          "or declare it:")
        fix += "\n" + declarations(name)
    return (f"torch.fx could not trace {where}{cause} (below).\n"
            f"Fix: {fix}\n{why}")


def _failing_line(err: BaseException) -> str:
    """The source line, stripped, of the innermost frame of `err`'s traceback
    outside torch: the model's line that torch.fx failed on ("" if none)."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith(torch_dir)]
    return (frames[-1].line or "").strip() if frames else ""


def _short(line: str, width: int = 40) -> str:
    """A line of code, cut to `width` characters for a message."""
    return line if len(line) <= width else line[:width - 3] + "..."


# Convs and poolings: a subclass of one that torch.fx cannot trace is declared
# as a Window that reads the module's own settings.
_WINDOWS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
            nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


class _ShapeProp(ShapeProp):
    """torch's shape pass, remembering the node it runs (for error messages)
    and, in a node's meta "value", the numbers a node computes (x.size(-1),
    h // 2): `axis.settled` reads a window computed from the map's size."""

    node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        result = super().run_node(n)
        if _numbers(result):
            n.meta["value"] = tuple(result) if isinstance(result, tuple) else result
        return result


def _numbers(value: Any) -> bool:
    """Whether `value` is a number or a tuple (a torch.Size) or list of them."""
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, (int, float)) for v in value)
    return isinstance(value, (int, float))


def probe_input(model: nn.Module, input_size: tuple[int, ...]) -> torch.Tensor:
    """One random input of `input_size` (a batch of one), where and in what
    precision the model computes, the same on every call: what the graph
    records its shapes on and `guard.check_graph` runs the model on."""
    device, dtype = device_dtype(model)
    x = torch.rand(1, *input_size, generator=torch.Generator().manual_seed(0))
    return x.to(device, dtype)


def record_shapes(gm: fx.GraphModule, x: torch.Tensor) -> Any:
    """Run the graph once on input `x` (eval mode, randomness seeded as in
    `calls.seeded`) to record every node's shape; return its output."""
    input_size = tuple(x.shape[1:])
    prop, printed = _ShapeProp(gm), io.StringIO()
    try:
        # ShapeProp prints the traceback of a failing op, then raises its own
        # error without the op's message: the RFError below says it instead.
        with (eval_mode(gm), torch.no_grad(), seeded(x.device),
              contextlib.redirect_stderr(printed)):
            out = prop.propagate(x.clone())
    except Exception as err:
        raise _shape_error(gm, prop.node, input_size, err.__cause__ or err) from err
    sys.stderr.write(printed.getvalue())  # what the model itself printed
    for node in gm.graph.nodes:
        # torch lets a slice or a crop leave nothing (x[:, :, 5:] of 4 rows):
        # no unit is left to have a receptive field.
        shape = node_shape(node)
        if shape is not None and 0 in shape:
            raise RFError(
                f"{_who(node)} leaves an empty tensor, shape {shape}, from a "
                f"(1, {', '.join(map(str, input_size))}) input.\n"
                "Fix: give a larger input, or cut less of the map.")
    return out


def _who(node: fx.Node | None) -> str:
    """A node as every error names it (`axis.op_label`), or "an op"."""
    return "an op" if node is None else op_label(node)


def _shape_error(gm: fx.GraphModule, node: fx.Node | None,
                 input_size: tuple[int, ...], cause: BaseException) -> RFError:
    shape = ", ".join(map(str, input_size))
    said = textwrap.fill(f"{type(cause).__name__}: {cause}", 77,
                         initial_indent="  ", subsequent_indent="  ")
    fix = "give the size the model expects, (C, H, W) (CLI: --input C,H,W)."
    first = _first_window(gm)
    if first is not None and first[1] != len(input_size) - 1:
        # Most often an input of the wrong form: a batch shape, an image's
        # size for a sequence model, a (H, W) without channels.
        op, nd = first
        if len(input_size) == nd + 2:
            fix = (f"give input_size without the batch: {INPUT_FORMS[nd]}, not "
                   f"(N, {INPUT_FORMS[nd][1:]}.")
        else:
            fix = f"give input_size as {INPUT_FORMS[nd]}, one size per spatial axis."
        fix += f"\n    ({op} slides over {nd} spatial axes.)"
    return RFError(f"{_who(node)} raised on a (1, {shape}) input (below).\n"
                   f"Fix: {fix}\n{said}")


def _first_window(gm: fx.GraphModule) -> tuple[str, int] | None:
    """The first op of `gm` that slides over a known number of spatial axes
    (a Conv2d: 2), named as errors name it, and that number; None if none."""
    for node in gm.graph.nodes:
        found = None
        if node.op == "call_module":
            found = module_entry(type(gm.get_submodule(node.target)))
        elif node.op == "call_function":
            found = FUNCTION_RULES.get(node.target)
        if found is not None and found[0] is not None:
            return op_label(node), found[0]
    return None
