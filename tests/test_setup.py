"""The set-up scripts the README's two commands run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import load_script, unavailable

ROOT = Path(__file__).resolve().parents[1]


def check_disk(tmp_path: Path, need_gb: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, MNIST_NEED_GB=str(need_gb))
    return subprocess.run(["bash", str(ROOT / "scripts/check_disk.sh"), str(tmp_path)],
                          env=env, capture_output=True, text=True)


def test_disk_check_passes_where_there_is_room(tmp_path):
    done = check_disk(tmp_path, 0)
    assert done.returncode == 0 and done.stderr == ""


def test_disk_check_names_the_need_the_free_space_and_the_fix(tmp_path):
    # No disk has an exabyte free: the check must refuse and say why.
    done = check_disk(tmp_path, 10**9)
    assert done.returncode == 1
    assert "needs about 1000000000 GB of free disk" in done.stderr
    assert str(tmp_path) in done.stderr and "GB free" in done.stderr
    assert "fix: free some space" in done.stderr


def test_makefile_checks_the_disk_before_creating_the_venv():
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP):")[1]
    assert recipe.index("check_disk.sh") < recipe.index("-m venv")


def _requirement_names(path: Path) -> dict[str, str]:
    """{name: pin} of the packages a requirements file lists by name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0]
            pins[name.lower()] = line[len(name):]
    return pins


def test_binder_installs_the_runtime_only_with_cpu_torch(tmp_path):
    """Binder (repo2docker) reads binder/ instead of the root when it exists. It
    installs what running the chapters needs: torch and torchvision at the root
    file's pins, from PyTorch's CPU index as an *extra* index (`--index-url`
    would hide PyPI, where the other packages are), and the library with its
    `chapters` extra; none of the book's build or test tools. Resolved as
    repo2docker runs pip, from the repository root."""
    import tomllib

    binder = ROOT / "binder" / "requirements.txt"
    lines = [l.strip() for l in binder.read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert not any(l.startswith(("--index-url", "-i ")) for l in lines)
    root = _requirement_names(ROOT / "requirements.txt")
    assert _requirement_names(binder) == {n: root[n] for n in ("torch", "torchvision")}
    assert "-e .[chapters]" in lines
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chapters = {re.split(r"[=<>!~\[ ]", r, maxsplit=1)[0].lower(): r
                for r in project["optional-dependencies"]["chapters"]}
    assert set(chapters) == {"ipykernel", "notebook", "jupytext"}
    for name in set(chapters) & set(root):  # pinned as the book's build pins them
        assert chapters[name] == name + root[name], name
    report = tmp_path / "report.json"
    # CI must reach the index: retry there. Elsewhere an offline machine skips fast.
    retries, timeout = ("3", "30") if os.environ.get("CI") else ("0", "10")
    # Without its dependencies (with them, every package would ask the CPU
    # index, which retries for minutes where it is out of reach).
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--no-deps", "--quiet", "--disable-pip-version-check", "--retries", retries,
         "--timeout", timeout, "--report", str(report), "-r", str(binder)],
        cwd=ROOT, capture_output=True, text=True)
    if done.returncode and "No matching distribution" in done.stderr:
        unavailable(f"no package index reachable here: {done.stderr[-1500:]}")
    assert done.returncode == 0, done.stderr
    got = {i["metadata"]["name"].lower(): i for i in json.loads(report.read_text())["install"]}
    assert set(got) == {"mnist_lib", "torch", "torchvision"}
    for name in ("torch", "torchvision"):  # a local label (+cpu) still meets ==X
        assert got[name]["metadata"]["version"].split("+")[0] == root[name][2:], name
    assert got["mnist_lib"]["download_info"]["url"] == ROOT.as_uri()
    assert got["mnist_lib"]["requested_extras"] == ["chapters"]
    # The build and the tests stay out: no tool of theirs is a dependency of
    # the library or of its `chapters` extra.
    tools = {"jupyter-book", "myst-nb", "pytest", "hypothesis", "playwright",
             "check-jsonschema", "sphinx-sitemap", "sphinx-notfound-page",
             "sphinxext-opengraph"}
    assert tools <= set(root)
    needs = {re.split(r"[=<>!~\[ ;]", r, maxsplit=1)[0].lower()
             for r in got["mnist_lib"]["metadata"]["requires_dist"]
             if "extra ==" not in r or 'extra == "chapters"' in r}
    assert needs and not tools & needs, sorted(tools & needs)
    # A Python the project supports (pyproject's requires-python), in
    # repo2docker's form, e.g. python-3.11.
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    floor = re.search(r'requires-python = ">=3\.(\d+)"',
                      (ROOT / "pyproject.toml").read_text())
    assert re.fullmatch(r"python-3\.\d+", runtime)
    assert int(runtime.split(".")[1]) >= int(floor.group(1))


