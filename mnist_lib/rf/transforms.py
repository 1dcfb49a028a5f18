"""torchvision's v2 transforms inside a model (v2.CenterCrop in front of a
conv, say). torch.fx cannot trace them: a v2 transform passes a value it does
not know as an image (a traced one) through untouched, and would vanish from
the graph. So the tracer keeps each whole, and `TRANSFORM_RULES` gives it a
rule by class name (`import mnist_lib` needs no torchvision): a crop and a
pad are arithmetic, a Gaussian blur is the window of its kernel, a resize is
refused (a resampled unit has no exact RF), and so is any transform without
a rule, never skipped."""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from .axis import RFError, Spatial, channels_first
from .table import RFRow
from .windows import Rule, pad_rule, window_rule

_V2 = "torchvision.transforms.v2"


def is_transform(m: nn.Module) -> bool:
    """Whether `m` is a torchvision v2 transform, or made from one."""
    return any(c.__module__.startswith(_V2) for c in type(m).__mro__)


def _image(op: str, st: Spatial) -> None:
    """An RFError unless `st` is an image's map, channels first: a v2
    transform reads the last two axes as the height and width."""
    if st.nd != 2 or st.flat or st.axes != channels_first(2):
        raise RFError(f"{op} is an image transform, given a map that is no "
                      "(N, C, H, W) image.\nFix: give it an image's map, or "
                      "apply it to the data before the model.")


def _center_crop(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    """v2.CenterCrop(size): torchvision's center_crop, a window of one pixel
    whose padding is minus the rows cut (the top is round((n - c) / 2), with
    Python's round), or plus the rows added where the crop is larger than
    the map ((c - n) // 2 before, the rest after)."""

    def rule(st: Spatial) -> Spatial:
        _image(op, st)
        lo, hi = [], []
        for ax, c in zip(st.dims, mod.size):  # (h, w)
            n = int(ax.n)
            if c > n:
                lo.append((c - n) // 2)
                hi.append((c - n + 1) // 2)
            else:
                top = int(round((n - c) / 2.0))
                lo.append(-top)
                hi.append(-(n - top - c))
        return window_rule(row, op, 1, 1, lo, 1, pad_hi=hi, nd=2)(st)
    return rule


def _pad(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    """v2.Pad(padding): one number for every side, (left and right, top and
    bottom) or (left, top, right, bottom); any mode is a pad (`pad_rule`)."""
    p = [mod.padding] if isinstance(mod.padding, int) else list(mod.padding)
    left, top, right, bottom = p * 4 if len(p) == 1 else p * 2 if len(p) == 2 else p
    return pad_rule([left, right, top, bottom], row, op)


def _blur(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    """v2.GaussianBlur(kernel_size): a kx-by-ky window of stride 1 (kx
    across, as torchvision gives it), the map padded by half of it on each
    side: the sigma drawn at random changes the weights, not the window."""
    kx, ky = mod.kernel_size
    window = window_rule(row, op, (ky, kx), 1, (ky // 2, kx // 2), 1, nd=2)

    def rule(st: Spatial) -> Spatial:
        _image(op, st)
        return window(st)
    return rule


def _pointwise(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    row.spatial = False
    return lambda s: s


def _resize(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    raise RFError(f"{op} resizes the map: each unit mixes pixels with weights "
                  "that change from unit to unit, so no exact RF describes it."
                  "\nFix: resize the images before the model (a transform on the "
                  "data), and give the calculator that size.")


def _unknown(mod: nn.Module, row: RFRow, op: str, nd: int) -> Rule:
    # A declaration is not offered: most transforms move pixels at random.
    raise RFError(f"{op} is a torchvision transform without a rule here.\n"
                  "Fix: apply it to the data before the model, or stop before it.")


# The rule of each v2 transform, by class name; a subclass of one, or any
# other v2 transform, gets `_unknown`'s refusal.
TRANSFORM_RULES: dict[str, Callable[..., Rule]] = {
    "CenterCrop": _center_crop, "Pad": _pad, "GaussianBlur": _blur,
    **dict.fromkeys(("Normalize", "ToDtype", "ConvertImageDtype", "Grayscale",
                     "RGB", "ToPureTensor", "Identity"), _pointwise),
    **dict.fromkeys(("Resize", "RandomResize", "RandomResizedCrop", "ScaleJitter",
                     "RandomShortestSize"), _resize),
}


def transform_entry(cls: type) -> tuple[int, Callable[..., Any]] | None:
    """(2, rule maker) for a v2 transform class, as `windows.module_entry`
    gives a module's; None for any other class."""
    if not any(c.__module__.startswith(_V2) for c in cls.__mro__):
        return None
    own = cls.__module__.startswith(_V2)
    return 2, (TRANSFORM_RULES.get(cls.__name__, _unknown) if own else _unknown)
