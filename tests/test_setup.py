"""The set-up scripts the README's two commands run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
