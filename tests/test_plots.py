"""Figures: each plot draws what it says, and shows itself in a notebook,
with or without pyplot."""

from __future__ import annotations

import statistics

import pytest
import torch

from mnist_lib import plots


def test_figures_render_as_png_without_pyplot():
    from IPython.core.formatters import DisplayFormatter

    from mnist_lib import plots

    fig = plots.class_balance(torch.arange(10).repeat(3))
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_strip_keeps_each_model_in_its_column_and_opens_failing_seeds():
    import pytest

    from mnist_lib import plots

    finals = {"A": [99.5 + 0.01 * k for k in range(15)], "B": [99.3, 99.45]}
    passed = {"A": [k != 3 for k in range(15)], "B": [False, True]}
    ax = plots.seed_strip(finals, passed).axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata())]
    for column, name in enumerate(finals):
        xs = [x for line in dots for x in line.get_xdata() if round(x) == column]
        # 15 seeds must not spill into the next model's column.
        assert len(xs) == len(finals[name]) and all(abs(x - column) < 0.5 for x in xs)
    open_dots = sorted(y for line in dots if line.get_markerfacecolor() == "none"
                       for y in line.get_ydata())
    assert open_dots == [99.3, finals["A"][3]]
    assert "rule not met" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="2 values but 1 pass/fail flags"):
        plots.seed_strip({"B": [99.3, 99.45]}, {"B": [True]})


def test_seed_strip_legend_sits_beside_the_axes():
    from mnist_lib import plots

    # 15 seeds fill a column's whole height, so a legend inside the axes
    # covers dots wherever it goes: it must sit beside them, whole.
    finals = {"A": [99.40 + 0.013 * k for k in range(15)],
              "B": [99.58 - 0.013 * k for k in range(15)]}
    passed = {"A": [k != 0 for k in range(15)], "B": [True] * 15}
    fig = plots.seed_strip(finals, passed)
    fig.draw_without_rendering()  # applies the constrained layout
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    assert not box.overlaps(ax.bbox)
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)


def test_curves_refuse_a_run_with_no_epochs():
    import pytest

    from mnist_lib import plots
    from mnist_lib.training.history import EpochRecord, History

    empty = History("Model_4", 7764, {}, {}, [])
    one = History("Model_4", 7764, {}, {}, [EpochRecord(1, 0.5, 90.0, 0.4, 91.0, 0.1, 1.0)])
    with pytest.raises(ValueError, match="one with no epochs"):
        plots.curves([one, empty])
    with pytest.raises(ValueError, match="got none"):
        plots.curves([])
    assert len(plots.curves(one).axes) == 2  # one epoch is enough to draw


def test_image_grids_take_a_batch_with_its_channel_axis():
    import pytest

    from mnist_lib import plots

    # A DataLoader batch is (N, 1, 28, 28); the library's tensors are (N, 28, 28).
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([3, 1, 4, 1])
    for fig in (plots.samples(images, labels), plots.predictions(images, labels, labels)):
        shown = [im.get_array().shape for ax in fig.axes for im in ax.get_images()]
        assert shown == [(28, 28)] * 4
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, 1, H, W\).*\(4, 3, 28, 28\)"):
        plots.samples(torch.rand(4, 3, 28, 28), labels)


def test_per_class_marks_a_digit_without_test_images():
    import math

    import pytest

    from mnist_lib import plots
    from mnist_lib.evaluation import per_class_accuracy

    # A small test subset may lack a digit: its accuracy is NaN (0 of 0).
    labels = torch.tensor([1, 2, 2, 3])
    acc = per_class_accuracy(torch.tensor([1, 2, 0, 3]), labels, 10)
    assert math.isnan(acc[0]) and acc[2] == 50.0
    ax = plots.per_class(acc).axes[0]
    assert [round(p.get_x() + p.get_width() / 2) for p in ax.patches] == [1, 2, 3]
    assert ax.get_ylim()[0] == pytest.approx(49.0)
    marks = [t.get_text().strip() for t in ax.texts if "no test image" in t.get_text()]
    assert len(marks) == 7
    with pytest.raises(ValueError, match="no digit has a test image"):
        plots.per_class([math.nan] * 10)


