#!/usr/bin/env bash
# Before a first `make venv`: is there room for the packages? torch and
# torchvision come with their CUDA libraries (~6 GB in .venv), and a disk that
# fills halfway through pip leaves a broken .venv and a bare "Errno 28".
# Usage: scripts/check_disk.sh DIR   (MNIST_NEED_GB overrides the 7 GB asked for)
set -euo pipefail
dir=${1:-.}
need_gb=${MNIST_NEED_GB:-7}
free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
free_gb=$((free_kb / 1048576))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "error: setting up .venv needs about $need_gb GB of free disk; the disk" \
       "holding $(cd "$dir" && pwd) has $free_gb GB free." >&2
  echo "fix: free some space (old clones or venvs, \`pip cache purge\`)," \
       "then run the same make command again." >&2
  exit 1
fi
