"""The digit pad (book/play.md): the model's layers as its script takes them
(`mnist_lib.pad`), the files the build ships (_ext/digit_pad.py), and the
page's JavaScript in Chromium against PyTorch and `mnist_lib.read_digit`:
first on a site made here from an untrained model, then (marked `book`) on
the built site, with the recorded final model it ships."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mnist_lib import History, load_checkpoint, load_mnist, read_digit, save_checkpoint
from mnist_lib.models import Model_2, Model_4, Model_5
from mnist_lib.pad import CHECKPOINT, PadError, pad_layers
from mnist_lib.rf import receptive_field
from tests.support import load_script
from tests.test_book import browser, site, without_javascript  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "_static"
PAD = ('<div id="digit-pad" data-checkpoint="pad/final_model.pt" '
       'data-model="pad/model.json" data-digits="pad/digits.json"></div>')
# The page's scripts, in the order of their dependence (the built site loads
# them in any order: each starts when the page has been read).
SCRIPTS = ["rf_arithmetic.js", "mnist_digit.js", "pad_model.js", "play.js"]


def _ext():
    spec = importlib.util.spec_from_file_location("digit_pad",
                                                  ROOT / "_ext" / "digit_pad.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained_looking(net: nn.Module, seed: int = 0) -> nn.Module:
    """`net` with BatchNorm statistics and affine weights away from their
    defaults, so that folding them in wrongly shows."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


class LinearHead(nn.Sequential):
    """A net with a max-pool, dropout and a linear head: kinds the book's
    final model does not have, which the pad runs too."""

    def __init__(self):
        super().__init__(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.Dropout(0.1), nn.Flatten(), nn.Linear(8 * 6 * 6, 10),
                         nn.LogSoftmax(dim=1))


NETS = {"Model_2": Model_2, "Model_4": Model_4, "linear head": LinearHead}


def _checkpoint(path: Path, net: nn.Module) -> Path:
    history = History(type(net).__name__, 0, {}, {},
                      normalization={"mean": 0.1307, "std": 0.3081})
    return save_checkpoint(path, net, history)


# ------------------------------------------------------------- the layers
def test_the_pad_runs_the_layers_of_the_model_graph():
    net = _trained_looking(Model_2())
    layers = pad_layers(net)
    kinds = [layer["kind"] for layer in layers]
    assert kinds == ["conv", "batchnorm", "relu"] * 5 + [
        "avgpool", "conv", "flatten", "log_softmax"]
    first = layers[0]
    assert (first["k"], first["s"], first["p"], first["d"]) == (3, 2, 1, 1)
    assert first["bias"] is None and len(first["weight"]) == 10 * 1 * 3 * 3
    assert layers[15]["global"] is True
    # BatchNorm in eval mode is x * scale + shift, per channel.
    bn, bn_layer = net.block1[1][1], layers[4]
    x = torch.randn(2, 12, 5, 5, dtype=torch.float64)
    scale, shift = (torch.tensor(bn_layer[k]).view(1, -1, 1, 1)
                    for k in ("scale", "shift"))
    assert torch.allclose(bn.double()(x), x * scale + shift)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        return torch.log_softmax((y + self.b(y)).mean((2, 3)), dim=1)


@pytest.mark.parametrize("net, message", [
    (Model_5(), r"cannot run block1\.0\.2 \(GELU\)"),
    (Residual(), r"a chain of layers"),
    (nn.Sequential(nn.Conv2d(1, 10, 28), nn.Flatten()), r"must end in log_softmax"),
    (nn.Sequential(nn.Conv2d(1, 4, (3, 5)), nn.Flatten(), nn.LogSoftmax(1)),
     r"cannot run 0 \(Conv2d with these settings\)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.AvgPool2d(2), nn.Flatten(), nn.LogSoftmax(1)),
     r"cannot run 1 \(AvgPool2d\)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(26, 10), nn.Flatten(),
                   nn.LogSoftmax(1)), r"calculator does, which cannot: .*Linear"),
], ids=["GELU", "residual", "no log_softmax", "non-square kernel", "avg-pool",
        "linear on a map"])
def test_what_the_pad_cannot_run_is_refused_by_name(net, message):
    with pytest.raises(PadError, match=message):
        pad_layers(net)


def test_the_pad_runs_the_recorded_final_model():
    """The checkpoint the build ships is the book's final model as recorded:
    FINAL_MODEL's class, its training log the record's."""
    from mnist_lib import book
    from mnist_lib.models import FINAL_MODEL

    assert type(load_checkpoint(ROOT / CHECKPOINT).net).__name__ == FINAL_MODEL
    saved = torch.load(ROOT / CHECKPOINT, map_location="cpu", weights_only=True)
    log = book.load_record("final_model")
    assert saved["model"] == log["model"] == FINAL_MODEL
    assert saved["config"] == log["config"]


