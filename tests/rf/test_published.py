"""The calculator against published receptive fields of classic networks
(torchvision's models)."""

from __future__ import annotations


import pytest

from mnist_lib.rf import (receptive_field)
from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401


def test_vgg16_pool5():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.vgg16().features, (3, 224, 224))
    assert (t.final.kind, t.final.r_out, t.final.j_out) == ("MaxPool2d", 212, 32)


def test_alexnet_features():
    tv = pytest.importorskip("torchvision")
    assert receptive_field(tv.models.alexnet().features, (3, 224, 224)).final.r_out == 195


def test_resnet50_trunk_and_global_pool():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.resnet50(), (3, 224, 224))
    last = [r for r in t.rows if r.name.startswith("layer4")][-1]
    assert (last.r_out, last.j_out, last.n_out) == (427, 32, 7)
    # The RF to quote: the last map before the pooling, the last block's sum.
    assert t.trunk is t["layer4.2.add"] and t.trunk.r_out == 427
    # Global average pooling sees the whole 7x7 map: global from there on,
    # each unit over the trunk's 427 px.
    assert t.first_global is t["avgpool"] and not t["avgpool"].global_in
    assert t["avgpool"].r_out == 427 == t.final.r_out and t.final.global_out
    assert t.final.exceeds_input


def test_inception_v3_is_traced_as_it_predicts():
    # torchvision builds it in training mode with its auxiliary head on, so
    # forward() returns two outputs; the RF is that of the prediction (eval).
    tv = pytest.importorskip("torchvision")
    model = tv.models.inception_v3(weights=None, init_weights=False)
    assert model.training and model.aux_logits
    t = receptive_field(model, (3, 299, 299))
    assert model.training  # given back as it came
    last = [r for r in t.rows if r.kind == "cat"][-1]  # Mixed_7c's output
    # Araujo et al. (Distill 2019) give Inception v3 an RF of 1311.
    assert (last.r_out, last.j_out, last.n_out) == (1311, 32, 8)
    assert t.final.name == "fc" and not any("Aux" in r.name for r in t.rows)
    g = receptive_field(tv.models.googlenet(weights=None, init_weights=False),
                        (3, 224, 224))
    assert g.final.name == "fc" and not any(r.name.startswith("aux") for r in g.rows)


@pytest.mark.parametrize("name, head", [("shufflenet_v2_x0_5", "fc"),
                                        ("mobilenet_v3_small", "classifier.3"),
                                        ("efficientnet_b0", "classifier.1")])
def test_split_shuffle_and_gated_nets_are_followed_to_the_classifier(name, head):
    tv = pytest.importorskip("torchvision")
    t = receptive_field(getattr(tv.models, name)(), (3, 224, 224))
    pool = [r for r in t.rows if r.kind in ("AdaptiveAvgPool2d", "mean")][-1]
    assert t.final.name == head and (pool.n_in, pool.j_in) == (7, 32)

