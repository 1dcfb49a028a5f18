"""The calculator against an independent reference: the support of the
gradient, on random networks and on the book's models."""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mnist_lib.models import MODELS
from mnist_lib.rf import (RFError, receptive_field)
from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401


@settings(max_examples=150, deadline=None)
@given(st.lists(layer, min_size=1, max_size=5))
def test_analytic_matches_gradient_rf(spec):
    model = build(spec)
    size = 96  # large enough that the central unit's RF lies inside the image
    try:
        table = receptive_field(model, (1, size, size))
    except RFError:
        assert torch_agrees_nothing_is_left(model, size)
        return
    out = model(torch.zeros(1, 1, size, size))
    f = table.final
    assert f.n_out == (out.shape[2] if out.shape[2] == out.shape[3]
                       else (out.shape[2], out.shape[3]))
    rh, rw = f.r_out if isinstance(f.r_out, tuple) else (f.r_out, f.r_out)
    sh, sw = f.start_out if isinstance(f.start_out, tuple) else (f.start_out,) * 2
    jh, jw = f.j_out if isinstance(f.j_out, tuple) else (f.j_out, f.j_out)
    box, (i, k) = empirical_rf(model, size)
    assume(box is not None)
    top, left, h, w = box
    a_top, a_left = sh + i * jh - rh / 2, sw + k * jw - rw / 2
    # Compare only where the *analytic* box lies inside the image: where it
    # does not, the image edge clips the gradient (hypothesis fails the test if
    # it has to discard too many examples).
    assume(a_top >= 0 and a_left >= 0 and a_top + rh <= size and a_left + rw <= size)
    assert (h, w) == (rh, rw)
    assert (top, left) == (a_top, a_left)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(layer, edit), min_size=1, max_size=5))
def test_pads_and_slices_match_gradient_rf(spec):
    """The same check as above, with F.pad (negative: a crop) and strided
    slices between the convolutions and pools."""
    layers = [Pad(e[1]) if e[0] == "pad" else Slice(*e[1]) if e[0] == "slice"
              else build([e])[0] for e in spec]
    model, size = nn.Sequential(*layers), 96
    try:
        f = receptive_field(model, (1, size, size)).final
    except RFError:
        assert torch_agrees_nothing_is_left(model, size)
        return
    out = model(torch.zeros(1, 1, size, size))
    assert f.n_out == (out.shape[2] if out.shape[2] == out.shape[3]
                       else (out.shape[2], out.shape[3]))
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    (rh, rw), (sh, sw), (jh, jw) = pair(f.r_out), pair(f.start_out), pair(f.j_out)
    box, (i, k) = empirical_rf(model, size)
    assume(box is not None)  # a unit that sees only padding has nothing to compare
    top, left, h, w = box
    a_top, a_left = sh + i * jh - rh / 2, sw + k * jw - rw / 2
    # The theoretical box may reach pixels that no unit sees: padding outside
    # the image, and pixels a crop (negative pad) cut off. Compare only boxes
    # inside the pixels that reach some output unit.
    r_top, r_left, r_bottom, r_right = reachable(model, size)
    assume(a_top >= r_top and a_left >= r_left
           and a_top + rh <= r_bottom and a_left + rw <= r_right)
    assert (h, w) == (rh, rw)
    assert (top, left) == (a_top, a_left)


@pytest.mark.parametrize("name", list(MODELS))
def test_n_out_matches_real_shapes_for_every_model(name):
    model = MODELS[name]().eval()
    table = receptive_field(model, (1, 28, 28))
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    for row in table.rows:
        if row.name in shapes:
            assert row.n_out == shapes[row.name][2], row.name
            assert row.ch_out == shapes[row.name][1], row.name


@pytest.mark.parametrize("name, rf, pooled", [("Model_1", 29, False),
                                              ("Model_2", 19, True),
                                              ("Model_3", 19, True),
                                              ("Model_4", 29, True),
                                              ("Model_5", 29, True)])
def test_model_trunk_rf(name, rf, pooled):
    """The RF each model's comments give (29 for Model_1's output; 19 or 29 for
    the last map before the global pooling of the others) is the calculator's
    trunk RF and the gradient's."""
    model = MODELS[name]()
    t = receptive_field(model, (1, 28, 28))
    assert t.trunk.r_out == rf and t.final.global_out == pooled
    # The gradient, through the model cut before its global pooling, on an
    # input large enough that the central unit's RF is not clipped.
    averaging(model)
    blocks = [m for n, m in model.named_children() if n != "output" or not pooled]
    conv_path, size = nn.Sequential(*blocks), 48
    top, left, bottom, right = support(conv_path, (size, size))
    assert bottom - top == right - left == rf and top > 0 and bottom < size
    if pooled:  # every output reaches all the pixels that the last map sees
        whole = nn.Sequential(*model.children())  # the logits, before log_softmax
        assert support(whole, (28, 28)) == support(conv_path, (28, 28), centre=False)


def test_unit_box_is_the_gradient_s_box_of_that_unit():
    """unit_box of any unit, not only the centre, against the pixels its
    gradient reaches: a 3x3 conv of stride 2 (padded), then a 3x3 conv: RF 7,
    jump 2, start 2.5, so unit (3, 4) spans rows 5-11 and columns 7-13."""
    from mnist_lib.rf import unit_box

    model = averaging(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1),
                                    nn.Conv2d(1, 1, 3)))
    row = receptive_field(model, (1, 20, 20)).final
    for i, k in [(3, 4), (7, 1)]:
        x = torch.ones(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(model(x)[0, 0, i, k], x)
        rows, cols = (grad[0, 0] != 0).nonzero(as_tuple=True)
        reached = (int(rows.min()), int(cols.min()), int(rows.max() - rows.min()) + 1,
                   int(cols.max() - cols.min()) + 1)
        assert unit_box(row, i, k) == reached
    assert unit_box(row, 3, 4) == (5, 7, 7, 7)
    # Off the map, or a row whose units have no box (before, a TypeError).
    with pytest.raises(RFError, match=r"unit \(8, 0\) is outside the 8x8 map"):
        unit_box(row, 8, 0)
    final = receptive_field(MODELS["Model_4"](), (1, 28, 28)).final
    with pytest.raises(RFError, match=r"has no box per unit \(its units are global"):
        unit_box(final, 0, 0)