# ----------------------------------------------------- the build's files
def _page(folder: Path, html: str = PAD) -> Path:
    page = folder / "book" / "play.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<html><body>{html}</body></html>")
    return page


def test_the_build_ships_the_pad_s_files_or_says_how_to_make_them(tmp_path, mnist,
                                                                    data_root):
    ext = _ext()
    out = tmp_path / "html"
    _page(out)
    checkpoint = tmp_path / "results" / "final_model.pt"
    with pytest.raises(ext.PadFilesError, match=rf"{re.escape(str(checkpoint))}, and "
                                           r"there is no such file\. .*git checkout "):
        ext.ship(out, checkpoint, data_root)
    checkpoint.parent.mkdir()
    net = _trained_looking(Model_2())
    _checkpoint(checkpoint, net)
    written = ext.ship(out, checkpoint, data_root)
    pad = out / "book" / "pad"
    assert sorted(written) == [pad / "digits.json", pad / "final_model.pt",
                               pad / "model.json"]
    assert (pad / "final_model.pt").read_bytes() == checkpoint.read_bytes()
    model = json.loads((pad / "model.json").read_text())
    assert model["model"] == "Model_2" and model["digit"]["frame"] == 28
    digits = json.loads((pad / "digits.json").read_text())["digits"]
    assert [d["index"] for d in digits[:200]] == list(range(200))
    wrong = digits[200:]
    assert wrong and all(d["predicted"] != d["label"] for d in wrong)
    first = np.frombuffer(base64.b64decode(digits[0]["pixels"]), dtype=np.uint8)
    assert (first.reshape(28, 28) == mnist.test_images[0].numpy()).all()
    # A page without a pad gets nothing; a pad that names a file outside the
    # site is refused.
    assert ext.ship(tmp_path / "empty", checkpoint, data_root) == []
    _page(tmp_path / "bad", PAD.replace("pad/model.json", "../../model.json"))
    with pytest.raises(ext.PadFilesError, match="outside the site"):
        ext.ship(tmp_path / "bad", checkpoint, data_root)


# ------------------------------------------------ the page, in Chromium
def _open_pad(browser, folder: Path, **options):
    """The pad of the page `folder`/book/play.html, served from `folder` at
    an address of its own (no server), started."""
    page = browser.new_page(**options)

    def serve(route):
        path = folder / route.request.url.removeprefix("http://pad.test/")
        if path.is_file():
            route.fulfill(path=str(path))
        else:
            route.fulfill(status=404, body="not found")

    page.route("http://pad.test/**", serve)
    page.goto("http://pad.test/book/play.html")
    page.evaluate("window.mnistPlay.ready")
    return page


def _shapes() -> list[np.ndarray]:
    """Grey images of digit-like strokes, drawn with Pillow: dark on light and
    light on dark, large (shrunk into the box) and tiny (enlarged)."""
    from PIL import Image, ImageDraw

    shapes = []
    for size, background, ink, points, width in [
        ((280, 280), 255, 0, [(60, 40), (220, 40), (120, 250)], 20),      # a 7
        ((200, 120), 0, 255, [(20, 60), (180, 30), (100, 110)], 9),       # wide
        ((300, 280), 240, 30, [(150, 20), (150, 260)], 18),               # a 1
        ((50, 60), 255, 0, [(20, 20), (24, 27)], 3),                      # tiny
        # A box 210 pixels tall: shrunk by 10.5, so pixel edges fall exactly
        # on the BOX filter's edges, where the last bit of a weight decides.
        ((280, 280), 255, 0, [(140, 35), (140, 244)], 16),
    ]:
        image = Image.new("L", size, background)
        ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
        shapes.append(np.asarray(image))
    circle = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(circle).ellipse((70, 40, 210, 250), outline=0, width=22)  # a 0
    return shapes + [np.asarray(circle)]


