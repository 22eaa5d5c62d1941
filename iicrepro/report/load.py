"""Read what the book reads: run files, the quoted reference numbers and the study manifest.

Run files (RUNS/NAME.json, written by iicrepro.runner) are grouped by three keys, read from the top level
of the run file or, failing that, from its "params":
  study_group   "main" (IIC, Table 4), "baseline-kmeans", "baseline-random", "ablation-*", "datasets"
  variant       the label inside the group: "faithful" / "improved" for "main"; the setting for ablations
  dataset       a key of iicrepro.config.DATASETS ("camvid3", "potsdam6", ...)
Runs sharing (study_group, variant, dataset) are seeds of one cell. Numbers are read by iicrepro.report.frame.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

MAIN_VARIANTS = ("faithful", "improved")
BASELINES = {"baseline-kmeans": "kmeans", "baseline-random": "random_net"}  # study_group -> reference key
METHODS = {"main": "IIC", "baseline-kmeans": "k-means", "baseline-random": "random network"}


def _key(data: dict, name: str, default=None):
    """A grouping key from the top level of a run file, else from its params."""
    value = data.get(name, (data.get("params") or {}).get(name, default))
    return default if value is None else value


def read_runs(runs_dir: Path, *, pages_dir: Path | None = None) -> list[dict]:
    """Every run file under RUNS (RUNS/*.json and a profile's folder such as RUNS/cpu/*.json) as a dict,
    sorted by path, with its grouping keys resolved and "notebook_link": the executed notebook relative to
    pages_dir (default RUNS/..), or None. Invalid JSON raises a ValueError naming the file."""
    runs_dir = Path(runs_dir)
    pages_dir = Path(pages_dir or runs_dir.parent)
    loaded = {}
    for path in sorted(runs_dir.glob("*.json")) + sorted(runs_dir.glob("*/*.json")):
        try:
            loaded[path] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"run file {path}: not valid JSON ({error})") from error
    runs = []
    for path, data in loaded.items():
        data = _from_source(data, loaded.get(path.with_name(f"{data.get('alias_of')}.json")))
        notebook = path.with_suffix(".ipynb")
        if not notebook.is_file() and data.get("alias_of"):  # a relabelled run: link the run it reuses
            notebook = path.with_name(f"{data['alias_of']}.ipynb")
        runs.append({**data, "name": data.get("name", path.stem), "study_group": str(_key(data, "study_group", "")),
                     "variant": str(_key(data, "variant", "")), "dataset": str(_key(data, "dataset", "")),
                     "seed": _key(data, "seed"), "status": str(data.get("status", "not run")),
                     "profile": str(data.get("profile", "full")), "file": str(path),
                     "notebook_link": os.path.relpath(notebook, pages_dir).replace(os.sep, "/")
                     if notebook.is_file() else None,
                     "notebook_file": str(notebook) if notebook.is_file() else None})
    return runs


# What an alias keeps of its own file: its name and labels. Everything else is read from the run it reuses.
ALIAS_LABELS = ("name", "study_group", "variant", "alias_of")


def _from_source(data: dict, origin: dict | None) -> dict:
    """An alias run file (a reference variant, "alias_of": SOURCE) with its results taken from `origin`, the
    run file SOURCE.json of the same folder, so that it can never show an older copy of a run that was trained
    again (its file is a copy made by `iicrepro study run`, iicrepro.runner.alias). Any other run file, or an
    alias without its source file, is left as it is."""
    if not data.get("alias_of") or origin is None:
        return data
    labels = {key: data[key] for key in ALIAS_LABELS if key in data}
    params = {**(origin.get("params") or {}), **{k: v for k, v in (data.get("params") or {}).items()
                                                  if k in ("study_group", "variant")}}
    return {**origin, **labels, "params": params}


