"""The record of a training run and the two protocols that pick an epoch from it (DESIGN.md).

Paper protocol: the best epoch by head-B accuracy on the "paper_eval" split (labels choose the epoch,
transductive, as the authors' reported maxima; facts section 1). Label-free protocol: the last epoch, or
the epoch of lowest head-B training loss, scored on the "heldout" split where the dataset has one (else
on paper_eval, and the entry says so). With eval_every > 1 both rules choose among the evaluated epochs.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

PAPER_SPLIT, HELDOUT_SPLIT = "paper_eval", "heldout"
HISTORY_NAME = "history.json"  # written beside checkpoint.pt after every epoch


class History(dict):
    """A run's record: "config", "device", "engine", "initial" (untrained network's scores), "epochs"
    (one dict per epoch, see iicrepro.train), "selection" (select_epochs). A plain dict otherwise."""

    def to_dict(self) -> dict:
        """A deep copy that ``json.dumps(..., allow_nan=False)`` accepts: NaN and infinities become None."""
        return _finite(copy.deepcopy(dict(self)))


def write_history(path, history: dict) -> None:
    """Write the history as strict JSON atomically (temporary name, then rename): a reader never sees half."""
    path = Path(path)
    data = history.to_dict() if hasattr(history, "to_dict") else _finite(copy.deepcopy(dict(history)))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _acc(record: dict, split: str) -> float:
    """Head-B accuracy of an epoch on a split; -inf when missing or undefined (never selected)."""
    acc = record["eval"].get(split, {}).get("b", {}).get("acc")
    return acc if isinstance(acc, float) and math.isfinite(acc) else -math.inf


def _entry(rule: str, record: dict, split: str, paper_split: str | None) -> dict:
    """What a selection reports: the rule, the epoch, and head B's scores on ``split``."""
    scores = record["eval"].get(split, {}).get("b") or {}
    entry = {"rule": rule, "epoch": record["epoch"], "split": split, "acc": scores.get("acc"),
             "miou": scores.get("miou"), "per_class_iou": scores.get("per_class_iou")}
    if paper_split is not None and paper_split != split:
        entry[f"{paper_split}_acc"] = (record["eval"].get(paper_split, {}).get("b") or {}).get("acc")
    return entry


def select_epochs(history) -> dict:
    """The paper's and the label-free epoch choices of one run, each labelled with its rule and split.

    Returns {"paper": ..., "last": ..., "lowest_loss": ...}; each {rule, epoch, split, acc, miou,
    per_class_iou} (+ "<paper split>_acc" when scored elsewhere). Empty dict before the first evaluated
    epoch; mid-run (eval_every > 1) "last" is the last evaluated epoch.
    Splits: paper -> "paper_eval" (else the first evaluation set); label-free -> "heldout" where it was
    evaluated, else the paper split.
    """
    scored = [r for r in history["epochs"] if r["eval"]]  # every epoch unless eval_every > 1 (the last always)
    if not scored:
        return {}
    names = list(scored[-1]["eval"])
    paper_split = PAPER_SPLIT if PAPER_SPLIT in names else (names[0] if names else None)
    free_split = HELDOUT_SPLIT if HELDOUT_SPLIT in names else paper_split
    if paper_split is None:  # nothing was evaluated
        return {}
    best = max(scored, key=lambda r: (_acc(r, paper_split), -r["epoch"]))  # ties: earliest epoch
    trained_b = [r for r in scored if r.get("loss_b") is not None] or scored
    lowest = min(trained_b, key=lambda r: (r["loss_b"] if r.get("loss_b") is not None else math.inf,
                                           r["epoch"]))
    return {
        "paper": _entry(f"best epoch by head-B accuracy on {paper_split} (labels choose the epoch)",
                        best, paper_split, None),
        "last": _entry("last epoch (label-free)", scored[-1], free_split, paper_split),
        "lowest_loss": _entry("lowest head-B training loss (label-free)", lowest, free_split, paper_split),
    }
