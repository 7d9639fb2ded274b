#!/usr/bin/env bash
# The GPU check, for a machine with one CUDA GPU and a python3 that has torch with CUDA (under 10 minutes):
#   bash benchmarks/gpu_check.sh          (on the device tool: carry nothing; OUT receives gpu_check.json)
# vaekit's own few dependencies beyond torch (safetensors, numpy, scikit-learn, pillow) must be importable.
# Fashion-MNIST is read from $VAEKIT_DATA/fashion-mnist if present; otherwise scikit-learn's digits stand in.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
"$py" -c 'import torch, safetensors, sklearn, PIL' || { echo "gpu_check: python3 lacks torch/safetensors/scikit-learn/pillow" >&2; exit 2; }
[ -d .data/fashion-mnist ] && export VAEKIT_DATA=${VAEKIT_DATA:-$PWD/.data}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
timeout 570 "$py" benchmarks/gpu_check.py
