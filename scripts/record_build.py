"""Run the full book build and, if it passes, record where; add that record to
results/book_builds.json on purpose.

`scripts/build_book.sh full` runs a build that executes every chapter through
this. The entry names the CPU and precision, the build's time, how busy the
machine was with other work while it ran (`other_cores`: the CPU time of
everything but the build, from /proc/stat, in cores), the commit and the
date. It goes to _build/book_build.json, which git ignores: a build leaves
the work tree as it found it. To publish it, add it to the tracked list,
where it replaces an older build on the same CPU, precision and idle-or-busy,
and commit that: the Engineering notes chapter and the README show where the
full build has passed from this list, so that nobody types it.

Usage:
  python scripts/record_build.py [--entry E] -- COMMAND ...
      run COMMAND; exit with its status; when it is 0, write the entry to E
  python scripts/record_build.py --add [--entry E] [--file F]   (make record-build)
      add the entry E to the list F (default results/book_builds.json)
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
from mnist_lib.hardware import environment, source_commit  # noqa: E402
from mnist_lib.utils.files import atomic_write_json  # noqa: E402

# Where a green build's entry goes: under _build/, which git ignores.
ENTRY = ROOT / "_build" / "book_build.json"
BUILDS = ROOT / "results" / "book_builds.json"


def busy_seconds(stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds all processes have spent working since boot (`stat`, the
    kernel's counters), or None where there are none."""
    try:
        fields = stat.read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def other_cores(busy0: float | None, busy1: float | None, own: float,
                seconds: float) -> float | None:
    """How many cores other work kept busy, on average, over a build of
    `seconds` wall time: the CPU seconds every process worked (`busy1 -
    busy0`) less the build's own (`own`), per second; None without counters."""
    if busy0 is None or busy1 is None:
        return None
    return max(0.0, (busy1 - busy0 - own) / seconds)


def entry(seconds: float, other: float | None) -> dict:
    """The record of a green build of `seconds`, beside `other` cores of other
    work (`other_cores`)."""
    env = environment(torch.device("cpu"), "auto")
    return {
        "cpu": env["cpu"], "cpu_threads": env["cpu_threads"],
        "precision": env["precision"], "torch": env["torch"],
        "other_cores": None if other is None else round(other, 2),
        "busy": other is not None and other >= 0.5,
        "seconds": round(seconds), "commit": source_commit(), "date": env["date"],
    }


def merge(builds: list[dict], new: dict) -> list[dict]:
    """`builds` with `new` in place of any earlier build on the same CPU, at the
    same precision, idle or busy alike; sorted by those three."""
    key = lambda b: (b["cpu"], b["precision"], b["busy"])
    return sorted([b for b in builds if key(b) != key(new)] + [new], key=key)


def add(entry: Path, builds: Path) -> dict:
    """Merge the build recorded in `entry` into the list in `builds`."""
    new = json.loads(entry.read_text())
    old = json.loads(builds.read_text()) if builds.exists() else []
    atomic_write_json(builds, merge(old, new))
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/record_build.py")
    p.add_argument("--entry", type=Path, default=ENTRY,
                   help="this build's record (default: %(default)s)")
    p.add_argument("--add", action="store_true",
                   help="add the record in --entry to --file, and run nothing")
    p.add_argument("--file", type=Path, default=BUILDS,
                   help="the list of builds --add adds to (default: %(default)s)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.add:
        if command:
            p.error("--add runs nothing: give it no command")
        if not args.entry.exists():
            p.error(f"no build recorded in {args.entry}: `make book` records one "
                    "when it executes every chapter")
        new = add(args.entry, args.file)
        print(f"added to {args.file}: {new['cpu']}, {new['precision']}, "
              f"{new['seconds']} s, commit {new['commit']}; commit the file")
        return 0
    if not command:
        p.error("give the build command after --, or --add")
    busy0, start = busy_seconds(), time.monotonic()
    status = subprocess.call(command)
    seconds = time.monotonic() - start
    if status != 0:
        return status
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    new = entry(seconds, other_cores(busy0, busy_seconds(),
                                     own.ru_utime + own.ru_stime, seconds))
    # How long each chapter took to execute (scripts/execute_chapters.py): the
    # next fresh clone's build starts the longest first.
    chapters = ENTRY.parent / ".chapter_seconds.json"
    if chapters.exists():
        new["chapters"] = json.loads(chapters.read_text())
    atomic_write_json(args.entry, new)
    how = ("make record-build" if args.entry == ENTRY else
           f"python scripts/record_build.py --add --entry {args.entry}")
    print(f"recorded in {args.entry}: {new['cpu']}, {new['precision']}, "
          f"{new['seconds']} s, other work {new['other_cores']} cores\n"
          f"to add it to {BUILDS.name} (then commit that): {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