def test_misclassified_grid_shows_only_the_wrong_digits_titled_true_to_predicted():
    from mnist_lib import plots

    images = torch.arange(10.0).view(10, 1, 1).expand(10, 28, 28)  # image k is all k
    labels = torch.arange(10)
    pred = labels.clone()
    pred[2], pred[7] = 5, 1
    fig = plots.misclassified_grid(images, labels, pred)
    shown = [(ax.get_title(), float(im.get_array()[0, 0]))
             for ax in fig.axes for im in ax.get_images()]
    assert shown == [("2 \u2192 5", 2.0), ("7 \u2192 1", 7.0)]
    assert fig.get_suptitle().startswith("2 misclassified digits")
    # At most n: the first n wrong ones, in test-set order.
    first3 = [ax.get_title() for ax in
              plots.misclassified_grid(images, labels, (labels + 1) % 10, n=3).axes
              if ax.get_images()]
    assert first3 == ["0 \u2192 1", "1 \u2192 2", "2 \u2192 3"]


def test_confusion_writes_each_nonzero_count_in_its_cell():
    from mnist_lib import plots

    m = torch.zeros(10, 10, dtype=torch.long)
    m[3, 3], m[3, 5], m[9, 4] = 1006, 3, 4
    ax = plots.confusion(m).axes[0]
    cells = sorted((round(t.get_position()[1]), round(t.get_position()[0]),
                    t.get_text()) for t in ax.texts)
    # (row = true digit, column = predicted); zeros are left blank.
    assert cells == [(3, 3, "1006"), (3, 5, "3"), (9, 4, "4")]


def test_rf_box_outlines_exactly_the_pixels_of_the_rf():
    from matplotlib.patches import Rectangle

    from mnist_lib import plots

    # RF coordinates: pixel i spans [i, i+1]. A box from 3 over 7 pixels covers
    # pixels 3..9, whose centres imshow puts at 3..9: edges at 2.5 and 9.5.
    # Rows start at -2: the RF reaches past the image's top edge (padding),
    # and the axes must show the whole box, not clip it to the image.
    image = torch.rand(28, 28)
    fig = plots.rf_box(image, (-2, 3, 7, 7), erf=torch.rand(28, 28))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        box, frame = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == \
            (2.5, -2.5, 7, 7)
        # The box runs past the image: the image's own edge is outlined.
        assert (frame.get_x(), frame.get_y(), frame.get_width()) == (-0.5, -0.5, 28)
        bottom, top = ax.get_ylim()  # imshow: y grows downwards
        assert top < -2.5 and bottom >= 27.5
        assert ax.get_xlim()[0] <= -0.5 and ax.get_xlim()[1] >= 27.5
    inside = plots.rf_box(image, (10, 10, 5, 5))
    assert len(inside.axes) == 1
    # A box inside the image needs no outline of the image.
    assert len([p for p in inside.axes[0].patches if isinstance(p, Rectangle)]) == 1


def _boxes(fig):
    """The architecture's boxes (input and layers), by the name each carries."""
    from matplotlib.patches import Rectangle

    return [p for p in fig.axes[0].patches
            if isinstance(p, Rectangle) and p.get_gid()]


def test_architecture_draws_a_box_per_layer_with_the_table_s_numbers():
    import pytest

    from mnist_lib import plots
    from mnist_lib.models import Model_4
    from mnist_lib.rf import receptive_field

    table = receptive_field(Model_4(), (1, 28, 28))
    fig = plots.architecture(table, title="Model_4")
    layers = [r for r in table.layers()
              if r.kind in ("Conv2d", "MaxPool2d", "AdaptiveAvgPool2d")]
    boxes = _boxes(fig)
    # The input and every conv and pool, in forward order; no log_softmax.
    assert [b.get_gid() for b in boxes] == ["input"] + [r.name for r in layers]
    # Each box's height is its map's size, relative to the input's.
    for box, n in zip(boxes, [28] + [r.n_out for r in layers]):
        assert box.get_height() == pytest.approx(max(n / 28, 0.03))
    texts = fig.axes[0].texts
    shown = [t.get_text() for t in texts]
    for row in layers:
        assert f"{row.n_out}×{row.n_out}" in shown and f"{row.ch_out} ch" in shown
    # Red: where the RF or the jump grows, and only there.
    red = [t.get_text() for t in texts if t.get_color() == "C3"]
    assert red == ["RF 3", "j 2", "RF 7", "RF 11", "RF 13", "j 4", "RF 21", "RF 29"]
    assert shown.count("global") == 3 and shown.count("(29)") == 2  # gap, 1x1
    assert [b.get_gid() for b in boxes if b.get_hatch()] == ["output.0"]
    thick = max(boxes, key=lambda b: b.get_linewidth())
    assert thick.get_gid() == table.trunk.name == "block2.1.0"
    assert fig.get_suptitle().startswith("Model_4\nRF 29 px")


