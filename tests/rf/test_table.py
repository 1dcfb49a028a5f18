"""What the table says of a whole network: the trunk (the RF to quote), the
headline, the legend, the default columns, and the plot of the RF's growth."""

from __future__ import annotations

import html

import pytest
import torch.nn as nn

from mnist_lib.models import MODELS
from mnist_lib.rf import COLUMNS, LEGEND, SHOWN, receptive_field
from tests.rf.helpers import averaging, main, support

# Model_4's layers, as its comments give them: RF 3, 7, 11 (three 3x3 convs,
# the first of stride 2), 13 (2x2 max-pool), 13 (1x1), 21, 29 (3x3 convs on
# jump 4), on a 3x3 map; then the global average pooling and a 1x1 conv.
MODEL_4_RF = [3, 7, 11, 13, 13, 21, 29]


def test_resnet18_headline_quotes_the_last_map_before_the_pooling():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18(weights=None)
    t = receptive_field(model, (3, 224, 224))
    assert t.headline == ("RF 435 px (more than the 224x224 input), jump 32 px, at "
                          "'layer4.1.add' (map 7x7); global from 'avgpool' "
                          "(AdaptiveAvgPool2d) on")
    assert t.first_global is t["avgpool"]
    # The gradient through the conv path (stem to layer4), with an input tall
    # enough that the central unit's RF is not clipped (32 px wide: the
    # height's support does not depend on the width). Between two rows of
    # that map, 32 px: units i and i + 1, probed through a crop of the output.
    path = averaging(nn.Sequential(*list(model.children())[:-2]))
    top, _, bottom, _ = support(path, (544, 32), channels=3)
    assert bottom - top == 435 and 0 < top and bottom < 544
    shifted = nn.Sequential(path, nn.ZeroPad2d((0, 0, -1, 0)))  # drop the top row
    top_2, _, bottom_2, _ = support(shifted, (544, 32), channels=3)
    assert (top_2 - top, bottom_2 - bottom) == (32, 32)


def test_model_4_trunk_is_its_last_map_and_model_1_has_no_global_op():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    assert (t.trunk.name, t.trunk.r_out, t.trunk.j_out, t.trunk.n_out) == (
        "block2.1.0", MODEL_4_RF[-1], 4, 3)
    assert not t.trunk.global_out and t.first_global.name == "output.0"
    assert repr(t) == f"RFTable({len(t.rows)} ops, input (1, 28, 28): {t.headline})"
    # Model_1 ends with an 8x8 conv over the 8x8 map (RF 15 + 7 * 2 = 29):
    # one unit that is no global op, and the output's own RF.
    m1 = receptive_field(MODELS["Model_1"](), (1, 28, 28))
    assert m1.first_global is None and not m1.final.global_out
    assert (m1.trunk.name, m1.trunk.r_out, m1.trunk.n_out) == ("output", 29, 1)
    assert m1.headline == "RF 29 px (more than the 28x28 input), jump 2 px, at 'output'"


def test_default_columns_show_the_recurrence_not_the_costs(capsys):
    for columns in (COLUMNS, SHOWN):
        assert "activation" not in columns and "params" not in columns
        assert "start_out" in columns
    assert main(["mnist_lib.models:Model_4"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == COLUMNS


def test_html_has_the_headline_and_the_legend_under_the_table():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    page = t._repr_html_()
    after = page[page.index("</table>"):]
    assert html.escape(t.headline) in after and html.escape(LEGEND) in after
    # A global RF reads as such in a cell, never as a bare number.
    assert ">global (29)<" in page


def test_plot_marks_the_rf_of_each_layer_the_input_and_the_marks():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    ax = t.plot(marks={"digit": 20})
    try:
        dashed = sorted(line.get_ydata()[0] for line in ax.get_lines()
                        if line.get_linestyle() == "--")
        assert dashed == [20, 28]                   # the digit, the 28x28 input
        points = [(tuple(c.get_facecolors()[0]), [y for _, y in c.get_offsets()])
                  for c in ax.collections]
        filled = [y for colour, ys in points if colour != (1, 1, 1, 1) for y in ys]
        hollow = [y for colour, ys in points if colour == (1, 1, 1, 1) for y in ys]
        assert len(filled) + len(hollow) == len(t.layers())
        # The pooling, the 1x1 conv after it and log_softmax: global, over 29.
        assert filled == MODEL_4_RF and hollow == [MODEL_4_RF[-1]] * 3
        assert " ".join(ax.get_title().split()) == t.headline  # wrapped to fit
        assert [x.get_text() for x in ax.get_xticklabels()] == [
            r.name for r in t.layers()]
    finally:
        plt.close(ax.figure)
