"""Figures: every plot shows itself in a notebook, with or without pyplot."""

from __future__ import annotations

import torch


def test_figures_render_as_png_without_pyplot():
    from IPython.core.formatters import DisplayFormatter

    from mnist_lib import plots

    fig = plots.class_balance(torch.arange(10).repeat(3))
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
