"""Tables of the main runs' per-epoch histories (Ablations page, "Number of epochs"): the accuracy curve's
first, best and last epoch, and whether each head's training loss was flat over the last quarter of training
(the CPU scale's convergence criterion, book/method.md). Both read iicrepro.report.frame.epochs_frame through
main_epochs: each (dataset, variant) at its preferred profile only.
"""
from __future__ import annotations

import pandas as pd

from iicrepro.report.frame import main_epoch_records, main_epochs
from iicrepro.report.load import labels
from iicrepro.report.tables import pct, to_md


def epoch_table(epochs: pd.DataFrame, reference) -> str:
    """Head-B accuracy of the main runs' mean curve: first, best and last epoch per dataset, variant, split."""
    main = main_epochs(epochs)
    main = main[(main["head"] == "B") & (main["epoch"] > 0)]
    if main.empty:
        return "*Not run: no main run has finished yet; the curves come from the main runs' per-epoch history.*\n"
    curve = main.groupby(["dataset", "variant", "split", "epoch"])["acc"].mean().reset_index()
    seeds = main.groupby(["dataset", "variant", "split"])["run"].nunique()

    def summary(group: pd.DataFrame) -> pd.Series:
        first, last, best = group.iloc[0], group.iloc[-1], group.loc[group["acc"].idxmax()]
        return pd.Series({name: f"{pct(r['acc'])} (epoch {int(r['epoch'])})"
                          for name, r in (("first epoch", first), ("best epoch", best), ("last epoch", last))})
    rows = {key: summary(group.sort_values("epoch")) for key, group in curve.groupby(["dataset", "variant", "split"])}
    table = pd.DataFrame(rows).T.rename_axis(["dataset", "variant", "split"])
    table.insert(0, "seeds", seeds)
    table = table.reset_index()
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return to_md(table)


FLAT_SHARE = 0.10  # a loss curve counts as flat when its last quarter moves it by less than this share of
#                    its drop, down or up (a loss that rises again late is not flat either)


def _last_quarter_share(curve: pd.DataFrame, last_epoch: float) -> float | None:
    """Share of a run's loss drop (first to last logged epoch) that happened in the last quarter of training:
    from the last value logged at or before epoch 0.75 E to the last value (curve: epoch, loss; sorted)."""
    before = curve[curve["epoch"] <= 0.75 * last_epoch]
    drop = curve["loss"].iloc[0] - curve["loss"].iloc[-1]
    if before.empty or len(curve) < 2 or drop <= 0:
        return None
    return float((before["loss"].iloc[-1] - curve["loss"].iloc[-1]) / drop)


def _head_shares(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per main run and head (dataset, variant, head, run, share): the last quarter's share of its
    training-loss drop; runs whose loss did not fall are left out (empty frame if none)."""
    main = main_epoch_records(epochs)  # one profile per (dataset, variant)
    rows = []
    if main.empty:
        return pd.DataFrame(rows, columns=["dataset", "variant", "head", "run", "share"])
    for head, column in (("A", "loss_a"), ("B", "loss_b")):
        for (dataset, variant, run), group in main.groupby(["dataset", "variant", "run"]):
            curve = group[["epoch", column]].dropna().rename(columns={column: "loss"}).sort_values("epoch")
            share = _last_quarter_share(curve, group["epoch"].max())
            if share is not None:
                rows.append({"dataset": dataset, "variant": variant, "head": head, "run": run, "share": share})
    return pd.DataFrame(rows, columns=["dataset", "variant", "head", "run", "share"])


def convergence_note(epochs: pd.DataFrame, reference) -> str:
    """The main-table cells whose head B (the evaluated head) was not flat over the last quarter of training
    in every seed, with the seeds' shares: a sentence under the Results page's tables ('' if every cell is
    flat or none has run)."""
    shares = _head_shares(epochs)
    shares = shares[shares["head"] == "B"]
    names = labels(reference)
    moving = []
    for (dataset, variant), group in shares.groupby(["dataset", "variant"], sort=False):
        off = group[group["share"].abs() >= FLAT_SHARE]
        if not off.empty:
            moving.append(f"{names.get(dataset, dataset)} {variant} ({len(off)} of {len(group)} "
                          f"seed{'s' if len(group) > 1 else ''}: "
                          + ", ".join(f"{100 * x:.1f} %" for x in group["share"]) + ")")
    if not moving:
        return ""
    return ("**Not converged** by the CPU scale's criterion (head B's training loss moved by "
            f"{100 * FLAT_SHARE:.0f} % or more of its drop in the last quarter of training; the last quarter's "
            "share per seed in brackets; curves and the whole table on {doc}`ablations`, \"Number of epochs\"): "
            + "; ".join(moving) + ". Their numbers may still move with more epochs.\n")


def convergence_table(epochs: pd.DataFrame, reference) -> str:
    """Per main-table dataset, variant and head: the share of the training-loss drop in the last quarter,
    per seed, and whether every seed is flat (share within +-FLAT_SHARE), the criterion of the CPU scale's epochs."""
    rows = _head_shares(epochs)
    if rows.empty:
        return ""
    shares = rows.groupby(["dataset", "variant", "head"])["share"]
    table = pd.DataFrame({"seeds": shares.size().astype(str),
                          "last quarter's share of the loss drop (per seed)": shares.agg(
                              lambda v: ", ".join(f"{100 * x:.1f} %" for x in v)),
                          f"flat (every seed within ±{100 * FLAT_SHARE:.0f} %)": shares.agg(
                              lambda v: "yes" if (v.abs() < FLAT_SHARE).all() else "no")}).reset_index()
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return ("Convergence, from the same histories: how much of each head's training-loss drop (first to last "
            "epoch it trained) happened in the last quarter of training (the shaded span above); negative: the "
            "loss rose again. A seed whose loss did not fall at all is left out of its row.\n\n"
            + to_md(table))
