"""The seed runner and the benchmark, in quick mode: their reports, not speeds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from mnist_lib import bench, cli, protocol, study
from mnist_lib.hardware import describe_hardware
from mnist_lib.cli import add_config_flags
from mnist_lib.config import recipe
from mnist_lib.models import FINAL_MODEL
from mnist_lib.records import model_differences, recipe_differences
from mnist_lib.target import TARGET

ROOT = Path(__file__).resolve().parents[1]


def test_a_seed_study_records_each_run_as_every_study_does(small, tmp_path):
    # One runner for every study: a book model over seeds is a design of one arm.
    design = protocol.seed_study("Model_2", recipe("Model_2", epochs=1, device="cpu",
                                                   n_train=1000, n_test=500), "test")
    record = study.run_study(design, small, [0, 1, 2], tmp_path / "s.json",
                             report=lambda _: None)
    (arm,) = record["arms"]
    assert [r["seed"] for r in arm["runs"]] == [0, 1, 2] and record["split"] == "test"
    assert {"seed", "last3", "met", "best", "seconds", "machine", "eval_acc",
            "train_acc", "eval_loss"} == set(arm["runs"][0])
    # Different seeds, different runs (three: two could tie on 500 digits).
    assert len({r["eval_acc"][-1] for r in arm["runs"]}) > 1
    assert not any(r["met"] for r in arm["runs"])  # one epoch on 1,000 cannot pass
    assert arm["params"] == 7308 and model_differences(arm, "Model_2") == []
    assert record["target"] == asdict(TARGET)  # the rule its passes were judged by
    assert arm["change"] == "its recipe, changed: epochs, n_train, n_test"


def test_seeds_is_study_seeds_with_one_meaning_of_seeds(tmp_path, data_root, capsys):
    out = tmp_path / "s.json"
    code = cli.main(["seeds", "--model", "Model_2", "--seeds", "3-4", "--epochs", "1",
                     "--n-train", "500", "--n-test", "200", "--device", "cpu",
                     "--precision", "fp32", "--optimizer", "adamw", "--lr", "0.01",
                     "--data", str(data_root), "--out", str(out)])
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["seeds"] == [3, 4]  # a range, as in every study, never a count
    (arm,) = saved["arms"]
    assert [r["seed"] for r in arm["runs"]] == [3, 4]
    # The flags reach the training config and the record says so.
    assert arm["config"]["precision"] == "fp32" and arm["config"]["optimizer"] == "adamw"
    assert "--optimizer adamw" in saved["command"] and "study seeds" in saved["command"]
    # A protocol's design takes no recipe change.
    with pytest.raises(SystemExit):
        cli.main(["study", "ladder", "--lr", "0.1", "--out", str(tmp_path / "l.json")])
    assert "only the design seeds takes it" in capsys.readouterr().err

def test_seed_cli_divergence_is_an_error_line_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_lib", "seeds", "--model", "Model_1", "--lr", "1e6",
         "--seeds", "1", "--epochs", "1", "--n-train", "500", "--n-test", "200",
         "--out", str(tmp_path / "s.json")],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: training diverged"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_seed_cli_offers_every_config_field_but_the_seed():
    """The seeds come from --seeds; the rest as in the train CLI."""
    p = argparse.ArgumentParser()
    add_config_flags(p, exclude=("seed",))
    flags = {a.dest for a in p._actions} - {"help"}
    assert flags == {f for f in asdict(recipe("Model_4"))} - {"seed", "progress"}


@pytest.mark.parametrize("seeds", ["3-1", "x", "1,1"])
def test_seed_cli_rejects_a_seed_list_with_no_seed_or_one_twice(capsys, seeds):
    with pytest.raises(SystemExit) as exc:
        cli.main(["seeds", "--seeds", seeds, "--out", "s.json"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"{seeds!r} is not a seed list: write 0-9" in err


def test_seed_cli_rejects_more_test_images_than_there_are(capsys):
    # Before, all 10,000 were used in silence, and the record said nothing.
    with pytest.raises(SystemExit) as exc:
        cli.main(["seeds", "--n-test", "20000", "--seeds", "1", "--out", "s.json"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--n-test 20000, but there are only 10,000" in err


def test_benchmark_refuses_a_model_it_has_no_recipe_for(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--model", "Model_99", "--quick"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--model Model_99: no such model" in err
    assert "Model_2" in err  # the choices are named
    with pytest.raises(SystemExit):
        cli.main(["bench", "--loops", "--model", "Model_2", "--quick"])
    assert "--loops always times the final model" in capsys.readouterr().err


def test_benchmark_quick_report_schema(tmp_path, data_root, capsys):
    """The pipeline benchmark, with the model a record names (as
    Reproducibility's commands remake bench_cpu.json with Model_2)."""
    from mnist_lib import count_parameters
    from mnist_lib.models import get_model

    out = tmp_path / "b.json"
    assert cli.main(["bench", "--quick", "--device", "cpu", "--data", str(data_root),
                       "--model", "Model_2", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["model"] == "Model_2"
    assert rep["library"]["params"] == count_parameters(get_model("Model_2"))
    for side in ("library", "reference"):
        r = rep[side]
        assert r["epoch_s_min"] <= r["epoch_s_median"] <= r["epoch_s_max"]
        assert r["images_per_s"] == pytest.approx(2000 / r["epoch_s_median"])
        assert 0 <= r["final_acc"] <= 100 and len(r["runs"]) == 1
        assert r["until_rule_s"] is None  # one epoch cannot show 3 good epochs
    assert rep["library"]["params"] < 8000
    assert 5000 < rep["reference"]["params"] < 7000  # "a ~6k-parameter model"
    assert rep["speedup_epoch"] == pytest.approx(
        rep["reference"]["epoch_s_median"] / rep["library"]["epoch_s_median"])
    shown = capsys.readouterr().out
    assert "speed-up (reference / library)" in shown
    # Timings compare only on the same hardware: the record and the table name it.
    env = rep["env"]
    assert env["cpu"] and f"device: cpu ({describe_hardware(env)})" in shown
    assert f"{env['cpu']}, {env['cpu_threads']} thread" in shown
    # The record says what the library trained: the model it was asked for,
    # with its recipe, on the quick subset.
    assert model_differences(rep, "Model_2") == []
    assert recipe_differences(rep, "Model_2") == ["epochs", "n_train", "n_test"]
    assert rep["config"]["n_train"] == 2000 and rep["config"]["epochs"] == 1


# Run in a fresh process by `bench.in_fresh_process`: module-level, so that a
# spawned process can import them.
_KEPT = []


def _holds_300_mib(device):
    _KEPT.append(torch.ones(300 * 2**20 // 4))  # 300 MiB, touched and kept
    return {"held": True}


def _holds_nothing(device):
    return {"held": False}


@pytest.mark.skipif(not Path("/proc/self/status").exists(),
                    reason="CPU peaks are read from Linux's /proc/self/status")
def test_each_benchmark_run_has_a_process_and_a_peak_of_its_own():
    """A run that follows one which kept 300 MiB must not count them: in one
    process, memory a run's allocator keeps counts in the next run's peak."""
    cpu = torch.device("cpu")
    big = bench.in_fresh_process(_holds_300_mib, cpu, cpu)
    small = bench.in_fresh_process(_holds_nothing, cpu, cpu)
    assert big["held"] and not small["held"]
    assert big["peak_mem_mib"] > small["peak_mem_mib"] + 250, (big, small)
    assert not _KEPT  # it was the other process that held them


def test_benchmark_table_says_when_a_record_has_no_peaks(data_root):
    rep = bench.benchmark(str(data_root), epochs=1, device="cpu", quick=True,
                          progress=False)
    row = lambda text: next(l for l in text.splitlines() if l.startswith("peak memory"))
    assert "—" not in row(bench.table(rep)) and "not in this record" not in bench.table(rep)
    for side in ("library", "reference"):
        rep[side]["peak_mem_mib"] = None
    assert row(bench.table(rep)).split()[-2:] == ["—", "—"]
    assert bench.table(rep).endswith("peak memory: not in this record (it was not "
                                     "measured for each run on its own)")
    # A dash for "until the target" is explained, and only then.
    legend = "—: no 3 epochs in a row reached the target"
    rep["library"]["until_rule_s"] = rep["reference"]["until_rule_s"] = 12.0
    assert legend not in bench.table(rep)
    rep["reference"]["until_rule_s"] = None
    assert legend in bench.table(rep).splitlines()
    # A quick build's one epoch reads as English.
    assert ", 1 epoch x 1 repeat" in bench.table(rep)
    rep["epochs"], rep["repeats"] = 15, 3
    assert ", 15 epochs x 3 repeats" in bench.table(rep)


def test_benchmark_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--epochs", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("command, flag", [
    ("train", "--out"), ("train", "--checkpoint"), ("seeds", "--out"), ("bench", "--json"),
])
@pytest.mark.parametrize("target", ["in_a_file", "a_folder"])
def test_clis_refuse_an_unwritable_output_before_they_run(command, flag, target, tmp_path,
                                                          monkeypatch, capsys):
    """A run of minutes that cannot save its result at the end is lost: the
    CLIs check the path first, before any data is loaded."""
    def no_run(*args, **kwargs):
        raise AssertionError("the CLI started work before checking its output path")

    monkeypatch.setattr(cli, "load_mnist", no_run)
    monkeypatch.setattr(bench, "benchmark", no_run)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, so no folder can be made under it")
    path = blocker / "run.json" if target == "in_a_file" else tmp_path
    with pytest.raises(SystemExit) as exc:
        cli.main([command, flag, str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    expected = "cannot write" if target == "in_a_file" else "is a folder"
    assert f"{flag}: " in err and str(path) in err and expected in err


def test_step_profile_shares_a_steps_cpu_time_among_its_operations():
    from mnist_lib.bench import step_profile
    from mnist_lib.models import Model_2

    shares, ops = step_profile(Model_2(), torch.device("cpu"), batch=8, steps=2)
    values = [share for _, share in shares]
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0)
    assert ops > 10  # a forward, backward and SGD step: dozens of operations
    assert any("conv" in name for name, _ in shares[:5])


def test_profile_by_kind_sums_operations_by_what_they_do_and_guesses_nothing():
    import pytest

    from mnist_lib.bench import profile_by_kind

    shares = [("aten::convolution_backward", 0.30), ("aten::mkldnn_convolution", 0.15),
              ("aten::max_pool2d_with_indices", 0.10), ("aten::native_batch_norm", 0.10),
              ("aten::threshold_backward", 0.05), ("aten::clamp_min", 0.05),
              ("autograd::engine::evaluate_function: ConvolutionBackward0", 0.05),
              ("Optimizer.step#SGD.step", 0.05), ("aten::fill_", 0.05),
              ("aten::some_new_op", 0.10)]
    rows = profile_by_kind(shares)
    assert rows["convolution"] == pytest.approx({"forward": 0.15, "backward": 0.30,
                                                 "total": 0.45})
    assert rows["ReLU"] == pytest.approx({"forward": 0.05, "backward": 0.05, "total": 0.10})
    assert rows["autograd engine"] == {"total": 0.05}  # not the convolution's
    assert rows["other"] == {"total": 0.10}            # an unknown name is not guessed
    assert list(rows)[0] == "convolution"              # largest first
    assert sum(r["total"] for r in rows.values()) == pytest.approx(1.0)


def test_benchmark_table_tells_the_first_good_streak_from_meeting_the_target():
    """A run can hold 99.4% for 3 epochs in a row early and still miss the
    target in its last 3: the table names the two apart, from the runs."""
    import copy

    rep = copy.deepcopy(json.loads((ROOT / "results" / "bench_cpu_fp32.json").read_text()))
    ref = rep["reference"]
    accs = ref["runs"][0]["test_acc"]
    assert ref["until_rule_s"] is not None and min(accs[-3:]) < 99.4  # the case
    lines = bench.table(rep).splitlines()
    row = next(l for l in lines if l.startswith("last 3 >=99.4% (runs)"))
    assert row.split()[-2:] == ["of", "1"] and row.split()[-3] == "0"
    assert any(l.startswith("first 3 in a row >=99.4% (s)") for l in lines)
    rep["reference"]["runs"][0]["test_acc"] = accs[:-3] + [99.5, 99.5, 99.5]
    row = next(l for l in bench.table(rep).splitlines() if l.startswith("last 3"))
    assert row.split()[-3:] == ["1", "of", "1"]
