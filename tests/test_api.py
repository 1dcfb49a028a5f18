"""The package as readers meet it: its public names, and the README's example."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mnist_lib.models import FINAL_MODEL


ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_the_functions_and_classes_not_modules():
    # A name shared by a function and its module (`summary`) is easy to get
    # wrong: importing the module sets the package's attribute to the module.
    # Run fresh, so no earlier test has imported anything.
    code = (
        "import sys, types\n"
        "from mnist_lib import summary\n"
        "print('torchsummary' in sys.modules)\n"
        "import mnist_lib, mnist_lib.summary\n"
        "from mnist_lib import *\n"
        "from mnist_lib.models import Model_1\n"
        "print(next(r for r in summary(Model_1()).splitlines() if 'Total' in r))\n"
        "print([n for n in mnist_lib.__all__ if isinstance(globals()[n], types.ModuleType)\n"
        "       or isinstance(getattr(mnist_lib, n), types.ModuleType)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    at_import, total, modules = out.stdout.splitlines()
    assert total.startswith("Total params:") and modules == "[]"
    # torchsummary loads on first use: `import mnist_lib` needs torch alone.
    assert at_import == "False"


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    # What readers copy first. Only the training is cut short (1 epoch on
    # 2,000 images); every other line runs as the README prints it.
    import mnist_lib

    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    full_run = mnist_lib.run

    def short_run(model, data, config=None, **overrides):
        return full_run(model, data, config, epochs=1, n_train=2000, n_test=500,
                        progress=False, **overrides)

    monkeypatch.setattr(mnist_lib, "run", short_run)
    monkeypatch.chdir(tmp_path)  # the files it writes land here
    (tmp_path / "data").symlink_to(ROOT / "data")
    scope: dict = {}
    exec(block.group(1), scope)
    model = scope["model"]
    assert type(model.net).__name__ == FINAL_MODEL == "Model_8" and not model.training
    assert (tmp_path / "run.json").exists() and (tmp_path / "final.pt").exists()
    assert scope["history"].epochs and scope["history"].model == FINAL_MODEL
    assert scope["digits"].shape == (10,) and scope["digits"].dtype == torch.int64


def _imports(path: Path) -> set[str]:
    """The mnist_lib modules that the module at `path` imports, anywhere in
    it (function-local imports too), as dotted names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.startswith("mnist_lib"):
                for alias in node.names:  # `from . import seeds` is a module
                    sub = f"{base}.{alias.name}"
                    found.add(sub if _module_path(sub) else base)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mnist_lib")}
    return {m for m in found if _module_path(m)}


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _cycles(graph: dict[str, set[str]], skip: set[str] = frozenset()) -> list[list[str]]:
    """The import cycles in `graph` (module -> modules it imports), each as a
    path that ends where it starts; modules in `skip` break no cycle's path."""
    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt in skip:
                    continue
                if nxt == start:
                    return path + [nxt]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    return [c for m in graph if m not in skip and (c := cycle_from(m))]


def test_no_import_cycle_inside_mnist_lib():
    """Every module calls down into modules that never import it back: the
    graph of the package's imports has no cycle (a package's __init__, which
    only gathers its public names, aside)."""
    graph = {}
    for path in (ROOT / "mnist_lib").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        graph[name.removesuffix(".__init__")] = _imports(path) - {name}
    cycles = _cycles(graph, skip={"mnist_lib", "mnist_lib.rf"})
    assert not cycles, f"import cycle: {' -> '.join(cycles[0])}"


