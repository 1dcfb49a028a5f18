"""One runner for every study: a design (a list of arms) trained with several
seeds, resumable, with each run's machine recorded.

    python -m mnist_lib study ladder --out results/ladder.json

A study trains seed by seed (every arm with the first seed, then every arm
with the next), so an interrupted study has the same seeds on every arm, give
or take one. Two processes may share one record (`--part 1/2` and `--part
2/2` take alternate seeds): each run is added to the file under a lock.

Two runs are compared only when they have the same seed and were made on the
same machine (CPU, threads, precision, torch): then their difference is the
change's alone. So all runs of one seed are one machine's work; resuming on
another machine keeps every complete seed and trains a half-done one again
from its first arm.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .config import TrainConfig, as_json
from .data import HOLDOUT, MNIST
from .hardware import environment, source_commit
from .training.history import History
from .models import count_parameters, get_model, layer_list
from .records import config_differences, model_differences
from .stats import paired_difference, pass_change_p
from .target import TARGET
from .utils.files import atomic_write_json
from .hardware import best_device

SPLITS = ("holdout", "test")


@dataclass(frozen=True)
class Arm:
    """One arm: `model` (a book name) trained with `config`. `change` says in
    one sentence how it differs from the arm named `against`, the one it is
    compared with seed by seed (None: compared with nothing)."""

    name: str
    change: str
    model: str
    config: TrainConfig = field(repr=False)
    against: str | None = None
    step: int = 0


@dataclass(frozen=True)
class Design:
    """A study: its `arms`, the `split` they are judged on: "holdout"
    (train on the first 50,000 training digits, judge on the last 10,000) or
    "test" (train on all 60,000, judge on the test set), and the `protocol`
    file, committed before its runs, that every record names."""

    name: str
    arms: tuple[Arm, ...]
    split: str
    protocol: str = "results/protocol.md"  # the protocol that commits to it

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat in {names}")
        if bad := [a.against for a in self.arms if a.against not in (None, *names)]:
            raise ValueError(f"arms compared with unknown arms: {bad}")

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


def machine_key(env: dict[str, Any]) -> str:
    """What makes two runs of one seed comparable, in one line: the device
    (the CPU or GPU), threads, precision and torch."""
    where = env.get("gpu") or env.get("cpu") or env.get("processor")
    n = env["cpu_threads"]
    return (f"{where}; {n} thread{'' if n == 1 else 's'}; {env['precision']}; "
            f"torch {env['torch']}")


def protocol_commit(path: str = "results/protocol.md") -> str | None:
    """The last commit that changed the protocol file, or None outside a git
    checkout (a record made there cannot name one)."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%H",
                              "--", path], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def split_data(data: MNIST, split: str) -> MNIST:
    """The digits a study of `split` trains and judges on: "holdout" the
    first 50,000 training digits, judged on the last 10,000; "test" all
    60,000, judged on the test set. Anything else is refused, so that a typo
    cannot judge a design on the test set."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}: "
                         "'holdout' to choose a design, 'test' once chosen")
    return data.holdout() if split == "holdout" else data


def new_record(design: Design, seeds: list[int], command: str) -> dict[str, Any]:
    """An empty record of `design` for `seeds`. `train_size` is the split's
    training digits; each arm's own `train_size` is what it trains on (fewer
    where its config sets `n_train`, as the gap study's 40,000 arm does)."""
    n_train, n_test = 60_000, 10_000  # MNIST's training and test digits
    sizes = {"holdout": (n_train - HOLDOUT, HOLDOUT),
             "test": (n_train, n_test)}[design.split]
    return {
        "study": design.name, "split": design.split,
        "train_size": sizes[0], "eval_size": sizes[1],
        "protocol": design.protocol,
        "protocol_commit": protocol_commit(design.protocol), "seeds": list(seeds),
        "target": asdict(TARGET), "command": command, "machines": {},
        "commits": [],  # the library's commit in each session that added runs
        "arms": [{"name": a.name, "change": a.change, "step": a.step,
                  "model": a.model, "against": a.against,
                  "train_size": min(a.config.n_train or sizes[0], sizes[0]),
                  "params": None,
                  "layers": None, "config": as_json(a.config) | {"seed": None},
                  "runs": []} for a in design.arms],
    }


