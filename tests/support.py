"""What several test files share: loading a script as a module, the rule
for a service a machine may lack, and the records the chapters read."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/`name`.py as a module (its main() is not run). The scripts are
    programs, not a package: a test that calls their functions loads the file."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unavailable(why: str) -> NoReturn:
    """Skip a test that this machine lacks a service for (Chromium, PyPI), but
    fail it under CI, which has them: a green CI run has run every test."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def chapter_records() -> set[str]:
    """The recorded results (`results/<name>.json`) the chapters read or check
    for: every name given to book.load_record, book.load_study or
    book.need_records in book/*.md."""
    name = r"""["'](\w+)["']"""
    found = set()
    for md in (SCRIPTS.parent / "book").glob("*.md"):
        text = md.read_text()
        found |= set(re.findall(r"book\.load_(?:record|study)\(" + name, text))
        for call in re.findall(r"book\.need_records\(([^)]*)\)", text):
            found |= set(re.findall(name, call))
    return found
