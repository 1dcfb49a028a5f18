"""The plain loop (`mnist_lib.plain`) against `fit`: Step 1 says that `fit`
is that loop plus speed-ups, which holds only if, from the same start, with
fit's options that change the arithmetic switched off (bf16, EMA,
augmentation, the schedule) and the same optimizer kernel, both end with
the same weights."""

from __future__ import annotations

import pytest
import torch

from mnist_lib import plain
from mnist_lib.config import recipe
from mnist_lib.models import get_model
from mnist_lib.train import fit
from mnist_lib.utils.seeding import set_seed


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()
                      if t.is_floating_point()])


@pytest.mark.parametrize("name", ["Model_1", "Model_2"])
def test_fit_is_the_plain_loop_plus_speedups(small, name):
    # fp32, no EMA, no augmentation, no schedule: what the plain loop does.
    cfg = recipe(name, epochs=2, precision="fp32", device="cpu", progress=False,
                 scheduler="none", ema=0.0, bn_recompute=0, rotation=0.0,
                 translate=0.0, scale=(1.0, 1.0), clean_epochs=0)
    set_seed(cfg.seed)
    start = get_model(name).state_dict()

    by_fit = get_model(name)
    by_fit.load_state_dict(start)
    hist = fit(by_fit, small, cfg)

    by_hand = get_model(name)
    by_hand.load_state_dict(start)
    # fit's fused SGD kernel: the same update as the default one, with other
    # roundings, which a few dozen steps through BatchNorm grow to ~1e-3.
    opt = torch.optim.SGD(by_hand.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, fused=True)
    train_loader, test_loader = plain.loaders(small, cfg.batch_size, cfg.seed)
    for _ in range(cfg.epochs):
        plain.train(by_hand, train_loader, opt)
    loss, acc = plain.test(by_hand, test_loader)

    a, b = weights(by_fit), weights(by_hand)
    at_start = get_model(name)
    at_start.load_state_dict(start)
    assert not torch.equal(weights(at_start), a), "training moved the weights"
    # Same batches in the same order, the same steps: the same weights, to the bit.
    assert torch.equal(a, b), (a - b).abs().max()
    assert acc == pytest.approx(hist.epochs[-1].test_acc, abs=0.1)
    assert loss == pytest.approx(hist.epochs[-1].test_loss, rel=1e-3)


def test_another_shuffle_gives_other_weights(small):
    """The comparison above can fail: the batch order matters."""
    cfg = recipe("Model_1", epochs=1, precision="fp32", device="cpu", progress=False)
    set_seed(0)
    start = get_model("Model_1").state_dict()
    ends = []
    for seed in (0, 1):
        net = get_model("Model_1")
        net.load_state_dict(start)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        plain.train(net, plain.loaders(small, cfg.batch_size, seed)[0], opt)
        ends.append(weights(net))
    assert not torch.equal(ends[0], ends[1])
