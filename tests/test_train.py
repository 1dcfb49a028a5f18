"""Trainer: learning, determinism, the target rule, divergence, history, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from mnist_lib import train as T
from mnist_lib.models import get_model
from mnist_lib.recipes import recipe, run


def quick(**kw):
    base = dict(epochs=2, batch_size=64, lr=0.05, scheduler="none", progress=False,
                device="cpu", n_train=2000, n_test=1000)
    return T.TrainConfig(**(base | kw))


def test_short_training_lowers_loss_and_beats_chance(small):
    _, hist = run("Model_2", small, quick(epochs=3))
    losses = hist.column("train_loss")
    assert losses[-1] < 0.5 * losses[0]
    assert hist.epochs[-1].test_acc > 50.0  # chance is 10%
    assert len(hist.epochs) == 3 and hist.params == 7308


def test_same_seed_same_history_other_seed_differs(small):
    cfg = quick(epochs=1, rotation=7.0)
    _, a = run("Model_4", small, cfg)
    _, b = run("Model_4", small, cfg)
    _, c = run("Model_4", small, quick(epochs=1, rotation=7.0, seed=1))
    assert a.column("train_loss") == b.column("train_loss")
    assert a.column("test_acc") == b.column("test_acc")
    assert a.column("train_loss") != c.column("train_loss")


@pytest.mark.parametrize("sched", ["none", "step", "onecycle", "plateau"])
def test_every_scheduler_runs_and_records_lr(small, sched):
    hist = T.fit(get_model("Model_2"), small, quick(scheduler=sched, step_size=1))
    lrs = hist.column("lr")
    if sched == "step":
        assert lrs == pytest.approx([0.005, 0.0005])
    elif sched == "onecycle":
        assert lrs[-1] < 0.05 / 100  # annealed far below the peak
    elif sched == "none":
        assert lrs == [0.05, 0.05]


def _history(accs):
    recs = [T.EpochRecord(i + 1, 0.1, 99.0, 0.02, a, 0.01, 1.0)
            for i, a in enumerate(accs)]
    return T.History("M", 1, {}, {}, recs)


@pytest.mark.parametrize("accs, expected", [
    ([99.5, 99.5, 99.5], True),
    ([99.4, 99.4, 99.4], True),            # the threshold itself counts
    ([99.5, 99.39, 99.5], False),          # one dip in the last 3 fails
    ([99.0, 99.5, 99.5, 99.6], True),      # earlier epochs do not matter
    ([99.6, 99.6], False),                 # fewer epochs than `last`
    ([99.6, 99.6, 99.6, 99.3], False),     # the final epoch counts
    ([], False),
])
def test_meets_target(accs, expected):
    assert _history(accs).meets_target(99.4, last=3) is expected


def test_meets_target_rejects_bad_last():
    with pytest.raises(ValueError, match="last"):
        _history([99.5]).meets_target(last=0)


def test_first_epoch_meeting():
    h = _history([99.0, 99.5, 99.5, 99.3, 99.45, 99.5, 99.6])
    assert h.first_epoch_meeting(99.4, 3) == 7
    assert h.first_epoch_meeting(99.4, 2) == 3
    assert _history([99.0]).first_epoch_meeting() is None


def test_history_json_round_trip(tmp_path, small):
    hist = T.fit(get_model("Model_2"), small, quick(epochs=1))
    path = hist.save(tmp_path / "h.json")
    again = T.History.load(path)
    assert again == hist
    saved = json.loads(path.read_text())
    assert saved["config"]["lr"] == 0.05 and saved["env"]["torch"] == torch.__version__


class _Explodes(nn.Module):
    """Returns NaN log-probabilities from its 5th call on."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = torch.log_softmax(self.lin(x.flatten(1)), -1)
        return out * float("nan") if self.calls >= 5 else out


def test_nan_loss_stops_with_a_clear_message(small):
    with pytest.raises(T.DivergenceError) as exc:
        T.fit(_Explodes(), small, quick(epochs=1))
    msg = str(exc.value)
    assert "epoch 1" in msg and "between steps 1 and" in msg
    assert "learning rate" in msg and "--lr" in msg


def test_huge_learning_rate_diverges(small):
    with pytest.raises(T.DivergenceError):
        T.fit(get_model("Model_1"), small, quick(epochs=2, lr=1e6))


def test_evaluation_helpers_against_hand_counts():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2])
    cm = T.confusion_matrix(pred, labels, n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert T.per_class_accuracy(pred, labels, 3) == pytest.approx([50.0, 200 / 3, 100.0])
    assert T.misclassified(pred, labels).tolist() == [1, 4]


@pytest.mark.parametrize("kw, msg", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(optimizer="rmsprop"), "optimizer 'rmsprop'"),
    (dict(scheduler="cosine"), "scheduler 'cosine'"),
    (dict(lr=-1.0), "lr must be > 0"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        T.TrainConfig(**kw)


def test_recipe_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown TrainConfig field.*lerning_rate"):
        recipe("Model_4", lerning_rate=0.1)


@pytest.mark.parametrize("argv, msg", [
    (["--model", "Model_99"], "invalid choice: 'Model_99'"),
    (["--epochs", "zero"], "invalid int value: 'zero'"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--scheduler", "cosine"], "scheduler 'cosine'"),
])
def test_cli_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        T.main(argv)
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_cuda_without_gpu(capsys):
    with pytest.raises(SystemExit) as exc:
        T.main(["--device", "cuda", "--epochs", "1"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_cli_trains_and_writes_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = T.main(["--model", "Model_2", "--epochs", "1", "--n-train", "1000",
                   "--n-test", "500", "--quiet", "--out", str(out),
                   "--checkpoint", str(tmp_path / "w.pt")])
    assert code == 0
    hist = T.History.load(out)
    assert hist.model == "Model_2" and len(hist.epochs) == 1
    assert "target" in capsys.readouterr().out
    state = torch.load(tmp_path / "w.pt")
    assert state["model"] == "Model_2"


def test_smoothed_nll_matches_torch_cross_entropy():
    logits = torch.randn(16, 10)
    y = torch.randint(0, 10, (16,))
    ours = T.smoothed_nll(torch.log_softmax(logits, 1), y, 0.1)
    ref = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(ours, ref, atol=1e-6)
    plain = T.smoothed_nll(torch.log_softmax(logits, 1), y, 0.0)
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits, y))


def test_static_progress_prints_one_line_per_epoch(small, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_PROGRESS", "static")
    T.fit(get_model("Model_2"), small, quick(epochs=2, progress=True))
    out = capsys.readouterr().out
    assert "\r" not in out
    epochs = [l for l in out.splitlines() if l.startswith("Epoch")]
    assert len(epochs) == 2 and "Loss=" in epochs[0] and "Accuracy=" in epochs[0]
    assert len([l for l in out.splitlines() if l.startswith("Test set:")]) == 2
