"""The receptive-field explorer's presets (`mnist_lib.explorer`): a model's
layers as the calculator finds them, only where the explorer can show the
model, a chain of convolutions and poolings. (The browser tests in
tests/test_book.py check the explorer's own arithmetic against them.)"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn

from mnist_lib.explorer import explorer_html, explorer_layers
from tests.rf.helpers import ROOT
from tests.test_book import browser  # noqa: F401  (the fixture: Chromium)


class SideBranch(nn.Module):
    """Two 3x3 convs; between them a padded 3x3 conv whose result is unused
    (a debug op): it keeps the map's size, so only the graph tells it apart."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
        self.aux = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        self.aux(y)
        return self.b(y)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        return y + self.b(y)


def test_a_chain_of_layers_is_a_preset():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 8, 3, dilation=2), nn.AdaptiveAvgPool2d(1))
    assert explorer_layers(model) == [
        {"name": "0", "kind": "conv", "k": 3, "s": 1, "p": 1, "d": 1},
        {"name": "2", "kind": "maxpool", "k": 2, "s": 2, "p": 0},
        {"name": "3", "kind": "conv", "k": 3, "s": 1, "p": 0, "d": 2},
        {"name": "4", "kind": "avgpool", "k": 10, "s": 10, "p": 0, "global": True}]


@pytest.mark.parametrize("model", [
    SideBranch(),  # before: the unused conv was a layer of the chain (RF 7, not 5)
    Residual(),
    nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
    nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2, ceil_mode=True)),
], ids=["side branch", "residual", "linear", "ceil_mode"])
def test_what_the_explorer_cannot_show_is_no_preset(model):
    assert explorer_layers(model) is None


def test_the_page_holds_the_presets_and_the_digit():
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, 10:18, 12] = 255
    page = explorer_html({"chain": nn.Sequential(nn.Conv2d(1, 1, 3)),
                          "</script>": SideBranch()}, digit, label=1)
    payload = re.search(r'<script type="application/json" id="rf-presets">(.*)'
                        r"</script>", page).group(1)
    assert "</" not in payload  # a name cannot end the script early
    data = json.loads(payload)
    assert [p["name"] for p in data["presets"]] == ["chain"]
    assert data["skipped"] == ["</script>"] and data["selected"] == "chain"
    assert data["digit"]["pixels"][12][12] == 255 and data["digit"]["label"] == 1
    # A batch or a colour image is no digit (before: torch's reshape error).
    with pytest.raises(ValueError, match=r"one square image, \(H, H\) or \(1, H, H\), "
                                         r"got \(3, 28, 28\)"):
        explorer_html({"chain": nn.Sequential(nn.Conv2d(1, 1, 3))},
                      torch.zeros(3, 28, 28))


def test_the_editor_numbers_its_layers_as_the_errors_do(browser):
    """The explorer in Chromium, on a page of its own (no built book): each
    layer of the editor shows the number that its errors and the table use.
    Before, the list's numbers vanished (its items are flex boxes)."""
    static = ROOT / "_static"
    page = browser.new_page()
    page.set_content(
        f"<style>{(static / 'rf_explorer.css').read_text()}</style>"
        + explorer_html({"chain": nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2),
                                                nn.Conv2d(1, 1, 3))},
                        torch.zeros(28, 28, dtype=torch.uint8))
        + f"<script>{(static / 'rf_arithmetic.js').read_text()}</script>"
        + f"<script>{(static / 'rf_explorer.js').read_text()}</script>")
    page.locator("summary").click()
    items = page.locator(".rf-layers li")
    assert [items.nth(i).inner_text().split()[0] for i in range(3)] == [
        "1.", "2.", "3."]
    page.close()