def test_the_import_reader_and_the_cycle_finder_see_what_they_must():
    assert "mnist_lib.config" in _imports(ROOT / "mnist_lib/train.py")
    assert "mnist_lib.rf.axis" in _imports(ROOT / "mnist_lib/rf/field.py")
    assert "mnist_lib.study" in _imports(ROOT / "mnist_lib/cli.py")  # from . import
    cycle = _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})[0]
    assert cycle == ["a", "b", "c", "a"], cycle  # from "a", along the imports
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_loads_none_of_the_heavy_packages():
    """Every `import mnist_lib`, and every `mnist-rf`, pays for torch and for
    what the package imports besides: pandas, matplotlib and torchvision
    (1.1 s of torchvision.ops alone) load in the functions that need them.
    (What the import costs in seconds: scripts/measure_machine.py.)"""
    out = subprocess.run([sys.executable, "-c", "import sys, mnist_lib.cli\n"
                          "print(*sorted({m.split('.')[0] for m in sys.modules}))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not loaded & {"pandas", "matplotlib", "torchvision", "torchsummary"}, loaded


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The package as `pip install .` builds it, from a copy of what a clone
    holds (the library, the recorded results, the project's files)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "mnist_lib", src / "mnist_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (src / "results").mkdir()
    for record in (ROOT / "results").glob("*.json"):
        shutil.copy(record, src / "results" / record.name)
    (src / "results" / "running").mkdir()  # a study's part, not a record
    (src / "results" / "running" / "screen.json").write_text("{}")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "--quiet",
                           "--disable-pip-version-check", "-w", str(tmp),
                           str(src)],
                          capture_output=True, text=True)
    if done.returncode and "No module named" in done.stderr:  # no setuptools here
        pytest.skip(done.stderr[-500:])
    assert done.returncode == 0, done.stderr
    (built,) = tmp.glob("mnist_lib-*.whl")
    return built


def test_the_package_ships_its_types_licence_addresses_and_one_version(wheel):
    """What `pip install .` gives: py.typed (PEP 561: the type hints are part of
    the API), the MIT licence, the project's addresses, and mnist_lib.__version__
    as the version, defined once. Built as pip builds it, from a copy."""
    import tomllib

    import mnist_lib
    from mnist_lib.book import REPOSITORY

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    owner, name = REPOSITORY.removeprefix("https://github.com/").split("/")
    assert project["urls"]["Source"] == REPOSITORY
    assert project["urls"]["Homepage"] == f"https://{owner}.github.io/{name}/"
    assert project["license"] == "MIT" and "version" not in project
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    info = f"mnist_lib-{mnist_lib.__version__}.dist-info"
    assert wheel.name.startswith(f"mnist_lib-{mnist_lib.__version__}-")
    assert {"mnist_lib/py.typed", f"{info}/licenses/LICENSE"} <= names
    assert {f"mnist_lib/{p.relative_to(ROOT / 'mnist_lib')}"
            for p in (ROOT / "mnist_lib").rglob("*.py")} <= names, "a module left out"
    assert f"Project-URL: Source, {REPOSITORY}" in meta
    assert "License-Expression: MIT" in meta


def test_the_package_carries_the_records_and_a_chapter_reads_them_offline(
        wheel, tmp_path):
    """A chapter run after `pip install`, outside the repository and offline,
    finds every record it reads: the package carries results/*.json (and no
    study's running part), and `book` reads them from there."""
    from tests.support import chapter_records

    with zipfile.ZipFile(wheel) as z:
        records = {n for n in z.namelist() if n.startswith("mnist_lib/book/results/")}
        z.extractall(tmp_path / "site")
    carried = {f"mnist_lib/book/results/{p.name}"
               for p in (ROOT / "results").glob("*.json")}
    assert records == carried
    names = sorted(chapter_records())
    script = (
        "import json, sys, urllib.request\n"
        "def offline(*args, **kwargs):\n"
        "    raise OSError('offline')\n"
        "urllib.request.urlopen = offline\n"
        "import mnist_lib\n"
        "from mnist_lib import book\n"
        f"assert mnist_lib.__file__.startswith({str(tmp_path / 'site')!r})\n"
        f"book.need_records(*{names!r})\n"
        f"print(json.dumps({{n: book.load_record(n) for n in {names!r}}}))\n")
    work = tmp_path / "notebooks"  # no checkout around it, no results/ beside
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout)
    for name in names:
        assert read[name] == json.loads((ROOT / "results" / f"{name}.json").read_text())


def test_readme_own_net_example_runs_as_written(tmp_path, monkeypatch, small):
    """The README's "A net of your own": fit, save_checkpoint and both ways of
    load_checkpoint, with a my_net.py in the current folder. Only the
    training is cut short."""
    import mnist_lib

    readme = (ROOT / "README.md").read_text().split("### A net of your own", 1)[1]
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "my_net.py").write_text(
        "import torch.nn as nn\n\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(8, 10), nn.LogSoftmax(1))\n")
    full_fit = mnist_lib.fit

    def short_fit(model, data, config=None, name=None):
        from dataclasses import replace
        return full_fit(model, data, replace(config, epochs=1, progress=False), name)

    monkeypatch.setattr(mnist_lib, "fit", short_fit)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    scope: dict = {"data": small}
    try:
        exec(block, scope)
    finally:
        sys.modules.pop("my_net", None)
    assert scope["history"].model == "Net" and len(scope["history"].epochs) == 1
    assert torch.load("net.pt", weights_only=True)["spec"] == "my_net:Net"
    pixels = small.test_images[:50]
    assert torch.equal(scope["model"].predict(pixels),
                       mnist_lib.load_checkpoint("net.pt").predict(pixels))


def library_functions():
    """Every function and method the library defines, dataclasses' generated
    __init__ included (mnist_lib.__main__ aside: importing it runs the CLI)."""
    import importlib
    import inspect
    import pkgutil

    import mnist_lib

    for info in pkgutil.walk_packages(mnist_lib.__path__, "mnist_lib."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, fn in vars(obj).items():
                    if inspect.isfunction(fn):
                        yield f"{module.__name__}.{name}.{attr}", fn


def test_no_library_function_takes_more_than_8_positional_parameters():
    """Past a handful, a call reads as a row of unnamed values: the rest go
    by name (keyword-only), as with `train_step(..., mean=, std=, cfg=)`."""
    import inspect

    positional = (inspect.Parameter.POSITIONAL_ONLY,
                  inspect.Parameter.POSITIONAL_OR_KEYWORD)
    found = dict(library_functions())
    assert "mnist_lib.config.TrainConfig.__init__" in found  # dataclasses count
    long = {name: n for name, fn in found.items()
            if (n := sum(p.kind in positional and p.name not in ("self", "cls")
                         for p in inspect.signature(fn).parameters.values())) > 8}
    assert long == {}


def test_the_readme_names_every_module_where_it_lives():
    """The README's module tables are the map a reader finds the code by: every
    module of the package is listed at its path (a package's folder row covers
    the modules inside it), and no row names a file that is gone."""
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `(mnist_lib/[^`]+)` \|", readme, re.M))
    folders = {r for r in rows if r.endswith("/")}
    def holds_code(path: Path) -> bool:  # a package's __init__ may only gather names
        tree = ast.parse(path.read_text())
        return any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body)

    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mnist_lib").rglob("*.py")
               if p.name != "__main__.py" and (p.name != "__init__.py" or holds_code(p))}
    covered = {m for m in modules if m in rows or any(m.startswith(f) for f in folders)}
    assert modules - covered == set(), "modules the README does not list"
    assert {r for r in rows - folders if not (ROOT / r).exists()} == set(), "gone"
    assert "mnist_lib/training/checkpoint.py" in rows  # the reader sees the folders
