"""The moving average of the weights (mnist_lib.averaging)."""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn

from mnist_lib.averaging import WeightAverage, ema_decay


def test_weight_average_moves_each_tensor_a_share_of_the_way():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(model, decay=0.5)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(4.0)
    ema.update()  # step 1: warm-up decay (1+1)/(10+1) = 2/11, below 0.5
    ema.update()  # step 2: 3/12 = 1/4
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():  # +4 * (1 - 2/11 * 1/4) = +4 * 21/22
            assert torch.allclose(v, before[k] + 4.0 * 21 / 22), k
    for _ in range(100):  # later the decay is capped at 0.5
        ema.update()
    assert float(ema_decay(ema.steps, ema.decay)) == 0.5
    assert not any(p.requires_grad for p in ema.module.parameters())



def test_ema_decay_warms_up_then_is_capped():
    assert float(ema_decay(0, 0.999)) == pytest.approx(0.1)
    assert float(ema_decay(1, 0.999)) == pytest.approx(2 / 11)
    # (1 + t) / (10 + t) reaches 0.999 at t = 8,990: a 15-epoch run at batch
    # 256 (3,525 steps) ends below the cap, which the book's Step 3 says.
    assert float(ema_decay(3525, 0.999)) == pytest.approx(3526 / 3535)
    assert float(ema_decay(8989, 0.999)) < 0.999
    assert float(ema_decay(8990, 0.999)) == pytest.approx(0.999)

