"""The design ladder (`mnist_lib.ladder`): every rung is the one before plus one
named change, the record keeps every run as it finishes, a resume trains only
what is missing on the same machine, and the summary pairs each rung with the
one before, seed by seed."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest

from mnist_lib import cli, ladder
from mnist_lib.config import recipe
from mnist_lib.models import FINAL_MODEL
from mnist_lib.seeds import pass_change_p

# What each rung changes against the one before: its model, or these fields.
EXPECTED = [
    ("baseline", "Model_1", set()),
    ("BatchNorm", "Model_1_BN", set()),
    ("learning rate 0.05", None, {"lr"}),
    ("GAP head", "Model_1_GAP", set()),
    ("deeper, narrower", "Model_2", set()),
    ("dropout", "Model_3", set()),
    ("one-cycle", None, {"scheduler"}),
    ("augmentation", None, {"rotation", "translate", "scale"}),
    ("clean last epochs", None, {"clean_epochs"}),
    ("no dropout", "Model_2", set()),
    ("transition block", "Model_4", set()),
    ("batch 256", None, {"batch_size"}),
    ("peak rate 0.2", None, {"lr"}),
    ("weight decay", None, {"weight_decay"}),
    ("weight average", None, {"ema", "bn_recompute"}),
]


def test_each_rung_is_the_one_before_plus_one_named_change():
    rungs = ladder.rungs()
    assert [r.name for r in rungs] == [name for name, _, _ in EXPECTED]
    for before, rung, (_, model, fields) in zip([None, *rungs], rungs, EXPECTED):
        assert rung.change and len(rung.change.split(". ")) == 1, rung.name
        if before is None:
            continue
        old, new = asdict(before.config), asdict(rung.config)
        changed = {k for k in new if new[k] != old[k]}
        # One idea: the layers, or a few fields of one setting; never both.
        if model is not None:
            assert rung.model == model != before.model and not changed, rung.name
        else:
            assert rung.model == before.model and changed == fields, rung.name
    # Steps in order: one rung for Step 1, then Step 2's, then Step 3's.
    assert [r.step for r in rungs] == sorted(r.step for r in rungs)
    assert {r.step for r in rungs} == {1, 2, 3} and rungs[0].step == 1


def test_the_ladder_runs_through_the_books_recipes():
    rungs = {r.name: r for r in ladder.rungs()}
    for name, model in (("baseline", "Model_1"), ("dropout", "Model_3")):
        assert rungs[name].model == model
        assert rungs[name].config == recipe(model), name
    # Step 2's last rung is Step 2's model with its recipe.
    assert [r for r in ladder.rungs() if r.step == 2][-1].name == "dropout"
    # The final recipe is the rung of the peak rate: the two rungs after it
    # were tried and left out (Step 3's table says why).
    peak = rungs["peak rate 0.2"]
    assert peak.model == FINAL_MODEL and peak.config == recipe(FINAL_MODEL)
    assert rungs["weight average"].config == replace(
        recipe(FINAL_MODEL), weight_decay=5e-4, ema=0.999, bn_recompute=10_000)


QUICK = dict(epochs=3, n_train=256, n_test=128, device="cpu")


def test_the_record_is_written_run_by_run_seed_by_seed(mnist, tmp_path, monkeypatch):
    out, written = tmp_path / "ladder.json", []
    real_write = ladder.atomic_write_json

    def spy(path, record):  # which (rung, seed) runs a written record holds
        written.append({(r["name"], s["seed"]) for r in record["rungs"]
                        for s in r["seeds"]})
        real_write(path, record)

    monkeypatch.setattr(ladder, "atomic_write_json", spy)
    # Three rungs keep the test short; the order and the writes are what count.
    monkeypatch.setattr(ladder, "rungs", lambda real=ladder.rungs: real()[:3])
    record = ladder.run_ladder(mnist, [0, 1], out, report=lambda _: None,
                               command="python -m mnist_lib ladder ...", **QUICK)
    names = [r.name for r in ladder.rungs()]
    order = [(name, seed) for seed in (0, 1) for name in names]
    assert [sorted(w) for w in written] == [sorted(order[:k])
                                            for k in range(1, 7)]
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["seeds"] == [0, 1] and saved["env"]["device"] == "cpu"
    assert saved["command"] == "python -m mnist_lib ladder ..." and saved["commits"]
    for rung, name in zip(saved["rungs"], names):
        assert rung["name"] == name and rung["change"]
        assert rung["layers"] == [*map(str, rung["layers"])] and rung["params"] > 0
        assert rung["config"]["epochs"] == 3
        for s in rung["seeds"]:
            assert len(s["last"]) == 3 and len(s["test_acc"]) == 3
            assert len(s["train_acc"]) == 3 and s["passed"] is False
    # The rungs trained differently: Model_1 and Model_1_BN do not agree.
    assert saved["rungs"][0]["seeds"][0]["test_acc"] != \
        saved["rungs"][1]["seeds"][0]["test_acc"]


def test_a_resume_trains_only_what_is_missing_on_the_same_machine(
        mnist, tmp_path, monkeypatch):
    out, trained = tmp_path / "ladder.json", []
    monkeypatch.setattr(ladder, "rungs", lambda real=ladder.rungs: real()[:2])
    real_run = ladder.seed_result

    def counting(model, data, seed, *args, **kwargs):
        trained.append((model, seed))
        return real_run(model, data, seed, *args, **kwargs)

    monkeypatch.setattr(ladder, "seed_result", counting)
    first = ladder.run_ladder(mnist, [0, 1], out, report=lambda _: None, **QUICK)
    # Cut short: the last run (rung 2, seed 1) is lost.
    cut = json.loads(out.read_text())
    cut["rungs"][1]["seeds"].pop()
    out.write_text(json.dumps(cut))
    trained.clear()
    again = ladder.run_ladder(mnist, [0, 1], out, report=lambda _: None,
                              resume=True, **QUICK)
    assert trained == [("Model_1_BN", 1)], "only the missing run"
    accs = lambda rec: [[s["test_acc"] for s in r["seeds"]] for r in rec["rungs"]]
    assert accs(again) == accs(first), "the same seed on the same machine: same run"
    # Other seeds, another machine, a changed rung: refused, nothing trained.
    trained.clear()
    with pytest.raises(ValueError, match=r"holds seeds \[0, 1\], not \[0, 1, 2\]"):
        ladder.run_ladder(mnist, [0, 1, 2], out, resume=True, **QUICK)
    saved = json.loads(out.read_text())
    out.write_text(json.dumps(saved | {"env": saved["env"] | {"cpu": "Other CPU"}}))
    with pytest.raises(ValueError, match="another machine .cpu: Other CPU there, "
                                         ".* here.*Fix: resume it there"):
        ladder.run_ladder(mnist, [0, 1], out, resume=True, **QUICK)
    out.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"'BatchNorm': \['epochs'\].*new file"):
        ladder.run_ladder(mnist, [0, 1], out, resume=True, **QUICK | {"epochs": 4})
    assert trained == []


def test_stale_rungs_names_what_differs():
    record = ladder.new_record(ladder.rungs(), [r.config for r in ladder.rungs()],
                               [0])
    assert ladder.stale_rungs(record) == {}
    record["rungs"][3]["config"]["lr"] = 0.5
    record["rungs"][4]["layers"] = ["Conv2d 1x1"]
    record["rungs"][5]["model"] = "Model_2"
    assert ladder.stale_rungs(record) == {"GAP head": ["lr"], "deeper, narrower":
                                          ["layers"], "dropout": ["model"]}
    record["rungs"] = record["rungs"][:-1]
    assert "missing rung" in ladder.stale_rungs(record)["weight average"]


def recorded(name: str, lasts: list[list[float]], passed: list[bool]) -> dict:
    return {"name": name, "change": "x", "step": 2, "model": "M", "params": 1,
            "seeds": [{"seed": i, "last": last, "passed": ok, "seconds": 10.0}
                      for i, (last, ok) in enumerate(zip(lasts, passed))]}


def test_summary_pairs_each_rung_with_the_one_before():
    before = [[99.0] * 3, [99.2] * 3, [99.4] * 3, [99.1] * 3]
    # Each seed 0.1, 0.2, 0.3, 0.2 above: a mean of +0.2, sd of the differences
    # 0.0816, three degrees of freedom (t 3.182).
    after = [[a + d for a in last] for last, d in zip(before, (0.1, 0.2, 0.3, 0.2))]
    same = [list(last) for last in after]
    rows = ladder.summarise({"rungs": [
        recorded("a", before, [False, False, True, False]),
        recorded("b", after, [True, True, True, True]),
        recorded("c", same, [True, True, True, True])]})
    first, up, flat = rows
    assert math.isnan(first["delta"]) and first["effect"] == "-"
    assert up["delta"] == pytest.approx(0.2)
    se = statistics_sd([0.1, 0.2, 0.3, 0.2]) / 2
    assert up["delta_se"] == pytest.approx(se)
    assert up["delta_ci"] == pytest.approx(3.1824 * se, rel=1e-4)
    assert up["effect"] == "helps" and up["passed"] == 4
    assert up["pass_p"] == pytest.approx(2 * 1 / 8)  # 3 of 3 changed verdicts
    assert flat["delta"] == pytest.approx(0) and flat["effect"] == "unclear"
    assert flat["pass_p"] == 1.0
    assert "it helps" in ladder.verdict(up) and "+0.200 points" in ladder.verdict(up)
    assert "includes zero" in ladder.verdict(flat)
    assert ladder.verdict(up, subject="leaving it out").endswith(
        ": leaving it out helps")
    assert ladder.effect(-0.3, 0.1) == "hurts"
    assert "a " in ladder.table(rows) and "+0.200" in ladder.table(rows)


def test_a_study_is_compared_with_a_rung_on_the_seeds_both_ran():
    """A seed study of a recipe no rung trained (the final recipe without one
    ingredient) is paired with a rung seed by seed, on the seeds both have."""
    rung = recorded("r", [[99.5] * 3, [99.5] * 3, [99.5] * 3, [99.5] * 3],
                    [True] * 4)["seeds"]
    study = [{"seed": s, "last": [99.5 - d] * 3, "passed": ok}
             for s, d, ok in ((0, 0.1, False), (1, 0.2, False), (2, 0.1, False),
                              (3, 0.2, False), (7, 0.9, False))]
    out = ladder.compare(study, rung)
    assert out["n_seeds"] == 4, "seed 7 has no partner"
    assert out["delta"] == pytest.approx(-0.15) and out["effect"] == "hurts"
    assert (out["passed"], out["passed_before"]) == (0, 4)
    assert out["pass_p"] == pytest.approx(2 / 16)
    assert ladder.compare(rung, rung)["effect"] == "unclear"


def test_a_study_is_paired_with_the_rung_of_the_nearest_recipe():
    """The final recipe is one rung's recipe; without its clean last epochs it
    is nearest to that rung still (one field apart), not to a later one."""
    final = recipe(FINAL_MODEL)
    assert ladder.nearest_rung(FINAL_MODEL, final).name == "peak rate 0.2"
    lean = replace(final, clean_epochs=0)
    assert ladder.nearest_rung(FINAL_MODEL, asdict(lean)).name == "peak rate 0.2"
    assert ladder.nearest_rung("Model_3", recipe("Model_3")).name == "dropout"


def statistics_sd(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5


@pytest.mark.parametrize("b, c, p", [
    (6, 0, 2 / 64),               # six changed verdicts, all one way
    (5, 1, 2 * (1 + 6) / 64),     # 1 or fewer of 6: (1 + 6) / 64, doubled
    (1, 1, 1.0), (0, 0, 1.0),
    (0, 3, 2 / 8),
])
def test_pass_change_p_is_mcnemars_exact_test(b, c, p):
    before = {i: False for i in range(b)} | {b + i: True for i in range(c)}
    before |= {100: True, 101: False}   # verdicts that did not change count not
    after = {s: not v for s, v in before.items()} | {100: True, 101: False}
    assert pass_change_p(after, before) == pytest.approx(p)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--resume"], "--resume needs an existing --out"),
    (["--out", "EXISTING"], "exists: add --resume to keep its runs"),
])
def test_cli_refuses_bad_arguments(argv, message, capsys, tmp_path):
    existing = tmp_path / "done.json"
    existing.write_text("{}")
    argv = [str(existing) if a == "EXISTING" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ladder", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bound_that_rounds_to_zero_keeps_its_sign():
    row = {"delta": 0.07, "delta_ci": 0.0699, "effect": ladder.effect(0.07, 0.0699)}
    assert row["effect"] == "helps"
    assert ladder.verdict(row) == ("+0.070 points (95% interval +0.0001 to "
                                   "+0.140): it helps")
    assert "(95% interval 0.000 to" in ladder.verdict(
        {"delta": 0.07, "delta_ci": 0.07, "effect": "unclear"})