@pytest.mark.parametrize("name", list(NETS))
def test_the_page_computes_what_pytorch_and_read_digit_do(browser, tmp_path,
                                                          data_root, name):
    """The page's model and conversion, on a site made here: an untrained
    model (with BatchNorm away from its defaults) on random pixels and on
    20 test digits, and the conversion on drawn shapes."""
    net = _trained_looking(NETS[name]())
    checkpoint = _checkpoint(tmp_path / "final_model.pt", net)
    site_dir = tmp_path / "site"
    scripts = "".join(f'<script src="../_static/{s}"></script>' for s in SCRIPTS)
    _page(site_dir, PAD).write_text(
        f"<html><head>{scripts}</head><body>{PAD}</body></html>")
    (site_dir / "_static").mkdir()
    for script in SCRIPTS:
        (site_dir / "_static" / script).write_text((STATIC / script).read_text())
    _ext().ship(site_dir, checkpoint, data_root)
    page = _open_pad(browser, site_dir)
    model = load_checkpoint(site_dir / "book" / "pad" / "final_model.pt")
    torch.manual_seed(1)
    digits = load_mnist(data_root).test_images[:20].squeeze(1).float() / 255
    pixels = torch.cat([torch.rand(30, 28, 28), digits])
    js = torch.tensor(page.evaluate(
        "xs => xs.map(x => window.mnistPlay.logProbs(x))",
        pixels.flatten(1).tolist()), dtype=torch.float64)
    with torch.no_grad():
        ref = model(pixels).double()
    assert (js - ref).abs().max() < 1e-4
    for grey in _shapes():
        shown = page.evaluate(
            "([g, w, h]) => Array.from(window.mnistPlay.mnistLike(g, w, h).pixels)",
            [grey.flatten().tolist(), grey.shape[1], grey.shape[0]])
        assert shown == read_digit(grey).pixels.flatten().tolist(), grey.shape
    page.close()


# --------------------------------------------------- on the built site
def _built_pad(site, browser, **options):
    base, html = site
    page = browser.new_page(**options)
    page.goto(f"{base}/book/play.html", wait_until="load")
    page.wait_for_function("window.mnistPlay && window.mnistPlay.ready", timeout=10_000)
    page.evaluate("window.mnistPlay.ready")
    return page


@pytest.mark.book
def test_digit_pad_runs_the_checkpoint_it_offers(site, browser):
    """The page's model on 200 test digits against PyTorch on the checkpoint
    the page offers: the largest difference of a log-probability below 1e-4,
    the same digit read for all. And its RF is the calculator's."""
    base, html = site
    page = _built_pad(site, browser)
    url = page.evaluate("new URL(window.mnistPlay.checkpoint, location.href).pathname")
    model = load_checkpoint(html / url.lstrip("/"))
    digits = json.loads((html / "book" / "pad" / "digits.json").read_text())["digits"]
    wrong = [d for d in digits if d["predicted"] != d["label"]]
    chosen = (wrong + [d for d in digits if d not in wrong])[:200]
    assert len(chosen) == 200
    images = torch.stack([torch.frombuffer(bytearray(base64.b64decode(d["pixels"])),
                                           dtype=torch.uint8) for d in chosen])
    pixels = (images.float() / 255).tolist()
    js = torch.tensor(page.evaluate("xs => xs.map(x => window.mnistPlay.logProbs(x))",
                                    pixels), dtype=torch.float64)
    with torch.no_grad():
        ref = model(images.view(-1, 28, 28)).double()
    worst = (js - ref).abs().max().item()
    print(f"digit pad: largest log-probability difference {worst:.3g} on "
          f"{len(chosen)} test digits, {len(wrong)} of those offered read wrong")
    assert worst < 1e-4
    assert js.argmax(1).tolist() == ref.argmax(1).tolist()
    assert ref.argmax(1).tolist() == [d["predicted"] for d in chosen]
    # The red box: the RF of a unit of the last map before the global pooling.
    r = receptive_field(model.net, (1, 28, 28)).trunk.r_out
    assert f", {r}×{r} pixels," in page.locator("#pad-input-caption").inner_text()
    page.close()


def _draw(page, strokes) -> None:
    """Draw `strokes` (lists of points in the pad's 280x280 pixels) with the
    mouse, after clearing the pad."""
    page.get_by_role("button", name="Clear").click()
    canvas = page.locator("#digit-pad canvas.pad-canvas")
    canvas.scroll_into_view_if_needed()  # the whole canvas within reach
    box = canvas.bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()
    page.wait_for_timeout(100)  # the page redraws at the next frame


