"""The machine a run computes on: the device it trains on (`best_device`),
the CPU threads (`default_threads`, `use_threads`), the CPU allocator
setting `fit` makes (`keep_freed_memory`); and, for its records, the CPU's
name, whether it computes in bfloat16, the precision a training step uses
there, and the versions and devices saved with every result (`environment`)."""

from __future__ import annotations

import ctypes
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
    or None for plain fp32. `auto` picks bf16 on a CPU with native bf16, as
    every recorded study trained: a run that rounds as they did compares
    with them. Whether it is faster depends on the CPU and the net (on an
    Intel Xeon without AMX, Model_1's and Model_3's fp32 steps were 10-20%
    faster; book/engineering.md times both live): pass precision="fp32"
    where it does not pay. On a GPU a model this small is bound by kernel
    launches, and casts would only add kernels."""
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


def best_device(requested: str = "auto") -> torch.device:
    """Return the device to train on: CUDA, then Apple MPS, then CPU.

    `requested` may name a device ("cpu", "cuda", "cuda:1", "mps"); asking for
    one that is not available raises a ValueError that says what is.
    """
    if requested in ("auto", "", None):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'mps'"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available; "
                         "use device='auto' or device='cpu'")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("device='mps' requested but MPS is not available; "
                         "use device='auto' or device='cpu'")
    return device


# glibc's mallopt(3) parameters, from <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_kept_freed_memory = False


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees for reuse, instead of giving
    it back to the operating system at once (Linux with glibc only; elsewhere
    it does nothing). Returns whether the setting is in effect.

    PROCESS-WIDE AND FOR GOOD: it changes two of glibc's malloc settings
    (`mallopt` M_MMAP_THRESHOLD = 64 MiB, M_TRIM_THRESHOLD = 1 GiB) for
    everything in the process, until it ends. `fit` and the benchmark call it
    on a CPU. It cannot be undone: glibc neither reports these settings nor
    goes back to tuning them itself once they are set. A process that must
    keep glibc's own behaviour sets either threshold in the environment
    (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or `GLIBC_TUNABLES`
    with `glibc.malloc.mmap_threshold` or `trim_threshold`) before it starts:
    this function then leaves malloc as it is and returns False.

    Why: PyTorch on a CPU allocates every activation with malloc and frees it
    as soon as it is used. glibc returns freed memory at the top of the heap
    to the system once more than a threshold is free there, and serves blocks
    above another threshold with fresh mmaps. It tunes both from what it has
    seen freed; after an epoch of training, an evaluation pass kept missing
    them, so every batch asked the kernel for fresh pages: ~200,000 page
    faults a test (~800 MB of pages zeroed), ~40% of its time on the
    book's 2-core CPU. Fixed thresholds (blocks up to 64 MiB from the heap,
    keep up to 1 GiB free) end that; the process then keeps what it freed,
    up to 1 GiB, for its next batches instead of returning it at once.
    Arithmetic does not change: runs give the same numbers with it and without.
    """
    global _kept_freed_memory
    if (not _kept_freed_memory and platform.libc_ver()[0] == "glibc"
            and not malloc_set_by_environment()):
        try:
            mallopt = ctypes.CDLL(None).mallopt  # this process's own C library
        except (AttributeError, OSError):
            return False
        _kept_freed_memory = bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)
                                  and mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _kept_freed_memory


def malloc_set_by_environment() -> bool:
    """Whether the environment sets glibc's mmap or trim threshold (then
    `keep_freed_memory` leaves them as they are)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(os.environ.get(f"MALLOC_{name.upper()}_THRESHOLD_")
               or f"glibc.malloc.{name}_threshold" in tunables
               for name in ("mmap", "trim"))