def read_reference(path: Path) -> dict:
    """The quoted numbers (book/reference_numbers.yaml); a missing file is an error naming it."""
    if not Path(path).is_file():
        raise ValueError(f"reference numbers {path} not found (expected book/reference_numbers.yaml)")
    return yaml.safe_load(Path(path).read_text()) or {}


def read_manifest(path: Path) -> list[dict]:
    """Raw run entries of the study manifest (empty when there is none): only used to name commands."""
    if not Path(path).is_file():
        return []
    return list((yaml.safe_load(Path(path).read_text()) or {}).get("runs") or [])


def experiments(reference: dict) -> list[dict]:
    """Table rows: the reference file's experiments (the paper's four, then the offline analogues)."""
    rows = reference.get("experiments")
    if not rows:
        from iicrepro.config import DATASETS
        rows = [{"dataset": name, "label": name} for name in DATASETS]
    return rows


def paper_iic(reference: dict) -> dict[str, float | None]:
    """{paper dataset: the paper's Table-4 IIC accuracy (%)} as quoted in the reference file (None where absent)."""
    return {ds: (e or {}).get("value") for ds, e in ((reference.get("iic") or {}).get("paper") or {}).items()}


def labels(reference: dict, *, analogue: bool = False) -> dict[str, str]:
    """{dataset: label}; analogue=True adds "(analogue of ...)" to the offline rows."""
    plain = {r["dataset"]: r["label"] for r in experiments(reference)}
    if not analogue:
        return plain
    return {r["dataset"]: (f"{r['label']} (analogue of {plain.get(r['analogue_of'], r['analogue_of'])})"
                           if r.get("analogue_of") else r["label"]) for r in experiments(reference)}


def entry_dataset(entry: dict, manifest: list[dict]) -> str | None:
    """Dataset of a manifest entry: its params' dataset or preset, or those of the run it aliases."""
    params = entry.get("params") or {}
    if params.get("dataset", params.get("preset")):
        return params.get("dataset", params.get("preset"))
    source = next((e for e in manifest if e.get("name") == entry.get("alias_of")), None)
    return entry_dataset(source, manifest) if source is not None and source is not entry else None


def command_for(*, group: str, variant: str | None, dataset: str, runs: list[dict], manifest: list[dict]) -> str:
    """The command that would fill an empty cell: a run file's own, else the manifest entry's."""
    for run in runs:
        if run["study_group"] == group and run["dataset"] == dataset and run.get("command") \
                and variant in (None, run["variant"]):
            return " && ".join(list(run.get("commands") or []) + [run["command"]])
    entry = manifest_entry(manifest, group=group, variant=variant, dataset=dataset)
    if entry is not None:
        # offline analogues: the scale this book's runs use (the CPU profile once any of its runs exists)
        cpu = not entry.get("requires") and any(run.get("profile") == "cpu" for run in runs)
        extra = " --with-downloads" if entry.get("requires") else " --profile cpu" if cpu else ""
        first = [f"iicrepro study run --only '{entry['alias_of']}-s*'"] if entry.get("alias_of") else []
        return " && ".join(list(entry.get("commands") or []) + first +
                           [f"iicrepro study run --only '{entry['name']}-s*'{extra}"])
    return (f"none in study.yaml: add a run with study_group {group}, variant {variant}, preset {dataset}; "
            f"then iicrepro study run --only 'NAME-s*'")


def manifest_entry(manifest: list[dict], *, group: str, variant: str | None, dataset: str) -> dict | None:
    """The first manifest entry of (study group, variant, dataset); `variant` None matches any variant."""
    return next((entry for entry in manifest if entry.get("study_group") == group
                 and variant in (None, str(entry.get("variant"))) and entry_dataset(entry, manifest) == dataset), None)


def manifest_cells(manifest: list[dict], group: str) -> list[tuple[str, str]]:
    """(dataset, variant) of every manifest entry of a study group, in manifest order."""
    return [(entry_dataset(e, manifest), str(e.get("variant"))) for e in manifest
            if e.get("study_group") == group and entry_dataset(e, manifest) is not None]
