"""The effective receptive field (Luo et al., 2016), measured with a gradient,
and the box that a unit's theoretical RF covers (`unit_box`), for plots."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from ..utils import eval_mode, unwrap
from .axis import RFError, per_axis
from .graph import check_model, device_dtype
from .table import RFRow


def unit_box(row: RFRow, i: int, k: int) -> tuple[float, float, float, float]:
    """(top, left, height, width), in input pixels, of unit (i, k)'s RF at `row`.
    Raises RFError for a unit off the row's map, or a row whose units have no
    box of their own: global ones (`r_out` is then the convolutional path's
    RF, not what a unit sees), or units on no grid (no single jump)."""
    if row.global_out or row.j_out is None:
        why = ("its units are global: each sees a whole map" if row.global_out
               else "its units have no single jump")
        raise RFError(f"unit_box: row {row.name!r} has no box per unit ({why}).\n"
                      "Fix: pick a row before any global or uneven pooling (the "
                      "trunk of a model with a global pooling).")
    nh, nw = per_axis(row.n_out, 2)
    if not (0 <= i < nh and 0 <= k < nw):
        raise RFError(f"unit_box: unit {(i, k)} is outside the {nh}x{nw} map of "
                      f"{row.name!r}.\nFix: pick rows 0-{nh - 1}, columns "
                      f"0-{nw - 1}.")
    (sh, sw), (jh, jw), (rh, rw) = (per_axis(row.start_out, 2), per_axis(row.j_out, 2),
                                    per_axis(row.r_out, 2))
    return sh + i * jh - rh / 2, sw + k * jw - rw / 2, rh, rw


def effective_rf(model: nn.Module, image: torch.Tensor, layer: str,
                 unit: tuple[int, int] | None = None, call: int | None = None
                 ) -> torch.Tensor:
    """|d(unit) / d(input)|: the effective receptive field (Luo et al., 2016).

    image: (C, H, W). `layer` names a submodule (e.g. "block2.1"); the unit is
    the sum over channels at spatial position `unit` (default: the centre).
    call: for a module that runs more than once in a forward pass (a shared
    `self.relu`), which run to measure, 1 for the first (in the table, the
    row named `layer`; the later ones are `layer_2`, ...). Returns an (H, W)
    map, normalised to a maximum of 1. Raises RFError for an unknown layer,
    an image that is not a (C, H, W) tensor, a unit off the map or a call
    that is not made.
    """
    check_model(model, ())
    model = unwrap(model)
    if not isinstance(image, torch.Tensor):
        raise RFError(f"effective_rf: image is a {type(image).__name__}, not a "
                      "tensor.\nFix: pass an image (C, H, W), e.g. "
                      "data.test_images[0] or torch.rand(1, 28, 28), not its size.")
    modules = dict(model.named_modules())
    if layer not in modules:
        names = list(modules)[1:]
        shown = ", ".join(map(repr, names[:3])) + (", ..." if len(names) > 3 else "")
        raise RFError(f"effective_rf: {type(model).__name__} has no submodule "
                      f"{layer!r}.\nFix: name one of model.named_modules(): {shown}")
    if not image.any():
        warnings.warn("effective_rf of an all-zero image: the gradient there is "
                      "the model's response to blank input, not to a digit; pass "
                      "a real image (e.g. data.test_images[0])", stacklevel=2)
    if image.dim() != 3:
        raise RFError(f"effective_rf: image has shape {tuple(image.shape)}, not "
                      "(C, H, W).\nFix: for a (1, C, H, W) batch pass image[0]; "
                      "for an (H, W) digit, image[None].")
    calls: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: calls.append(o))
    try:
        with eval_mode(model):
            device, dtype = device_dtype(model)
            x = image.to(device, dtype).unsqueeze(0).requires_grad_(True)
            model(x)
            out = _the_call(calls, layer, call)
            if out.dim() == 4:
                size = tuple(out.shape[2:])
                i, k = unit if unit is not None else (size[0] // 2, size[1] // 2)
                if not (0 <= i < size[0] and 0 <= k < size[1]):
                    raise RFError(
                        f"effective_rf: unit {(i, k)} is outside {layer}'s {size} "
                        f"map.\nFix: pick rows 0-{size[0] - 1}, columns "
                        f"0-{size[1] - 1} (unit=None: the centre).")
                target = out[0, :, i, k].sum()
            else:
                target = out[0].sum()
            (grad,) = torch.autograd.grad(target, x)
    finally:
        handle.remove()
    g = grad[0].abs().sum(0)
    return (g / g.max().clamp_min(1e-12)).cpu()


def _the_call(calls: list[torch.Tensor], layer: str, call: int | None) -> torch.Tensor:
    """The output of run `call` (1, 2, ...) of module `layer`, among the
    outputs of its runs, `calls`; an RFError if that is ambiguous or not run."""
    if not calls:
        raise RFError(f"effective_rf: {layer!r} does not run in the forward pass.\n"
                      "Fix: name a module that the model calls.")
    if call is None and len(calls) > 1:
        # The hook sees every run; the table names the first `layer`.
        raise RFError(
            f"effective_rf: {layer!r} runs {len(calls)} times in a forward pass.\n"
            f"Fix: say which run to measure: call=1 (the first) to call={len(calls)}.")
    k = 1 if call is None else call
    if not 1 <= k <= len(calls):
        raise RFError(f"effective_rf: call={call}, but {layer!r} runs "
                      f"{len(calls)} time(s).\nFix: pick call=1 to {len(calls)}.")
    return calls[k - 1]
