"""Run files as tidy pandas DataFrames: every table and figure of the book is a groupby or pivot of these.

load_frame(runs_dir): one row per run x selection rule x split (the one table of the study):
    run, group, variant, dataset, seed, method, profile, scale, device, code_revision, status, wall_time_s,
    notebook, alias_of, rule, protocol, split, selected, epoch, acc, miou
  rule: "paper" (best epoch by head-B accuracy on paper_eval: labels choose it), "last", "lowest_loss"
  (label-free; iicrepro.history.select_epochs); a baseline has no epochs, its rules only name the split.
  split: every split the chosen epoch was scored on; selected: the split the rule itself reports.
  acc, miou: head B, fractions in [0, 1]. A run without numbers (failed, not run) is one row, rule NaN.
epochs_frame(runs): one row per run x epoch (0: untrained) x split x head, with the epoch's timings.
runs_frame(runs): one row per run file: provenance (parameters, revision, device, command).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iicrepro.report.load import METHODS, read_runs

RULES = ("paper", "last", "lowest_loss")
RULE_LABELS = {"paper": "paper protocol", "last": "label-free, last epoch", "lowest_loss": "label-free, lowest loss"}
PROFILE_ORDER = ("full", "cpu", "smoke")  # a cell shows the first profile it has runs of


def scale_of(run: dict) -> str:
    """The scale a run ran at, from its params: crop side, pre-scale, image cap, data fraction."""
    params = run.get("params") or {}
    parts = []
    if params.get("input_size") is not None:
        parts.append(f"{params['input_size']} px")
    if params.get("prescale") is not None:
        parts.append(f"×{params['prescale']:g}")
    if params.get("max_images") is not None:
        parts.append(f"≤ {params['max_images']} images")
    if params.get("data_fraction") not in (None, 1, 1.0):
        parts.append(f"{100 * params['data_fraction']:g}% of images")
    return ", ".join(parts) or "—"


def _engine(run: dict) -> dict:
    """The engine record of a training run's history (precision, bf16 units); {} for other runs."""
    return (run.get("history") or {}).get("engine") or {}


def device_of(run: dict) -> str | None:
    """The device a run trained on; on a CPU also its bf16 matrix units, as the run's history records them.

    A Net10a epoch in bf16 takes several times longer on a CPU with AVX512-BF16 alone than on one with AMX
    (the timings of the run files), so the cost tables keep such runs apart instead of pooling them as "cpu".
    """
    device = run.get("device")
    units = _engine(run).get("cpu_bf16_units")
    if device != "cpu" or units is None:
        return device
    if "amx_bf16" in units:
        return "cpu (AMX)"
    return "cpu (AVX512-BF16)" if "avx512_bf16" in units else "cpu (no bf16 units)"


def _identity(run: dict) -> dict:
    """The columns every frame shares (who the run is, where and how it ran)."""
    return {"run": run["name"], "group": run["study_group"], "variant": run["variant"], "dataset": run["dataset"],
            "seed": run["seed"], "method": METHODS.get(run["study_group"], "IIC"), "profile": run["profile"],
            "scale": scale_of(run), "device": device_of(run), "code_revision": run.get("code_revision"),
            "status": run["status"], "wall_time_s": run.get("wall_time_s"), "notebook": run.get("notebook_link"),
            "alias_of": run.get("alias_of")}


def _epoch_records(run: dict) -> dict[int, dict]:
    history = run.get("history") or {}
    records = ([history["initial"]] if history.get("initial") else []) + list(history.get("epochs") or [])
    return {r["epoch"]: r for r in records if "epoch" in r}


def _scores_at(run: dict, entry: dict, records: dict) -> dict[str, dict]:
    """{split: head-B scores} of the epoch a rule chose: the rule's own split from the selection entry, the
    other splits from the baseline block, the history at that epoch, or the entry's "<split>_acc"."""
    scores = dict((run.get("baseline") or {}).get("splits") or {})
    record = records.get(entry.get("epoch"))
    if not scores and record and record.get("eval"):
        scores = {split: block["b"] for split, block in record["eval"].items() if (block or {}).get("b")}
    scores.update({key[:-4]: {"acc": value} for key, value in entry.items()
                   if key.endswith("_acc") and key[:-4] not in scores})
    scores[entry.get("split")] = entry
    return scores


