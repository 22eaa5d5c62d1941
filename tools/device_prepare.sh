#!/usr/bin/env bash
# Here, before a GPU sitting: what travels to the GPU machine (see DEVELOPERS / the device tool's README).
#   .whl/          wheels for its Python 3.12 that its image lacks (papermill, ipykernel, kornia and their
#                  needs), at the versions of our .venv; its own torch stays.
#   .carry/REVISION the commit the tree is (the copy there has no .git; iicrepro/revision.py)
#   .carry/data/   prepared caches (iicrepro prepare) of the datasets named, at most 64 MiB with the tree:
#                  two caches per call (camvid3 + dubai3, or camvid11 + dubai5) while the tree is small;
#                  the script adds up what travels and refuses to go over 64 MiB.
# Both folders are listed in .git/info/exclude, so they never get committed.
# Usage: tools/device_prepare.sh [VENV] [DATASET ...]     (default: .venv camvid3 dubai3)
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
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
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
# What travels: the tree (tracked files and untracked ones git does not ignore) plus the carried folders,
# 64 MiB at most. Executed run notebooks (book/runs) grow the tree; fewer caches per call make room.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null \
       | awk '{s += $1} END {print s + 0}')
carried=$(du -sb .whl .carry | awk '{s += $1} END {print s + 0}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "device_prepare.sh: tree $(mib "$tree") + .whl and .carry $(mib "$carried") = $(mib $((tree + carried))) of 64 MiB"
if [ $((tree + carried)) -gt $((64 * 1048576)) ]; then
  echo "device_prepare.sh: over the 64 MiB a GPU machine accepts; name fewer datasets (one cache is ~17 MiB)" >&2
  exit 1
fi
echo "device_prepare.sh: carry [\".whl\", \".carry\"]; the command: bash tools/device_run.sh ..."