def test_a_plain_architecture_leaves_out_the_jump_and_says_the_rf_in_words():
    from mnist_lib import plots
    from mnist_lib.models import Model_4
    from mnist_lib.rf import receptive_field

    table = receptive_field(Model_4(), (1, 28, 28))
    fig = plots.architecture(table, title="Model_4", plain=True)
    shown = [t.get_text() for t in fig.axes[0].texts]
    assert not any(t.startswith("j ") for t in shown) and "RF 29" in shown
    head = fig.get_suptitle()
    assert "sees 29×29 input pixels" in head and "jump" not in head
    assert "trunk" not in fig.get_supxlabel() and "jump" not in fig.get_supxlabel()


def test_architecture_of_a_deep_net_draws_what_grows_the_rf_and_says_so():
    import torch.nn as nn

    from mnist_lib import plots
    from mnist_lib.rf import receptive_field

    note = lambda fig: fig.get_supxlabel()  # the line under the boxes

    # 24 layers: the 1x1 convolutions change nothing, and are left out.
    mixed = nn.Sequential(*[m for _ in range(12) for m in
                            (nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 1))])
    table = receptive_field(mixed, (1, 28, 28))
    drawn = [b.get_gid() for b in _boxes(plots.architecture(table))]
    grow = [r.name for r in table.layers() if r.kernel == 3]
    assert drawn == ["input", *grow, "23"]  # and the output's layer
    assert "13 of 24 layers drawn" in note(plots.architecture(table))
    # 40 layers that all grow the RF: the first 12, a gap, the last 3.
    deep = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(40)])
    fig = plots.architecture(receptive_field(deep, (1, 28, 28)))
    drawn = [b.get_gid() for b in _boxes(fig)]
    assert drawn == ["input", *map(str, range(12)), "37", "38", "39"]
    assert "⋯" in [t.get_text() for t in fig.axes[0].texts]
    assert "15 of 40 layers drawn" in note(fig)
    assert "15 of 40 layers drawn" in plots.architecture_alt(
        receptive_field(deep, (1, 28, 28)))


def test_architecture_refuses_a_table_with_no_layer_to_draw():
    import pytest
    import torch.nn as nn

    from mnist_lib import plots
    from mnist_lib.rf import receptive_field

    table = receptive_field(nn.Sequential(nn.ReLU()), (1, 28, 28))
    for draw in (plots.architecture, plots.architecture_alt):
        with pytest.raises(ValueError, match=r"no layer to draw.*\(ReLU\)"):
            draw(table)


def test_architecture_alt_says_what_the_picture_shows():
    from mnist_lib import plots
    from mnist_lib.models import Model_1, Model_4
    from mnist_lib.rf import receptive_field

    alt = plots.architecture_alt(receptive_field(Model_4(), (1, 28, 28)), "Model_4")
    assert alt.startswith("Model_4: 9 layers drawn as boxes, from a 28x28x1 input: "
                          "conv 3x3 stride 2 to 14x14, 10 ch; conv 3x3 to 12x12")
    for part in ("max-pool 2 stride 2 to 5x5, 16 ch", "global avg-pool to 1x1",
                 "RF 29 px before the global pooling, jump 4 px."):
        assert part in alt
    assert "×" not in alt  # a screen reader reads "x" as the book writes it
    alt = plots.architecture_alt(receptive_field(Model_1(), (1, 28, 28)))
    assert alt.startswith("The model: 5 layers") and "RF 29 px at the output" in alt


