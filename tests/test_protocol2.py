"""Round 2's designs (results/protocol2.md) as mnist_lib.protocol2 builds them:
the candidates it lists, the seeds it keeps apart, the selection and decision
rules applied to made-up records whose right answer is known."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mnist_lib import protocol, protocol2
from mnist_lib.config import as_json
from mnist_lib.models import count_parameters, get_model
from mnist_lib.records import config_differences
from mnist_lib.study import new_record
from mnist_lib.target import TARGET


def fake_record(design, seeds, means, machine="M"):
    """A record of `design` whose arm `name` scores means[name] (+ a seed's
    own offset, shared by every arm: the pairing) on every run."""
    record = new_record(design, seeds, "test")
    for arm in record["arms"]:
        arm["runs"] = [{"seed": s, "last3": [means[arm["name"]] + 0.01 * (s % 3)] * 3,
                        "met": means[arm["name"]] >= TARGET.accuracy,
                        "machine": machine} for s in seeds]
    return record


def test_every_candidate_is_within_the_budget_and_named_once():
    design = protocol2.screen()
    assert len(design.arms) == 8 and design.split == "holdout"
    assert design.protocol == "results/protocol2.md"
    for arm in design.arms:
        assert count_parameters(get_model(arm.model)) < TARGET.param_limit, arm.name
        assert arm.config.epochs <= TARGET.max_epochs, arm.name
    # Round 1's best held-out arm is its ablation's "no dropout" arm, as it ran.
    best = protocol.ablation().arm("no dropout")
    arm = design.arm("round 1's best held-out arm")
    assert arm.model == best.model and arm.config == best.config


def test_the_control_is_round_1s_final_recipe_as_its_test_trained_it():
    import json
    from pathlib import Path

    final = json.loads((Path(__file__).parents[1] / "results/final_test_round1.json")
                       .read_text())
    control = protocol2.control()
    assert control.model == final["model"]
    assert config_differences(control.config, final["config"]) == []


def test_each_training_candidate_changes_one_field_of_model_6():
    design = protocol2.screen()
    base = design.arm(protocol2.BASE)
    for name in protocol2.TRAINING:
        arm = design.arm(f"{protocol2.BASE}, {name}")
        assert arm.against == base.name and arm.model == base.model
        assert len(config_differences(arm.config, as_json(base.config))) == 1


def test_seeds_of_the_stages_and_the_test_are_disjoint():
    selection = set(protocol2.SCREEN_SEEDS) | set(protocol2.SELECTION_SEEDS)
    assert not set(protocol2.SCREEN_SEEDS) & set(protocol2.SELECTION_SEEDS)
    assert len(protocol2.SELECTION_SEEDS) >= 20
    test = set(protocol2.TEST_SEEDS)
    assert len(test) >= 50
    assert not test & (selection | set(protocol2.GAP_SEEDS))
    assert not test & set(protocol.TEST_SEEDS)  # round 1's test


SCREEN = {"control": 99.30, "round 1's best held-out arm": 99.36, "Model_6": 99.40,
          "Model_7": 99.42, "Model_8": 99.38, "Model_6, label smoothing 0.1": 99.43,
          "Model_6, peak rate 0.4": 99.39, "Model_6, warm-up 15%": 99.41}


def test_the_selection_takes_the_two_best_and_the_combination():
    record = fake_record(protocol2.screen(), protocol2.SCREEN_SEEDS, SCREEN)
    design = protocol2.selection(record)
    names = [a.name for a in design.arms]
    assert names == ["control", "Model_6, label smoothing 0.1", "Model_7",
                     "combination"]
    combo = design.arm("combination")
    # Model_7 is the best architecture; label smoothing and warm-up beat Model_6.
    assert combo.model == "Model_7"
    assert sorted(config_differences(protocol2.ROUND1, as_json(combo.config))) == [
        "label_smoothing", "pct_start"]
    assert all(a.against == "control" for a in design.arms[1:])


def test_without_a_training_change_that_helps_the_third_best_arm_goes():
    means = SCREEN | {f"Model_6, {n}": 99.35 for n in protocol2.TRAINING}
    record = fake_record(protocol2.screen(), protocol2.SCREEN_SEEDS, means)
    names = [a.name for a in protocol2.selection(record).arms]
    assert names == ["control", "Model_7", "Model_6", "Model_8"]


def _selection(means):
    record = fake_record(protocol2.screen(), protocol2.SCREEN_SEEDS, SCREEN)
    design = protocol2.selection(record)
    return fake_record(design, protocol2.SELECTION_SEEDS, means)


def test_the_decision_takes_the_highest_mean():
    record = _selection({"control": 99.30, "Model_6, label smoothing 0.1": 99.45,
                         "Model_7": 99.42, "combination": 99.47})
    chosen = protocol2.decide(record)
    assert chosen["chosen"] == "combination" and chosen["model"] == "Model_7"


def test_a_simpler_arm_within_the_margin_is_chosen_instead():
    # Model_7 (one change) is within 0.01 of the combination (three changes).
    record = _selection({"control": 99.30, "Model_6, label smoothing 0.1": 99.45,
                         "Model_7": 99.465, "combination": 99.47})
    chosen = protocol2.decide(record)
    assert chosen["best"] == "combination" and chosen["chosen"] == "Model_7"
    assert "simpler" in chosen["why"]
    # Just outside the margin, the best stays.
    record = _selection({"control": 99.30, "Model_6, label smoothing 0.1": 99.45,
                         "Model_7": 99.455, "combination": 99.47})
    assert protocol2.decide(record)["chosen"] == "combination"


def test_the_final_test_trains_the_chosen_recipe_on_the_test_split():
    record = _selection({"control": 99.30, "Model_6, label smoothing 0.1": 99.45,
                         "Model_7": 99.42, "combination": 99.47})
    design = protocol2.final_test(record)
    (arm,) = design.arms
    assert design.split == "test" and arm.model == "Model_7"
    assert arm.config.label_smoothing == 0.1 and arm.config.pct_start == 0.15


def test_the_gap_study_differs_only_in_the_training_digits():
    first, second = protocol2.gap().arms
    assert first.model == second.model == "Model_2"
    assert config_differences(first.config, as_json(second.config)) == ["n_train"]
    assert second.config.n_train == 40_000 and second.against == first.name


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_loss_fit_trains_on_is_torchs_smoothed_cross_entropy(small, eps):
    # The first epoch's training loss of a run with lr=1e-9 (the weights barely
    # move), against torch's own smoothed loss of the same log-probabilities
    # (log_softmax of log-probabilities is itself), batch by batch.
    import torch
    import torch.nn.functional as F

    from mnist_lib.config import TrainConfig
    from mnist_lib.data import normalize, pixel_stats, to_float
    from mnist_lib.train import fit
    from mnist_lib.utils.seeding import set_seed

    cfg = TrainConfig(label_smoothing=eps, precision="fp32", scheduler="none",
                      lr=1e-9, momentum=0.0, epochs=1, n_train=512, n_test=100,
                      batch_size=512, progress=False, device="cpu")
    set_seed(0)
    net = get_model("Model_2")
    start = {k: v.clone() for k, v in net.state_dict().items()}
    hist = fit(net, small, cfg)
    net.load_state_dict(start)
    data = small.subset(512, 100)
    mean, std = pixel_stats(data.train_images)
    with torch.no_grad():  # train mode: BatchNorm on the batch, as fit's step
        logp = net.train()(normalize(to_float(data.train_images), mean, std))
    expected = F.cross_entropy(logp, data.train_labels, label_smoothing=eps)
    assert hist.epochs[0].train_loss == pytest.approx(expected.item(), rel=1e-5)


def test_a_record_made_before_label_smoothing_existed_reads_as_none():
    config = replace(protocol2.ROUND1)
    recorded = as_json(config)
    del recorded["label_smoothing"]
    assert config_differences(config, recorded) == []
    assert config_differences(replace(config, label_smoothing=0.1), recorded) == [
        "label_smoothing"]


def test_a_simpler_arm_exactly_at_the_margin_is_chosen():
    # 99.47 - 99.46 is 0.010000000000005 in binary: "within 0.01" all the same.
    record = _selection({"control": 99.30, "Model_6, label smoothing 0.1": 99.45,
                         "Model_7": 99.46, "combination": 99.47})
    assert protocol2.decide(record)["chosen"] == "Model_7"


def test_a_stage_builds_on_a_finished_stage_only():
    record = fake_record(protocol2.screen(), protocol2.SCREEN_SEEDS, SCREEN)
    record["arms"][3]["runs"] = record["arms"][3]["runs"][:-1]  # seed 9 missing
    with pytest.raises(ValueError, match="screen study is not complete: seeds "
                                         "missing in {'Model_7': \\[9\\]}"):
        protocol2.selection(record)
    with pytest.raises(ValueError, match="the 'screen' study's, not the 'selection'"):
        protocol2.final_test(fake_record(protocol2.screen(), protocol2.SCREEN_SEEDS,
                                         SCREEN))


def test_a_compiled_model_is_not_also_captured_as_a_cuda_graph():
    import torch

    from mnist_lib.training import cuda_graphs
    from mnist_lib.config import TrainConfig

    cuda = torch.device("cuda")
    assert cuda_graphs.usable(TrainConfig(), cuda)
    assert not cuda_graphs.usable(TrainConfig(compile=True), cuda)
    assert not cuda_graphs.usable(TrainConfig(optimizer="adam"), cuda)
    assert not cuda_graphs.usable(TrainConfig(), torch.device("cpu"))


def test_the_gap_record_names_each_arms_training_digits():
    """The gap study's record says what each arm trained on: the split has
    50,000 training digits, the 40,000 arm its first 40,000."""
    record = new_record(protocol2.gap(), [0, 1], "test")
    assert record["train_size"] == 50_000
    sizes = {a["name"]: a["train_size"] for a in record["arms"]}
    assert sizes == {"50,000 digits": 50_000, "40,000 digits": 40_000}


def test_the_aim_is_the_one_protocol2_states():
    """The book glues round 2's aim from protocol2.AIM: it must be the number
    results/protocol2.md wrote down before the runs."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "results" / "protocol2.md").read_text()
    assert (f"Aim: at least {protocol2.AIM} of {len(protocol2.TEST_SEEDS)}"
            in " ".join(text.split()))


def test_a_wider_margin_takes_the_simplest_arm_within_it_then_the_higher_mean():
    """`decide(record, margin=...)` answers "what if the margin had been
    wider": the arms within it, the simplest first, then the higher mean."""
    from mnist_lib.book import load_record

    record = load_record("selection")
    strict = protocol2.decide(record)
    wide = protocol2.decide(record, margin=0.05)
    assert strict == protocol2.decide(record, margin=protocol2.MARGIN)
    means = wide["means"]
    within = [n for n in means if means[wide["best"]] - means[n] <= 0.05 + 1e-9]
    assert wide["within"] == within  # the arms it chose among
    arms = {a["name"]: a for a in record["arms"]}
    simplest = min(protocol2.simplicity(arms[n]) for n in within)
    tied = [n for n in within if protocol2.simplicity(arms[n]) == simplest]
    assert wide["chosen"] == max(tied, key=means.get)
    assert "0.05" in wide["why"] or wide["chosen"] == wide["best"]
