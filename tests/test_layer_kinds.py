"""The one table of layer kinds (`mnist_lib.utils.layer_kinds`) that the picture,
the explorer, the summary line and the multiply-add count read."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.utils.layer_kinds import KINDS, Kind, layer_kind
from mnist_lib.rf import receptive_field


def test_every_name_in_the_table_is_torch_s():
    # A typo in the table would name nothing, and the layer would go unnamed.
    for name, kind in KINDS.items():
        found = getattr(nn, name, None) or getattr(F, name, None)
        assert found is not None, name
        assert kind.nd is None or name.endswith(f"{kind.nd}d"), name


def test_a_module_and_its_row_in_the_rf_table_have_one_kind():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10))
    modules = dict(net.named_modules())
    table = receptive_field(net, (1, 28, 28))
    kinds = [layer_kind(modules[row.name]) for row in table.rows]
    assert kinds == [layer_kind(row.kind) for row in table.rows]
    assert [k and k.name for k in kinds] == [
        "conv", None, "max-pool", "avg-pool", "adaptive avg-pool", None, "linear"]


def test_a_subclass_has_its_torch_base_s_kind_and_a_namesake_none():
    class MyConv(nn.Conv1d):
        pass

    class Linear(nn.Module):  # not torch's, whatever its name
        pass

    assert layer_kind(MyConv(1, 1, 3)) == Kind("conv", 1)
    assert layer_kind(Linear()) is None and layer_kind("max_pool3d").nd == 3
