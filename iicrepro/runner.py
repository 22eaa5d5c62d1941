"""Execute the runs of a study through papermill and write their run files (NAME.ipynb + NAME.json).

A run is skipped when its run file says "ok" with the same fingerprint: a hash of its notebook parameters,
the notebook template and every file of the package except the modules no run can import
(NOT_IN_RUNS), so a change of code or parameters reruns it and nothing else does. A failed run keeps its partial notebook (the error is visible in it) and its run file
says which cell failed. Files are written to a temporary name first and renamed, so an interrupted run
never leaves a half-written run file behind. papermill is imported here only, never by the library.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from iicrepro.config import FIELDS
from iicrepro.history import HISTORY_NAME
from iicrepro.revision import code_revision
from iicrepro.study import RUNTIME_PARAMS, Run, Study, notebook_parameters, resolved_config

KERNEL = "python3"  # the kernelspec of the environment's ipykernel (argv "python" = this interpreter)
PROTECTED = {"name", "notebook", "profile", "status", "params", "fingerprint", "checkpoint_key", "code_revision",
             "command", "started", "wall_time_s", "study_group", "variant", "seed"}  # metrics cannot replace these


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (tmp + rename); NaN and infinities become null (strict JSON)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# Code no run can import: the book's report package (iicrepro/report/, tables and figures from run files)
# and the benchmark package (iicrepro/bench/, reached only from the CLI). It cannot change a run's result,
# so editing it must not make every run stale. An entry ending in "/" leaves out a whole package.
NOT_IN_RUNS = frozenset({"iicrepro/report/", "iicrepro/bench/"})


def left_out(relative: str) -> bool:
    """Whether a package file (path relative to the root, POSIX) is left out of the run fingerprint."""
    return any(relative == entry or (entry.endswith("/") and relative.startswith(entry)) for entry in NOT_IN_RUNS)


def code_hash(root: Path) -> str:
    """sha256 over every source file of the package (path and content), NOT_IN_RUNS code excepted."""
    digest = hashlib.sha256()
    for path in sorted((root / "iicrepro").rglob("*.py")):
        if left_out(path.relative_to(root).as_posix()):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(run: Run, root: Path, package_hash: str, *, params: dict | None = None) -> str:
    """Hash of what determines a run's result: parameters, notebook template, package code."""
    digest = hashlib.sha256(json.dumps(run.params if params is None else params, sort_keys=True,
                                       default=str).encode())
    digest.update((root / run.notebook).read_bytes())
    digest.update(package_hash.encode())
    return digest.hexdigest()[:16]


def checkpoint_key(run: Run, root: Path, package_hash: str) -> str:
    """The fingerprint without the number of epochs: the name of a run's checkpoint folder. Training at a
    constant learning rate does not depend on how many epochs follow, so a run given more epochs (its loss
    was not yet flat) resumes from its last checkpoint instead of starting again, and trains as a run of that
    length would (tested; with eval_every > 1 its history also holds the evaluation of the old last epoch); a
    run given fewer epochs than that folder holds gets a folder of its own (checkpoint_folder)."""
    params = {k: v for k, v in run.params.items() if k != "epochs"}
    if "overrides" in params:
        params["overrides"] = {k: v for k, v in params["overrides"].items() if k != "epochs"}
    return fingerprint(run, root, package_hash, params=params)


def record_params(run: Run) -> dict:
    """Every parameter of a run: the resolved RunConfig plus the notebook-only ones and the book's labels."""
    resolved = resolved_config(run.params).to_dict()
    extra = {k: v for k, v in run.params.items() if k not in FIELDS and k != "overrides"}
    return {**resolved, **extra, "study_group": run.study_group, "variant": run.variant, "seed": run.seed}


def command(run: Run, study: Study) -> str:
    """The shell command that reproduces a run from the repository root."""
    parts = ["iicrepro study run", f"--only {run.name}", f"--profile {study.profile}"]
    if study.manifest.resolve() != study.root / "study.yaml":
        parts.append(f"--manifest {os.path.relpath(study.manifest, study.root)}")
    if run.requires:
        parts.append("--with-downloads")
    return " ".join(parts)