def _canvas_image(page):
    """The drawing area's pixels, as Pillow's RGBA image."""
    from PIL import Image

    rgba = page.evaluate("""() => {
        const c = document.querySelector('#digit-pad canvas.pad-canvas');
        const image = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        return Array.from(image.data);
    }""")
    side = math.isqrt(len(rgba) // 4)
    pixels = np.array(rgba, dtype=np.uint8).reshape(side, side, 4)
    return Image.fromarray(pixels, "RGBA")


@pytest.mark.book
def test_digit_pad_makes_a_drawing_an_mnist_digit_as_read_digit_does(site, browser):
    from mnist_lib.utils.layer_kinds import layer_kind

    _, html = site
    net = load_checkpoint(html / "book" / "pad" / "final_model.pt").net
    # A row of maps for each convolution or pooling whose map is not 1x1.
    maps = sum(1 for row in receptive_field(net, (1, 28, 28)).rows
               if layer_kind(row.kind) is not None and row.n_out > 1)
    page = _built_pad(site, browser)
    for strokes in [
        [[(80, 50), (200, 50), (120, 240)]],                          # a 7
        [[(140, 40), (140, 250)]],                                    # a 1
        [[(30, 30), (70, 30), (30, 90), (70, 90)]],                   # small, a corner
        [[(90, 60), (190, 60), (190, 140), (90, 140), (90, 60)],
         [(190, 140), (190, 250)]],                                   # a 9
    ]:
        _draw(page, strokes)
        shown = page.evaluate("window.mnistPlay.input()")
        expected = read_digit(_canvas_image(page)).pixels.flatten().tolist()
        assert shown == expected, strokes
        # What the page says it reads is its model's answer on that input.
        logp = page.evaluate("x => window.mnistPlay.logProbs(x)",
                             [v / 255 for v in shown])
        best = max(range(10), key=logp.__getitem__)
        answer = page.locator(".pad-answer").inner_text()
        assert answer.startswith(f"The model reads a {best} ("), answer
        assert page.locator(".pad-layer").count() == maps
    page.close()


@pytest.mark.book
def test_a_readers_first_stroke_replaces_the_opening_digit_not_a_chosen_one(
        site, browser):
    """The page opens on a test digit; the reader's first stroke starts a
    drawing of their own. A test digit the reader picks stays under their
    strokes, in its own frame, with the same channels on show (Exercise 2:
    add a stroke to a test digit; which maps change near it?)."""
    page = _built_pad(site, browser)
    opening = page.evaluate("window.mnistPlay.input()")
    assert opening and any(opening)
    def line(points):
        # Where the canvas is now: a click elsewhere (Clear, the digit menu)
        # may have scrolled the page since the last stroke.
        canvas = page.locator("#digit-pad canvas.pad-canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        scale = box["width"] / 280
        page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()
        page.wait_for_timeout(100)

    one = [(140, 40), (140, 250)]
    line(one)  # no Clear first
    alone = page.evaluate("window.mnistPlay.input()")
    _draw(page, [one])  # the same stroke after Clear
    assert alone == page.evaluate("window.mnistPlay.input()")
    page.locator("#pad-digit").select_option("0")
    picked = page.evaluate("window.mnistPlay.input()")
    page.wait_for_timeout(100)
    shown = page.locator(".pad-thumbs figcaption").all_inner_texts()
    line([(20, 250), (60, 250)])  # a stroke beside the picked digit
    titles = page.locator(".pad-layer-title").all_inner_texts()
    assert page.locator(".pad-thumbs figcaption").all_inner_texts() == shown
    added = page.evaluate("window.mnistPlay.input()")
    assert added != picked and added != alone
    # Both the digit and the stroke are there: more ink than either alone.
    assert sum(v > 0 for v in added) > sum(v > 0 for v in picked)
    # The digit stays as it was (no new box, no re-centring): every pixel
    # away from the stroke (rows 24-26, columns 1-6, of 28) is unchanged.
    near = {(r, c) for r in range(23, 28) for c in range(0, 8)}
    assert all(added[i] == picked[i] for i in range(784)
               if divmod(i, 28) not in near)
    assert any(added[i] != picked[i] for i in range(784) if divmod(i, 28) in near)
    assert all("on test digit #" in t for t in titles), titles
    page.close()


@pytest.mark.book
def test_digit_pad_fits_a_phone_and_draws_by_touch(site, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  has_touch=True, is_mobile=True)
    base, _ = site
    page = context.new_page()
    page.goto(f"{base}/book/play.html", wait_until="load")
    page.wait_for_function("window.mnistPlay && window.mnistPlay.input", timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Clear").click()
    canvas = page.locator("#digit-pad canvas.pad-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    scroll = page.evaluate("window.scrollY")
    cdp = context.new_cdp_session(page)
    points = [(0.5, 0.15), (0.5, 0.5), (0.45, 0.85)]
    for i, (fx, fy) in enumerate(points):
        kind = "touchStart" if i == 0 else "touchMove"
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": box["x"] + fx * box["width"], "y": box["y"] + fy * box["height"]}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(100)
    assert page.evaluate("window.scrollY") == scroll  # drawing did not scroll
    shown = page.evaluate("window.mnistPlay.input()")
    assert shown and max(shown) == 255
    assert page.locator(".pad-answer").inner_text().startswith("The model reads a ")
    context.close()


@pytest.mark.book
def test_digit_pad_says_what_it_needs_without_javascript(site, browser):
    context, page = without_javascript(site, browser, "book/play.html")
    note = page.locator("#digit-pad p")
    assert note.is_visible() and "JavaScript" in note.inner_text()
    assert page.locator("#digit-pad a[href='pad/final_model.pt']").is_visible()
    context.close()
