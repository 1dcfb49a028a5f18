"""Figures: every plot shows itself in a notebook, with or without pyplot."""

from __future__ import annotations

import torch


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
    from mnist_lib.history import EpochRecord, History

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