def base_record(run: Run, study: Study, fp: str | None, revision: str) -> dict:
    params = record_params(run)
    return {"name": run.name, "notebook": run.notebook, "profile": study.profile, "status": "not run",
            "params": params, "preset": run.params.get("preset"), "dataset": params["dataset"],
            "study_group": run.study_group, "variant": run.variant, "seed": run.seed,
            "code_revision": revision, "fingerprint": fp, "command": command(run, study)}


def _failure(error: Exception, notebook_path: Path) -> dict:
    """Which cell of the template failed, and how (the injected-parameters and error-banner cells of
    papermill are not counted, so the index is the template's)."""
    failure = {"cell_index": None, "execution_count": getattr(error, "exec_count", None), "cell_source": None,
               "ename": getattr(error, "ename", type(error).__name__),
               "evalue": str(getattr(error, "evalue", error))[:2000]}
    if not notebook_path.is_file():
        return failure
    skip = {"injected-parameters", "papermill-error-cell-tag"}
    cells = [c for c in json.loads(notebook_path.read_text())["cells"]
             if not skip & set(c.get("metadata", {}).get("tags", []))]
    for index, cell in enumerate(cells):
        errored = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        if errored or cell.get("metadata", {}).get("papermill", {}).get("exception"):
            source = "".join(cell["source"]).strip().splitlines()
            failure.update(cell_index=index, execution_count=cell.get("execution_count"),
                           cell_source=source[0] if source else "")
            break
    return failure


def describe_failure(failure: dict) -> str:
    """One line: which cell failed and the error, e.g. for the command's report."""
    evalue = (failure.get("evalue") or "").strip().splitlines()
    return (f"cell {failure.get('cell_index')} of the template (In [{failure.get('execution_count')}], "
            f"{failure.get('cell_source')!r}): {failure.get('ename')}: {evalue[0] if evalue else ''}")


def checkpoint_folder(run: Run, record: dict, checkpoints: Path) -> str:
    """NAME-KEY: one folder per checkpoint key (the same parameters but epochs, the same code), so a run given
    more epochs continues; one given fewer epochs than that folder's history holds gets NAME-FINGERPRINT."""
    if not record.get("checkpoint_key"):
        return run.name
    folder = f"{run.name}-{record['checkpoint_key']}"
    history = checkpoints / folder / HISTORY_NAME
    done = len(json.loads(history.read_text()).get("epochs") or []) if history.is_file() else 0
    wanted = (record.get("params") or {}).get("epochs")
    return f"{run.name}-{record['fingerprint']}" if wanted is not None and done > wanted else folder


def execute(run: Run, study: Study, record: dict, *, checkpoints: Path | None, log_output: bool) -> dict:
    """Run one notebook through papermill; return the record completed with metrics or the failure."""
    import papermill  # the runner's dependency only (extra "notebooks")

    accepted = notebook_parameters(study.root / run.notebook)
    out_rel = os.path.relpath(study.out, study.root)
    metrics = study.out / f".{run.name}.metrics.json"
    runtime = {"metrics_path": os.path.join(out_rel, metrics.name)}
    if checkpoints is not None:
        folder = checkpoint_folder(run, record, Path(checkpoints))
        runtime.update(out_dir=os.path.join(os.path.relpath(checkpoints, study.root), folder), resume=True)
    params = {**run.params, **{k: v for k, v in runtime.items() if k in accepted}}
    partial, final = study.out / f".{run.name}.part.ipynb", study.out / f"{run.name}.ipynb"
    metrics.unlink(missing_ok=True)
    record.update(started=datetime.now(timezone.utc).isoformat(timespec="seconds"), status="running")
    start = time.monotonic()
    try:
        papermill.execute_notebook(str(study.root / run.notebook), str(partial), parameters=params,
                                   kernel_name=KERNEL, cwd=str(study.root), progress_bar=False,
                                   log_output=log_output)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure is recorded in the run file, not raised
        record.update(status="failed", failure=_failure(error, partial))
    record["wall_time_s"] = round(time.monotonic() - start, 2)
    if partial.is_file():
        os.replace(partial, final)
    if metrics.is_file():
        record.update({k: v for k, v in json.loads(metrics.read_text()).items() if k not in PROTECTED})
        metrics.unlink()
    elif record["status"] == "ok":
        record.update(status="failed", failure={"cell_index": None, "execution_count": None, "ename": "NoMetrics",
                                                "evalue": f"the notebook wrote no {runtime['metrics_path']}"})
    return record