def workflows() -> dict[str, dict]:
    import yaml

    return {p.name: yaml.safe_load(p.read_text())
            for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))}


def test_publishing_workflow_builds_as_the_readme_and_binder_do():
    """GitHub Actions runs the README's `make book`, with the Python Binder pins
    and torch from the same CPU index: its runner has no GPU either."""
    flow = workflows()["book.yml"]
    steps = flow["jobs"]["build"]["steps"]
    build = next(s for s in steps if s.get("run", "").strip() == "make book")
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    index = re.search(r"^--extra-index-url (\S+)$", binder, re.M).group(1)
    assert build["env"]["PIP_EXTRA_INDEX_URL"] == index
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert f"python-{python['with']['python-version']}" == runtime


def test_publishing_workflow_deploys_the_book_s_own_main_and_never_cancels_it():
    flow = workflows()["book.yml"]
    deploy = flow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert "github.repository == '" in deploy["if"]  # which: tests/test_publishing.py
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    assert not flow.get("concurrency", {}).get("cancel-in-progress")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert flow["permissions"] == {"contents": "read"}


# Where scripts/build_book.sh keeps the execution cache and the stamp of its inputs.
STAMP_INPUTS = ("mnist_lib/**/*.py", "requirements.txt", "results/*.json",
                "!results/book_builds.json")


@pytest.mark.parametrize("name, out", [("book.yml", "_build"),
                                       ("ci.yml", "_build/quick/_build")])
def test_workflows_keep_the_executed_chapters_with_the_stamp_of_their_inputs(name, out):
    """scripts/build_book.sh drops the execution cache when the stamp of its
    inputs is missing or differs: a cache restored without it would be thrown
    away. So the cache holds both, keyed on the stamp's inputs, then on the
    chapters, and restores the newest cache of the same inputs."""
    script = (ROOT / "scripts" / "build_book.sh").read_text()
    assert 'local stamp="$OUT/_build/.$1.sha256"' in script
    assert "if changed inputs mnist_lib/*.py mnist_lib/*/*.py requirements.txt" \
        in script
    job = {"book.yml": "build", "ci.yml": "test"}[name]
    steps = workflows()[name]["jobs"][job]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"].split() == [f"{out}/.jupyter_cache",
                                             f"{out}/.inputs.sha256"]
    inputs = "hashFiles(" + ", ".join(f"'{p}'" for p in STAMP_INPUTS) + ")"
    key, restore = cache["with"]["key"], cache["with"]["restore-keys"].strip()
    assert key.startswith(restore) and inputs in restore
    assert key.endswith("${{ hashFiles('book/*.md') }}")
    python = next(s for s in steps if "actions/setup-python" in s.get("uses", ""))
    assert python["with"]["cache"] == "pip"
    assert python["with"]["cache-dependency-path"] == "requirements.txt"


def test_ci_workflow_runs_the_ci_script_on_pull_requests_and_pushes():
    flow = workflows()["ci.yml"]
    on = flow[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on and "push" in on
    (job,) = flow["jobs"].values()
    assert any(s.get("run", "").strip() == "bash .ci/run" for s in job["steps"])


# The first major version of each action that runs on Node 24 (Node 20 is
# deprecated on GitHub's runners).
NODE24 = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5,
          "actions/upload-pages-artifact": 4, "actions/deploy-pages": 5}


def test_workflows_use_actions_on_a_supported_runtime():
    used = [s["uses"] for flow in workflows().values() for job in flow["jobs"].values()
            for s in job.get("steps", []) if "uses" in s]
    assert used
    for use in used:
        action, _, version = use.partition("@")
        assert action in NODE24, f"{use}: which major version runs on Node 24?"
        assert int(version.removeprefix("v").split(".")[0]) >= NODE24[action], use


