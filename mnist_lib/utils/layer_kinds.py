"""The kinds of layer the library names: convolutions, max and average
pooling (plain and adaptive) and linear layers, over 1, 2 or 3 spatial
axes, whether a module (nn.MaxPool2d) or the function that does the same
(F.max_pool2d). One table, read by the architecture picture (`plots`), the
explorer's presets (`explorer`), the one-line list of a model's layers
(`summary.layers_text`) and the multiply-add count
(`models.count_multiply_adds`). Other layers (activations, BatchNorm,
dropout, reshapes) have no kind here.

    >>> import torch.nn as nn
    >>> layer_kind(nn.MaxPool2d(2))
    Kind(name='max-pool', nd=2)
    >>> layer_kind("adaptive_avg_pool2d")  # a receptive-field row's `kind`
    Kind(name='adaptive avg-pool', nd=2)
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn


class Kind(NamedTuple):
    """A layer's kind as the book names it ("conv", "max-pool", ...) and the
    number of spatial axes it slides over (None for a linear layer)."""

    name: str
    nd: int | None


# Each windowed kind, with the names of its module class and its function
# less the axes: "Conv" + "2d" is nn.Conv2d, "conv" + "2d" is F.conv2d.
_WINDOWS = {"conv": ("Conv", "conv"),
            "max-pool": ("MaxPool", "max_pool"),
            "avg-pool": ("AvgPool", "avg_pool"),
            "adaptive avg-pool": ("AdaptiveAvgPool", "adaptive_avg_pool"),
            "adaptive max-pool": ("AdaptiveMaxPool", "adaptive_max_pool")}

# The table: the name of a torch.nn class or of a function -> its kind.
KINDS: dict[str, Kind] = {
    f"{stem}{nd}d": Kind(name, nd)
    for name, stems in _WINDOWS.items() for stem in stems for nd in (1, 2, 3)
} | {"Linear": Kind("linear", None), "linear": Kind("linear", None)}


def layer_kind(layer: nn.Module | str) -> Kind | None:
    """The kind of `layer`, or None for a layer of no kind here. A module is
    known by its class or the nearest torch.nn class it derives from (a
    subclass of nn.Conv2d is a conv, as the calculator counts it); a name is
    a torch.nn class's or a function's, as the receptive-field table's
    `kind` column holds it ("Conv2d", "max_pool2d")."""
    if isinstance(layer, str):
        return KINDS.get(layer)
    return next((KINDS[c.__name__] for c in type(layer).__mro__
                 if c.__name__ in KINDS and getattr(nn, c.__name__, None) is c), None)