def test_architecture_writes_an_uneven_jump_and_functional_layers_as_words():
    import pytest
    import torch.nn as nn
    import torch.nn.functional as F

    from mnist_lib import plots
    from mnist_lib.rf import receptive_field

    # An adaptive pooling from 12 to 7: windows of 2 and 3 pixels, no single
    # jump. Before, the picture wrote "j None" and the alt text no jump.
    uneven = receptive_field(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(7)),
                             (1, 14, 14))
    shown = [t.get_text() for t in plots.architecture(uneven).axes[0].texts]
    assert shown[-1] == "j uneven" and not any("None" in text for text in shown)
    alt = plots.architecture_alt(uneven)
    assert "adaptive avg-pool (2, 3) to 7x7" in alt and alt.endswith("jump uneven.")

    class Functional(nn.Module):  # F.max_pool2d: a max-pool, as nn.MaxPool2d is
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return F.max_pool2d(self.conv(x), 2)

    table = receptive_field(Functional(), (1, 28, 28))
    assert "; max-pool 2 stride 2 to 13x13, 4 ch." in plots.architecture_alt(table)
    pools = [b for b in _boxes(plots.architecture(table))
             if b.get_gid() == "max_pool2d"]
    assert len(pools) == 1 and pools[0].get_facecolor()[:3] == pytest.approx(
        (0xfd / 255, 0xae / 255, 0x6b / 255))  # orange, as every pooling


def test_architecture_refuses_too_few_layers_to_draw_the_cut():
    import pytest
    import torch.nn as nn

    from mnist_lib import plots
    from mnist_lib.rf import receptive_field

    deep = receptive_field(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1)
                                           for _ in range(10)]), (1, 28, 28))
    # Before, max_layers=2 drew 11 boxes (layers 7 and 8 twice) and said "2 of 10".
    for draw in (plots.architecture, plots.architecture_alt):
        with pytest.raises(ValueError, match=r"max_layers=2 is too few .* give 4"):
            draw(deep, max_layers=2)
    drawn = [b.get_gid() for b in _boxes(plots.architecture(deep, max_layers=4))]
    assert drawn == ["input", "0", "7", "8", "9"]


def test_a_figure_shows_the_same_png_until_it_changes():
    """A chapter shows a figure and glues it into Results: both pages must get
    the same image file. A constrained grid of images moves by a pixel on each
    draw, so the PNG is drawn once and kept until the figure changes."""
    from mnist_lib import plots

    images = torch.rand(30, 28, 28)
    fig = plots.image_grid(images, [str(i) for i in range(30)], title="grid")
    first = fig._repr_png_()
    assert fig._repr_png_() == first == fig._repr_png_()
    fig.axes[0].set_title("changed")
    assert fig._repr_png_() != first, "a changed figure is drawn again"


# ------------------------------------------ the evidence over seeds (issue 55)
def _record(diffs, against=99.3):
    """A held-out study of two arms whose per-seed last-3 means differ by `diffs`."""
    runs = lambda xs: [{"seed": s, "last3": [x] * 3, "met": x >= 99.4, "machine": "M",
                        "eval_acc": [98.0, 99.0, x, x, x]} for s, x in enumerate(xs)]
    return {"split": "holdout", "arms": [
        {"name": "before", "step": 3, "runs": runs([against] * len(diffs))},
        {"name": "after", "step": 3, "runs": runs([against + d for d in diffs])}]}


def test_paired_draws_a_dot_per_seed_and_the_interval_of_compare():
    from mnist_lib.study import compare

    record = _record([0.01, 0.03, 0.02, 0.05, 0.04])
    fig = plots.paired({"a change": (record, "after", "before")})
    lines = fig.axes[0].get_lines()
    dots = next(l for l in lines if l.get_marker() == "o")
    assert sorted(dots.get_xdata()) == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    vs = compare(record, "after", "before")
    bar = next(l for l in lines if len(l.get_xdata()) == 2 and l.get_linewidth() > 2)
    assert list(bar.get_xdata()) == pytest.approx([vs["delta"] - vs["delta_ci"],
                                                   vs["delta"] + vs["delta_ci"]])
    assert bar.get_color() == "C2"  # the interval clears zero: drawn as an effect


