"""What the table says of a whole network: the trunk (the RF to quote), the
headline, the legend, the default columns, the plot of the RF's growth; and
that it acts as a table (print, len, iteration, a numeric DataFrame)."""

from __future__ import annotations

import html
import re

import pytest
import torch.nn as nn
import torch.nn.functional as F

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
                          "(AdaptiveAvgPool2d) onward")
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
    assert html.escape(t.headline) in after and html.escape(t.legend) in after
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


class _Shortcut(nn.Module):
    """A block whose shortcut (a strided 1x1 conv) sees less than its path."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.downsample = nn.Conv2d(4, 4, 1, stride=2)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(x) + self.downsample(x)


def test_plot_can_skip_a_shortcut_so_its_line_follows_one_path():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    t = receptive_field(_Shortcut(), (1, 16, 16))
    every = {r.name: r.r_out for r in t.layers()}
    assert every["downsample"] < every["conv2"]  # the dip the skip removes
    ax = t.plot(skip=["downsample"])
    try:
        names = [x.get_text() for x in ax.get_xticklabels()]
        assert names == [n for n in every if "downsample" not in n]
        line = ax.get_lines()[0].get_ydata()
        assert list(line) == sorted(line) == [every[n] for n in names]
    finally:
        plt.close(ax.figure)


def test_a_table_prints_counts_and_iterates_as_the_table_it_shows(capsys):
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    # print(table) is what the CLI prints: the table, the headline, the legend.
    assert main(["mnist_lib.models:Model_4"]) == 0
    assert str(t) == capsys.readouterr().out.rstrip("\n")
    assert str(t).startswith(t.to_text() + "\n\n")
    assert " ".join(str(t).split()).endswith(" ".join((t.headline + " " + t.legend)
                                                      .split()))
    assert repr(t).startswith("RFTable(") and "\n" not in repr(t)
    # One set of rows, the same in every rendering; len and iteration too.
    names = [r.name for r in t.layers()]
    assert [r.name for r in t] == names and len(t) == len(names) == 10
    assert [r["name"] for r in t.to_records()] == names
    assert list(t.to_frame()["name"]) == names
    assert [line.split()[0] for line in t.to_text().splitlines()[1:]] == names
    assert len(t.to_markdown().splitlines()) == 2 + len(names)
    assert t._repr_html_().count("<tr>") == 1 + len(names)
    # Any op by name, those the table leaves out too (a BatchNorm).
    assert t["block1.0.0"].kind == "Conv2d" and t["block1.0.1"].kind == "BatchNorm2d"


def test_to_frame_holds_numbers_and_flags():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    frame = t.to_frame()
    # Before, r_out mixed 29 and "global (29)".
    for column in ("n_out", "kernel", "stride", "j_out", "r_in", "r_out", "ch_out"):
        assert str(frame[column].dtype) == "Int64", column
    assert str(frame["start_out"].dtype) == "Float64"
    assert list(frame["r_out"])[-3:] == [29, 29, 29]
    assert frame["global_out"].dtype == bool
    assert list(frame["global_out"]) == [r.global_out for r in t]
    assert frame["j_out"].isna().tolist() == [r.j_out is None for r in t]
    # An uneven jump: a missing number, flagged; the text still says "uneven".
    uneven = receptive_field(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(7)),
                             (1, 14, 14))
    row = uneven.to_frame(columns=["name", "j_out"]).iloc[-1]
    assert row["j_out"] is pd_na() and bool(row["uneven_out"])
    assert " uneven " in uneven.to_text().splitlines()[-1]


def pd_na():
    import pandas as pd

    return pd.NA


class Dilated(nn.Module):
    """Two 3x3 convs, the second of dilation 2, after a 2x2 pooling."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, dilation=2)

    def forward(self, x):
        return self.conv2(F.avg_pool2d(self.conv1(x), 2))


def test_a_dilated_row_can_be_reproduced_from_the_columns_shown():
    t = receptive_field(Dilated(), (1, 28, 28))
    shown = t.to_text().splitlines()[0].split()
    assert shown[shown.index("kernel") + 1] == "dilation"
    html_head = re.findall(r"<th[^>]*>([^<]*)</th>", t._repr_html_())
    assert html_head == t.columns(SHOWN) and "dilation" in html_head
    # The recurrence the legend states, from the frame's own columns.
    for r in t.to_frame().itertuples():
        if r.kind in ("Conv2d", "avg_pool2d"):
            k = (r.dilation if r.dilation is not pd_na() else 1) * (r.kernel - 1) + 1
            assert r.r_out == r.r_in + (k - 1) * r.j_in and r.j_out == r.j_in * r.stride
    assert "dilation * (kernel - 1) + 1" in LEGEND
    # The gradient agrees: 3, then 4 after the pool, then + (5 - 1) * 2 = 12.
    assert t.final.r_out == 12
    top, _, bottom, _ = support(averaging(Dilated()), (28, 28))
    assert bottom - top == 12
    # Without a dilated layer, the columns are COLUMNS.
    plain = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    assert plain.columns() == COLUMNS and plain.to_text().split()[:len(COLUMNS)] \
        == COLUMNS


def test_a_name_is_in_the_table_as_indexing_finds_it():
    t = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    assert "block1.0.0" in t and "transition.0" in t and "nope" not in t
    assert all(row.name in t for row in t)
    relu = next(r for r in t.rows if r.kind == "ReLU")  # not a default row
    assert relu.name in t and relu not in list(t)


class _MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_the_headline_names_a_traced_function_once():
    """A tensor method's op is named as its kind ('mean'): the headline says
    "global from 'mean' onward", not "'mean' (mean)"; a module keeps its class."""
    t = receptive_field(_MeanHead(), (1, 28, 28))
    assert t.headline == "RF 3 px, jump 1 px, at 'conv' (map 26x26); global from 'mean' onward"


def test_the_legend_explains_only_what_the_table_holds():
    plain = receptive_field(MODELS["Model_1"](), (1, 28, 28))
    gap = receptive_field(MODELS["Model_4"](), (1, 28, 28))
    dilated = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2)),
                              (1, 28, 28))
    uneven = receptive_field(nn.Sequential(nn.Conv2d(1, 2, 3),
                                           nn.AdaptiveAvgPool2d(7)), (1, 12, 12))
    assert "r_out = r_in + (kernel - 1) * j_in" in plain.legend
    assert not any(word in plain.legend for word in ("global", "uneven", "dilat"))
    assert "global (r)" in gap.legend and "uneven" not in gap.legend
    assert "dilation * (kernel - 1) + 1" in dilated.legend
    assert "global" not in dilated.legend
    assert any(r.uneven_out for r in uneven.layers())
    assert "uneven:" in uneven.legend
    # Each table's legend is made of the full legend's sentences.
    for t in (plain, gap, dilated, uneven):
        assert t.legend.startswith("n: map size")
        assert all(part in LEGEND for part in t.legend.split(". "))
