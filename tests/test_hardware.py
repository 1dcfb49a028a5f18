"""What a run ran on (mnist_lib.hardware): the CPU's name, bf16, the precision."""

from __future__ import annotations


import pytest
import torch

from mnist_lib import hardware as H


@pytest.mark.parametrize("precision, device, native, expected", [
    ("fp32", "cpu", True, None),
    ("bf16", "cpu", False, torch.bfloat16),    # asked for: used even if emulated
    ("auto", "cpu", True, torch.bfloat16),
    ("auto", "cpu", False, None),
    ("auto", "cuda", True, None),              # launch-bound on a GPU: stays fp32
])
def test_autocast_dtype(monkeypatch, precision, device, native, expected):
    monkeypatch.setattr(H, "cpu_has_bf16", lambda: native)
    assert H.autocast_dtype(precision, torch.device(device)) == expected
    env = H.environment(torch.device("cpu"), precision)
    assert env["precision"] == ("fp32" if H.autocast_dtype(precision, torch.device("cpu"))
                                is None else "bf16 autocast")



CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu avx512_bf16

processor\t: 1
model name\t: Some Other CPU
"""



def test_cpu_name_reads_the_first_cpu_with_family_and_model(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert H.cpu_name(info) == "AMD EPYC (family 26, model 2)"
    # No family and model (some ARM kernels): the model name alone.
    info.write_text("processor\t: 0\nmodel name\t: ARMv8 Processor rev 1\n")
    assert H.cpu_name(info) == "ARMv8 Processor rev 1"
    # No model name at all, or no file (macOS, Windows): what `platform` says.
    monkeypatch.setattr(H.platform, "processor", lambda: "arm")
    info.write_text("processor\t: 0\nBogoMIPS\t: 48.00\n")
    assert H.cpu_name(info) == "arm"
    assert H.cpu_name(tmp_path / "missing") == "arm"



def test_environment_names_the_cpu(monkeypatch):
    monkeypatch.setattr(H, "cpu_name", lambda: "Test CPU (family 1, model 2)")
    env = H.environment(torch.device("cpu"))
    assert env["cpu"] == "Test CPU (family 1, model 2)"
    n = torch.get_num_threads()
    assert H.describe_hardware(env) == (f"Test CPU (family 1, model 2), "
                                        f"{n} thread{'' if n == 1 else 's'}")



def test_describe_hardware_of_gpu_and_older_records():
    old = {"device": "cpu", "processor": "x86_64", "cpu_threads": 2}  # no "cpu" yet
    assert H.describe_hardware(old) == "x86_64, 2 threads"
    assert H.describe_hardware({**old, "cpu_threads": 1}) == "x86_64, 1 thread"
    gpu = {**old, "device": "cuda", "cpu": "AMD EPYC", "gpu": "NVIDIA H100 80GB HBM3"}
    assert H.describe_hardware(gpu) == "NVIDIA H100 80GB HBM3"