@pytest.mark.parametrize("schema, files", [
    ("vendor.github-workflows", sorted((ROOT / ".github" / "workflows").glob("*.yml"))),
    ("vendor.citation-file-format", [ROOT / "CITATION.cff"]),
], ids=["workflows", "citation"])
def test_files_validate_against_their_schema(schema, files):
    """check-jsonschema's own copy of each schema: no network."""
    tool = shutil.which("check-jsonschema",
                        path=f"{Path(sys.executable).parent}{os.pathsep}"
                             f"{os.environ.get('PATH', '')}")
    if tool is None:
        unavailable("check-jsonschema is missing: `pip install -r requirements.txt` "
                    "installs it")
    assert files
    done = subprocess.run([tool, "--builtin-schema", schema, *map(str, files)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def record_build(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """scripts/record_build.py run on `command`, its entry and list in tmp_path."""
    return subprocess.run([sys.executable, str(ROOT / "scripts/record_build.py"),
                           "--entry", str(tmp_path / "entry.json"),
                           "--file", str(tmp_path / "builds.json"), *command],
                          capture_output=True, text=True)


def test_a_green_full_build_is_recorded_outside_the_tracked_files(tmp_path):
    done = record_build(tmp_path, "--", sys.executable, "-c", "sum(range(10**6))")
    assert done.returncode == 0, done.stderr
    build = json.loads((tmp_path / "entry.json").read_text())
    from mnist_lib.hardware import cpu_name, source_commit

    assert build["cpu"] == cpu_name()
    assert build["precision"] in ("fp32", "bf16 autocast")
    assert build["commit"] == source_commit() and build["seconds"] >= 0
    # The tracked list changes only when asked to ...
    assert not (tmp_path / "builds.json").exists()
    assert "--add" in done.stdout
    rb = load_script("record_build")
    assert subprocess.run(["git", "check-ignore", "-q", str(rb.ENTRY)],
                          cwd=ROOT).returncode == 0, "the default entry is ignored"
    assert rb.BUILDS == ROOT / "results" / "book_builds.json"
    # ... and then takes the entry in: the same build twice is one entry.
    for _ in range(2):
        added = record_build(tmp_path, "--add")
        assert added.returncode == 0, added.stderr
        assert json.loads((tmp_path / "builds.json").read_text()) == [build]


def test_adding_without_a_recorded_build_says_how_to_get_one(tmp_path):
    done = record_build(tmp_path, "--add")
    assert done.returncode == 2 and "no build recorded in" in done.stderr
    assert "make book" in done.stderr and not (tmp_path / "builds.json").exists()


def test_a_build_replaces_the_one_on_the_same_cpu_precision_and_load():
    # Whether a build counts as busy depends on what else ran meanwhile, which
    # a test cannot fix: the merge is checked on entries made here.
    rb = load_script("record_build")
    old = {"cpu": "B", "precision": "fp32", "busy": False, "seconds": 9}
    other = [{"cpu": "A", "precision": "fp32", "busy": False, "seconds": 1},
             {"cpu": "B", "precision": "fp32", "busy": True, "seconds": 2},
             {"cpu": "B", "precision": "bf16 autocast", "busy": False, "seconds": 3}]
    new = dict(old, seconds=5)
    merged = rb.merge([old, *other], new)
    assert new in merged and old not in merged and len(merged) == 4
    assert all(b in merged for b in other)
    assert [b["cpu"] for b in merged] == ["A", "B", "B", "B"]


def test_other_work_is_the_cpu_time_the_build_did_not_spend(tmp_path):
    """How busy the machine was, from the kernel's counters: every process's
    CPU seconds over the build, less the build's own, per second of it. (No
    test measures this machine's load: that would pass or fail by it.)"""
    rb = load_script("record_build")
    stat = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq, in ticks: 3 s of work in all.
    stat.write_text(f"cpu  {tick} 0 {tick} 500 0 {tick // 2} {tick // 2} 0 0 0\n")
    assert rb.busy_seconds(stat) == pytest.approx(3.0)
    assert rb.busy_seconds(tmp_path / "none") is None
    # 10 s of CPU work during a 4 s build that did 2 s of it: 2 cores of other work.
    assert rb.other_cores(100.0, 110.0, own=2.0, seconds=4.0) == pytest.approx(2.0)
    assert rb.other_cores(100.0, 101.0, own=2.0, seconds=4.0) == 0.0  # rounding
    assert rb.other_cores(None, 110.0, own=2.0, seconds=4.0) is None
    assert rb.entry(4.0, 2.0)["busy"] and not rb.entry(4.0, 0.2)["busy"]


def test_a_failed_build_is_not_recorded_and_keeps_its_status(tmp_path):
    done = record_build(tmp_path, "--", sys.executable, "-c", "raise SystemExit(3)")
    assert done.returncode == 3
    assert not (tmp_path / "entry.json").exists()


def test_the_full_build_records_only_a_build_that_executes_every_chapter(tmp_path):
    """scripts/build_book.sh in a copy of the repository's layout, with a
    jupyter-book that only leaves an execution cache behind, as the real one
    does: the first build executes every chapter and is recorded; a rebuild
    from the cache is not; neither touches the tracked list of builds."""
    (tmp_path / "scripts").mkdir()
    for name in ("build_book.sh", "record_build.py"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    # The chapters execute first (scripts/execute_chapters.py), then Sphinx.
    (tmp_path / "scripts" / "execute_chapters.py").write_text(
        "import sys\nopen('built.txt', 'a').write('execute ' + sys.argv[1] + '\\n')\n")
    (tmp_path / "results").mkdir()
    builds = tmp_path / "results" / "book_builds.json"
    builds.write_text("[]\n")
    (tmp_path / "results" / "seeds.json").write_text("{}\n")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_ / "jupyter-book").write_text(
        "#!/bin/sh\n"
        'echo "$MNIST_BOOK_BUILD $MNIST_BOOK_QUICK" >> built.txt\n'
        '[ -f executes ] && echo "Executing notebook using local CWD"\n'
        "mkdir -p _build/.jupyter_cache _build/html\n")
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def build() -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", "scripts/build_book.sh", "full"], cwd=tmp_path,
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    first = build()
    assert "executing every chapter" in first.stdout
    entry = json.loads((tmp_path / "_build" / "book_build.json").read_text())
    assert entry["seconds"] >= 0
    (tmp_path / "_build" / "book_build.json").unlink()
    again = build()
    assert "execution cache: this build is not recorded" in again.stdout
    assert not (tmp_path / "_build" / "book_build.json").exists()
    assert builds.read_text() == "[]\n"
    # Both were book builds in full mode (the chapters' claims are checked),
    # the chapters executed before Sphinx read them.
    assert (tmp_path / "built.txt").read_text() == "execute full\n1 0\n" * 2
    # Had Sphinx executed a chapter itself, the two would read chapters apart.
    (tmp_path / "executes").touch()
    done = subprocess.run(["bash", "scripts/build_book.sh", "full"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "Sphinx executed a chapter" in done.stderr


def test_chapters_execute_longest_first_by_the_last_measurement(tmp_path, monkeypatch):
    """scripts/execute_chapters.py executes every page of _toc.yml, and starts
    the chapters that took longest last time first: as measured here, else as
    the newest recorded full build measured them, else in the book's order."""
    ec = load_script("execute_chapters")
    pages = ec.chapters()
    assert pages[0] == ROOT / "book" / "intro.md" and all(p.exists() for p in pages)
    assert {p.stem for p in pages} == {p.stem for p in (ROOT / "book").glob("*.md")}
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(ec, "ROOT", tmp_path)
    (results / "book_builds.json").write_text(json.dumps([
        {"date": "2026-01-02", "chapters": {"step2": 130.0, "step1": 40.0}},
        {"date": "2026-01-01", "chapters": {"step1": 99.0}},
        {"date": "2026-01-03"}]))
    assert ec.previous_seconds(tmp_path) == {"step2": 130.0, "step1": 40.0}
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / ".chapter_seconds.json").write_text('{"step3": 60.0}')
    assert ec.previous_seconds(tmp_path) == {"step3": 60.0}
    done = subprocess.run([sys.executable, str(ROOT / "scripts/execute_chapters.py"),
                           "full", "--jobs", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "--jobs must be at least 1, got 0" in done.stderr


def test_a_chapter_whose_kernel_fails_to_start_is_started_again(monkeypatch):
    """Two kernels started at once can pick the same port, and one dies before
    it answers (a CI run failed so): scripts/execute_chapters.py starts that
    chapter's kernel again, a few times at most. Any other failure, and a
    kernel that keeps failing, still stops the build."""
    import nbformat
    from jupyter_cache.executors import utils

    ec = load_script("execute_chapters")
    monkeypatch.setattr(ec.time, "sleep", lambda s: None)
    text = nbformat.writes(nbformat.v4.new_notebook())
    calls = []

    class Done:
        err, time = None, 0.5

    def flaky(nb, **kw):  # dies on its first start, then runs
        calls.append(kw["cwd"])
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return Done()

    monkeypatch.setattr(utils, "single_nb_execution", flaky)
    assert ec.execute(text, ROOT / "book", 60, False)[1:] == (0.5, None)
    assert len(calls) == 2

    def always(message):  # a kernel that fails the same way every time
        def fail(nb, **kw):
            calls.append(kw["cwd"])
            raise RuntimeError(message)
        return fail

    # Still dead after STARTS tries: the build stops; any other failure
    # stops it at once.
    for message, tries in (("Kernel died before replying to kernel_info",
                            ec.STARTS), ("something else", 1)):
        calls.clear()
        monkeypatch.setattr(utils, "single_nb_execution", always(message))
        with pytest.raises(RuntimeError, match=message):
            ec.execute(text, ROOT / "book", 60, False)
        assert len(calls) == tries