def stale_arms(record: dict[str, Any], design: Design) -> dict[str, list[str]]:
    """The arms of `design` that `record` trained otherwise (what differs),
    or lacks; empty when the record is this design's."""
    recorded = {a["name"]: a for a in record["arms"]}
    stale = {}
    for arm in design.arms:
        rec = recorded.get(arm.name)
        if rec is None:
            stale[arm.name] = ["missing"]
            continue
        why = config_differences(arm.config, rec["config"])
        if rec["model"] != arm.model:
            why.append("model")
        elif rec["layers"] is not None:
            why += model_differences(rec, arm.model)
        if why:
            stale[arm.name] = why
    for name in recorded.keys() - {a.name for a in design.arms}:
        stale[name] = ["not an arm of the design"]
    return stale


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside `path` (POSIX; elsewhere no lock: run one
    process per record there)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def arm(record: dict[str, Any], name: str) -> dict[str, Any]:
    """The arm of a study's record named `name` (its model, config and runs);
    a KeyError naming the record's arms if it has none of that name."""
    for found in record["arms"]:
        if found["name"] == name:
            return found
    raise KeyError(f"no arm {name!r} in this record; its arms: "
                   f"{', '.join(repr(a['name']) for a in record['arms'])}")


def _run_of(record: dict[str, Any], name: str, seed: int) -> dict[str, Any] | None:
    return next((r for r in arm(record, name)["runs"] if r["seed"] == seed), None)


def _complete(record: dict[str, Any], design: Design, seed: int) -> bool:
    """Whether every arm has a run of `seed`, all made on one machine."""
    runs = [_run_of(record, arm.name, seed) for arm in design.arms]
    return None not in runs and len({r["machine"] for r in runs}) == 1


def run_entry(hist: History, seed: int, machine: str) -> dict[str, Any]:
    """One run as every study record keeps it: its `seed`, the `last3`
    held-out (or test) accuracies and whether they `met` the rule, the best
    accuracy, its seconds, the `machine`, and per epoch the accuracy on the
    digits it is judged on (`eval_acc`), the running training accuracy
    (`train_acc`, in train mode) and the loss on the judged digits (`eval_loss`)."""
    return {"seed": seed, "last3": hist.last_test_acc(TARGET.last),
            "met": hist.meets_target(TARGET), "best": hist.best_test_acc,
            "seconds": hist.total_seconds, "machine": machine,
            "eval_acc": hist.column("test_acc"), "train_acc": hist.column("train_acc"),
            "eval_loss": hist.column("test_loss")}


def train_once(arm: Arm, data: MNIST, seed: int, machine: str
               ) -> tuple[dict[str, Any], History]:
    """Train `arm` once with `seed` (seeded before the model is built, so the
    initial weights are the seed's too); its run entry and History."""
    from .train import run

    _, hist = run(arm.model, data, arm.config, seed=seed, progress=False)
    return run_entry(hist, seed, machine), hist


