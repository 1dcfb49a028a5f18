"""An image of one handwritten digit (a PNG or JPEG of any size: a drawing, a
scan, a photo of paper) made an MNIST digit, as MNIST's own were made
(LeCun et al.): grey, white on black, the digit's bounding box scaled to fit
a 20x20 box with its aspect kept, then placed in a 28x28 frame with its
centre of mass at the centre. `read_digit` does it; `python -m mnist_lib
predict` prints what it did (`CONVERSION`, and `Digit`'s text).

    >>> digit = read_digit("seven.png")      # doctest: +SKIP
    >>> load_checkpoint("final.pt").predict(digit)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .data import DIGIT_BOX

if TYPE_CHECKING:
    import numpy as np

FRAME = 28  # MNIST's images: 28x28 pixels
# MNIST's centres of mass lie within half a pixel of (14, 14), in pixel
# indices from 0 (measured on the training set): a whole-pixel shift put them
# there. (13.5 would be the frame's geometric centre.)
CENTRE = 14.0
# Ink fainter than this fraction of the darkest stroke is taken for the
# background: paper grain, shading, JPEG's ripples around strokes.
NOISE = 0.1

CONVERSION = (f"each image made an MNIST digit: grey; inverted where its "
              f"background is light (MNIST's digits are white on black); the "
              f"digit's bounding box scaled to fit {DIGIT_BOX}x{DIGIT_BOX}, its "
              f"aspect kept; placed in {FRAME}x{FRAME} with its centre of mass "
              f"at the centre")


@dataclass(frozen=True)
class Digit:
    """An image made an MNIST digit (`read_digit`), and what was done to it."""

    pixels: torch.Tensor      # uint8 (28, 28): white digit on black, as MNIST's
    size: tuple[int, int]     # the image's width x height
    inverted: bool            # its background was light, and was made black
    box: tuple[int, int]      # the digit's bounding box in the image, width x height
    scaled: tuple[int, int]   # that box in the 28x28 frame (longer side 20)

    def __str__(self) -> str:
        """e.g. "640x480, inverted, digit 210x300 -> 14x20"."""
        size, box, scaled = ("x".join(map(str, v))
                             for v in (self.size, self.box, self.scaled))
        return (f"{size}, {'inverted' if self.inverted else 'not inverted'}, "
                f"digit {box} -> {scaled}")


def read_digit(image: str | os.PathLike | Any) -> Digit:
    """The digit in `image` (a file, a PIL image, or a 2-D uint8 array or
    tensor of grey pixels) made an MNIST digit; a ValueError if there is no
    digit to see (an image of one shade) or a pixel is NaN; an OSError for a
    file that cannot be read (IsADirectoryError: a folder).

    1. Grey: colours to luminance; a transparent background made white;
       16-bit levels made 8-bit, float levels in [0, 1] made 0-255.
    2. White on black: inverted where the background (the median of the
       border pixels) is light. Levels stretched so that the background is 0
       and the darkest stroke 255; ink fainter than `NOISE` becomes 0.
    3. The digit's bounding box, scaled so that its longer side is 20
       pixels, its aspect kept (area-averaged when it shrinks, so that edges
       turn grey as MNIST's anti-aliasing made them).
    4. Placed in a 28x28 frame, shifted by whole pixels so that its centre
       of mass lies within half a pixel of (14, 14), as MNIST's do.
    """
    import numpy as np
    from PIL import Image

    grey = _grey(image)
    a = np.asarray(grey, dtype=np.float64)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    inverted = bool(np.median(border) > 127.5)
    if inverted:
        a = 255.0 - a
    background, ink = float(np.median(255.0 - border if inverted else border)), a.max()
    if ink - background < NOISE * 255:
        raise ValueError(f"no digit in {_name(image)}: it is all one shade "
                         f"(pixels {a.min():g} to {a.max():g})")
    a = np.clip((a - background) / (ink - background), 0.0, 1.0) * 255.0
    a[a < NOISE * 255] = 0.0

    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    a = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    height, width = a.shape
    factor = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size != (width, height):
        how = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
        a = np.asarray(Image.fromarray(a.astype(np.float32)).resize(size, how),
                       dtype=np.float64)  # a float ("F") image: no rounding yet

    frame = np.zeros((FRAME, FRAME))
    top, left = (_place(_centre_of_mass(a, axis), n)
                 for axis, n in ((1, size[1]), (0, size[0])))
    frame[top:top + size[1], left:left + size[0]] = a
    pixels = torch.from_numpy(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return Digit(pixels, grey.size, inverted, (width, height), size)


def _grey(image: Any, name: str | None = None) -> Any:
    """`image` (called `name` in messages) as a PIL image of grey levels
    ("L"), upright as the camera saw it; a transparent background white."""
    import numpy as np
    from PIL import Image, ImageOps

    if isinstance(image, (str, os.PathLike)):
        if os.path.isdir(image):  # else "no such file" or "is a directory"
            raise IsADirectoryError(f"{_name(image)} is a folder, not an image: "
                                    "name the image files in it")
        with Image.open(image) as opened:
            return _grey(opened, _name(image))
    if not isinstance(image, Image.Image):
        array = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image)
        if array.ndim != 2 or array.dtype != np.uint8:
            raise ValueError(f"expected a 2-D uint8 array of grey pixels, got "
                             f"{array.dtype} of shape {array.shape}")
        return Image.fromarray(array)  # "L"
    image = ImageOps.exif_transpose(image)  # a phone's photo, turned upright
    if image.mode in ("F", "I") or image.mode.startswith("I;16"):
        # PIL would clip these levels to 0-255, a NaN too, and say nothing.
        return _levels(np.asarray(image, dtype=np.float64),
                       name or _name(image), image.mode == "F")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("L")


def _levels(a: "np.ndarray", name: str, floats: bool) -> Any:
    """A float ("F") or 16/32-bit ("I") image's levels as an "L" image:
    floats in [0, 1] (as scientific TIFFs keep them) times 255, integers
    above 255 taken as 16-bit (divided by 257); a ValueError naming the NaN
    or infinite pixels, which have no shade."""
    import numpy as np
    from PIL import Image

    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    if nan or inf:
        what = " and ".join(f"{n:,} {kind}" for n, kind in
                            ((nan, "NaN"), (inf, "infinite")) if n)
        raise ValueError(f"{name} has {what} pixel(s) of {a.size:,}: a pixel "
                         "needs a shade; fill them (e.g. with the background's) "
                         "and save it again")
    if floats and a.size and 0 <= a.min() and a.max() <= 1:
        a = a * 255.0
    elif not floats and a.size and a.max() > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _centre_of_mass(a: "np.ndarray", axis: int) -> float:
    """The intensity-weighted mean index along rows (axis=1: summed over
    columns) or columns (axis=0)."""
    import numpy as np

    mass = a.sum(axis=axis)
    return float((mass * np.arange(len(mass))).sum() / mass.sum())


def _place(centre: float, length: int) -> int:
    """Where a box of `length` pixels whose centre of mass is at `centre`
    starts in the frame: the whole-pixel shift nearest to putting that centre
    at CENTRE, kept inside the frame."""
    start = math.floor(CENTRE - centre + 0.5)
    return min(max(start, 0), FRAME - length)


def _name(image: Any) -> str:
    return (repr(str(image)) if isinstance(image, (str, os.PathLike))
            else f"the {type(image).__name__}")