def test_pass_share_moves_runs_across_the_line_in_whole_digits():
    runs = [{"last3": [99.39, 99.40, 99.41]}, {"last3": [99.33, 99.45, 99.50]},
            {"last3": [99.40, 99.40, 99.40]}]
    assert plots.pass_share(runs) == pytest.approx(1 / 3)
    assert plots.pass_share(runs, 0.01) == pytest.approx(2 / 3)  # 99.39 + 0.01
    assert plots.pass_share(runs, 0.07) == 1.0                    # 99.33 + 0.07
    assert plots.pass_share(runs, -0.01) == 0.0
    # A shift moves a run by the whole digits it reaches, no more: 99.33 +
    # 0.0699 is 99.3999, short of the line (rounding the shift would pass it).
    assert plots.pass_share(runs, 0.0699) == pytest.approx(2 / 3)
    assert plots.pass_share(runs, 0.29) == 1.0    # 0.29 * 100 is 28.999...
    assert plots.pass_share(runs, -0.0001) == 0.0  # 99.40 - 0.0001 misses
    fig = plots.pass_rate_shift(runs, [-0.01, 0.0, 0.01, 0.07])
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(
        [0, 100 / 3, 200 / 3, 100])
    aimed = plots.pass_rate_shift(runs, [0.0, 0.07], aim=0.9).axes[0]
    aim_line = [l for l in aimed.get_lines() if "aim" in l.get_label()]
    assert [list(l.get_ydata()) for l in aim_line] == [[90.0, 90.0]]
    with pytest.raises(ValueError, match="share of the runs"):
        plots.pass_rate_shift(runs, aim=45)  # a count, not a share


def test_curve_band_spans_the_seeds_and_draws_the_live_run():
    from mnist_lib.training.history import EpochRecord, History

    record = _record([0.0, 0.1])
    live = History("live", 1, {}, {})
    live.epochs = [EpochRecord(e, 0.1, 99.0, 0.05, acc, 0.1, 1.0)
                   for e, acc in enumerate([97.0, 98.5, 99.2, 99.3, 99.45], 1)]
    fig = plots.curve_band(record, "after", live=live)
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(99.3) and band.max() == pytest.approx(99.4)
    drawn = next(l for l in ax.get_lines() if l.get_label() == "this build's run")
    assert list(drawn.get_ydata()) == [99.2, 99.3, 99.45]  # from epoch 3


def test_curve_band_takes_a_final_test_record_of_one_recipe():
    """A final test keeps its runs at the top, with no arms: the band is its
    seeds, and its title names the model and how many seeds drew it."""
    runs = [{"seed": s, "eval_acc": [98.0, 99.0, x, x]}
            for s, x in enumerate([99.30, 99.50, 99.42])]
    record = {"split": "test", "model": "Model_2", "runs": runs}
    ax = plots.curve_band(record).axes[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(99.30) and band.max() == pytest.approx(99.50)
    assert ax.get_title() == "Model_2, 3 seeds" and ax.get_ylabel() == "test accuracy (%)"


def test_intervals_draws_each_comparison_with_its_colour_under_its_group():
    groups = {"round 1": {"helps": {"delta": 0.1, "delta_ci": 0.05},
                          "hurts": {"delta": -0.2, "delta_ci": 0.1}},
              "round 2": {"unresolved": {"delta": 0.01, "delta_ci": 0.03}}}
    fig = plots.intervals(groups)
    ax = fig.axes[0]
    bars = [l for l in ax.get_lines()
            if l.get_linewidth() > 2 and len(l.get_xdata())]
    assert [tuple(b.get_xdata()) for b in bars] == [
        pytest.approx((0.05, 0.15)), pytest.approx((-0.3, -0.1)),
        pytest.approx((-0.02, 0.04))]
    assert [b.get_color() for b in bars] == ["C2", "C3", "k"]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["round 1", "helps", "hurts", "round 2", "unresolved"]
    # The legend names the colours, as the bars use them.
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "helps", "hurts", "not resolved"]
    assert [h.get_color() for h in legend.legend_handles] == ["C2", "C3", "k"]


def test_rf_stack_fills_as_many_units_as_the_rf_formula_gives():
    """Two 3x3 layers: the top unit sees 3 units below it and 5 pixels; with
    a stride-2 3x3 first, the second 3x3 adds (3 - 1) x 2 = 4: 7 pixels."""
    from matplotlib.colors import to_rgba

    fig = plots.rf_stack({"plain": [(3, 1), (3, 1)],
                          "stride": [(3, 2), (3, 1)]}, n_in=13)
    for ax, want in zip(fig.axes, ([5, 3, 1], [7, 3, 1])):
        filled = {}
        for patch in ax.patches:
            if patch.get_facecolor() == to_rgba("C1"):
                row = round(patch.get_y())
                filled[row] = filled.get(row, 0) + 1
        assert [filled[r] for r in sorted(filled)] == want
        assert ax.get_xlabel() == f"input pixels seen: {want[0]}"
    # Each square sits over the centre of what its unit sees: the rows
    # above a stride-2 layer are spaced by the jump, 2 input pixels.
    for ax, gaps in zip(fig.axes, ([1, 1, 1], [1, 2, 2])):
        xs = {}
        for patch in ax.patches:
            xs.setdefault(round(patch.get_y()), []).append(patch.get_x())
        assert [sorted(xs[r])[1] - sorted(xs[r])[0] for r in sorted(xs)] == gaps
        # the chosen top unit sits over the middle of the input pixels it sees
        def filled_xs(row):
            return [patch.get_x() for patch in ax.patches
                    if round(patch.get_y()) == row
                    and patch.get_facecolor() == to_rgba("C1")]
        assert filled_xs(max(xs)) == [pytest.approx(statistics.fmean(filled_xs(0)))]


