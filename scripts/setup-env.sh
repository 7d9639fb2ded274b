#!/usr/bin/env bash
# Create the virtual environment and install torch 2.13.0 (CPU build), then vaekit with its test extras.
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
