"""A model called as its user calls it, for the tracer (`graph`) and for the
check of the traced graph (`guard`): through the wrappers that add no op of
their own (nn.DataParallel, DistributedDataParallel, torch.compile's
OptimizedModule), wherever they sit, with the forward hooks and pre-hooks
of each wrapper run as `nn.Module.__call__` runs them; and `seeded`, the
same random numbers for every such call."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn


def held(m: nn.Module) -> nn.Module | None:
    """The module that wrapper `m` holds, if `m` is a wrapper; else None. A
    wrapper's own forward is not followed: DataParallel's scatters to the GPUs
    and torch.compile's compiles, and the module held computes the same."""
    if isinstance(m, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return m.module
    inner = getattr(m, "_orig_mod", None)  # by name: importing dynamo is slow
    if type(m).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
        return inner
    return None


def hook_names(m: nn.Module, global_hooks: bool = True) -> str:
    """The forward hooks and pre-hooks that run when `m` runs, as a message
    names them, e.g. "a forward hook (blur)"; "" if none. `global_hooks`:
    count those registered for every module too."""
    glob = nn.modules.module
    kinds = [("forward pre-hook", m._forward_pre_hooks),
             ("forward hook", m._forward_hooks)]
    if global_hooks:
        kinds += [("global forward pre-hook", glob._global_forward_pre_hooks),
                  ("global forward hook", glob._global_forward_hooks)]
    found = [(kind, getattr(h, "__name__", type(h).__name__))
             for kind, hooks in kinds for h in hooks.values()]
    if len(found) == 1:
        return f"a {found[0][0]} ({found[0][1]})"
    return "hooks (" + ", ".join(f"{k} {n}" for k, n in found) + ")" if found else ""


def outer_hooks(model: nn.Module) -> str:
    """The hooks of `model` itself and of the wrappers around the module it
    holds (`hook_names`): those torch.fx does not see when it traces that
    module's forward(). "" if none."""
    names = []
    while True:
        if found := hook_names(model, global_hooks=not names):
            names.append(found)
        inner = held(model)
        if inner is None:
            return "; ".join(names)
        model = inner


def call_as_user(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """`model(*args, **kwargs)`, but through its wrappers (`held`): each
    wrapper's hooks run around the module it holds, called as a module (its
    own hooks run too)."""
    inner = held(model)
    if inner is None:
        return model(*args, **kwargs)
    return with_hooks(model, lambda *a, **k: call_as_user(inner, *a, **k),
                      args, kwargs)


def with_hooks(m: nn.Module, call: Callable[..., Any], args: tuple, kwargs: dict
               ) -> Any:
    """`call(*args, **kwargs)` in place of `m`'s forward, with the forward
    pre-hooks and hooks of `m` and the global ones run around it in the order
    and with the arguments that `nn.Module._call_impl` gives them."""
    glob = nn.modules.module
    for key, hook in (*glob._global_forward_pre_hooks.items(),
                      *m._forward_pre_hooks.items()):
        if key in m._forward_pre_hooks_with_kwargs:
            if (got := hook(m, args, kwargs)) is not None:
                args, kwargs = got
        elif (got := hook(m, args)) is not None:
            args = got if isinstance(got, tuple) else (got,)
    result = call(*args, **kwargs)
    for key, hook in (*glob._global_forward_hooks.items(),
                      *m._forward_hooks.items()):
        with_kwargs = (key in m._forward_hooks_with_kwargs
                       or key in glob._global_forward_hooks_with_kwargs)
        got = hook(m, args, kwargs, result) if with_kwargs else hook(m, args, result)
        if got is not None:
            result = got
    return result


@contextlib.contextmanager
def seeded(device: torch.device) -> Iterator[None]:
    """A block whose random numbers (torch's, on the CPU and on `device`)
    are the same on every run, and after which the caller's are as before: a
    model that draws random numbers as it computes (a blur of random width,
    noise) then computes the same thing in two runs."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(0)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(0)
        yield
