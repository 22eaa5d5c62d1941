"""Tables of the main runs' per-epoch histories (Ablations page, "Number of epochs"): the accuracy curve's
first, best and last epoch, and whether each head's training loss was flat over the last quarter of training
(the CPU scale's convergence criterion, book/method.md). Both read iicrepro.report.frame.epochs_frame through
main_epochs: each (dataset, variant) at its preferred profile only.
"""
from __future__ import annotations

import math

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
    from the last value logged at or before epoch 0.75 E to the last value (curve: epoch, loss; sorted).
    NaN if the loss did not fall at all (not flat either: nothing converged); None if too few epochs."""
    before = curve[curve["epoch"] <= 0.75 * last_epoch]
    if before.empty or len(curve) < 2:
        return None
    drop = curve["loss"].iloc[0] - curve["loss"].iloc[-1]
    if drop <= 0:
        return math.nan
    return float((before["loss"].iloc[-1] - curve["loss"].iloc[-1]) / drop)


def head_b_shares(epochs: pd.DataFrame, runs: pd.Series, *, profile: str) -> pd.Series:
    """Per run of `runs` (names) at `profile`: the last quarter's share of head B's training-loss drop (NaN
    where it did not fall; runs with too few epochs left out). epochs: epochs_frame, any profile."""
    rows = epochs[epochs["run"].isin(runs) & (epochs["profile"] == profile)]
    shares = {run: _last_quarter_share(_loss_curve(group, "loss_b"), group["epoch"].max())
              for run, group in rows.groupby("run")}
    return pd.Series({run: share for run, share in shares.items() if share is not None}, dtype=float)


def _loss_curve(group: pd.DataFrame, column: str) -> pd.DataFrame:
    """One run's training loss per trained epoch (epoch, loss; sorted), from rows that may repeat an epoch (one
    per split and head in epochs_frame)."""
    curve = group[group["epoch"] > 0][["epoch", column]].dropna().drop_duplicates("epoch")
    return curve.rename(columns={column: "loss"}).sort_values("epoch")


def flat_text(shares: pd.Series) -> str:
    """"1.9 %, flat", "0.1 %, 9.9 %, 10.2 %: 1 of 3 not flat" or "12.0 %, not flat" (FLAT_SHARE)."""
    off = int((~_flat(shares)).sum())
    values = ", ".join(map(_share_text, shares))
    if len(shares) == 1:
        return f"{values}, {'not flat' if off else 'flat'}"
    return f"{values}: {f'{off} of {len(shares)} not flat' if off else 'all flat'}"


def _flat(shares: pd.Series) -> pd.Series:
    """Whether each share is within +-FLAT_SHARE (a loss that did not fall, NaN, is not)."""
    return shares.abs() < FLAT_SHARE


def _share_text(share: float) -> str:
    return "did not fall" if math.isnan(share) else f"{100 * share:.1f} %"


def _head_shares(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per main run and head (dataset, variant, head, run, share): the last quarter's share of its
    training-loss drop, NaN where the loss did not fall (empty frame if none)."""
    main = main_epoch_records(epochs)  # one profile per (dataset, variant)
    rows = []
    if main.empty:
        return pd.DataFrame(rows, columns=["dataset", "variant", "head", "run", "share"])
    for head, column in (("A", "loss_a"), ("B", "loss_b")):
        for (dataset, variant, run), group in main.groupby(["dataset", "variant", "run"]):
            share = _last_quarter_share(_loss_curve(group, column), group["epoch"].max())
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
        off = group[~_flat(group["share"])]
        if not off.empty:
            moving.append(f"{names.get(dataset, dataset)} {variant} ({len(off)} of {len(group)} "
                          f"seed{'s' if len(group) > 1 else ''}: "
                          + ", ".join(map(_share_text, group["share"])) + ")")
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
                              lambda v: ", ".join(map(_share_text, v))),
                          f"flat (every seed within ±{100 * FLAT_SHARE:.0f} %)": shares.agg(
                              lambda v: "yes" if _flat(v).all() else "no")}).reset_index()
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return ("Convergence, from the same histories: how much of each head's training-loss drop (first to last "
            "epoch it trained) happened in the last quarter of training (the shaded span above); negative: the "
            "loss rose again; *did not fall*: the loss ended no lower than it began (not flat either).\n\n"
            + to_md(table))
