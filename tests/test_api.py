"""The package as readers meet it: its public names, and the README's example."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import torch


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
    assert type(model.net).__name__ == "Model_4" and not model.training
    assert (tmp_path / "run.json").exists() and (tmp_path / "model4.pt").exists()
    assert scope["history"].epochs and scope["history"].model == "Model_4"
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
    assert "mnist_lib.seeds" in _imports(ROOT / "mnist_lib/cli.py")  # from . import
    cycle = _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})[0]
    assert cycle == ["a", "b", "c", "a"], cycle  # from "a", along the imports
    assert _cycles({"a": {"b"}, "b": set()}) == []
