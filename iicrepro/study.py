"""The study: a manifest of runs (study.yaml) executed through papermill into book/runs/.

Each run of the manifest is one parameterised notebook (notebooks/*.ipynb) with one set of parameters.
`run_study` executes the runs that changed, writes NAME.ipynb (the executed notebook, kept even when it
fails) and NAME.json (the run file the book reads: metrics, parameters, code revision, device, wall time,
the command that reproduces it). Nothing in the book is computed by the book: it only reads these files.

Manifest (YAML, paths relative to its folder, the repository root):
  seeds: [0, 1, 2]                  # default seeds; a run expands into NAME-s0, NAME-s1, ...
  notebooks: {train: notebooks/train.ipynb, ...}
  profiles: {PROFILE: {out: FOLDER, seeds: [...], scale: S, epoch_factor: E, defaults: {...}, params: {...}}}
      all but out optional; scale multiplies each run's crop, pre-scale and d (CPU scale: 0.5), epoch_factor
      its epochs; defaults fill what a run leaves unset; params override every run's
  runs: - {name, notebook, study_group, variant, params: {...}, seeds?, requires?, commands?, alias_of?}
A run's params are notebook parameters (its `parameters` cell) or any RunConfig field (passed through the
notebook's `overrides` parameter). `requires: download` runs are written as "not run" with their commands;
`alias_of: NAME` runs reuse another run's results under another (study_group, variant) label. A run
whose resolved parameters equal an earlier run's in the chosen profile (same notebook, configuration,
seed and other parameters) becomes that run's alias too: e.g. at the CPU scale, where every run trains
with batch 32, the 100 % run of the dataset-size ablation *is* the faithful main run, and is not trained
twice (`implicit_aliases`).
Execution (papermill, run files, skip-if-unchanged) lives in iicrepro.runner.
"""
from __future__ import annotations

import ast
import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iicrepro.config import FIELDS, PRESETS, RunConfig, make_config

RUN_KEYS = {"name", "notebook", "study_group", "variant", "params", "seeds", "requires", "commands", "alias_of"}
TOP_KEYS = {"seeds", "notebooks", "profiles", "runs", "derived"}
PROFILE_KEYS = {"out", "seeds", "scale", "epoch_factor", "defaults", "params", "note"}
RUNTIME_PARAMS = ("metrics_path", "out_dir", "resume")  # plumbing set by the runner, not part of a run


@dataclass(frozen=True)
class Run:
    """One executable run of the study (after seed expansion and the profile's overrides)."""

    name: str  # e.g. "camvid3-faithful-s0"
    notebook: str  # template path relative to the repository root
    params: dict  # notebook parameters, including seed, profile and `overrides`
    study_group: str  # e.g. "main", "baseline-kmeans", "ablation-lambda"
    variant: str  # e.g. "faithful", "lambda=1.0"
    seed: int
    requires: str | None = None  # "download": the data is not available offline; never executed by default
    commands: tuple[str, ...] = ()  # how to get the data for a `requires` run
    alias_of: str | None = None  # reuse the results of this run (same seed suffix)


