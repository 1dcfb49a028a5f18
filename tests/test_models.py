"""Models: output shape and convention, parameter budgets (torchsummary as reference)."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from mnist_lib.models import (FINAL_MODEL, MODELS, RUNG_MODELS, count_parameters,
                              get_model)
from mnist_lib.rf import receptive_field
from mnist_lib.summary import summary

# The book's models and the nets that are only rungs of its ladder.
EVERY = MODELS | RUNG_MODELS


@pytest.mark.parametrize("name", list(EVERY))
@pytest.mark.parametrize("batch", [1, 7])
def test_output_is_log_probabilities(name, batch):
    model = get_model(name).eval()
    out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(batch), atol=1e-5)


@pytest.mark.parametrize("name", list(EVERY))
def test_parameter_count_agrees_with_torchsummary(name):
    model = get_model(name)
    text = summary(model)
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert count_parameters(model) == total


def test_parameter_budgets():
    assert count_parameters(get_model(FINAL_MODEL)) < 8000
    assert count_parameters(get_model("Model_5")) <= 5000
    assert count_parameters(get_model("Model_1")) > 8000  # the skeleton is heavy


def test_summary_leaves_model_untouched():
    model = get_model("Model_2").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics unchanged


def test_unknown_model_names_choices():
    with pytest.raises(ValueError, match="Model_1"):
        get_model("Model_99")



# A shape comment in a model's source: "# 14x14x10, RF 3, j 2" (RF and j optional).
_SHAPE = re.compile(r"# (\d+)x(\d+)x(\d+)(?:, RF (\d+|global))?(?:, j (\d+))?$")


@pytest.mark.parametrize("name", list(EVERY))
def test_shape_comments_agree_with_the_rf_calculator(name):
    # The book shows each model's source, and readers learn from its comments:
    # every stated size, RF and jump must be what receptive_field computes.
    said = [m.groups() for line in inspect.getsource(EVERY[name]).splitlines()
            if (m := _SHAPE.search(line))]
    table = receptive_field(EVERY[name](), (1, 28, 28))
    rows = [r for r in table.layers()
            if r.kind in ("Conv2d", "MaxPool2d", "AdaptiveAvgPool2d")]
    assert len(said) == len(rows) > 0, [r.name for r in rows]
    for (h, w, c, rf, j), row in zip(said, rows):
        assert row.n_out in (int(h), (int(h), int(w))) and h == w, row.name
        assert int(c) == row.ch_out, row.name
        if rf == "global":  # the pooling: each unit averages the whole map
            assert row.global_out and not row.global_in, row.name
        elif rf:
            assert int(rf) == row.r_out and not row.global_out, row.name
        if j:
            assert int(j) == row.j_out, row.name


def test_a_loaded_checkpoint_takes_raw_images_as_they_come(tmp_path):
    """`load_checkpoint` gives a Classifier: it normalises as training did, so
    uint8 pixels, floats in [0, 1], with or without the channel axis, all give
    the predictions of the model on normalised input."""
    from mnist_lib.history import History
    from mnist_lib.models import Classifier, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = get_model("Model_4").eval()
    hist = History("Model_4", 0, {"lr": 0.2}, {},
                   normalization={"mean": 0.1307, "std": 0.3081})
    save_checkpoint(tmp_path / "m.pt", net, hist)
    model = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(model, Classifier) and not model.training
    pixels = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = net((pixels[:, None].float() / 255 - 0.1307) / 0.3081)
        for images in (pixels, pixels[:, None], pixels[:, None].float() / 255):
            assert torch.allclose(model(images), expected, atol=1e-5)
    assert torch.equal(model.predict(pixels), expected.argmax(1))
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\) or \(B, H, W\)"):
        model(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="uint8 pixels or floats"):
        model(pixels.long())
