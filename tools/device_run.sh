#!/usr/bin/env bash
# On the GPU machine (the device tool's `run`, from the repository root): install the carried wheels, then
# run the benchmark and/or study runs, and put what they wrote under $OUT (at most 8 files come back):
#   $OUT/runs.tar.gz   the new or changed files of book/runs (executed notebooks, run files, figures);
#                      here: tar -xzf <files_at>/runs.tar.gz -C book/runs, then commit them
#   $OUT/*.json        benchmark results (benchmarks/results/; here: copy them there, then commit)
#   $OUT/log.txt       everything printed
# Usage: bash tools/device_run.sh [--bench "BENCH ARGS"] [--budget SECONDS] [STUDY RUN ARGS ...]
#   e.g. bash tools/device_run.sh --bench "--bf16 --presets all" --budget 480 --only 'camvid3-faithful-s*'
# --budget: no new study run starts after that many seconds (a run in progress finishes), so the command
# ends inside the device's 10-minute limit; the runs not reached are listed at the end.
set -uo pipefail
out="${OUT:-/tmp/device-out}"; mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
bench=""; budget=480; study=(); common=()  # common: study options other than --only
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) bench="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --only) study+=("$1" "$2"); shift 2 ;;
    *) study+=("$1"); common+=("$1"); shift ;;
  esac
done
start=$(date +%s)
py="${PYTHON:-python3}"  # the GPU image's python3 holds its CUDA torch
if [ -d .whl ] && ! "$py" -c "import papermill, kornia, ipykernel" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "device_run.sh: installing the carried wheels failed"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
[ -d .carry/data ] && export IICREPRO_DATA="$PWD/.carry/data"
[ -f .carry/REVISION ] && export IICREPRO_CODE_REVISION="$(cat .carry/REVISION)"
iicrepro() { "$py" -c "import sys; from iicrepro.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c "import torch, kornia, papermill; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'kornia', kornia.__version__)"
touch /tmp/device_run.stamp
status=0
if [ -n "$bench" ]; then
  # shellcheck disable=SC2086
  iicrepro bench $bench || status=1
  cp benchmarks/results/*.json "$out/" 2>/dev/null
fi
if [ ${#study[@]} -gt 0 ]; then
  # one run at a time, so that the budget is checked between runs
  mapfile -t names < <(iicrepro study list "${study[@]}" | awk '$1 ~ /^[A-Za-z0-9]/ && $NF != "ok" {print $1}')
  left=()
  for name in "${names[@]}"; do
    if [ $(( $(date +%s) - start )) -ge "$budget" ]; then left+=("$name"); continue; fi
    iicrepro study run "${common[@]}" --only "$name" || status=1
  done
  [ ${#left[@]} -eq 0 ] || echo "device_run.sh: not reached within ${budget} s: ${left[*]}"
fi
runs_dir=book/runs
for ((i = 0; i < ${#common[@]}; i++)); do [ "${common[$i]}" = "--out" ] && runs_dir="${common[$((i + 1))]}"; done
# names relative to the runs folder: here, `tar -xzf runs.tar.gz -C book/runs`
(cd "$runs_dir" && find . -newer /tmp/device_run.stamp -type f -print0 | tar --null -czf "$out/runs.tar.gz" --files-from=-)
echo "device_run.sh: $(tar -tzf "$out/runs.tar.gz" | wc -l) files in runs.tar.gz; $(( $(date +%s) - start )) s"
exit $status
