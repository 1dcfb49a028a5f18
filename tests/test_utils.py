"""Device choice and the CPU allocator setting (mnist_lib.hardware)."""

from __future__ import annotations


import pytest
import torch



@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_the_default_device_is_the_best_available(monkeypatch, cuda, mps, expected):
    from mnist_lib.hardware import best_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert best_device() == best_device("auto") == torch.device(expected)
    # A device that is there may be asked for by name; one that is not is refused.
    assert best_device("cpu") == torch.device("cpu")
    for name, there in (("cuda:1", cuda), ("mps", mps)):
        if there:
            assert best_device(name) == torch.device(name)
        else:
            with pytest.raises(ValueError, match="not available; use device=.auto."):
                best_device(name)
    with pytest.raises(ValueError, match="unknown device 'gpu': use 'auto', 'cpu'"):
        best_device("gpu")



def test_keep_freed_memory_does_nothing_without_glibc(monkeypatch):
    from mnist_lib import hardware as utils

    monkeypatch.setattr(utils, "_kept_freed_memory", False)
    monkeypatch.setattr(utils.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(utils.ctypes, "CDLL", lambda *a: pytest.fail("CDLL called"))
    assert utils.keep_freed_memory() is False



@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TRIM_THRESHOLD_": "0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
                                 {}])
def test_keep_freed_memory_leaves_malloc_as_the_environment_sets_it(monkeypatch,
                                                                    env):
    """The setting is process-wide and cannot be undone (glibc reports neither
    threshold): a process that sets either itself keeps it; else fit sets
    both, once."""
    from mnist_lib import hardware as utils

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(utils, "_kept_freed_memory", False)
    monkeypatch.setattr(utils.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(utils.ctypes, "CDLL", lambda *a: FakeLibc())
    assert utils.keep_freed_memory() is (not env)
    assert calls == ([] if env else [(-3, 64 << 20), (-1, 1 << 30)])
    utils.keep_freed_memory()
    assert len(calls) == (0 if env else 2)  # once a process


def test_fit_says_where_it_is_called_what_it_changes_for_the_process():
    from mnist_lib import hardware as utils, train

    assert "for good" in train.fit.__doc__ and "keep_freed_memory" in train.fit.__doc__
    assert "PROCESS-WIDE" in utils.keep_freed_memory.__doc__
    assert "MALLOC_MMAP_THRESHOLD_" in utils.keep_freed_memory.__doc__
