"""The check that the graph the calculator walked computes what the model
computes. Each op the tracer does not see (a hook it was not shown, a
branch on `is_fx_tracing()`, state that changes between calls, a library
op that passes a traced value through) makes the graph another network,
whose table would be wrong without a word. `check_graph` runs the model as
its user calls it and compares its output with the graph's on the same
random input: where they differ it refuses, naming the first op whose
value differs."""

from __future__ import annotations

import textwrap
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from .axis import RFError, RFWarning, op_label
from .calls import call_as_user, held, seeded
from ..utils import eval_mode

# How far apart two floating-point results may be and still be the same
# computation (ops run in another order round differently), relative to the
# largest value: a few hundred units in the last place of each precision.
_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
_LOW_PRECISION = 1e-2  # float16, bfloat16


def check_graph(called: nn.Module, gm: fx.GraphModule, x: torch.Tensor,
                graph_out: Any) -> None:
    """An RFError unless `called(x)` (run as the user calls it, through its
    wrappers and with its hooks, in eval mode, its random numbers seeded as
    `graph.record_shapes` seeds the graph's) gives what the graph gave,
    `graph_out`: the same tensors, of the same shapes, with values equal up
    to rounding. Where the model gives different values on two identical
    calls, only the shapes can be checked: an RFWarning says so."""
    name = _name(called)
    real = _run(called, x, name)
    found = _difference(_tensors(real), _tensors(graph_out))
    if found is None:
        return
    kind, detail = found
    again = _difference(_tensors(real), _tensors(_run(called, x, name)),
                        ("the first call", "the second"))
    if again is not None:  # the model does not agree with itself
        if kind == "values":
            warnings.warn(RFWarning(
                f"the graph traced from {name} could not be checked against it "
                f"exactly: two identical calls of {name} differ ({again[1]}); only "
                "the output's shape was checked."), stacklevel=3)
            return
        raise RFError(
            f"the graph traced from {name} computes another output than the "
            f"model: {detail}.\nFix: give a model whose output's shape is the same "
            f"from call to call.\n  Two identical calls of {name} differ: "
            f"{again[1]}.")
    where = _first_divergence(called, gm, x) or f"the output of {name}"
    untraced = gm.meta.get("untraced")
    fix = (f"{name} has {untraced} that torch.fx could not trace: do that in "
           "forward(), or remove it while computing the RF (handle.remove())."
           if untraced else
           "make forward() compute the same when torch.fx traces it (no branch on "
           "is_fx_tracing(), no state that changes from call to call), or give "
           "the calculator the part before it.")
    raise RFError(f"the graph torch.fx traced from {name} computes another value "
                  f"than the model, first at {where}.\n"
                  + textwrap.fill(f"Fix: {fix}", 77, subsequent_indent="    ")
                  + f"\n  {detail}")


def _name(called: nn.Module) -> str:
    """The model's class name, inside its wrappers."""
    while (inner := held(called)) is not None:
        called = inner
    return type(called).__name__


def _run(called: nn.Module, x: torch.Tensor, name: str) -> Any:
    """`called(x)` as `check_graph` runs it (on a copy: a forward may write
    into its input)."""
    try:
        with eval_mode(called), torch.no_grad(), seeded(x.device):
            return call_as_user(called, x.clone())
    except Exception as err:
        raise RFError(f"{name} raised where the graph traced from it ran, on a "
                      f"{tuple(x.shape)} input (below).\nFix: make {name} run "
                      f"on that input, called as a module.\n  {type(err).__name__}: "
                      f"{err}") from err


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in an output (a tensor, or a tuple, list or dict of them,
    nested; a namedtuple is a tuple), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _difference(real: list[torch.Tensor], traced: list[torch.Tensor],
                names: tuple[str, str] = ("the model", "the graph")
                ) -> tuple[str, str] | None:
    """The first way the model's tensors `real` differ from the graph's
    `traced` (or those of the two runs `names` names), as (kind, words): kind
    "count", "shape" or "values"; None if they are the same up to rounding."""
    one, other = names
    if len(real) != len(traced):
        return "count", f"{one} returns {len(real)} tensors, {other} {len(traced)}"
    for i, (a, b) in enumerate(zip(real, traced)):
        which = f"tensor {i} of the output" if len(real) > 1 else "the output"
        if a.shape != b.shape:
            return "shape", (f"{which} is {tuple(a.shape)} from {one}, "
                             f"{tuple(b.shape)} from {other}")
        if (gap := _gap(a, b)) is not None:
            return "values", f"{which} differs by up to {gap:.3g}"
    return None


