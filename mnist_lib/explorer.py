"""The receptive-field explorer of the chapter "Receptive fields": what it is
given at build time.

The explorer itself is JavaScript shipped with the book
(`_static/rf_explorer.js`): it redoes the arithmetic of `mnist_lib.rf`
(`_static/rf_arithmetic.js`, which the digit pad shares) in the reader's
browser, for the layers the reader picks. Its presets come from here: each
model's layers as the calculator finds them in the model's graph, and a real
digit to draw the receptive field on, written into the page as JSON
(`explorer_html`).
"""

from __future__ import annotations

import html
import json
from typing import Any

import torch
import torch.nn as nn

from .utils.layer_kinds import layer_kind
from .rf import receptive_field

# What the explorer offers, 2-D only, by the names its script
# (_static/rf_explorer.js) gives them: convolutions, max and average pooling
# (a sliding window each) and global average pooling. Ops that leave the map
# as it is (ReLU, BatchNorm, dropout, flatten, log_softmax) are left out of
# its list.
OFFERED = {"conv": "conv", "max-pool": "maxpool", "avg-pool": "avgpool"}


def _square(v: Any) -> int | None:
    """An int setting (3, or (3, 3)), else None (a pair that differs, "same")."""
    if isinstance(v, int):
        return v
    if isinstance(v, (tuple, list)) and len(v) == 2 and v[0] == v[1]:
        return int(v[0])
    return None


def window_layer(module: nn.Module, n_in: int) -> dict[str, Any] | None:
    """One layer's window as the explorer takes it, on a map of `n_in`
    pixels, or None if it cannot express it. The digit pad
    (`mnist_lib.pad`) takes its layers' windows from here too: both pages
    compute the RF with the same script (_static/rf_arithmetic.js)."""
    found = layer_kind(module)
    if found is None or found.nd != 2:
        return None
    if found.name == "adaptive avg-pool":
        if _square(module.output_size) != 1:
            return None
        # Global average pooling: a window over the whole map, which the
        # explorer, as the calculator, reads as "global".
        return {"kind": "avgpool", "k": n_in, "s": n_in, "p": 0, "global": True}
    kind = OFFERED.get(found.name)
    if kind is None or getattr(module, "ceil_mode", False):
        return None  # an op it does not know, or ceil_mode (not offered)
    k, s, p = (_square(getattr(module, attr))
               for attr in ("kernel_size", "stride", "padding"))
    d = _square(getattr(module, "dilation", 1))
    if None in (k, s, p, d) or (kind != "conv" and d != 1):
        return None  # a non-square window, "same" padding, a dilated pool
    layer = {"kind": kind, "k": k, "s": s, "p": p}
    return layer | {"d": d} if kind == "conv" else layer


def explorer_layers(model: nn.Module, size: int = 28) -> list[dict[str, Any]] | None:
    """`model`'s layers for a `size`x`size` one-channel input, in forward
    order, as the explorer takes them: {"name", "kind": "conv" | "maxpool" |
    "avgpool", "k", "s", "p"} and "d" for a convolution; global average
    pooling is {"kind": "avgpool", "k": map size, "global": True}. None when
    the model is not a chain of such layers (a branch, a Linear, ceil_mode):
    the explorer cannot show it."""
    table = receptive_field(model, (1, size, size))
    modules = dict(model.named_modules())
    layers, n, before = [], size, ()
    for row in table.rows:
        if table.sources.get(row.name, ()) != before:
            return None  # a merge of branches, or a side branch: no chain
        before = (row.name,)
        unchanged = (row.n_in, row.j_in, row.r_in, row.start_in) == (
            row.n_out, row.j_out, row.r_out, row.start_out)
        module = modules.get(row.name)
        if module is None or not row.spatial:
            if row.spatial and not unchanged:
                return None  # a function that moves pixels (F.max_pool2d, ...)
            continue
        layer = window_layer(module, n)
        if layer is None or row.n_in != n:
            return None
        layers.append({"name": row.name, **layer})
        n = row.n_out
    return layers


def explorer_html(models: dict[str, nn.Module], digit: torch.Tensor,
                  label: int | None = None, selected: str | None = None) -> str:
    """The explorer's place in the page, and its presets as JSON: the layers
    of each of `models` the explorer can show (`explorer_layers`), and the
    digit, a (28, 28) or (1, 28, 28) image (uint8, or floats in [0, 1]), to
    draw the RF on. `selected`: the preset shown first (default: the first).
    Where the explorer's script does not run (JavaScript off, a notebook),
    the page shows a note instead."""
    shape = tuple(digit.shape)
    if shape[:-2] not in ((), (1,)) or len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"explorer_html: the digit must be one square image, "
                         f"(H, H) or (1, H, H), got {shape}")
    image = digit.detach().cpu().reshape(shape[-2:])
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round()
    size = image.shape[0]
    presets, skipped = [], []
    for name, model in models.items():
        layers = explorer_layers(model, size)
        if layers is None:
            skipped.append(name)
        else:
            presets.append({"name": name, "layers": layers})
    if not presets:
        raise ValueError(f"explorer_html: the explorer can show none of {skipped}")
    names = [p["name"] for p in presets]
    if selected is not None and selected not in names:
        raise ValueError(f"explorer_html: no preset {selected!r}; presets: {names}")
    data = {"size": size, "digit": {"label": label, "pixels": image.int().tolist()},
            "presets": presets, "selected": selected or names[0], "skipped": skipped}
    # JSON inside <script>: "</" would end the element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    note = ("The receptive-field explorer runs in the browser, on the book's "
            "website, with JavaScript on. Its presets: " + ", ".join(names) + ".")
    return (f'<div id="rf-explorer" class="rf-explorer">'
            f'<p class="rf-fallback">{html.escape(note)}</p></div>\n'
            f'<script type="application/json" id="rf-presets">{payload}</script>')
