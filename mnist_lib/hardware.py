"""What a run ran on, for its records: the CPU's name, whether it computes in
bfloat16, the precision a training step uses there, and the versions and
devices saved with every result (`environment`); and the CPU threads a run
trains on (`default_threads`, `use_threads`)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def usable_cpus() -> set[int] | None:
    """The CPUs this process may run on (taskset, a container's cpuset), or
    None where the system does not say (macOS, Windows)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def idle_cores(seconds: float = 0.25, stat: str | os.PathLike = "/proc/stat",
               cpus: set[int] | None = None) -> float | None:
    """How many of the CPUs this process may use (`cpus`, default
    `usable_cpus()`) other work leaves idle, measured over `seconds` from the
    kernel's counters (`stat`); None where there are none (macOS, Windows)."""
    cpus = usable_cpus() if cpus is None else cpus

    def busy_and_total() -> tuple[int, int]:
        busy = total = 0
        for line in Path(stat).read_text().splitlines():
            name, *values = line.split()
            if not name.startswith("cpu"):
                continue
            if cpus:  # each usable CPU's line ("cpu3")
                if name == "cpu" or int(name[3:]) not in cpus:
                    continue
            elif name != "cpu":  # else the machine's sum ("cpu")
                continue
            ticks = [int(v) for v in values[:8]]  # user ... steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait
        return busy, total

    try:
        busy0, total0 = busy_and_total()
        time.sleep(seconds)
        busy1, total1 = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    count = len(cpus) if cpus else (os.cpu_count() or 1)
    return count * (1 - (busy1 - busy0) / (total1 - total0))


def default_threads(most: int | None = None) -> tuple[int, str]:
    """The CPU threads a run trains on unless told (`train --threads`), and
    why: one a core that other work leaves idle as the run starts, at most
    `most` (default: torch's own number, the machine's cores), at least one.
    PyTorch's threads wait for each other at every operation, so a thread on
    a core that other work holds stalls them all (the README's measurement:
    on a 2-core machine, two threads beside a busy core were slower than one)."""
    most = most or torch.get_num_threads()
    idle = idle_cores()
    if idle is None:
        return most, "torch's default (this system does not report CPU load)"
    # A core counts when at least three quarters of it are idle.
    threads = max(1, min(most, int(idle + 0.25)))
    cpus = usable_cpus()
    return threads, (f"{idle:.1f} of {len(cpus) if cpus else os.cpu_count()} "
                     "cores idle as the run started")


class ThreadsWarning(UserWarning):
    """A run's CPU threads are more than its cores, or than other work leaves
    idle: each thread waits for the slowest at every operation, so the extra
    ones slow every step."""


def cpu_cores() -> int:
    """The CPUs this process may run on (`usable_cpus`), else the machine's."""
    cpus = usable_cpus()
    return len(cpus) if cpus else (os.cpu_count() or 1)


def too_many_threads(threads: int) -> str | None:
    """Why `threads` CPU threads are too many here (more than `cpu_cores`), in
    words that follow a number of threads; None where they are not."""
    cores = cpu_cores()
    if threads <= cores:
        return None
    return (f"more than the {cores} CPU core(s) this process may use: PyTorch's "
            "threads wait for each other at every operation, so those beyond the "
            f"cores only slow each step ({cores} or fewer run faster)")


# The thread counts chosen (`use_threads`), or checked against the idle cores,
# in this process: a run on one of them is not checked again.
_SETTLED: set[int] = set()
# torch's number when "auto" first chose: later choices may go back up to it.
_AUTO_MOST: list[int] = []


def use_threads(threads: int | str | None, check: bool = True) -> str | None:
    """Set torch's CPU threads (process-wide, as `torch.set_num_threads`) for
    the runs that follow; return a note for the user, or None.

    - an int: that many; the note says if they are more than the cores;
    - "auto": as `python -m mnist_lib train` picks them, one a core that other
      work leaves idle (`default_threads`);
    - None: torch's number, left as it is: torch cannot tell a number the
      caller set (`torch.set_num_threads`, OMP_NUM_THREADS) from its default,
      and a run's numbers depend on its thread count, so it is not changed
      unasked. Where `check`, the note says, once a process for each number,
      when it is more than the cores or than other work leaves idle, and how
      to choose."""
    if threads == "auto":
        if not _AUTO_MOST:
            _AUTO_MOST.append(torch.get_num_threads())
        threads = default_threads(_AUTO_MOST[0])[0]
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a number >= 1, \"auto\" or None, "
                             f"got {threads!r}")
        torch.set_num_threads(threads)
        _SETTLED.add(threads)
        why = too_many_threads(threads)
        return why and f"threads={threads}: {why}"
    n = torch.get_num_threads()
    chosen = {os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if not check or n == 1 or n in _SETTLED or str(n) in chosen:
        return None
    _SETTLED.add(n)
    fix = ("threads=\"auto\" (to fit or run) picks them as `python -m mnist_lib "
           "train` does; without it they keep torch's number, since they cannot "
           "tell one you set from torch's default")
    if why := too_many_threads(n):
        return f"torch's {n} CPU threads: {why}. {fix}"
    best, idle = default_threads(n)
    if best >= n:
        return None
    return (f"training on torch's {n} CPU threads, but {idle}: a thread on a "
            f"busy core stalls the others, so {best} may run faster. {fix}")


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU, e.g. "AMD EPYC (family 26, model 2)" from /proc/cpuinfo on Linux
    (a virtual machine may hide the full model name; family and model still
    tell CPU generations apart), else what `platform` knows ("x86_64").
    Timings compare only on the same CPU, so records name it."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    info = {}
    for line in text.split("\n\n")[0].splitlines():  # the first logical CPU
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    if not info.get("model name"):
        return platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        return (f"{info['model name']} "
                f"(family {info['cpu family']}, model {info['model']})")
    return info["model name"]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype a training step's forward and backward run in under autocast,
    or None for plain fp32. `auto` picks bf16 only on a CPU with native bf16,
    where it was measured ~20% faster with the same accuracy; on a GPU a model
    this small is bound by kernel launches, and casts would only add kernels."""
    if precision == "bf16" or (precision == "auto" and device.type == "cpu"
                               and cpu_has_bf16()):
        return torch.bfloat16
    return None


def environment(device: torch.device, precision: str = "fp32") -> dict[str, Any]:
    """Versions and hardware, saved with every result."""
    dtype = autocast_dtype(precision, device)
    env = {
        "torch": torch.__version__, "python": platform.python_version(),
        "device": str(device), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if dtype is not None else "fp32",
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def describe_hardware(env: dict[str, Any]) -> str:
    """What a run with this `env` (from `environment`) ran on, in words: the GPU,
    else the CPU and its threads, e.g. "AMD EPYC (family 26, model 2), 2 threads".
    Records made before they named the CPU give its architecture ("x86_64")."""
    if "gpu" in env:
        return env["gpu"]
    n = env["cpu_threads"]
    return f"{env.get('cpu', env['processor'])}, {n} thread{'' if n == 1 else 's'}"


def machine_differences(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two `environment`s, the date aside, each as
    "key: X there, Y here"; empty when they describe the same machine and
    software. A study that resumes must run where it started: on another CPU,
    thread count or precision the same seed is a new draw."""
    keys = sorted(k for k in then.keys() | now.keys()
                  if k != "date" and then.get(k) != now.get(k))
    return [f"{k}: {then.get(k)} there, {now.get(k)} here" for k in keys]


def source_commit() -> str | None:
    """The git commit of the library's checkout, with "+changes" when its
    files differ from it; None outside a git checkout (a pip install)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):  # no git here
        return None
    return head.stdout.strip() + ("+changes" if dirty.strip() else "")
