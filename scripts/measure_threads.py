"""How many CPU threads should `train` use by default? Measure, don't guess.

Times a short run (`python -m mnist_lib train`, the final model, 2 epochs on
10,000 digits, its own epoch times, without start-up) with 1 thread, with 2,
and with train's default (one a core that other work leaves idle as the run
starts), on the machine as it is ("idle") and beside a process that keeps
one core busy ("busy"), each several times, and prints the median seconds per
epoch as a Markdown table with each choice's worst ratio to the best.
The README's table came from this script; run it on an otherwise idle
machine (nothing else training or timing).

Usage: python scripts/measure_threads.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ["-m", "mnist_lib", "train", "--epochs", "2", "--n-train", "10000",
       "--n-test", "1000", "--quiet"]
BUSY = "while True: pass"  # one core's worth of other work


def seconds_per_epoch(threads: int | None, busy: bool) -> float:
    """One run's mean epoch time (the history's own: no start-up); `threads`
    None: train's default."""
    neighbour = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    if neighbour is not None:
        time.sleep(0.5)  # its start-up over before train measures the cores
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run.json"
            told = [] if threads is None else ["--threads", str(threads)]
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            subprocess.run([sys.executable, *RUN, *told, "--out", str(out)],
                           cwd=ROOT, check=True, env=env,
                           stdout=subprocess.DEVNULL)
            epochs = json.loads(out.read_text())["epochs"]
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return statistics.fmean(e["seconds"] for e in epochs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/measure_threads.py")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of each case; the table shows their median")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from mnist_lib.hardware import environment

    choices = (1, 2, None)
    cases = {(t, busy): statistics.median(seconds_per_epoch(t, busy)
                                          for _ in range(args.repeats))
             for busy in (False, True) for t in choices}
    env = environment(torch.device("cpu"), "auto")
    print(f"Measured on {env['cpu']}, {env['precision']}, {os.cpu_count()} "
          f"cores; the median\nof {args.repeats} runs, seconds per epoch "
          "(2 epochs on 10,000 digits, the final model):\n")
    print("| threads | idle | beside one busy core | worst ratio to the best |")
    print("|---|---|---|---|")
    for t in choices:
        worst = max(cases[t, busy] / min(cases[c, busy] for c in choices)
                    for busy in (False, True))
        name = "train's default" if t is None else str(t)
        print(f"| {name} | {cases[t, False]:.2f} s | {cases[t, True]:.2f} s "
              f"| {worst:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
