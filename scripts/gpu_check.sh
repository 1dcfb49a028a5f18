#!/usr/bin/env bash
# The GPU checks that the README names, in one go, for a machine with an NVIDIA
# GPU: the library's tests that need CUDA or pick the device; the library's
# loop eager, with CUDA graphs and with torch.compile (bench --loops); then
# the benchmark of the final model against the usual pipeline (~5 min in all
# on an H200). The other tests run here as everywhere, in `make test`; on a
# 16-core GPU machine the whole files, several processes each with a thread
# per core, did not end in 300 s.
#   bash scripts/gpu_check.sh [OUT_DIR]      # default: results/
# Writes OUT_DIR/pytest_cuda.log, OUT_DIR/bench_loops_cuda.json,
# OUT_DIR/bench_cuda.json and their tables.
set -uo pipefail
out=${1:-results}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU here"; print(torch.__version__, torch.cuda.get_device_name())' || exit 1
OMP_NUM_THREADS=4 timeout 240 "$py" -m pytest -q -rs -p no:cacheprovider \
    -k "cuda or gpu or graph or device or accelerated" \
    tests/test_train.py tests/test_data.py tests/test_utils.py 2>&1 | tee "$out/pytest_cuda.log"
tests=${PIPESTATUS[0]}
"$py" -m mnist_lib bench --loops --epochs 15 --device cuda \
    --json "$out/bench_loops_cuda.json" 2>&1 | tee "$out/bench_loops_cuda.txt"
loops=${PIPESTATUS[0]}
"$py" -m mnist_lib bench --epochs 15 --device cuda --json "$out/bench_cuda.json" 2>&1 \
    | tee "$out/bench_cuda.txt"
bench=${PIPESTATUS[0]}
echo "tests: exit $tests; loops: exit $loops; bench: exit $bench"
exit $(( tests || loops || bench ))
