"""The package as readers meet it: its public names, and the README's example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


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
    from mnist_lib import recipes

    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    full_run = recipes.run

    def short_run(model, data, config=None, **overrides):
        return full_run(model, data, config, epochs=1, n_train=2000, n_test=500,
                        progress=False, **overrides)

    monkeypatch.setattr(recipes, "run", short_run)
    monkeypatch.chdir(tmp_path)  # the files it writes land here
    (tmp_path / "data").symlink_to(ROOT / "data")
    scope: dict = {}
    exec(block.group(1), scope)
    assert type(scope["model"]).__name__ == "Model_4" and not scope["model"].training
    assert (tmp_path / "run.json").exists() and (tmp_path / "model4.pt").exists()
    assert scope["history"].epochs and scope["history"].model == "Model_4"
