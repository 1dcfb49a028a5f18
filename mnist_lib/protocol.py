"""The studies that `results/protocol.md` commits to, as designs for
`mnist_lib.study`: the held-out ladder, the ablation of its candidate, and
the seeds each uses. The protocol's text is the authority; this module is
what runs it.

    python -m mnist_lib study ladder   --out results/ladder.json
    python -m mnist_lib study ablation --out results/ablation.json \\
        --reuse results/ladder.json
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .config import NO_WARP, WARP, as_json, recipe
from .records import config_differences
from .study import Arm, Design, compare

SELECTION_SEEDS = list(range(10))
TEST_SEEDS = list(range(1000, 1020))  # fresh: no selection run used them
AIM = 18  # section 6's aim (not a requirement): 18 of the 20 test seeds pass



def ladder() -> Design:
    """The held-out ladder (protocol section 3): each rung the one before
    plus one named change (a change of layers may move widths, depth and
    the RF together), judged on the last 10,000 training digits."""
    rungs = [Arm("baseline", "Step 1's recipe: SGD at a constant learning rate "
                 "of 0.01, batch 128", "Model_1", recipe("Model_1"), step=1)]

    def then(name: str, change: str, step: int, model: str | None = None,
             **fields: Any) -> None:
        last = rungs[-1]
        rungs.append(Arm(name, change, model or last.model,
                         replace(last.config, **fields), last.name, step))

    then("BatchNorm", "BatchNorm after each 3x3 convolution", 2, "Model_1_BN")
    then("learning rate 0.05", "a constant learning rate of 0.05 instead of 0.01",
         2, lr=0.05)
    then("GAP head", "global average pooling and a 1x1 convolution instead of "
         "the 8x8 output convolution", 2, "Model_1_GAP")
    then("deeper, narrower", "Model_2's layers: narrower early layers pay for a "
         "fifth 3x3 convolution (RF before the pooling 15 -> 19)", 2, "Model_2")
    then("dropout", "5% dropout after every convolution (Model_3)", 2, "Model_3")
    then("one-cycle", "a one-cycle schedule: warm up to the same peak of 0.05, "
         "then anneal to almost zero", 3, scheduler="onecycle")
    then("augmentation", "each training digit rotated by up to 7 degrees, "
         "shifted by up to 5% and zoomed by 95-105%, drawn anew each epoch", 3,
         **WARP)
    then("clean last epochs", "no warping in the last 3 epochs", 3, clean_epochs=3)
    then("transition block", "Model_4's layers with Model_3's dropout: a max-pool "
         "and a 1x1 convolution after RF 11 (RF before the pooling 19 -> 29)", 3,
         "Model_4_dropout")
    then("peak rate 0.2", "a peak learning rate of 0.2 instead of 0.05", 3, lr=0.2)
    then("batch 256", "256 images a step instead of 128", 3, batch_size=256)
    then("weight decay", "weight decay of 5e-4", 3, weight_decay=5e-4)
    then("weight average", "testing an average of the weights (EMA 0.999), with "
         "BatchNorm statistics measured again on 10,000 clean training digits", 3,
         ema=0.999, bn_recompute=10_000)
    return Design("ladder", tuple(rungs), "holdout")


def candidate() -> Arm:
    """The protocol's candidate C: the ladder's last rung."""
    return ladder().arms[-1]


def ablation() -> Design:
    """The candidate, and one arm per Step 3 ingredient taken out of it
    (protocol section 4), each set back to its value before the ladder
    added it; every arm is compared with the full recipe."""
    c = candidate()
    full = "full recipe"

    def without(name: str, change: str, model: str | None = None,
                **fields: Any) -> Arm:
        return Arm(name, change, model or c.model, replace(c.config, **fields),
                   full, 3)

    arms = (
        Arm(full, "the ladder's last rung: everything it added", c.model,
            c.config, None, 3),
        without("no dropout", "dropout (Model_4's layers without it)", "Model_4"),
        without("no transition block", "the max-pool and 1x1 convolution "
                "(Model_3's layers: every width changes)", "Model_3"),
        without("no one-cycle", "the schedule: a constant rate at the same 0.2",
                scheduler="none"),
        without("peak rate 0.05", "the larger peak rate (0.05 instead of 0.2)",
                lr=0.05),
        without("batch 128", "the larger batch (128 images a step)",
                batch_size=128),
        without("no augmentation", "rotation, shift and zoom (and so the clean "
                "last epochs)", clean_epochs=0, **NO_WARP),
        without("no clean last epochs", "the clean last epochs", clean_epochs=0),
        without("no weight decay", "weight decay", weight_decay=0.0),
        without("no weight average", "the weight average and its BatchNorm "
                "recompute", ema=0.0, bn_recompute=0),
    )
    return Design("ablation", arms, "holdout")




# ----------------------------------------------------------- the decision
# Which layers a recipe trains, by whether it keeps dropout and the
# transition block: the two architecture ingredients the ablation takes out.
LAYERS = {(True, True): "Model_4_dropout", (False, True): "Model_4",
          (True, False): "Model_3", (False, False): "Model_2"}


# An ablation arm is named by what it trains; two put in a setting other than
# the full recipe's (a peak of 0.05, batches of 128) where the rest take one
# out ("no dropout"). The ingredient each tests is the ladder rung it undoes.
_PUT_BACK = {"peak rate 0.05": "peak rate 0.2", "batch 128": "batch 256"}


def ingredient_of(arm_name: str) -> str:
    """The ingredient an ablation arm tests, by its ladder rung's name:
    "no dropout" -> "dropout", "peak rate 0.05" -> "peak rate 0.2"."""
    return _PUT_BACK.get(arm_name, arm_name.removeprefix("no "))


def decide(ablation_record: dict[str, Any]) -> dict[str, Any]:
    """The protocol's rule (section 5) applied to the ablation's record: for
    each ingredient, the comparison of the arm without it against the full
    recipe (`delta`: arm minus full recipe, as `study.compare` gives it),
    `added` (the same difference seen from the ingredient's side: full
    recipe minus arm) and whether it stays ("leaving it out hurts") or
    leaves; and R,
    the full recipe without every ingredient that leaves (`model`,
    `config`)."""
    design = ablation()
    full = design.arms[0]
    kept = {True: [], False: []}
    ingredients = []
    fields: dict[str, Any] = {}
    for arm in design.arms[1:]:
        vs = compare(ablation_record, arm.name, full.name)
        stays = vs["verdict"] == "hurts"
        ingredients.append({"arm": arm.name, "takes out": arm.change,
                            "stays": stays, **vs, "added": -vs["delta"]})
        kept[stays].append(arm.name)
        if not stays:
            fields |= {k: getattr(arm.config, k)
                       for k in config_differences(arm.config, as_json(full.config))}
    model = LAYERS[("no dropout" in kept[True], "no transition block" in kept[True])]
    return {"ingredients": ingredients, "reduced_model": model,
            "reduced_config": replace(full.config, **fields)}


def decision_frame(decision: dict[str, Any]):
    """The decision (`decide`) as a table, one row an ingredient: what its arm
    takes out, what the ingredient added (the full recipe minus the arm,
    paired by seed) with its interval, the runs that met the rule
    (held-out), and whether it stays."""
    import pandas as pd  # only a chapter's table needs it

    from .study import points

    def short(i: dict[str, Any]) -> str:  # "+0.051 (-0.001 to +0.102)"
        d, ci = i["added"], i["delta_ci"]  # full recipe minus the arm
        return f"{points(d)} ({points(d - ci)} to {points(d + ci)})"

    return pd.DataFrame({
        "ingredient": [ingredient_of(i["arm"]) for i in decision["ingredients"]],
        "arm that tests it": [i["arm"] for i in decision["ingredients"]],
        "what it added (full recipe − arm), points (95% interval)": [
            short(i) for i in decision["ingredients"]],
        "seeds passing 99.4%, full → arm": [
            f"{i['met_before']} → {i['met']}" for i in decision["ingredients"]],
        "verdict": [  # the arm's verdict, read from the ingredient's side
            {"hurts": "helped", "helps": "hurt"}.get(i["verdict"], i["verdict"])
            for i in decision["ingredients"]],
        "kept?": ["stays" if i["stays"] else "leaves"
                  for i in decision["ingredients"]],
    }).set_index("ingredient").rename_axis(index=None, columns="ingredient")


def confirmation(decision: dict[str, Any]) -> Design:
    """The confirmation study: R against the full recipe (section 5)."""
    full = candidate()
    return Design("confirmation", (
        Arm("full recipe", "the ladder's last rung", full.model, full.config, None, 3),
        Arm("reduced recipe", "the full recipe without every ingredient that "
            "leaves", decision["reduced_model"], decision["reduced_config"],
            "full recipe", 3)), "holdout")


def final_recipe(decision: dict[str, Any], records: list[dict[str, Any]] = ()
                 ) -> tuple[str, Any]:
    """The final recipe (model, config): R, unless R measurably hurts against
    the full recipe; then the full recipe. R's held-out runs are an arm of
    one of `records` (the ablation's, where one ingredient leaves; else the
    confirmation's), compared there with its "full recipe" arm."""
    c = candidate()
    model, config = decision["reduced_model"], decision["reduced_config"]
    if model == c.model and not config_differences(config, as_json(c.config)):
        return c.model, c.config
    for record in records:
        for arm in record["arms"]:
            if arm["model"] == model and not config_differences(config, arm["config"]):
                hurts = compare(record, arm["name"], "full recipe")["verdict"]
                return (c.model, c.config) if hurts == "hurts" else (model, config)
    raise ValueError("R differs from the full recipe and from every arm measured: "
                     "the protocol needs the confirmation study's record first "
                     "(python -m mnist_lib study confirm)")


def final_test(model: str, config: Any) -> Design:
    """The test, once (section 6): the final recipe on all 60,000 training
    digits, judged on the test set."""
    return Design("final test", (Arm("final recipe", "the protocol's choice",
                                     model, config, None, 3),), "test")


def exercises() -> Design:
    """The step chapters' try-it exercises (results/exercises.md): three
    ladder rungs, each trained again beside the same rung with one change,
    so that a student's prediction has a recorded answer. Decides nothing."""
    rungs = {a.name: a for a in ladder().arms}

    def pair(rung: str, name: str, change: str, step: int,
             model: str | None = None, **fields: Any) -> tuple[Arm, Arm]:
        ref = replace(rungs[rung], against=None)
        return ref, Arm(name, change, model or ref.model,
                        replace(ref.config, **fields), rung, step)

    arms = (
        *pair("baseline", "no momentum", "plain SGD: momentum 0 instead of 0.9",
              1, momentum=0.0),
        *pair("learning rate 0.05", "no BatchNorm at 0.05", "Model_1's layers "
              "(no BatchNorm) at the same rate of 0.05", 2, "Model_1"),
        *pair("augmentation", "rotation 15", "rotation by up to 15 degrees "
              "instead of 7", 3, rotation=15.0),
    )
    return Design("exercises", arms, "holdout", "results/exercises.md")


def exercise_pool() -> Design:
    """Step 3's Exercise 2 (results/exercise_pool.md): the "transition block"
    rung trained again beside the same net with its max-pool taken out.
    Decides nothing."""
    rung = replace(ladder().arm("transition block"), against=None)
    return Design("exercise_pool", (rung, Arm(
        "no pool", "Model_4_dropout without the transition's max-pool (the "
        "same weights; RF before the pooling 29 -> 19)", "Model_4_no_pool",
        rung.config, rung.name, 3)), "holdout", "results/exercise_pool.md")


DESIGNS = {"ladder": ladder, "ablation": ablation, "exercises": exercises,
           "exercise_pool": exercise_pool}


def seed_study(model: str, config: Any = None, split: str = "holdout") -> Design:
    """One book model with its own recipe (or `config`) over several seeds, on
    held-out digits (or `split`): e.g. Model_5, the capstone's worked
    alternative, with the final recipe."""
    config = config or recipe(model)
    said = "its recipe" if not config_differences(config, as_json(recipe(model))) \
        else "its recipe, changed: " + ", ".join(
            config_differences(config, as_json(recipe(model))))
    return Design(f"seeds {model}", (Arm(model, said, model, config, None, 3),), split)


def config_of(record: dict[str, Any]) -> Any:
    """The recipe a study record (the final test's, say) trained with, as a
    TrainConfig."""
    from .config import TrainConfig

    fields = {k: v for k, v in record["config"].items() if k != "seed"}
    return TrainConfig(**fields)


def final_test_record(record: dict[str, Any]) -> dict[str, Any]:
    """The final test's study record in the form `results/final_test.json`
    keeps: the recipe, one entry a seed ({"seed", "last3", "met"} and the
    run's curves), how many met the rule, and where and how it was made."""
    (arm,) = record["arms"]
    runs = arm["runs"]
    if [r["seed"] for r in runs] != record["seeds"]:
        raise ValueError("the final test is not complete: "
                         f"{len(runs)} of {len(record['seeds'])} seeds ran")
    (env,) = record["machines"].values() if len(record["machines"]) == 1 else (
        record["machines"],)
    return {"split": record["split"], "train_size": record["train_size"],
            "eval_size": record["eval_size"], "model": arm["model"],
            "params": arm["params"], "layers": arm["layers"],
            "config": arm["config"], "seeds": record["seeds"], "runs": runs,
            "passed": sum(r["met"] for r in runs), "n_seeds": len(runs),
            "target": record["target"],
            "protocol": record.get("protocol", "results/protocol.md"),
            "protocol_commit": record["protocol_commit"],
            "env": env, "commits": record["commits"], "command": record["command"]}
