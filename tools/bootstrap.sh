#!/usr/bin/env bash
# Create (or update) the project's virtual environment with the exact pins of constraints.txt.
# Usage: tools/bootstrap.sh [VENV_DIR]   (default .venv). Idempotent: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
stamp="$venv/.iicrepro-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
python3 -m venv "$venv"
# The CPU build of torch lies in the wheel folder that pip's configuration names (find-links).
links="$(pip config get global.find-links 2>/dev/null || true)"
if "$venv/bin/python" -m pip install -q uv 2>/dev/null; then
  UV_FIND_LINKS="${UV_FIND_LINKS:-$links}" "$venv/bin/uv" pip install -q --python "$venv/bin/python" \
    -c constraints.txt -e '.[all]'
else
  "$venv/bin/python" -m pip install -q -c constraints.txt -e '.[all]'
fi
echo "$want" > "$stamp"
