#!/usr/bin/env bash
# Here, before copying the project to an offline GPU host that already has torch (README, "GPU host"):
#   .whl/          wheels the host lacks (papermill, ipykernel, kornia and their needs) for its Python
#                  (TARGET_PYTHON, default 3.12), at the versions of our .venv; the host's own torch stays.
#   .carry/REVISION the commit the tree is (a copy without .git; iicrepro/revision.py)
#   .carry/data/   prepared caches (iicrepro prepare) of the datasets named.
# It adds up what travels (tree + both folders); with TRANSFER_LIMIT_MIB set it refuses to exceed that.
# Both folders are listed in .git/info/exclude, so they never get committed.
# Usage: [TARGET_PYTHON=3.12] [TRANSFER_LIMIT_MIB=N] tools/device_prepare.sh [VENV] [DATASET ...]
#        (default: .venv camvid3 dubai3)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"; shift || true
datasets=("$@"); [ ${#datasets[@]} -gt 0 ] || datasets=(camvid3 dubai3)
exclude="$(git rev-parse --git-path info/exclude)"; mkdir -p "$(dirname "$exclude")"
for folder in /.whl/ /.carry/; do grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >> "$exclude"; done

# Missing on the GPU image (its package list, 2026-11-17), found by walking the requirements of
# papermill, ipykernel, nbformat, nbclient and kornia.
packages="asttokens comm debugpy entrypoints executing fastjsonschema ipykernel ipython ipython-pygments-lexers
jedi jsonschema jsonschema-specifications jupyter-client jupyter-core kornia kornia-rs matplotlib-inline nbclient
nbformat nest-asyncio2 papermill parso pexpect platformdirs prompt-toolkit ptyprocess pure-eval pyzmq referencing
rpds-py stack-data tenacity tornado traitlets tzdata wcwidth"
specs=()
for p in $packages; do
  v=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$p'))")
  specs+=("$p==$v")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${TARGET_PYTHON:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"

rm -rf .carry/data && mkdir -p .carry/data/cache
caches="${IICREPRO_DATA:-data}/cache"
src=(); [ -d ../shared/data ] && src=(--src ../shared/data)
for name in "${datasets[@]}"; do
  "$venv/bin/iicrepro" prepare "$name" "${src[@]}" --out "$caches/$name"   # idempotent: quick when up to date
  cp -R "$caches/$name" ".carry/data/cache/$name"
done
# the GPU machine gets a copy of the tree without .git: this says which commit it is (iicrepro/revision.py)
"$venv/bin/python" -c "from iicrepro.revision import code_revision; print(code_revision())" > .carry/REVISION
# What travels: the tree (tracked files and untracked ones git does not ignore) plus the carried folders.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null \
       | awk '{s += $1} END {print s + 0}')
carried=$(du -sb .whl .carry | awk '{s += $1} END {print s + 0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
limit="${TRANSFER_LIMIT_MIB:-}"
echo "device_prepare.sh: tree $(mib "$tree") + .whl and .carry $(mib "$carried") = $(mib $((tree + carried)))" \
     "${limit:+of the $limit MiB allowed}"
if [ -n "$limit" ] && [ $((tree + carried)) -gt $((limit * 1048576)) ]; then
  echo "device_prepare.sh: over TRANSFER_LIMIT_MIB=$limit; name fewer datasets (one cache is ~17 MiB)" >&2
  exit 1
fi
echo "device_prepare.sh: carry [\".whl\", \".carry\"]; the command: bash tools/device_run.sh ..."
