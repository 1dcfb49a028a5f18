"""Run the full book build and, if it passes, record where: results/book_builds.json.

`scripts/build_book.sh full` runs the build through this. Each entry names
the CPU and precision, the build's time, how busy the machine was with other
work while it ran (`other_cores`: the CPU time of everything but the build,
from /proc/stat, in cores), the commit and the date. A new build replaces an
older one on the same CPU, precision and idle-or-busy. The Reproducibility
chapter and the README show where the full build has passed from this file,
so that nobody types it.

Usage: python scripts/record_build.py [--file F] -- COMMAND ...
(exits with COMMAND's status; records only when it is 0)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_lib.hardware import environment  # noqa: E402
from mnist_lib.utils import atomic_write_json  # noqa: E402


def commit() -> str:
    """The checkout's commit, with "+changes" when the tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no")
                   else "")


def busy_seconds() -> float | None:
    """CPU seconds all processes have spent working since boot (/proc/stat),
    or None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def entry(seconds: float, other_cores: float | None) -> dict:
    env = environment(torch.device("cpu"), "auto")
    return {
        "cpu": env["cpu"], "cpu_threads": env["cpu_threads"],
        "precision": env["precision"], "torch": env["torch"],
        "other_cores": None if other_cores is None else round(other_cores, 2),
        "busy": other_cores is not None and other_cores >= 0.5,
        "seconds": round(seconds), "commit": commit(), "date": env["date"],
    }


def merge(builds: list[dict], new: dict) -> list[dict]:
    """`builds` with `new` in place of any earlier build on the same CPU, at the
    same precision, idle or busy alike; sorted by those three."""
    key = lambda b: (b["cpu"], b["precision"], b["busy"])
    return sorted([b for b in builds if key(b) != key(new)] + [new], key=key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/record_build.py")
    p.add_argument("--file", type=Path, default=ROOT / "results/book_builds.json")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the build command after --")
    busy0, start = busy_seconds(), time.monotonic()
    status = subprocess.call(command)
    seconds = time.monotonic() - start
    if status != 0:
        return status
    busy1 = busy_seconds()
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    other = (None if busy0 is None or busy1 is None else
             max(0.0, (busy1 - busy0 - own.ru_utime - own.ru_stime) / seconds))
    new = entry(seconds, other)
    builds = json.loads(args.file.read_text()) if args.file.exists() else []
    atomic_write_json(args.file, merge(builds, new))
    print(f"recorded in {args.file.name}: {new['cpu']}, {new['precision']}, "
          f"{new['seconds']} s, other work {new['other_cores']} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
