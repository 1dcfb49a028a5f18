"""Figures that depend on the machine and its load, measured, never asserted
by a test (a busy core changes each): what `import mnist_lib` costs beside
`import torch`, and the page faults a test pass takes on a CPU with and
without fit's malloc setting (`mnist_lib.hardware.keep_freed_memory`).

    .venv/bin/python scripts/measure_machine.py [--json FILE]

Each figure is a best or a median of a few fresh processes; the output says
the CPU and how busy the machine was (other work, in cores, from /proc/stat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One epoch of fit, then ten test passes; prints the page faults of each pass
# after the first two (which warm the heap up). fit sets malloc up unless the
# environment does: "glibc" runs it with glibc's default trim threshold set.
FAULTS = """
import resource, torch
from mnist_lib.train import fit
from mnist_lib.evaluation import evaluate
from mnist_lib.data import MNIST
from mnist_lib.models import get_model
from mnist_lib.config import recipe
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
data = MNIST(torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8, generator=g),
             torch.randint(0, 10, (256,), generator=g),
             torch.randint(0, 256, (2000, 28, 28), dtype=torch.uint8, generator=g),
             torch.randint(0, 10, (2000,), generator=g))
model = get_model("Model_4")
fit(model, data, recipe("Model_4", progress=False, device="cpu", precision="fp32",
                        batch_size=256, epochs=1))
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    evaluate(model, data.test_images, data.test_labels, 0.13, 0.31)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults[2:])
"""


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def faults(glibc: bool) -> float:
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="131072") if glibc else None
    out = subprocess.run([sys.executable, "-c", FAULTS], check=True, env=env,
                         capture_output=True, text=True, cwd=ROOT)
    return statistics.median(int(n) for n in out.stdout.split())


def busy_cores(seconds_: float = 0.5) -> float | None:
    sys.path.insert(0, str(ROOT))
    from mnist_lib.hardware import idle_cores

    idle = idle_cores(seconds_)
    return None if idle is None else (os.cpu_count() or 1) - idle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from mnist_lib.hardware import cpu_name

    torch_s, lib_s = [], []
    for _ in range(3):  # interleaved: other work slows both alike
        torch_s.append(seconds("import torch"))
        lib_s.append(seconds("import mnist_lib"))
    report = {"cpu": cpu_name(), "other_work_cores": busy_cores(),
              "import_torch_s": min(torch_s), "import_mnist_lib_s": min(lib_s),
              "faults_per_test_glibc": faults(glibc=True),
              "faults_per_test_after_fit": faults(glibc=False)}
    for k, v in report.items():
        print(f"{k:28} {v:.2f}" if isinstance(v, float) else f"{k:28} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
