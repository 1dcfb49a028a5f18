"""An image of any size made an MNIST digit (mnist_lib.digit): checked against
a digit worked out by hand, and against MNIST's own digits drawn large."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_lib.digit import read_digit

# By hand: an L of ink, 40x40 pixels, in a 100x80 image: a bar 20 wide and 40
# tall, and a 20x20 square right of its lower half. Scaled by 1/2 to fit
# 20x20, area-averaged (every 2x2 block wholly ink or paper: no grey), it is
# a 20x20 box: 200 pixels in the 10 columns of the bar, centre (row 9.5,
# column 4.5), and 100 in the square, centre (14.5, 14.5). Their centre of
# mass: row (200 x 9.5 + 100 x 14.5) / 300 = 11.17, column
# (200 x 4.5 + 100 x 14.5) / 300 = 7.83. Shifted by whole pixels to put it
# within half a pixel of (14, 14): down 3 (14.17), right 6 (13.83).
INK = np.zeros((80, 100), dtype=bool)
INK[20:60, 30:50] = True
INK[40:60, 50:70] = True
EXPECTED = np.zeros((28, 28), dtype=np.uint8)
EXPECTED[3:23, 6:16] = 255
EXPECTED[13:23, 16:26] = 255


def _png(image: Image.Image) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    buffer.seek(0)
    return buffer


def test_a_digit_drawn_by_hand_becomes_the_one_worked_out_by_hand(tmp_path):
    dark_on_light = np.where(INK, 0, 255).astype(np.uint8)
    # Black on white, in colour, from a file: grey, then inverted.
    Image.fromarray(dark_on_light).convert("RGB").save(tmp_path / "l.png")
    digit = read_digit(tmp_path / "l.png")
    assert np.array_equal(digit.pixels.numpy(), EXPECTED)
    assert digit.pixels.dtype == torch.uint8
    assert (digit.size, digit.inverted, digit.box, digit.scaled) == (
        (100, 80), True, (40, 40), (20, 20))
    assert str(digit) == "100x80, inverted, digit 40x40 -> 20x20"
    # White on black (as an array): the same digit, not inverted.
    light = read_digit(np.where(INK, 255, 0).astype(np.uint8))
    assert np.array_equal(light.pixels.numpy(), EXPECTED) and not light.inverted
    # Black strokes on a transparent background: the background is white.
    rgba = np.zeros((80, 100, 4), np.uint8)
    rgba[INK] = (0, 0, 0, 255)
    clear = read_digit(Image.open(_png(Image.fromarray(rgba, "RGBA"))))
    assert np.array_equal(clear.pixels.numpy(), EXPECTED) and clear.inverted


def test_a_tall_digit_keeps_its_aspect_and_a_small_one_is_enlarged():
    """A bar 4 wide and 40 tall becomes 2x20 (the longer side 20); a 5x5
    square, too small, 20x20. Each has its centre of mass at 9.5 rows (and 0.5
    or 9.5 columns) from its corner: 4.5 from 14, a tie, shifted by 5."""
    tall = np.full((60, 30), 255, np.uint8)
    tall[10:50, 12:16] = 0
    digit = read_digit(tall)
    assert digit.scaled == (2, 20) and digit.box == (4, 40)
    rows, cols = np.nonzero(digit.pixels.numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 24, 14, 15)
    small = np.zeros((9, 9), np.uint8)
    small[2:7, 2:7] = 200  # faint: stretched to white
    dot = read_digit(small)
    assert dot.scaled == (20, 20) and not dot.inverted
    assert dot.pixels.numpy()[5:25, 5:25].min() == 255
    assert dot.pixels.sum() == 255 * 400


def test_mnist_digits_drawn_large_as_jpegs_come_back_as_they_were(mnist):
    """MNIST's own test digits, inverted, enlarged 4x and saved as JPEGs (their
    ripples around the strokes included), come back close to the originals:
    the conversion is MNIST's own."""
    diffs = []
    for pixels in mnist.test_images[:40]:
        large = Image.fromarray(255 - pixels.numpy()).resize(
            (112, 112), Image.Resampling.NEAREST).convert("RGB")
        buffer = io.BytesIO()
        large.save(buffer, "JPEG", quality=90)
        buffer.seek(0)
        back = read_digit(Image.open(buffer)).pixels
        diffs.append((back.float() - pixels.float()).abs().mean().item())
    # Grey levels off by a few in 255 on average (the JPEG, the faint edges).
    assert np.median(diffs) < 1.0 and np.mean(diffs) < 3.0, diffs