def _gap(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """The largest difference between two tensors of one shape, where it is
    more than rounding (`_TOLERANCE`, relative to the largest value); None if
    it is not. NaN in one but not the other is an infinite difference."""
    if a.dtype != b.dtype or not (a.is_floating_point() or a.is_complex()):
        return None if a.dtype == b.dtype and torch.equal(a, b) else float("inf")
    if a.numel() == 0:
        return None
    tolerance = _TOLERANCE.get(a.dtype, _LOW_PRECISION)
    a, b = a.detach().double(), b.detach().double()
    both = torch.isnan(a) & torch.isnan(b)
    gap = torch.where(both, 0.0, (a - b).abs().nan_to_num(nan=float("inf")))
    largest = float(torch.where(both, 0.0, b.abs()).nan_to_num(nan=0.0).max())
    tolerance *= max(1.0, largest)
    worst = float(gap.max())
    return worst if worst > tolerance else None


def _first_divergence(called: nn.Module, gm: fx.GraphModule, x: torch.Tensor
                      ) -> str | None:
    """Where the graph first computes another value than the model: the
    input or output of the first module call (in the graph's order) that
    differs between a run of the graph and one of the model, as an error
    names it; None if every module call agrees (the difference is after
    the last one)."""
    nodes = [n for n in gm.graph.nodes if n.op == "call_module"]
    modules = {id(m): m for m in (gm.get_submodule(n.target) for n in nodes)}
    # Each module call of the model's run, by (module, how many calls before):
    # copies of its arguments and output (a later op may write into them).
    seen: dict[tuple[int, int], list[Any]] = {}
    calls: dict[int, int] = {}

    def before(m: nn.Module, args: tuple) -> None:
        calls[id(m)] = calls.get(id(m), 0) + 1
        seen[(id(m), calls[id(m)] - 1)] = [_copy(args), None]

    def after(m: nn.Module, args: tuple, out: Any) -> None:
        seen[(id(m), calls[id(m)] - 1)][1] = _copy(out)

    handles = [h for m in modules.values() for h in (
        m.register_forward_pre_hook(before, prepend=True),
        m.register_forward_hook(after))]
    try:
        _run(called, x, _name(called))
    finally:
        for handle in handles:
            handle.remove()
    graph_calls = _GraphCalls(gm)
    with eval_mode(gm), torch.no_grad(), seeded(x.device):
        graph_calls.run(x.clone())
    counts: dict[int, int] = {}
    for node, args, out in graph_calls.calls:
        m = gm.get_submodule(node.target)
        key = (id(m), counts.get(id(m), 0))
        counts[id(m)] = key[1] + 1
        if key not in seen:
            return f"{op_label(node)}, which the model does not run there"
        real_args, real_out = seen[key]
        if _difference(real_args, args) is not None:
            return f"the input of {op_label(node)}"
        if _difference(real_out, out) is not None:
            return f"the output of {op_label(node)}"
    return None


def _copy(value: Any) -> list[torch.Tensor]:
    """Copies of the tensors in `value` (`_tensors`)."""
    return [t.clone() for t in _tensors(value)]


class _GraphCalls(fx.Interpreter):
    """Runs a graph, keeping each module call's node, and copies of its
    arguments and output."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.calls: list[tuple[fx.Node, list[torch.Tensor], list[torch.Tensor]]] = []

    def run_node(self, n: fx.Node) -> Any:
        if n.op != "call_module":
            return super().run_node(n)
        args = _copy(self.fetch_args_kwargs_from_env(n)[0])
        result = super().run_node(n)
        self.calls.append((n, args, _copy(result)))
        return result
