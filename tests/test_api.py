"""The package's public names: each is what its docs say, however it is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_the_functions_and_classes_not_modules():
    # A name shared by a function and its module (`summary`) is easy to get
    # wrong: importing the module sets the package's attribute to the module.
    # Run fresh, so no earlier test has imported anything.
    code = (
        "import types\n"
        "from mnist_lib import summary\n"
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
    total, modules = out.stdout.splitlines()
    assert total.startswith("Total params:") and modules == "[]"