def _metric_rows(run: dict) -> list[dict]:
    """Rows of one run: rule x split, or a single row without numbers."""
    records, rows = _epoch_records(run), []
    if run["status"] == "ok":
        for rule, entry in (run.get("selection") or {}).items():
            for split, scores in _scores_at(run, entry, records).items():
                rows.append({"rule": rule, "protocol": "paper" if rule == "paper" else "label-free",
                             "split": split, "selected": split == entry.get("split"), "epoch": entry.get("epoch"),
                             "acc": scores.get("acc"), "miou": scores.get("miou")})
    return rows or [{"rule": None, "protocol": None, "split": None, "selected": False, "epoch": None,
                     "acc": None, "miou": None}]


def results_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run x rule x split (see the module docstring); numbers as float (NaN where missing)."""
    rows = [{**_identity(run), **row} for run in runs for row in _metric_rows(run)]
    frame = pd.DataFrame(rows, columns=list(_identity(_EMPTY)) + ["rule", "protocol", "split", "selected",
                                                                  "epoch", "acc", "miou"])
    return frame.astype({"acc": float, "miou": float, "wall_time_s": float, "selected": bool})


_EMPTY = {"name": "", "study_group": "", "variant": "", "dataset": "", "seed": None, "profile": "", "status": ""}


def load_frame(runs_dir: Path, *, pages_dir: Path | None = None) -> pd.DataFrame:
    """Every run file of runs_dir as one tidy DataFrame: a row per run x selection rule x split."""
    return results_frame(read_runs(runs_dir, pages_dir=pages_dir))


def epochs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run x epoch x split x head (a: many-to-one, b: Hungarian) of the ok runs' histories."""
    rows = []
    for run in runs:
        if run["status"] != "ok":
            continue
        for epoch, record in _epoch_records(run).items():
            timing = {k: record.get(k) for k in ("loss_a", "loss_b", "train_s", "eval_s", "wall_s", "pairs_per_s",
                                                 "peak_mem_mb")}
            timing["heads_trained"] = "+".join(record.get("heads_trained") or [])
            if epoch > 0 and not record.get("eval"):  # not evaluated (eval_every > 1): losses and timings only
                rows.append({**_identity(run), "epoch": epoch, "split": None, "head": None, "acc": None,
                             "miou": None, **timing, "eval_s": None})
            for split, heads in (record.get("eval") or {}).items():
                for head, scores in (heads or {}).items():
                    rows.append({**_identity(run), "epoch": epoch, "split": split, "head": head.upper(),
                                 "acc": (scores or {}).get("acc"), "miou": (scores or {}).get("miou"), **timing})
    columns = list(_identity(_EMPTY)) + ["epoch", "split", "head", "acc", "miou", "loss_a", "loss_b", "train_s",
                                         "eval_s", "wall_s", "pairs_per_s", "peak_mem_mb", "heads_trained"]
    frame = pd.DataFrame(rows, columns=columns)
    numeric = ["acc", "miou", "loss_a", "loss_b", "train_s", "eval_s", "wall_s", "pairs_per_s", "peak_mem_mb"]
    return frame.astype({c: float for c in numeric})


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run file: identity, parameters (preset + changes, and the run file's `params` dict as it is),
    torch, start, command, batch size."""
    rows = [{**_identity(run), "parameters": params_summary(run.get("params") or {}),
             "params": dict(run.get("params") or {}), "torch": run.get("torch"),
             "started": run.get("started"), "command": run.get("command"),
             "batch_size": (run.get("params") or {}).get("batch_size"), "precision": precision_of(run),
             "cost_s": cost_of(run), **training_size_of(run)} for run in runs]
    columns = list(_identity(_EMPTY)) + ["parameters", "params", "torch", "started", "command", "batch_size",
                                         "precision", "cost_s", "input_size", "epoch_units"]
    return pd.DataFrame(rows, columns=columns).astype({"wall_time_s": float, "cost_s": float, "input_size": float,
                                                       "epoch_units": float})


def training_size_of(run: dict) -> dict:
    """How much a training run trained, for cost estimates: its crop side and its epochs over the whole
    training set (epochs done x data_fraction: 120 epochs on 10 % of the images count 12). None for other runs."""
    history = run.get("history") or {}
    config = history.get("config") or {}
    epochs = len(history.get("epochs") or [])
    if not epochs or config.get("input_size") is None:
        return {"input_size": None, "epoch_units": None}
    return {"input_size": config["input_size"], "epoch_units": epochs * float(config.get("data_fraction") or 1.0)}


def cost_of(run: dict) -> float | None:
    """Wall time (s) the run cost in all: its run file's wall time, which for a run resumed from a checkpoint
    covers only the last call, or the sum of its epochs' wall times (history) when that is larger."""
    wall = run.get("wall_time_s")
    epochs = sum(e.get("wall_s") or 0.0 for e in (run.get("history") or {}).get("epochs") or [])
    return max(wall or 0.0, epochs) if (wall is not None or epochs) else None


def precision_of(run: dict) -> str | None:
    """What a training run computed in: "bf16" or "float32" (its history's engine), None for other runs."""
    engine = _engine(run)
    return None if "bf16" not in engine else "bf16" if engine["bf16"] else "float32"


def params_summary(params: dict) -> str:
    """The preset and every parameter that differs from it (what identifies the run)."""
    from iicrepro.config import FIELDS, make_config

    preset = params.get("preset")
    try:
        base = make_config(preset=preset).to_dict() if preset else make_config().to_dict()
    except ValueError:
        base = {}
    diff = [f"{k}={params[k]}" for k in FIELDS if k in params and k in base
            and (list(base[k]) if isinstance(base[k], tuple) else base[k]) != params[k]]
    return ", ".join(([f"preset={preset}"] if preset else []) + diff) or "defaults"


def ranked_profiles(profiles) -> list[str]:
    """The profiles present, in the order cells prefer them: full, cpu, smoke, then any other alphabetically."""
    present = set(pd.Series(list(profiles), dtype=object).dropna())
    return [p for p in PROFILE_ORDER if p in present] + sorted(present - set(PROFILE_ORDER))


def preferred_profile(profiles: pd.Series) -> str:
    """The profile a cell shows: full before cpu before smoke (then any other, alphabetically)."""
    ranked = ranked_profiles(profiles)
    return ranked[0] if ranked else "full"


def best_profile_rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of each (keys) cell that belong to its preferred profile (full runs hide smoke ones)."""
    if frame.empty:
        return frame
    best = frame.groupby(keys, dropna=False)["profile"].transform(lambda s: preferred_profile(s))
    return frame[frame["profile"] == best]


def main_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows of the main table's runs, each (dataset, variant) at its preferred profile only, as
    its table cells are: curves never pool a cpu-scale run with a full-scale one."""
    return best_profile_rows(epochs[epochs["group"] == "main"], ["dataset", "variant"])


def main_epoch_records(epochs: pd.DataFrame) -> pd.DataFrame:
    """main_epochs after training began, one row per run and epoch (the losses and timings of its record)."""
    main = main_epochs(epochs)
    return main[main["epoch"] > 0].drop_duplicates(["run", "epoch"])


def same_scale_rows(group: pd.DataFrame, *, profile: str, scale: str) -> tuple[pd.DataFrame, str | None]:
    """One group's runs in `profile`; without any there, those of another profile at the very same `scale`
    (crop, pre-scale: a baseline trains nothing, so batch and epochs do not matter), the first in the cells'
    order of profiles. Never crosses scales. -> (rows, the other profile taken, or None when `profile` had runs
    or nothing matched)"""
    own = group[group["profile"] == profile]
    if not own.empty:
        return own, None
    same = group[group["scale"] == scale]
    if same.empty:
        return own, None
    other = ranked_profiles(same["profile"])[0]
    return same[same["profile"] == other], other


def comparable_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, the rows at one scale: every group's runs of the profile its IIC runs have (else the
    dataset's preferred profile), or another profile's at the very same scale (`same_scale_rows`); a group with
    neither is left out, never compared across scales."""
    kept = []
    for _, rows in frame.groupby("dataset"):
        main = rows[rows["group"] == "main"]
        anchor = main if not main.empty else rows
        target = preferred_profile(anchor["profile"])
        scale = anchor[anchor["profile"] == target]["scale"].iloc[0]
        for _, group in rows.groupby("group"):
            same, _ = same_scale_rows(group, profile=target, scale=scale)
            if not same.empty:
                kept.append(same)
    return pd.concat(kept) if kept else frame.iloc[0:0]


def seed_difference(minuend: pd.DataFrame, subtrahend: pd.DataFrame) -> pd.Series:
    """minuend - subtrahend of column "acc" (in the frames' unit) for every seed both have (index: seed, sorted);
    each frame holds the rows of one rule, one row a seed. The pairing of the answer's gains and the ablations'
    effects."""
    return (minuend.set_index("seed")["acc"] - subtrahend.set_index("seed")["acc"]).dropna().sort_index()


def protocol_rows(frame: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The rows a table cell under `rule` reads: the rule's own split of ok runs, plus runs without numbers."""
    return frame[((frame["rule"] == rule) & frame["selected"]) | frame["rule"].isna()]