def test_stages_draws_one_box_per_stage_with_its_text_and_arrows_between():
    from matplotlib.text import Annotation

    from mnist_lib import plots

    fig = plots.stages(["screen\nseeds 0-9", "decide\nseeds 10-39", "test"])
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    boxes = [t for t in ax.texts if not isinstance(t, Annotation)]
    assert [t.get_text() for t in boxes] == ["screen\nseeds 0-9",
                                             "decide\nseeds 10-39", "test"]
    assert all(t.get_bbox_patch() is not None for t in boxes)  # boxed
    assert len(arrows) == 2  # between the boxes, none before the first
    with pytest.raises(ValueError, match="at least one box"):
        plots.stages([])


def test_stages_draws_one_titled_row_per_round():
    from matplotlib.text import Annotation

    from mnist_lib import plots

    fig = plots.stages({"round 1": ["ladder", "ablation", "test"],
                        "round 2": ["screen", "test"]})
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if isinstance(t, Annotation)]
    ys = {}  # text -> the heights it is drawn at
    for t in ax.texts:
        if not isinstance(t, Annotation):
            ys.setdefault(t.get_text(), []).append(t.get_position()[1])
    assert len(arrows) == 3  # within each row, none from one row to the next
    (top,), (bottom,) = ys["round 1"], ys["round 2"]
    assert top > bottom
    assert ys["ladder"] == ys["ablation"] == [top] and ys["screen"] == [bottom]
    assert sorted(ys["test"]) == [bottom, top]  # one "test" box a row
    with pytest.raises(ValueError, match="in each row"):
        plots.stages({"round 1": ["ladder"], "round 2": []})


def test_data_split_draws_the_three_parts_to_scale_and_refuses_a_bad_holdout():
    from mnist_lib import plots

    ax = plots.data_split().axes[0]
    bars = [(p.get_x(), p.get_width()) for p in ax.patches]
    assert bars == [(0, 50), (50, 10), (60, 10)]  # thousands of digits
    labels = " ".join(t.get_text() for t in ax.texts)
    assert "first 50,000" in labels and "last 10,000" in labels
    with pytest.raises(ValueError, match="holdout must lie between"):
        plots.data_split(holdout=60_000)


def test_arms_numbers_a_ladders_rungs_by_their_place_in_the_record():
    def arm(name, step, means):
        return {"name": name, "step": step,
                "runs": [{"last3": [m, m, m], "met": m >= 99.4} for m in means]}
    record = {"split": "holdout", "arms": [arm("baseline", 1, [98.6, 98.7]),
                                           arm("BatchNorm", 1, [99.0, 99.1]),
                                           arm("dropout", 2, [99.3, 99.5])]}
    ax = plots.arms(record, ["BatchNorm", "dropout"], numbered=True).axes[0]
    labels = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert labels == ["2 BatchNorm", "3 dropout"]   # numbered as in the record
    assert ax.get_title().startswith("Each rung")
    assert "held-out" in ax.get_ylabel()
    plain = plots.arms(record).axes[0]
    assert [t.get_text() for t in plain.get_xticklabels()][0] == "baseline"
    assert plain.get_title().startswith("Each arm")
    legend = [t.get_text() for t in plain.get_legend().get_texts()]
    assert "Step 1" in legend and "Step 2" in legend  # arms of two steps
    one = plots.arms(record, ["baseline", "BatchNorm"]).axes[0]
    legend = [t.get_text() for t in one.get_legend().get_texts()]
    assert not any(t.startswith("Step") for t in legend)  # one step: no name


