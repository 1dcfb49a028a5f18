"""What the traced graph cannot see: the forward hooks and pre-hooks of a
module torch.fx keeps whole. `check_hooks` refuses those that change what
their module computes, and lets those that only look (store an activation)
pass."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx

from .axis import RFError, op_label
from .calls import hook_names
from .graph import device_dtype
from ..utils import eval_mode


def check_hooks(gm: fx.GraphModule) -> None:
    """An RFError if a module the graph keeps whole (torch.fx traces neither
    into it nor into its hooks) has forward hooks or pre-hooks, its own or
    global ones, that change what it computes: the table would leave them
    out. Told by running it with and without them on one random input of the
    shapes it gets; hooks that only look (store an activation) pass."""
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        hooks = hook_names(mod)
        if not hooks:
            continue
        outputs = []
        try:
            for run in (mod, mod.forward):  # with the hooks, then without
                args, kwargs = _random_arguments(node, gm)
                with torch.no_grad(), eval_mode(mod):
                    outputs.append(run(*args, **kwargs))
            what = None if _same(*outputs) else "that changes what it computes"
        except Exception:  # then it cannot be told: refused all the same
            what = "that the calculator could not run to check"
        if what is not None:
            raise RFError(
                f"{op_label(node)} has {hooks} {what}, unseen by torch.fx.\n"
                "Fix: do that in forward() (a module of its own, say), or remove "
                "the hook while\n    computing the RF: handle.remove(), on the "
                "handle that registering it returned.")


def _random_arguments(node: fx.Node, gm: fx.GraphModule
                      ) -> tuple[list[Any], dict[str, Any]]:
    """`node`'s arguments with each tensor a random one of its shape (the
    same each call), and each number as the shape pass recorded it."""
    device, _ = device_dtype(gm)
    generator = torch.Generator().manual_seed(0)

    def one(a: Any) -> Any:
        if isinstance(a, fx.Node):
            meta = a.meta.get("tensor_meta")
            if hasattr(meta, "shape"):
                x = torch.rand(tuple(meta.shape), generator=generator)
                return x.to(device, meta.dtype)
            return a.meta.get("value")
        if isinstance(a, (tuple, list)):
            return type(a)(one(v) for v in a)
        return a

    return [one(a) for a in node.args], {k: one(v) for k, v in node.kwargs.items()}


def _same(a: Any, b: Any) -> bool:
    """Whether two outputs of a module are the same (tensors equal)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and not isinstance(a, torch.Tensor)