@pytest.mark.parametrize("shade", [0, 255, 128])
def test_an_image_of_one_shade_has_no_digit(shade):
    with pytest.raises(ValueError, match="no digit in the ndarray: it is all one "
                                         "shade"):
        read_digit(np.full((30, 30), shade, np.uint8))


def test_float_and_16_bit_images_are_read_at_their_depth(tmp_path):
    """A float TIFF (levels in [0, 1], as scientific images keep them) and a
    16-bit PNG of the hand-drawn L read as the 8-bit one does: PIL alone would
    clip their levels to 0-255 and see one shade."""
    dark_on_light = np.where(INK, 0.0, 1.0).astype(np.float32)
    Image.fromarray(dark_on_light).save(tmp_path / "float.tif")
    Image.fromarray((dark_on_light * 65535).astype(np.uint16)).save(
        tmp_path / "deep.png")
    for name in ("float.tif", "deep.png"):
        assert Image.open(tmp_path / name).mode in ("F", "I", "I;16")
        np.testing.assert_array_equal(read_digit(tmp_path / name).pixels.numpy(),
                                      EXPECTED)


def test_nan_pixels_and_folders_are_named_as_such(tmp_path):
    """A float TIFF with NaN pixels is refused naming them (not "all one
    shade", not a digit read around them); a folder given as an image is
    named as a folder (not "no such file")."""
    levels = np.where(INK, 0.0, 1.0).astype(np.float32)
    levels[0, :3] = np.nan
    Image.fromarray(levels).save(tmp_path / "gaps.tif")
    with pytest.raises(ValueError, match=r"'.*gaps.tif' has 3 NaN pixel\(s\) of "
                                         r"8,000: a pixel needs a shade; fill them"):
        read_digit(tmp_path / "gaps.tif")
    Image.fromarray(np.full((20, 20), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="400 NaN pixel"):
        read_digit(tmp_path / "nan.tif")
    with pytest.raises(IsADirectoryError, match=r"is a folder, not an image: name "
                                                "the image files in it"):
        read_digit(tmp_path)


def test_a_classifier_takes_a_digit_and_a_pil_image_as_their_pixels(mnist):
    """`model.predict(read_digit(f))` answers as `model.predict(digit.pixels[None])`
    does; a 28x28 PIL image (grey, or in colour) and a list of them as their
    pixels do, without torch's warning about a read-only array."""
    import warnings

    from mnist_lib.training.checkpoint import Classifier
    from mnist_lib.models import get_model

    torch.manual_seed(0)
    model = Classifier(get_model("Model_2"), 0.13, 0.31).eval()
    digits = [read_digit(255 - pixels.numpy()) for pixels in mnist.test_images[:4]]
    pixels = torch.stack([d.pixels for d in digits])
    expected = model.probabilities(pixels)
    images = [Image.fromarray(d.pixels.numpy()) for d in digits]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(model.probabilities(digits[0]), expected[:1])
        assert torch.equal(model.probabilities(digits), expected)
        assert torch.equal(model.probabilities(images[1]), expected[1:2])
        assert torch.equal(model.probabilities(images[1].convert("RGB")),
                           expected[1:2])
        assert torch.equal(model.probabilities(images), expected)
        assert torch.equal(model.probabilities(np.asarray(images[2])[None]),
                           expected[2:3])
    assert model.predict(digits[3]).tolist() == [int(expected[3].argmax())]
