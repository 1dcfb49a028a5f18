"""A model named by text, as the command line and the checkpoints name one:
`MODULE:NAME`, an importable module (`mnist_lib.models:Model_4`), or
`FILE.py:NAME`, a file of your own (`my_net.py:Net`). `build` builds the
model by calling NAME(); `class_spec` gives the text that finds a model's
class again. `mnist-rf`, `mnist-train` and `load_checkpoint` all use them, so
they accept the same names and say the same when one fails.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import textwrap
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import torch.nn as nn


class SpecError(ValueError):
    """A model that its spec cannot build; the message says why and the fix."""


def _import_file(path: Path) -> ModuleType:
    """The module in a .py file, imported as a script would be: its folder
    first on sys.path, so that it can import the files beside it."""
    if not path.is_file():
        raise SpecError(f"no file {str(path)!r}")
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs, as runpy does it for a script: a
    # @dataclass looks its class's module up there. Taken out after, so that
    # it hides no module of that name (and `class_spec` finds no import).
    before = sys.modules.get(path.stem)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise SpecError(f"running {str(path)!r} failed: {_failure(err)}") from err
    finally:
        if before is None:
            sys.modules.pop(path.stem, None)
        else:
            sys.modules[path.stem] = before
    return module


def _failure(err: BaseException) -> str:
    """What the student's code raised, in one line: the error and the line of
    their file where it happened (a syntax error names its own)."""
    # The traceback runs from here through the import machinery into their
    # module: its first frame past those is their line.
    theirs = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<") and f.filename != __file__
              and Path(f.filename).parent.name != "importlib"]
    where = f" ({theirs[0].filename}, line {theirs[0].lineno})" if theirs else ""
    return f"{type(err).__name__}: {err}{where}"


def _import_module(name: str, folder: str | os.PathLike | None = None
                   ) -> ModuleType:
    """`import name`, looking in the current folder too, as `python -m` and
    the REPL do: a console script (`mnist-rf`) has no current folder on
    sys.path, and would miss the student's `my_net.py` beside them. Then in
    `folder`, where a checkpoint's module was when it was saved."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        top, cwd = name.partition(".")[0], os.getcwd()
        if err.name != top:
            raise
        places = [] if {"", cwd} & set(sys.path) else [cwd]
        places += [] if folder is None else [str(folder)]
        for place in places:
            if importlib.machinery.PathFinder.find_spec(top, [place]) is not None:
                sys.path.insert(0, place)
                return importlib.import_module(name)
        if folder is not None:
            raise ModuleNotFoundError(f"{err}, here or in {str(folder)!r}, where "
                                      "it was when the checkpoint was saved",
                                      name=err.name) from err
        raise


def _models_hint(module: Any, where: str, attr: str) -> str:
    """What `module` (named `where`) offers instead of `attr`, a student's typo:
    the closest public name, then the models (nn.Module classes) it defines."""
    public = {name: obj for name, obj in vars(module).items()
              if not name.startswith("_")}
    # Its own classes and its submodules' (torch.nn's Conv2d lives in
    # torch.nn.modules.conv), not those it imports (a file's `nn.Conv2d`).
    models = sorted(name for name, obj in public.items()
                    if isinstance(obj, type) and issubclass(obj, nn.Module)
                    and (obj.__module__ + ".").startswith(module.__name__ + "."))
    close = difflib.get_close_matches(attr, public, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    if not models:
        hint += (f"{where} defines no nn.Module class: name the class or the "
                 "function that builds your model.")
    else:
        more = f" and {len(models) - 12} more" if len(models) > 12 else ""
        hint += f"The models {where} defines: {', '.join(models[:12])}{more}."
    # Never break inside a name or a path: it must read as one, to be copied.
    return textwrap.fill(hint, 77, break_long_words=False, break_on_hyphens=False)


def resolve(spec: str, base: str | os.PathLike | None = None) -> str:
    """`spec` with a FILE.py path taken as relative to the folder `base` (a
    checkpoint's folder), not to the current one; MODULE:NAME as it is."""
    file, sep, attr = spec.rpartition(":")
    if base is None or not file.endswith(".py"):
        return spec
    return f"{os.path.join(base, file)}{sep}{attr}"


def build(spec: str, base: str | os.PathLike | None = None,
          folder: str | os.PathLike | None = None) -> nn.Module:
    """The model `spec` names, PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE,
    built by calling CALLABLE(); a `SpecError` with the fix if it cannot be.
    A relative FILE.py is looked for in `base` (default: the current folder);
    a MODULE that no import finds from here, in `folder` (`module_folder`)."""
    if ":" not in spec:
        raise SpecError(f"{spec!r} is not PACKAGE.MODULE:CALLABLE or "
                        "FILE.py:CALLABLE (e.g. mnist_lib.models:Model_4, "
                        "my_net.py:Net)")
    mod_name, attr = resolve(spec, base).rsplit(":", 1)
    try:
        module = (_import_file(Path(mod_name)) if mod_name.endswith(".py")
                  else _import_module(mod_name, folder))
    except SpecError:
        raise
    except (ImportError, AttributeError) as err:  # also raised by a module's code
        raise SpecError(f"cannot load {spec!r}: {err}") from err
    except Exception as err:  # the module's own code, as _import_file says it
        raise SpecError(f"importing {mod_name!r} failed: {_failure(err)}") from err
    try:
        obj = getattr(module, attr)
    except AttributeError as err:
        raise SpecError(f"cannot load {spec!r}: {err}\n"
                        + _models_hint(module, mod_name, attr)) from err
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SpecError(f"{spec!r} is a {type(obj).__name__}, not a model "
                        "or a class or function that builds one")
    try:
        model = obj()
    except TypeError as err:
        # The usual cause: a constructor that needs arguments (nn.LSTM, say).
        raise SpecError(
            f"{attr}() failed: {err}\n"
            f"mnist_lib builds the model by calling {attr} with no arguments. Name\n"
            "a function that needs none (e.g. `def make(): return MyNet(10)` in\n"
            "your module), or pass the model itself from Python.") from err
    if not isinstance(model, nn.Module):
        raise SpecError(f"{attr}() returned a {type(model).__name__}, "
                        "not a torch.nn.Module")
    return model


def class_spec(model: nn.Module) -> str | None:
    """`MODULE:NAME` of the model's class, from which `build` builds it
    again, e.g. "mnist_lib.models:Model_4"; None where no import finds the
    class: one defined in a notebook or a script (`__main__`), inside a
    function, or in a file imported by its path (give that one's
    "FILE.py:NAME" yourself)."""
    cls = type(model)
    module = sys.modules.get(cls.__module__)
    if (cls.__module__ == "__main__" or module is None
            or getattr(module, cls.__qualname__, None) is not cls):
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def module_folder(spec: str) -> Path | None:
    """The folder that the module of an imported "MODULE:NAME" was imported
    from: the sys.path entry that holds its top-level package or module
    (`my_net:Net` -> the folder of my_net.py). None for a FILE.py spec, a
    module that is not imported or has no file, and an installed one
    (site-packages, the standard library), which imports from anywhere."""
    name = spec.rpartition(":")[0]
    if name.endswith(".py"):
        return None
    top = sys.modules.get(name.partition(".")[0])
    file = getattr(top, "__file__", None)
    if not file:
        return None
    where = Path(file).resolve().parent
    where = where.parent if hasattr(top, "__path__") else where  # a package: above it
    installed = {Path(sysconfig.get_path(kind)).resolve()
                 for kind in ("purelib", "platlib", "stdlib", "platstdlib")}
    return None if where in installed else where
