"""The protocol's studies (`mnist_lib.study`, `mnist_lib.protocol`): the
held-out ladder adds one named change a rung, the ablation takes one
ingredient out of the candidate an arm, the runner keeps every run as it
ends (two parts sharing one record, resumable, a seed one machine's work),
and the decision rule of results/protocol.md gives the recipe it says."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from mnist_lib import cli, protocol, study
from mnist_lib.config import as_json, recipe
from mnist_lib.models import count_parameters, get_model, layer_list
from mnist_lib.records import config_differences
from mnist_lib.stats import pass_rate_lower_bound

# What each held-out rung changes against the one before: its model, or fields.
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
    ("transition block", "Model_4_dropout", set()),
    ("peak rate 0.2", None, {"lr"}),
    ("batch 256", None, {"batch_size"}),
    ("weight decay", None, {"weight_decay"}),
    ("weight average", None, {"ema", "bn_recompute"}),
]


def test_each_held_out_rung_is_the_one_before_plus_one_named_change():
    design = protocol.ladder()
    assert design.split == "holdout"
    rungs = design.arms
    assert [r.name for r in rungs] == [name for name, _, _ in EXPECTED]
    assert rungs[0].config == recipe("Model_1") and rungs[0].against is None
    for before, rung, (_, model, fields) in zip(rungs, rungs[1:], EXPECTED[1:]):
        assert rung.against == before.name
        changed = set(config_differences(rung.config, as_json(before.config)))
        if model is not None:
            assert rung.model == model != before.model and not changed, rung.name
        else:
            assert rung.model == before.model and changed == fields, rung.name
    # The peak rate is measured at 128 images a step, before the batch grows.
    names = [r.name for r in rungs]
    assert names.index("peak rate 0.2") < names.index("batch 256")
    assert design.arm("peak rate 0.2").config.batch_size == 128


def test_each_ablation_arm_takes_out_one_ingredient_of_the_candidate():
    full = protocol.candidate()
    design = protocol.ablation()
    assert design.arms[0].config == full.config and design.arms[0].model == full.model
    rungs = {r.name: r for r in protocol.ladder().arms}
    before = {r.name: protocol.ladder().arms[i - 1] for i, r in
              enumerate(protocol.ladder().arms) if i}
    # Each arm sets one thing back to its value before the ladder added it.
    added_by = {"no one-cycle": "one-cycle", "peak rate 0.05": "peak rate 0.2",
                "batch 128": "batch 256", "no clean last epochs": "clean last epochs",
                "no weight decay": "weight decay", "no weight average": "weight average"}
    for arm in design.arms[1:]:
        assert arm.against == "full recipe"
        changed = config_differences(arm.config, as_json(full.config))
        if arm.name in added_by:
            rung = rungs[added_by[arm.name]]
            assert arm.model == full.model
            assert changed == config_differences(rung.config,
                                                 as_json(before[rung.name].config))
            for field in changed:
                assert getattr(arm.config, field) == getattr(
                    before[rung.name].config, field), (arm.name, field)
    arms = {a.name: a for a in design.arms}
    assert arms["no dropout"].model == "Model_4" and not config_differences(
        arms["no dropout"].config, as_json(full.config))
    assert arms["no augmentation"].config.rotation == 0
    # "no weight average" is the ladder's rung before the last, run for run.
    assert arms["no weight average"].config == rungs["weight decay"].config


def _fake_train(calls):
    """A stand-in for `train_once`: accuracies from the model, config and
    seed alone (deterministic), counting what it trains."""
    def train_once(arm, data, seed, machine):
        calls.append((arm.model, seed))
        base = (99.0 + 0.1 * (arm.model == "Model_4_dropout") + 0.01 * seed
                + arm.config.lr / 10)
        accs = [base - 0.2, base, base + 0.01, base + 0.02]
        hist = SimpleNamespace(params=7000, layers=None)
        return {"seed": seed, "last3": accs[-3:], "met": min(accs[-3:]) >= 99.4,
                "best": max(accs), "seconds": 1.0, "machine": machine,
                "eval_acc": accs, "train_acc": accs, "eval_loss": [0.1] * 4}, hist
    return train_once


@pytest.fixture()
def fake(monkeypatch):
    calls = []
    monkeypatch.setattr(study, "train_once", _fake_train(calls))
    monkeypatch.setattr(study, "split_data", lambda data, split: data)
    return calls


def test_two_parts_share_one_record_and_a_resume_trains_nothing_again(tmp_path, fake):
    out = tmp_path / "ladder.json"
    design = protocol.ladder()
    study.run_study(design, None, [0, 1, 2], out, (1, 2), report=lambda _: None)
    assert {s for _, s in fake} == {0, 2}
    study.run_study(design, None, [0, 1, 2], out, (2, 2), report=lambda _: None)
    record = json.loads(out.read_text())
    assert record["split"] == "holdout" and record["train_size"] == 50_000
    assert record["eval_size"] == 10_000 and record["seeds"] == [0, 1, 2]
    assert all([r["seed"] for r in a["runs"]] == [0, 1, 2] for a in record["arms"])
    n = len(fake)
    assert n == 3 * len(design.arms)
    study.run_study(design, None, [0, 1, 2], out, report=lambda _: None)
    assert len(fake) == n  # everything was there
    with pytest.raises(ValueError, match="seeds"):
        study.run_study(design, None, [0, 1], out, report=lambda _: None)


def test_a_record_of_another_design_is_refused(tmp_path, fake):
    out = tmp_path / "r.json"
    study.run_study(protocol.ablation(), None, [0], out, report=lambda _: None)
    with pytest.raises(ValueError, match="trained otherwise"):
        study.run_study(protocol.ladder(), None, [0], out, report=lambda _: None)


def _made_elsewhere(out, seed: int, arms: slice) -> dict:
    """Mark the runs of `seed` in the record's `arms` as made on another
    machine, write the record back and return it."""
    record = json.loads(out.read_text())
    for arm in record["arms"][arms]:
        for run in arm["runs"]:
            if run["seed"] == seed:
                run["machine"] = "another CPU; 1 thread; fp32; torch 0"
    out.write_text(json.dumps(record))
    return record


def test_a_seed_is_one_machines_work(tmp_path, fake, monkeypatch):
    out = tmp_path / "r.json"
    design = protocol.ablation()
    study.run_study(design, None, [0, 1], out, report=lambda _: None)
    # Seed 1's runs, as if made elsewhere but for the last arm: on resume
    # here, the whole seed is trained again and the other machine's runs go.
    _made_elsewhere(out, seed=1, arms=slice(None, -1))
    fake.clear()
    study.run_study(design, None, [0, 1], out, report=lambda _: None)
    assert {s for _, s in fake} == {1} and len(fake) == len(design.arms) - 1
    record = json.loads(out.read_text())
    machines = {r["machine"] for a in record["arms"] for r in a["runs"]}
    assert len(machines) == 1


def test_a_seed_complete_on_another_machine_is_kept(tmp_path, fake):
    """A study goes on across sessions whose CPUs differ: every seed that
    one machine finished stays (its pairs are all that machine's)."""
    out = tmp_path / "r.json"
    design = protocol.ablation()
    study.run_study(design, None, [0, 1], out, report=lambda _: None)
    record = _made_elsewhere(out, seed=0, arms=slice(None))  # wholly elsewhere
    fake.clear()
    study.run_study(design, None, [0, 1], out, report=lambda _: None)
    assert fake == []  # nothing trained again
    after = json.loads(out.read_text())
    assert after["arms"] == record["arms"]


def test_an_arm_is_found_by_name_or_refused_with_the_names_there_are():
    record = {"arms": [{"name": "control", "runs": [1]}, {"name": "Model_6", "runs": []}]}
    assert study.arm(record, "Model_6") is record["arms"][1]
    with pytest.raises(KeyError, match="no arm 'Model_7' in this record; its arms: "
                                       "'control', 'Model_6'"):
        study.arm(record, "Model_7")


def test_compare_pairs_only_runs_made_on_the_same_machine():
    def arm(name, accs, machines):
        return {"name": name, "against": None, "runs": [
            {"seed": s, "last3": [a] * 3, "met": a >= 99.4, "machine": m}
            for s, (a, m) in enumerate(zip(accs, machines))]}
    record = {"arms": [arm("a", [99.5, 99.6, 99.7], "xxy"),
                       arm("b", [99.4, 99.5, 99.0], "xxx")]}
    vs = study.compare(record, "a", "b")
    assert vs["n_seeds"] == 2 and vs["delta"] == pytest.approx(0.1)
    assert vs["met"] == 2 and vs["met_before"] == 2


def test_identical_runs_are_copied_from_another_record(tmp_path, fake):
    ladder_out = tmp_path / "ladder.json"
    study.run_study(protocol.ladder(), None, [0], ladder_out, report=lambda _: None)
    fake.clear()
    study.run_study(protocol.ablation(), None, [0], tmp_path / "a.json",
                    reuse=[json.loads(ladder_out.read_text())], report=lambda _: None)
    record = json.loads((tmp_path / "a.json").read_text())
    copied = {a["name"]: a["runs"][0].get("same_run_as") for a in record["arms"]}
    assert copied["full recipe"] == "ladder: weight average"
    assert copied["no weight average"] == "ladder: weight decay"
    assert len(fake) == len(protocol.ablation().arms) - 2
    # An arm whose runs were all copied still says what it trained.
    for arm in record["arms"]:
        if copied[arm["name"]]:
            net = get_model(arm["model"])
            assert (arm["params"], arm["layers"]) == (count_parameters(net),
                                                      layer_list(net))


def _ablation_record(deltas: dict[str, float], seeds=range(10)):
    """An ablation record whose arms differ from the full recipe by `deltas`
    (points, with a small seed-to-seed wobble), all on one machine."""
    design = protocol.ablation()
    record = study.new_record(design, list(seeds), "test")
    for arm in record["arms"]:
        d = deltas.get(arm["name"], 0.0)
        arm["runs"] = [{"seed": s, "last3": [99.45 + d + 0.01 * (s % 3 - 1)] * 3,
                        "met": 99.45 + d >= 99.4, "machine": "m"} for s in seeds]
    return record


def test_the_rule_keeps_what_leaving_out_hurts_and_drops_the_rest():
    record = _ablation_record({"no augmentation": -0.2, "no transition block": -0.1,
                               "batch 128": +0.05})
    decision = protocol.decide(record)
    stays = {i["arm"]: i["stays"] for i in decision["ingredients"]}
    assert stays["no augmentation"] and stays["no transition block"]
    assert not stays["batch 128"]  # leaving it out helps: it leaves
    assert not stays["no weight decay"]  # no measurable effect: it leaves
    assert sum(stays.values()) == 2
    # R: Model_4's layers without dropout, augmentation kept, every other
    # ingredient set back to its value before the ladder added it.
    assert decision["reduced_model"] == "Model_4"
    r = decision["reduced_config"]
    assert (r.batch_size, r.lr, r.scheduler, r.weight_decay, r.ema, r.clean_epochs) == (
        128, 0.05, "none", 0.0, 0.0, 0)
    assert r.rotation == 7.0
    # The final recipe is R unless R hurts against the full recipe.
    confirm = protocol.confirmation(decision)
    rec = study.new_record(confirm, list(range(10)), "test")
    for arm, d in zip(rec["arms"], (0.0, -0.1)):
        arm["runs"] = [{"seed": s, "last3": [99.4 + d + 0.01 * (s % 2)] * 3,
                        "met": False, "machine": "m"} for s in range(10)]
    assert protocol.final_recipe(decision, [record, rec])[0] == protocol.candidate().model
    rec["arms"][1]["runs"] = rec["arms"][0]["runs"]
    assert protocol.final_recipe(decision, [record, rec]) == ("Model_4", r)
    with pytest.raises(ValueError, match="confirmation"):
        protocol.final_recipe(decision, [record])


def test_when_one_ingredient_leaves_its_ablation_arm_is_the_evidence():
    arms = [a.name for a in protocol.ablation().arms[1:]]
    # Every ingredient stays but weight decay, whose removal changes nothing.
    record = _ablation_record({a: -0.2 for a in arms if a != "no weight decay"})
    decision = protocol.decide(record)
    model, config = protocol.final_recipe(decision, [record])
    assert model == protocol.candidate().model and config.weight_decay == 0
    # Had leaving it out hurt, it would stay: the candidate is final.
    record = _ablation_record({a: -0.2 for a in arms})
    assert protocol.final_recipe(protocol.decide(record), [record])[1].weight_decay > 0


def test_when_every_ingredient_stays_the_final_recipe_is_the_candidate():
    arms = [a.name for a in protocol.ablation().arms[1:]]
    decision = protocol.decide(_ablation_record({a: -0.2 for a in arms}))
    assert all(i["stays"] for i in decision["ingredients"])
    c = protocol.candidate()
    assert protocol.final_recipe(decision) == (c.model, c.config)


def test_the_final_test_record_counts_the_seeds_that_met_the_rule(tmp_path, fake):
    c = protocol.candidate()
    design = protocol.final_test(c.model, c.config)
    assert design.split == "test"
    seeds = protocol.TEST_SEEDS[:4]
    record = study.run_study(design, None, seeds, tmp_path / "f.json",
                             report=lambda _: None)
    final = protocol.final_test_record(record)
    assert final["split"] == "test" and final["n_seeds"] == 4
    assert final["passed"] == sum(all(a >= 99.4 for a in r["last3"])
                                  for r in final["runs"])
    assert final["model"] == c.model and final["config"] == as_json(c.config) | {
        "seed": None}
    assert set(final["runs"][0]) >= {"seed", "last3", "met"}
    incomplete = json.loads((tmp_path / "f.json").read_text())
    incomplete["arms"][0]["runs"].pop()
    with pytest.raises(ValueError, match="3 of 4"):
        protocol.final_test_record(incomplete)


def test_test_seeds_are_fresh():
    assert len(protocol.TEST_SEEDS) >= 20
    assert not set(protocol.TEST_SEEDS) & set(protocol.SELECTION_SEEDS)
    assert pass_rate_lower_bound(18, 20) < 0.9  # why the aim is an aim


def test_the_study_command_refuses_bad_arguments_with_the_fix(tmp_path, capsys):
    for argv, said in ((["final", "--out", str(tmp_path / "x")], "needs --ablation"),
                       (["ladder", "--seeds", "a-b", "--out", "x"], "0-9"),
                       (["ladder", "--part", "3/2", "--out", "x"], "1 <= k <= n"),
                       (["ladder", "--out", "x", "--reuse", "nope.json"], "no such")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["study", *argv])
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err


def test_round_2s_final_test_never_writes_over_round_1s(tmp_path, capsys):
    """`study final2 --record F` where F holds round 1's final test: refused
    before any run, naming the file to move it to; a record of round 2's own
    (written again once every part has ended) or a new file is accepted."""
    select = tmp_path / "selection.json"
    select.write_text("{}")
    round1 = tmp_path / "final_test.json"
    round1.write_text(json.dumps({"protocol": "results/protocol.md", "passed": 10}))
    argv = ["study", "final2", "--select", str(select), "--out", str(tmp_path / "o"),
            "--record", str(round1)]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "results/final_test_round1.json" in capsys.readouterr().err
    assert json.loads(round1.read_text())["passed"] == 10  # untouched
    assert cli._replaces_a_record(str(round1), "final") is None  # round 1's own
    round1.write_text(json.dumps({"protocol": "results/protocol2.md"}))
    assert cli._replaces_a_record(str(round1), "final2") is None
    assert cli._replaces_a_record(str(tmp_path / "new.json"), "final2") is None
    round1.write_text("not json")
    assert "not a final test's record" in cli._replaces_a_record(str(round1), "final2")


@pytest.mark.slow
def test_a_real_study_trains_on_held_out_digits(tmp_path, mnist):
    design = replace(protocol.ladder(), arms=protocol.ladder().arms[:2])
    record = study.run_study(design, mnist, [0], tmp_path / "l.json",
                             report=lambda _: None, epochs=3, device="cpu",
                             n_train=1000, n_test=500)
    run = record["arms"][1]["runs"][0]
    assert len(run["eval_acc"]) == 3 and run["last3"] == run["eval_acc"]
    assert record["commits"] and list(record["machines"])[0] == run["machine"]


def test_interaction_is_the_rungs_effect_minus_the_ablations_seed_by_seed():
    def record(means_by_arm):
        return {"arms": [{"name": n, "runs": [{"seed": s, "last3": [m + 0.01 * s] * 3,
                                               "machine": "M"}
                                              for s, m in enumerate(ms)]}
                         for n, ms in means_by_arm.items()]}

    # On its rung the change adds 0.10, 0.12, 0.14; in the full recipe 0.0.
    rungs = record({"before": [99.0] * 3, "with": [99.10, 99.12, 99.14]})
    ablation = record({"full": [99.3] * 3, "without": [99.3] * 3})
    vs = study.interaction(rungs, "with", "before", ablation, "full", "without")
    assert vs["delta"] == pytest.approx(0.12) and vs["n_seeds"] == 3
    assert vs["verdict"] == "helps"  # the effects differ: an interaction


def test_each_ablation_arm_names_the_ladder_rung_it_tests():
    """The decision table is indexed by ingredient: every arm maps to a rung
    of the ladder, and no two arms to the same one."""
    rungs = {arm.name for arm in protocol.ladder().arms}
    arms = [arm.name for arm in protocol.ablation().arms[1:]]
    tested = [protocol.ingredient_of(name) for name in arms]
    assert set(tested) <= rungs and len(set(tested)) == len(arms)
    assert protocol.ingredient_of("batch 128") == "batch 256"
    assert protocol.ingredient_of("no dropout") == "dropout"


def test_median_half_width_is_the_median_of_the_compared_arms_intervals():
    def arm(name, against, means):
        return {"name": name, "change": "", "model": "M", "params": 1,
                "against": against,
                "runs": [{"seed": s, "last3": [m, m, m], "met": False,
                          "machine": "here"} for s, m in enumerate(means)]}

    # Against A, B's differences are 1, 2, 3 (half-width t(2) x 1/sqrt(3)),
    # C's are 1, 1, 4 (SD sqrt(3): half-width t(2)); A is compared with nothing.
    record = {"arms": [arm("A", None, [0.0, 0.0, 0.0]),
                       arm("B", "A", [1.0, 2.0, 3.0]),
                       arm("C", "A", [1.0, 1.0, 4.0])]}
    from mnist_lib.stats import t_critical

    t2 = t_critical(2)
    halves = sorted([t2 / 3 ** 0.5, t2])
    assert study.median_half_width(record) == pytest.approx(sum(halves) / 2)
    assert study.median_half_width(record, ["C"]) == pytest.approx(t2)
    with pytest.raises(ValueError, match="no arm"):
        study.median_half_width(record, ["A"])


def test_the_pool_exercise_is_the_transition_rung_without_its_pool():
    """results/exercise_pool.md: the reference is the ladder's rung itself;
    the arm changes only the model, to the same weights with the max-pool
    replaced by an identity, so a seed starts both arms from the same
    numbers and the RF before the global pooling falls from 29 to 19."""
    import torch
    import torch.nn as nn

    from mnist_lib.rf import receptive_field

    ref, arm = protocol.exercise_pool().arms
    rung = protocol.ladder().arm("transition block")
    assert (ref.name, ref.model, ref.config, ref.against) == (
        rung.name, rung.model, rung.config, None)
    assert (arm.against, arm.config) == (ref.name, ref.config)
    assert arm.model != ref.model
    torch.manual_seed(0)
    with_pool = get_model(ref.model)
    torch.manual_seed(0)
    without = get_model(arm.model)
    assert isinstance(with_pool.transition[0], nn.MaxPool2d)
    assert isinstance(without.transition[0], nn.Identity)
    a, b = with_pool.state_dict(), without.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert [receptive_field(m, (1, 28, 28)).trunk.r_out
            for m in (with_pool, without)] == [29, 19]


def test_the_layout_exercise_splits_the_chosen_recipes_lead():
    """results/exercise_layout.md: its control and its combination are the
    deciding stage's arms (the combination is the recipe round 2 chose), its
    middle arm is the screen's Model_8 with round 1's recipe, each arm is
    compared with the one it changes, and no run of either round used its
    seeds."""
    from pathlib import Path

    from mnist_lib import protocol2

    results = Path(__file__).parents[1] / "results"
    screen, selection = (json.loads((results / f"{name}.json").read_text())
                         for name in ("screen", "selection"))
    arms = {a.name: a for a in protocol2.exercise_layout().arms}
    stage = {a.name: a for a in protocol2.selection(screen).arms}
    layout = {a.name: a for a in protocol2.screen().arms}["Model_8"]
    assert list(arms) == ["control", "Model_8", "combination"]
    assert arms["control"] == stage["control"]
    assert (arms["Model_8"].model, arms["Model_8"].config) == (layout.model,
                                                               layout.config)
    assert (arms["combination"].model, arms["combination"].config) == (
        stage["combination"].model, stage["combination"].config)
    chosen = protocol2.decide(selection)
    assert chosen["chosen"] == "combination"
    assert not config_differences(arms["combination"].config, chosen["config"])
    assert [arms[n].against for n in arms] == [None, "control", "Model_8"]
    used = {*protocol2.SCREEN_SEEDS, *protocol2.SELECTION_SEEDS,
            *protocol2.GAP_SEEDS, *protocol2.TEST_SEEDS,
            *protocol.SELECTION_SEEDS, *protocol.TEST_SEEDS}
    assert protocol2.EXERCISE_SEEDS and not used & set(protocol2.EXERCISE_SEEDS)
    assert cli._design(SimpleNamespace(design="exercise_layout"), None,
                       None).name == "exercise_layout"


def test_each_exercise_arm_is_its_ladder_rung_with_one_change():
    design = protocol.exercises()
    rungs = {a.name: a for a in protocol.ladder().arms}
    exercise_arms = [a for a in design.arms if a.against]
    assert len(exercise_arms) == 3
    for arm in exercise_arms:
        ref = design.arm(arm.against)
        # The reference is the ladder's rung itself: same model, same recipe.
        assert (ref.model, ref.config) == (rungs[ref.name].model, rungs[ref.name].config)
        changed = config_differences(arm.config, as_json(ref.config))
        assert len(changed) + (arm.model != ref.model) == 1, (arm.name, changed)


def test_without_seed_drops_one_seed_from_every_arm_and_leaves_the_record():
    record = {"seeds": [0, 1, 2], "arms": [
        {"name": "a", "runs": [{"seed": s, "last3": [99.0] * 3} for s in (0, 1, 2)]},
        {"name": "b", "runs": [{"seed": s, "last3": [99.1] * 3} for s in (0, 2)]}]}
    rest = study.without_seed(record, 2)
    assert rest["seeds"] == [0, 1]
    assert [[r["seed"] for r in a["runs"]] for a in rest["arms"]] == [[0, 1], [0]]
    assert [len(a["runs"]) for a in record["arms"]] == [3, 2]  # untouched


def test_only_seeds_keeps_a_block_of_seeds_and_refuses_one_it_lacks():
    record = {"seeds": [0, 1, 2, 3], "arms": [
        {"name": "a", "runs": [{"seed": s, "last3": [99.0] * 3} for s in range(4)]},
        {"name": "b", "runs": [{"seed": s, "last3": [99.1] * 3} for s in (0, 3)]}]}
    block = study.only_seeds(record, range(2))
    assert block["seeds"] == [0, 1]
    assert [[r["seed"] for r in a["runs"]] for a in block["arms"]] == [[0, 1], [0]]
    # The same as dropping every other seed one at a time.
    assert block == study.without_seed(study.without_seed(record, 2), 3)
    assert len(record["arms"][0]["runs"]) == 4  # untouched
    with pytest.raises(ValueError, match=r"seeds \[7\] are not in the record"):
        study.only_seeds(record, [0, 7])


def test_to_frame_names_what_each_arm_is_compared_with():
    """The screen compares layouts with the control and training changes
    with Model_6: the table says which, beside the difference."""
    from pathlib import Path

    screen = json.loads((Path(__file__).parents[1] / "results" / "screen.json").read_text())
    frame = study.to_frame(screen)
    assert frame.loc["Model_8", "against"] == "control"
    assert frame.loc["Model_6, warm-up 15%", "against"] == "Model_6"
    assert frame.loc["control", "against"] == "—"
    vs = study.compare(screen, "Model_8", "control")
    assert frame.loc["Model_8", "Δ = arm − against (95% interval)"].startswith(
        study.points(vs["delta"]))


def test_median_seconds_is_an_arms_median_run_time():
    record = {"arms": [{"name": "a", "runs": [{"seed": s, "seconds": t}
                                              for s, t in enumerate((30.0, 10.0, 20.0))]},
                       {"name": "b", "runs": [{"seed": 0, "seconds": 5.0}]}]}
    assert study.median_seconds(record, "a") == 20.0
    assert study.median_seconds(record, "b") == 5.0


def test_check_design_refuses_a_split_it_does_not_know():
    """A typo in `split` would otherwise train on all 60,000 digits and judge
    on the test set: refused before any training, naming the two splits."""
    from mnist_lib.config import TrainConfig

    with pytest.raises(ValueError, match=r"'holdoot'.*'holdout' to choose"):
        study.check_design(lambda: None, None, TrainConfig(), [0], split="holdoot")
    assert study.split_data("data", "test") == "data"