def alias(run: Run, study: Study, record: dict) -> dict:
    """A reference variant of an ablation: the results of `alias_of` under this run's labels."""
    source = study.out / f"{run.alias_of}.json"
    data = json.loads(source.read_text()) if source.is_file() else {}
    if data.get("status") != "ok":
        return {**record, "alias_of": run.alias_of, "reason": f"waits for {run.alias_of} (not run yet)"}
    kept = {k: v for k, v in data.items() if k not in PROTECTED or k in ("status", "started", "wall_time_s",
                                                                         "fingerprint", "code_revision")}
    params = {**data["params"], "study_group": run.study_group, "variant": run.variant}
    return {**record, **kept, "params": params, "preset": data.get("preset"), "dataset": data.get("dataset"),
            "notebook": data.get("notebook"), "alias_of": run.alias_of,
            "command": data.get("command", record["command"])}


def run_one(run: Run, study: Study, *, force: bool, with_downloads: bool, checkpoints: Path | None,
            log_output: bool, package_hash: str, revision: str) -> tuple[str, dict]:
    """Bring one run file up to date; returns (action, record): action is one of
    "skipped", "ok", "failed", "not run", "alias"."""
    path = study.out / f"{run.name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    fp = fingerprint(run, study.root, package_hash) if not run.alias_of else None
    record = base_record(run, study, fp, revision)
    if run.alias_of:
        record = alias(run, study, record)
        action = "alias" if record["status"] == "ok" else "not run"
    elif run.requires and not with_downloads:
        record.update(requires=run.requires, commands=list(run.commands),
                      reason=f"requires {run.requires}: not run here")
        action = "not run"
    elif not force and old.get("status") == "ok" and old.get("fingerprint") == fp:
        return "skipped", old
    else:
        record["checkpoint_key"] = checkpoint_key(run, study.root, package_hash)
        record = execute(run, study, record, checkpoints=checkpoints, log_output=log_output)
        action = record["status"]
    write_json(path, record)
    return action, record


def run_study(study: Study, runs: list[Run], *, force: bool = False, with_downloads: bool = False,
              checkpoints: Path | None = None, log_output: bool = False) -> list[tuple[Run, str, dict]]:
    """Execute `runs` (aliases last, so that their sources exist), printing one line per run."""
    check_kernel()
    study.out.mkdir(parents=True, exist_ok=True)
    package_hash, revision = code_hash(study.root), code_revision(study.root)
    ordered = sorted(runs, key=lambda r: r.alias_of is not None)
    results = []
    for number, run in enumerate(ordered, start=1):
        print(f"[{number}/{len(ordered)}] {run.name} ...", flush=True)
        action, record = run_one(run, study, force=force, with_downloads=with_downloads, checkpoints=checkpoints,
                                 log_output=log_output, package_hash=package_hash, revision=revision)
        detail = describe_failure(record["failure"]) if action == "failed" else record.get("reason", "")
        wall = f" ({record['wall_time_s']:.1f} s)" if action in ("ok", "failed") else ""
        print(f"[{number}/{len(ordered)}] {run.name}: {action}{wall} {detail}".rstrip(), flush=True)
        results.append((run, action, record))
    return results


def statuses(study: Study) -> list[tuple[Run, str]]:
    """Status of every run's file: ok / failed / not run / missing, or "stale" when code or params changed."""
    package_hash, rows = code_hash(study.root), []
    for run in study.runs:
        path = study.out / f"{run.name}.json"
        data = json.loads(path.read_text()) if path.is_file() else {"status": "missing"}
        status = data.get("status", "missing")
        if status in ("ok", "failed") and not run.alias_of \
                and data.get("fingerprint") != fingerprint(run, study.root, package_hash):
            status += " (stale)"
        rows.append((run, status))
    return rows


def check_kernel() -> None:
    """The python3 kernel must run this environment's interpreter, or the notebooks would not see iicrepro."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except NoSuchKernel:
        raise ValueError(f"no Jupyter kernel named {KERNEL!r}: run `{sys.executable} -m ipykernel install "
                         f"--sys-prefix`") from None
    if argv[0] not in ("python", "python3") and Path(argv[0]).resolve() != Path(sys.executable).resolve():
        raise ValueError(f"the {KERNEL!r} kernel runs {argv[0]}, not this environment's {sys.executable}: run "
                         f"`{sys.executable} -m ipykernel install --sys-prefix`")
