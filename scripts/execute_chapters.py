"""Execute the book's chapters side by side, one kernel per core, before
Sphinx reads them: `scripts/build_book.sh` runs this, then `jupyter-book
build`, which finds every chapter in the execution cache and only renders.

Sphinx would execute the chapters one after another, each on one thread
(the build's OMP_NUM_THREADS=1), leaving the second core idle. Here each
chapter is read exactly as myst-nb reads it (same reader, same MyST
settings from _config.yml, so the same cache key), executed as myst-nb
executes it (its folder as the working directory, the timeout and
allow_errors of _config.yml's `execute:`), and put in the same cache
(`jupyter-cache`) under the same key. A chapter already in the cache is not
executed again.

Order: no chapter reads what another writes (each trains its own model or
reads the records in results/), so any order gives the same numbers; each
kernel runs on one thread whichever core it gets, so the numbers are the
same bit for bit as a build that executes them one by one. The longest
chapters start first (longest-processing-time first), as measured by the
last execution here (`.chapter_seconds.json` next to the cache) or, on a
fresh clone, by the last recorded full build (results/book_builds.json).

Usage: python scripts/execute_chapters.py full|quick [--jobs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_lib.utils.files import atomic_write_json  # noqa: E402

# How often a chapter's kernel may fail to start before the build gives up.
STARTS = 3

# Where each mode's build keeps its cache (scripts/build_book.sh's $OUT).
OUT = {"full": ROOT, "quick": ROOT / "_build" / "quick"}


def chapters() -> list[Path]:
    """The book's pages, in _toc.yml's order (the root page first)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c for part in toc.get("parts", []) for c in part["chapters"]]
    odd = [c for c in chapters if set(c) != {"file"}]
    if odd:  # Sphinx would execute what this does not see
        raise SystemExit(f"_toc.yml: {odd}: scripts/execute_chapters.py reads "
                         "chapters as `- file: NAME` entries only (no sections, "
                         "globs or URLs): teach it the new form")
    return [ROOT / f"{f}.md" for f in [toc["root"]] + [c["file"] for c in chapters]]


def settings() -> dict:
    """The Sphinx configuration jupyter-book makes of _config.yml."""
    from jupyter_book.config import get_final_config

    conf, _ = get_final_config(user_yaml=ROOT / "_config.yml", sourcedir=ROOT,
                               cli_config={"latex_individualpages": False})
    return conf


def read(path: Path, conf: dict):
    """The chapter as the notebook myst-nb reads (myst_nb.core.read)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    names = {f.name for f in dataclasses.fields(MdParserConfig)}
    md = MdParserConfig(**{k[len("myst_"):]: v for k, v in conf.items()
                           if k.startswith("myst_") and k[len("myst_"):] in names})
    return read_myst_markdown_notebook(path.read_text(), config=md,
                                       add_source_map=True, path=str(path))


def execute(text: str, cwd: Path, timeout: int | None, allow_errors: bool) -> tuple:
    """Execute one chapter's notebook (`text`, as JSON) in a worker process,
    in `cwd`: the executed notebook as JSON, the seconds it took and the
    traceback of a failing cell, if any."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    for attempt in range(1, STARTS + 1):
        nb = nbformat.reads(text, nbformat.NO_CONVERT)
        try:
            result = single_nb_execution(nb, cwd=str(cwd), timeout=timeout,
                                         allow_errors=allow_errors,
                                         meta_override=True)
        except RuntimeError as e:
            # Two kernels started at once can pick the same free port; the
            # loser dies before it answers (seen in CI). Nothing of the
            # chapter ran yet, so starting again is safe.
            if "before replying to kernel_info" not in str(e) or attempt == STARTS:
                raise
            print(f"{cwd.name}: a kernel did not start ({e}); starting again",
                  file=sys.stderr, flush=True)
            time.sleep(attempt)
            continue
        break
    error = None if result.err is None else result.exc_string
    return nbformat.writes(nb), result.time, error


def previous_seconds(out: Path) -> dict[str, float]:
    """Each chapter's last execution time: here, else the last recorded build."""
    mine = out / "_build" / ".chapter_seconds.json"
    if mine.exists():
        return json.loads(mine.read_text())
    builds = ROOT / "results" / "book_builds.json"
    timed = [b for b in json.loads(builds.read_text()) if b.get("chapters")]
    return max(timed, key=lambda b: b["date"])["chapters"] if timed else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/execute_chapters.py")
    p.add_argument("mode", choices=sorted(OUT), help="the build's mode")
    p.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0))
                   if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                   help="chapters executed at once (default: one a core, "
                   "%(default)s here)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    out = OUT[args.mode]
    conf = settings()
    cache = get_cache(str(out / "_build" / ".jupyter_cache"))
    pages, todo = chapters(), {}
    for path in pages:
        nb = read(path, conf)
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo[path] = nbformat.writes(nb)
    seconds = previous_seconds(out)
    todo = dict(sorted(todo.items(), key=lambda item: -seconds.get(item[0].stem, 0.0)))
    print(f"executing {len(todo)} of {len(pages)} chapters, "
          f"{args.jobs} at a time: {', '.join(p.stem for p in todo) or 'none'}",
          flush=True)

    failed, start = [], time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = {pool.submit(execute, text, path.parent, conf["nb_execution_timeout"],
                            conf["nb_execution_allow_errors"]): path
                for path, text in todo.items()}
        for run in as_completed(runs):
            path = runs[run]
            text, took, error = run.result()
            if error is not None:
                failed.append(path.stem)
                print(f"{path.relative_to(ROOT)} failed after {took:.0f} s:\n"
                      f"{error}", file=sys.stderr, flush=True)
                continue
            # As myst-nb caches a chapter it executed (myst_nb.core.execute.cache).
            record = cache.add_nb_to_project(
                str(path), read_data={"name": "myst_nb_md", "type": "plugin"})
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(text, nbformat.NO_CONVERT),
                              record.uri, data={"execution_seconds": took}),
                check_validity=False, overwrite=True)
            seconds[path.stem] = round(took, 1)
            print(f"{path.relative_to(ROOT)} executed in {took:.0f} s "
                  f"({time.monotonic() - start:.0f} s in)", flush=True)
    if todo:
        atomic_write_json(out / "_build" / ".chapter_seconds.json", seconds)
    if failed:
        print(f"failed: {', '.join(failed)}: the build stops here; the "
              "traceback above names the cell", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