def _same_run(arm: Arm, split: str, seed: int, key: str,
              others: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """A run recorded in one of `others` that is this one: the same model,
    config, split and seed, on the same machine; with the arm it came from."""
    for rec in others:
        if rec["split"] != split:
            continue
        for a in rec["arms"]:
            if a["model"] == arm.model and not config_differences(arm.config,
                                                                  a["config"]):
                run = next((r for r in a["runs"] if r["seed"] == seed
                            and r["machine"] == key), None)
                if run is not None:
                    return run, f"{rec['study']}: {a['name']}"
    return None


def run_study(design: Design, data: MNIST, seeds: list[int], out: str | Path,
              part: tuple[int, int] = (1, 1), reuse: list[dict[str, Any]] = (),
              command: str = "", report: Callable[[str], None] = print,
              **overrides: Any) -> dict[str, Any]:
    """Train every arm of `design` with each of `seeds` that this `part` (k
    of n: every n-th seed from the k-th) owns, adding each run to the record
    in `out` as it ends (created if absent; else it must be this design's).
    A run already in `reuse` (other records: same model, config, split, seed
    and machine) is copied, not trained again. `overrides` change every
    arm's config alike (a quick check). Returns the record."""
    out = Path(out)
    arms = [replace(a, config=replace(a.config, **overrides)) for a in design.arms]
    design = replace(design, arms=tuple(arms))
    env = environment(best_device(arms[0].config.device), arms[0].config.precision)
    key = machine_key(env)
    with locked(out):
        record = (json.loads(out.read_text()) if out.exists()
                  else new_record(design, seeds, command))
        if stale := stale_arms(record, design):
            raise ValueError(f"{out} holds arms trained otherwise than this design "
                             f"({stale}). Fix: write to a new file")
        if record["seeds"] != list(seeds):
            raise ValueError(f"{out} holds seeds {record['seeds']}, not {seeds}. "
                             "Fix: use the same seeds, or a new file")
        record["machines"][key] = env
        if (commit := source_commit()) not in record["commits"]:
            record["commits"].append(commit)
        atomic_write_json(out, record)
    k, n = part
    data = split_data(data, design.split)
    for seed in seeds[k - 1::n]:
        if _complete(record, design, seed):  # on this machine or another
            continue
        for spec in design.arms:
            done = _run_of(record, spec.name, seed)
            if done is not None and done["machine"] == key:
                continue
            found = _same_run(spec, design.split, seed, key, list(reuse))
            if found:
                run = dict(found[0], same_run_as=found[1])
            else:
                run, hist = train_once(spec, data, seed, key)
            with locked(out):  # another part may have written since
                record = json.loads(out.read_text())
                rec = arm(record, spec.name)
                # A seed is one machine's work: its runs made elsewhere go.
                for other in record["arms"]:
                    other["runs"] = [r for r in other["runs"] if r["seed"] != seed
                                     or r["machine"] == key]
                # One run a seed: this one replaces any it finds (two processes
                # given the same part, say).
                rec["runs"] = sorted([r for r in rec["runs"] if r["seed"] != seed]
                                     + [run], key=lambda r: r["seed"])
                if not found:
                    rec.update(params=hist.params, layers=hist.layers)
                elif rec["params"] is None:  # every run so far copied: the
                    net = get_model(spec.model)  # model's as a run records them
                    rec.update(params=count_parameters(net), layers=layer_list(net))
                atomic_write_json(out, record)
            report(f"seed {seed:>4}  {spec.name:<22} last 3: "
                   + " ".join(f"{a:.2f}" for a in run["last3"])
                   + ("  met" if run["met"] else "  not met")
                   + ("  (same run as " + found[1] + ")" if found else ""))
    return record


# ---------------------------------------------------------------- reading
def headline(test: dict[str, Any]) -> dict[str, Any]:
    """A final test's headline (`results/final_test*.json`): `passed` of
    `n` seeds, the pass rate's two-sided 95% Clopper-Pearson interval (`lo`,
    `hi`) and one-sided lower bound (`lower`), and the mean, SD, lowest and
    highest of the seeds' last-3 means. One place for what the intro, the
    cheat sheet, the README and the tests state."""
    from .stats import pass_rate_interval, pass_rate_lower_bound

    means = list(last3_means(test["runs"]).values())
    passed, n = test["passed"], test["n_seeds"]
    lo, hi = pass_rate_interval(passed, n)
    return {"passed": passed, "n": n, "lo": lo, "hi": hi,
            "lower": pass_rate_lower_bound(passed, n),
            "mean": statistics.fmean(means), "sd": statistics.stdev(means),
            "min": min(means), "max": max(means)}


def without_seed(record: dict[str, Any], seed: int) -> dict[str, Any]:
    """The record as if `seed` had never run: how much does a verdict or a
    choice hang on one seed? (The record itself is left as it is.)"""
    return only_seeds(record, [s for s in record["seeds"] if s != seed])


def only_seeds(record: dict[str, Any], seeds: Iterable[int]) -> dict[str, Any]:
    """The record as if only `seeds` had run: a block of seeds judged on its
    own (e.g. the first five, or each ten of thirty). Every seed asked for
    must be in the record."""
    keep = set(seeds)
    if missing := keep - set(record["seeds"]):
        raise ValueError(f"seeds {sorted(missing)} are not in the record "
                         f"(it has {record['seeds']})")
    return {**record, "seeds": [s for s in record["seeds"] if s in keep],
            "arms": [{**a, "runs": [r for r in a["runs"] if r["seed"] in keep]}
                     for a in record["arms"]]}


def median_seconds(record: dict[str, Any], name: str) -> float:
    """Arm `name`'s median seconds a run: what a recipe costs, on the
    record's machines (run times vary with load; compare arms of one record)."""
    return statistics.median(r["seconds"] for r in arm(record, name)["runs"])


def last3_means(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Each run's mean accuracy over its last 3 epochs, by seed."""
    return {r["seed"]: statistics.fmean(r["last3"]) for r in runs}


def paired_runs(record: dict[str, Any], name: str, against: str
                ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """The runs of arm `name` and of arm `against`, by seed, over the seeds
    both ran on the same machine: the pairs every comparison takes."""
    arms = {a["name"]: a for a in record["arms"]}
    mine = {r["seed"]: r for r in arms[name]["runs"]}
    theirs = {r["seed"]: r for r in arms[against]["runs"]}
    both = [s for s in mine if s in theirs
            and mine[s]["machine"] == theirs[s]["machine"]]
    return {s: mine[s] for s in both}, {s: theirs[s] for s in both}


def compare(record: dict[str, Any], name: str, against: str,
            confidence: float = 0.95) -> dict[str, Any]:
    """Arm `name` minus arm `against`, paired by seed over the seeds both ran
    on the same machine: the mean difference of their last-3 means
    (`delta`), the half-width of its `confidence` interval (`delta_ci`),
    its verdict ("helps", "hurts", "not resolved"), the passes of
    each on those seeds and McNemar's p for the change in passes."""
    mine, theirs = paired_runs(record, name, against)
    both = list(mine)
    delta, se, ci, n = paired_difference(last3_means(mine.values()),
                                         last3_means(theirs.values()), confidence)
    return {"delta": delta, "delta_se": se, "delta_ci": ci, "n_seeds": n,
            "verdict": verdict(delta, ci),
            "met": sum(mine[s]["met"] for s in both),
            "met_before": sum(theirs[s]["met"] for s in both),
            "met_p": pass_change_p({s: mine[s]["met"] for s in both},
                                   {s: theirs[s]["met"] for s in both})}


def interaction(rung_record: dict[str, Any], rung: str, rung_before: str,
                ablation_record: dict[str, Any], full: str, without: str,
                confidence: float = 0.95) -> dict[str, Any]:
    """Whether adding an ingredient did the same on its rung (rung minus the
    rung before) as in the finished recipe (full minus the arm without it):
    the difference of the two effects, seed by seed over the seeds both
    records have, with its interval, as `compare` reports one."""
    def effect(record: dict[str, Any], name: str, against: str) -> dict[int, float]:
        mine, theirs = (last3_means(runs.values())
                        for runs in paired_runs(record, name, against))
        return {s: mine[s] - theirs[s] for s in mine}

    delta, se, ci, n = paired_difference(effect(rung_record, rung, rung_before),
                                         effect(ablation_record, full, without),
                                         confidence)
    return {"delta": delta, "delta_se": se, "delta_ci": ci, "n_seeds": n,
            "verdict": verdict(delta, ci)}


def points(x: float) -> str:
    """A difference in points, signed, to 3 decimals; one that rounds to
    zero gets one significant digit, so that its sign still shows."""
    if x == 0:
        return "0.000"
    return f"{x:+.3f}" if abs(x) >= 0.0005 else f"{x:+.1g}"


def interval(vs: dict[str, Any]) -> str:
    """A comparison (`compare`) as "+0.120 points (95% interval +0.080 to
    +0.160)"."""
    d, ci = vs["delta"], vs["delta_ci"]
    return f"{points(d)} points (95% interval {points(d - ci)} to {points(d + ci)})"


def verdict(delta: float, ci: float) -> str:
    """The protocol's reading of a difference and its interval half-width."""
    if ci != ci:  # NaN: fewer than two pairs
        return "not resolved"
    if delta - ci > 0:
        return "helps"
    return "hurts" if delta + ci < 0 else "not resolved"


def summarise(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm: seeds, mean and std of the last-3 means, runs that
    met the rule, and the comparison with its `against` arm (if any)."""
    rows = []
    for arm in record["arms"]:
        means = list(last3_means(arm["runs"]).values())
        row = {"name": arm["name"], "change": arm["change"], "model": arm["model"],
               "params": arm["params"], "n_seeds": len(means),
               "mean": statistics.fmean(means) if means else float("nan"),
               "std": statistics.stdev(means) if len(means) > 1 else float("nan"),
               "met": sum(r["met"] for r in arm["runs"]), "against": arm["against"]}
        if arm["against"]:
            row |= {"vs": compare(record, arm["name"], arm["against"])}
        rows.append(row)
    return rows


def median_half_width(record: dict[str, Any],
                      names: Sequence[str] | None = None) -> float:
    """The median half-width, in points, of a record's 95% intervals (each
    arm against the arm it is compared with; only the arms in `names` where
    given): how small a difference its seeds typically resolve."""
    halves = [row["vs"]["delta_ci"] for row in summarise(record)
              if row.get("vs") and (names is None or row["name"] in names)]
    if not halves:
        raise ValueError("no arm of this record (among those named) is compared "
                         "with another: there is no interval to take")
    return statistics.median(halves)


def mean_curve(arm: dict[str, Any], key: str = "eval_acc") -> list[float]:
    """An arm's accuracy (or `key`'s values) per epoch, averaged over its runs."""
    runs = [r[key] for r in arm["runs"]]
    return [statistics.fmean(epoch) for epoch in zip(*runs)]


def to_frame(record: dict[str, Any]):
    """The summary as a pandas DataFrame, one row an arm, as text that reads
    as printed: mean and SD of the last-3 means (%), runs that met the rule,
    and the difference to the arm it is compared with (this arm minus that
    one, paired by seed), with its interval."""
    import pandas as pd  # only a chapter's table needs it

    rows = summarise(record)
    def vs(r: dict[str, Any]) -> str:
        v = r.get("vs")
        if not v or v["n_seeds"] < 2:
            return "—"
        return (f"{points(v['delta'])} ({points(v['delta'] - v['delta_ci'])} to "
                f"{points(v['delta'] + v['delta_ci'])})")
    return pd.DataFrame({
        "arm": [r["name"] for r in rows],
        "mean (%)": [f"{r['mean']:.2f}" for r in rows],
        "SD": [f"{r['std']:.2f}" for r in rows],
        "met": [f"{r['met']}/{r['n_seeds']}" for r in rows],
        "against": [r["against"] if r.get("vs") else "—" for r in rows],
        "Δ = arm − against (95% interval)": [vs(r) for r in rows],
        "verdict": [r["vs"]["verdict"] if r.get("vs") else "—" for r in rows],
    }).set_index("arm").rename_axis(index=None, columns="arm")  # one header row


def table(record: dict[str, Any]) -> str:
    """The summary as text, one line an arm."""
    lines = [f"{'arm':<22} {'mean':>7} {'std':>6} {'met':>6} {'delta':>7} "
             f"{'95% interval':>17}  verdict"]
    for r in summarise(record):
        vs = r.get("vs")
        tail = ("" if not vs or vs["n_seeds"] < 2 else
                f"{points(vs['delta']):>7} {points(vs['delta'] - vs['delta_ci'])} to "
                f"{points(vs['delta'] + vs['delta_ci'])}  {vs['verdict']}")
        lines.append(f"{r['name']:<22} {r['mean']:7.3f} {r['std']:6.3f} "
                     f"{r['met']:>3}/{r['n_seeds']:<2} {tail}")
    return "\n".join(lines)


def check_design(make_net: Callable[[], Any], data: MNIST, config: TrainConfig,
                 seeds: list[int], split: str = "holdout") -> list[dict[str, Any]]:
    """Train a net of your own (`make_net()` builds a fresh one) once per
    seed with `config`, on held-out digits by default, and return a row per
    seed as a study record keeps a run (`run_entry`: its last 3 accuracies,
    whether it met the rule, ...) and their `mean`. The same judgement the
    book's studies make, for any `nn.Module`."""
    from .train import fit
    from .utils.seeding import set_seed

    data = split_data(data, split)
    machine = machine_key(environment(best_device(config.device), config.precision))
    rows = []
    for seed in seeds:
        set_seed(seed)  # before building: the initial weights are the seed's too
        hist = fit(make_net(), data, replace(config, seed=seed))
        row = run_entry(hist, seed, machine)
        rows.append(row | {"mean": statistics.fmean(row["last3"])})
    return rows