@dataclass
class Study:
    root: Path  # folder of the manifest (repository root)
    manifest: Path
    profile: str
    out: Path  # where run files go for this profile
    runs: list[Run] = field(default_factory=list)


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged `parameters` (name = literal  # meaning)."""
    notebook = json.loads(Path(path).read_text())
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return {target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
    raise ValueError(f"{path}: no cell tagged 'parameters'")


def _fail(where: str, message: str) -> None:
    raise ValueError(f"study manifest, {where}: {message}")


def _flatten(params: dict) -> dict:
    """Parameters with the contents of `overrides` lifted to the top level."""
    return {**{k: v for k, v in params.items() if k != "overrides"}, **(params.get("overrides") or {})}


def _split_params(where: str, params: dict, accepted: dict) -> dict:
    """Notebook parameters as given; RunConfig fields the notebook does not declare go into `overrides`."""
    out, overrides = {}, {}
    for name, value in _flatten(params).items():
        if name in accepted:
            out[name] = value
        elif name in FIELDS and "overrides" in accepted:
            overrides[name] = value
        else:
            _fail(where, f"unknown parameter {name!r} (not a parameter of the notebook nor a RunConfig field)")
    if overrides:
        out["overrides"] = overrides
    return out


def resolved_config(params: dict) -> RunConfig:
    """The RunConfig a run's parameters resolve to: its preset, then its fields (`overrides` last)."""
    values = {k: v for k, v in params.items() if k in FIELDS and v is not None}
    values.update(params.get("overrides") or {})
    return make_config(preset=params.get("preset"), **values)


def _check_config(where: str, params: dict) -> None:
    """Fail early on an unknown preset or a bad RunConfig value (the notebook validates again)."""
    preset = params.get("preset")
    if preset is not None and preset not in PRESETS:
        _fail(where, f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
    try:
        resolved_config(params)
    except ValueError as error:
        _fail(where, str(error))


def _expand(entry: dict, index: int, study: Study, data: dict, profile: dict) -> list[Run]:
    """One manifest entry -> one Run per seed, with the profile's params on top."""
    where = f"run {entry.get('name', f'#{index}')!r}"
    if not isinstance(entry, dict) or "name" not in entry:
        _fail(where, "each run needs at least a name")
    if set(entry) - RUN_KEYS:
        _fail(where, f"unknown key(s) {sorted(set(entry) - RUN_KEYS)}: expected {sorted(RUN_KEYS)}")
    for key in ("study_group", "variant"):
        if not isinstance(entry.get(key), str):
            _fail(where, f"{key} must be a string (quote YAML words such as 'off'), got {entry.get(key)!r}")
    if entry.get("alias_of"):
        return _aliases(entry, where, data, profile)
    notebooks = data.get("notebooks", {})
    key = entry.get("notebook", "train")
    notebook = notebooks.get(key, key)
    if not (study.root / notebook).is_file():
        _fail(where, f"notebook {key!r} not found (a key of `notebooks`: {sorted(notebooks)}, or a path)")
    accepted = notebook_parameters(study.root / notebook)
    params = _flatten(dict(entry.get("params") or {}))
    _split_params(where, params, accepted)  # unknown names in the manifest fail before the profile applies
    reserved = sorted(set(params) & set(RUNTIME_PARAMS))
    if reserved:
        _fail(where, f"parameter(s) {reserved} are set by the runner, not by the manifest")
    # The profile applies on top: its scale, then its parameters (those this notebook cannot take left out).
    # `defaults` fill what the run leaves unset (so a run may still ask for e.g. bf16: true).
    extra = {k: v for k, v in {**scaled(params, profile), **profile.get("params", {})}.items()
             if k in accepted or (k in FIELDS and "overrides" in accepted)}
    defaults = {k: v for k, v in profile.get("defaults", {}).items()
                if k not in params and (k in accepted or (k in FIELDS and "overrides" in accepted))}
    params = _split_params(where, {**params, **defaults, **extra}, accepted)
    seeds = profile.get("seeds", entry.get("seeds", data.get("seeds", [0])))
    runs = []
    for seed in seeds:
        run_params = {**params, "seed": seed, **({"profile": study.profile} if "profile" in accepted else {})}
        _check_config(f"{where} (seed {seed})", run_params)
        runs.append(Run(name=f"{entry['name']}-s{seed}", notebook=notebook, params=run_params,
                        study_group=entry["study_group"], variant=entry["variant"], seed=seed,
                        requires=entry.get("requires"), commands=tuple(entry.get("commands", ()))))
    return runs


SCALED_FIELDS = ("input_size", "prescale", "half_side")  # what a profile's `scale` multiplies


def scaled(params: dict, profile: dict) -> dict:
    """A profile's `scale` and `epoch_factor` applied to a run's resolved values (preset, then the run's own).

    scale s: input_size -> round(s x crop), prescale -> s x prescale, half_side d -> round(s x d) (half up:
    10 -> 5, 5 -> 3, 0 stays 0), so a CPU scale of 0.5 sees the same picture content per crop at half the
    pixels, and the displacement window keeps its size relative to the image. epoch_factor e: epochs ->
    max(1, round(e x epochs)). Runs of notebooks without these fields (the dataset summaries) get none.
    """
    scale, factor = profile.get("scale"), profile.get("epoch_factor")
    base = {**PRESETS.get(params.get("preset"), {}), **{k: v for k, v in params.items() if v is not None}}
    out = {}
    if scale is not None:
        for name in SCALED_FIELDS:
            value = base.get(name, getattr(RunConfig, name))
            out[name] = float(value) * scale if name == "prescale" else int(value * scale + 0.5)
    if factor is not None and "epochs" in base:
        out["epochs"] = max(1, int(base["epochs"] * factor + 0.5))
    return out


def _aliases(entry: dict, where: str, data: dict, profile: dict) -> list[Run]:
    """Runs that reuse another run's results (per seed) under their own study_group and variant."""
    if entry.get("params") or entry.get("requires") or entry.get("notebook"):
        _fail(where, "a run with alias_of takes its notebook and parameters from that run: remove them")
    seeds = profile.get("seeds", entry.get("seeds", data.get("seeds", [0])))
    return [_alias_run(f"{entry['name']}-s{seed}", entry["study_group"], entry["variant"], seed,
                       f"{entry['alias_of']}-s{seed}") for seed in seeds]


def _alias_run(name: str, study_group: str, variant: str, seed: int, alias_of: str) -> Run:
    """A run that reuses ``alias_of``'s results under its own name and labels (no notebook, no parameters)."""
    return Run(name=name, notebook="", params={"seed": seed}, study_group=study_group, variant=variant, seed=seed,
               alias_of=alias_of)


def load_study(manifest: str | Path = "study.yaml", *, profile: str = "full", out: str | Path | None = None) -> Study:
    """Read and validate the manifest; every problem raises a ValueError naming the run and parameter."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ValueError(f"study manifest {manifest} not found (run from the repository root or pass --manifest)")
    data = yaml.safe_load(manifest.read_text()) or {}
    unknown = {key for key in data if not str(key).startswith("x-")} - TOP_KEYS  # x-...: YAML anchors
    if unknown:
        _fail("top level", f"unknown key(s) {sorted(unknown)}: expected {sorted(TOP_KEYS)} or x-...")
    profiles = data.get("profiles", {})
    if profile not in profiles:
        _fail("profiles", f"unknown profile {profile!r}: expected one of {sorted(profiles)}")
    chosen = profiles[profile] or {}
    root = manifest.resolve().parent
    study = Study(root=root, manifest=manifest, profile=profile,
                  out=Path(out) if out is not None else root / chosen.get("out", f"book/runs-{profile}"))
    for index, entry in enumerate(data.get("runs", [])):
        study.runs.extend(_expand(entry, index, study, data, chosen))
    _check_profile(data, chosen, profile, study)
    unknown = set(chosen) - PROFILE_KEYS
    if unknown:
        _fail(f"profile {profile!r}", f"unknown key(s) {sorted(unknown)}: expected {sorted(PROFILE_KEYS)}")
    study.runs = implicit_aliases(study.runs)
    names = [run.name for run in study.runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        _fail("runs", f"duplicate run names {duplicates}")
    for run in study.runs:
        if run.alias_of and run.alias_of not in names:
            _fail(f"run {run.name!r}", f"alias_of names no run of the manifest: {run.alias_of!r}")
    return study


def _resolved(run: Run) -> tuple:
    """What a run computes: its notebook, its full configuration and its other parameters, the preset's
    name among them (hashable)."""
    others = {k: v for k, v in _flatten(run.params).items() if k not in FIELDS}
    return run.notebook, repr(resolved_config(run.params)), json.dumps(others, sort_keys=True, default=str)


def implicit_aliases(runs: list[Run]) -> list[Run]:
    """Each run that computes exactly what an earlier run computes becomes an alias of it (same seed).

    Runs that wait for a download, and explicit aliases, are left as they are.
    """
    first: dict[tuple, str] = {}
    out = []
    for run in runs:
        if run.alias_of or run.requires:
            out.append(run)
            continue
        key = _resolved(run)
        if key in first:
            run = _alias_run(run.name, run.study_group, run.variant, run.seed, first[key])
        else:
            first[key] = run.name
        out.append(run)
    return out


def _check_profile(data: dict, chosen: dict, profile: str, study: Study) -> None:
    """A profile parameter must be known to at least one notebook of the manifest (catches typos)."""
    known = set(FIELDS)
    for notebook in {run.notebook for run in study.runs if not run.alias_of}:
        known |= set(notebook_parameters(study.root / notebook))
    unknown = sorted((set(chosen.get("params", {})) | set(chosen.get("defaults", {}))) - known)
    if unknown:
        _fail(f"profile {profile!r}", f"unknown parameter(s) {unknown}")


def select(study: Study, only: list[str] | None) -> list[Run]:
    """Runs whose name matches any of the glob patterns (all runs when none given)."""
    if not only:
        return list(study.runs)
    chosen = [run for run in study.runs if any(fnmatch.fnmatchcase(run.name, p) for p in only)]
    if not chosen:
        raise ValueError(f"--only {only}: no run of the manifest matches (see `iicrepro study list`)")
    return chosen