def test_seed_differences_draws_each_seeds_difference_epoch_by_epoch():
    record = _record([0.01, 0.03, 0.02])
    fig = plots.seed_differences(record, "after", "before")
    lines = [l for l in fig.axes[0].get_lines() if l.get_marker() == "."]
    assert len(lines) == 3
    assert sorted(l.get_ydata()[-1] for l in lines) == pytest.approx([0.01, 0.02, 0.03])
    assert all(list(l.get_ydata()[:2]) == [0.0, 0.0] for l in lines)  # trained alike


def test_mean_curves_colours_only_the_arms_it_highlights():
    record = _record([0.01, 0.03, 0.02])
    fig = plots.mean_curves(record, ["before", "after"], highlight=["after"])
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    assert "after" in labels and "before" not in labels
    grey = [l for l in fig.axes[0].get_lines() if l.get_color() == "0.75"]
    assert len(grey) == 2  # the unnamed arm, and its key in the legend
    with pytest.raises(ValueError, match="no recorded runs"):
        plots.mean_curves(record, ["before"], highlight=["missing"])


def test_mean_curves_label_each_arm_as_asked():
    record = _record([0.01, 0.03, 0.02])
    fig = plots.mean_curves(record, {"before": "rung 6, constant rate",
                                     "after": "rung 7, one-cycle"})
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    assert labels[:2] == ["rung 6, constant rate", "rung 7, one-cycle"]
    late = plots.mean_curves(record, ["before"], first_epoch=4)  # 5 epochs
    assert list(late.axes[0].get_lines()[0].get_xdata()) == [4, 5]


def test_launch_schematic_ends_the_graphed_step_before_the_eager_one():
    fig = plots.launch_schematic(kernels=4)
    eager, graphed = fig.axes[:2]
    done = [next(l.get_xdata()[0] for l in ax.get_lines()) for ax in (eager, graphed)]
    assert done[1] < done[0]
    gpu = lambda ax: [p for p in ax.patches if p.get_y() < 0.5]
    assert len(gpu(eager)) == len(gpu(graphed)) == 4  # the same kernels either way


def test_error_rates_draws_shares_from_zero_with_one_chance_range_a_digit():
    import pytest

    from mnist_lib import plots

    errors, sizes = [1, 4, 2], [100, 200, 50]
    ax = plots.error_rates(errors, sizes, chance=[(0.5, 2.0), (1.0, 3.0), (0.0, 6.0)]).axes[0]
    bars = [p for p in ax.patches if p.get_width() == pytest.approx(0.5)]
    assert [b.get_height() for b in bars] == pytest.approx([1.0, 2.0, 4.0])
    ranges = [(p.get_y(), p.get_y() + p.get_height()) for p in ax.patches
              if p.get_width() == pytest.approx(0.8)]
    assert ranges == [(0.5, 2.0), (1.0, 3.0), (0.0, 6.0)]
    assert ax.get_ylim() == pytest.approx((0, 7.2))  # from zero, room for the highest
    assert [t.get_text() for t in ax.texts] == ["1", "4", "2"]  # the counts
    with pytest.raises(ValueError, match="one of each per digit"):
        plots.error_rates(errors, sizes[:2])
    with pytest.raises(ValueError, match="at least one test image"):
        plots.error_rates([0, 1], [0, 10])


def test_learning_rates_draws_each_recipes_schedule_step_by_step():
    """One line per recipe, a point per step: a one-cycle line peaks at the
    recipe's rate where its warm-up ends; a constant rate stays flat."""
    from dataclasses import replace
    from mnist_lib.config import TrainConfig

    cycle = TrainConfig(epochs=2, batch_size=100, lr=0.4, scheduler="onecycle",
                        pct_start=0.15)
    flat = replace(cycle, scheduler="none", lr=0.01)
    fig = plots.learning_rates({"cycle": cycle, "flat": flat}, n_train=1_000)
    (ax,) = fig.axes
    (x1, y1), (x2, y2) = ((l.get_xdata(), l.get_ydata()) for l in ax.lines)
    assert len(y1) == len(y2) == 2 * 10  # 2 epochs of 1,000 / 100 steps
    assert x1[-1] == pytest.approx(1.9)  # epochs: step / steps per epoch
    peak = max(range(len(y1)), key=lambda i: y1[i])
    assert y1[peak] == pytest.approx(0.4)
    assert peak == round(0.15 * 20) - 1   # OneCycleLR's last warm-up step
    assert y1[0] == pytest.approx(0.04) and y1[-1] < 0.001
    assert set(y2) == {0.01}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cycle", "flat"]
