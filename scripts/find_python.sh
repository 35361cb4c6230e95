#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (scvi-tools >= 1.5 needs it), or fail with a message.
# Looks at $PYTHON, python3.12/3.13/3.14 on PATH, interpreters managed by pyenv or uv, then python3.
set -euo pipefail

is_new_enough() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=(python3.12 python3.13 python3.14)
for root in "${PYENV_ROOT:-$HOME/.pyenv}/versions" "$HOME/.local/share/uv/python"; do
  for found in "$root"/*3.1[2-9]*/bin/python3 "$root"/*3.1[2-9]*/bin/python; do
    [ -x "$found" ] && candidates+=("$found")
  done
done
candidates+=(python3 python)

for candidate in "${candidates[@]}"; do
  if command -v "$candidate" >/dev/null 2>&1 && is_new_enough "$candidate"; then
    command -v "$candidate"
    exit 0
  fi
done
echo "scvi-cfgen needs Python >= 3.12 (scvi-tools >= 1.5): install one (e.g. 'pyenv install 3.12')" \
  "or point PYTHON at it." >&2
exit 1
