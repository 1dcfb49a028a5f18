"""What a run returns (mnist_lib.training.history): saved and loaded as JSON."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mnist_lib import config as C
from mnist_lib import train as T
from mnist_lib.training.history import History
from mnist_lib.models import get_model, layer_list

def quick(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, scheduler="none", progress=False,
                device="cpu", n_train=2000, n_test=1000)
    return C.TrainConfig(**(base | kw))


@pytest.mark.parametrize("text, cause", [
    ('{"model": "Model_2", "epochs": [', "JSONDecodeError"),  # cut short
    ('{"seeds": []}', "KeyError: 'epochs'"),                  # a seed record, say
    ('[1, 2]', "TypeError"),
])
def test_history_load_names_a_file_that_is_not_one(tmp_path, text, cause):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not a saved "
                                         f"History \\({cause}.*\n.*--out"):
        History.load(path)



def test_history_json_round_trip(tmp_path, small):
    hist = T.fit(get_model("Model_2"), small, quick(epochs=1))
    path = hist.save(tmp_path / "h.json")
    again = History.load(path)
    assert again == hist
    # The history names the layers it trained, with their shapes and settings.
    assert hist.layers == layer_list(get_model("Model_2"))
    assert hist.layers[:3] == ["Conv2d 10x1x3x3 kernel_size=(3, 3) stride=(2, 2) "
                               "padding=(1, 1) dilation=(1, 1) groups=1",
                               "BatchNorm2d 10 10", "ReLU"]
    saved = json.loads(path.read_text())
    assert saved["config"]["lr"] == 0.05 and saved["env"]["torch"] == torch.__version__

