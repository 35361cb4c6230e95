#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 if it is missing, install scvi-cfgen into it, run the demo.
# Usage: bash scripts/demo.sh [demo options, e.g. --outdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/scvi-cfgen ]; then
  PYTHON="$(bash scripts/find_python.sh)"
  echo "Using $("$PYTHON" --version) at $PYTHON"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,torchdyn]"
fi
exec .venv/bin/scvi-cfgen demo "$@"
