"""Below the Results page's table of scales: where faithful IIC beats each baseline at each scale of an
analogue, and how far its runs at one profile (the paper scale, issue 15 d) can be told from the seeds of the
first (the CPU scale).

A gain is IIC minus the baseline run of the same seed at the same crop and pre-scale (same_scale_rows: a
baseline of another profile at the very same scale counts, one of another scale never does). A profile's IIC
scores are placed among the first profile's seeds; with n seeds, one more run of the same setting lands above
all of them one time in n + 1, so "above all" is weak evidence, and the two profiles differ in more than scale
(batch, epochs, d: study.yaml), which the text lists from the run files' parameters, with whether head B's
training loss was flat over the last quarter of training at each profile (tables_epochs.head_b_shares).
"""
from __future__ import annotations

import pandas as pd

from iicrepro.report.answer import FLOOR_SPLITS, PROTOCOLS, beats
from iicrepro.report.frame import ranked_profiles, same_scale_rows, seed_difference
from iicrepro.report.load import BASELINES, METHODS, labels
from iicrepro.report.tables import NOT_RUN, mean_sd, to_md
from iicrepro.report.tables_epochs import FLAT_SHARE, flat_text, head_b_shares

COMPARED = (("input_size", "crop"), ("prescale", "pre-scale"), ("half_side", "d"), ("batch_size", "batch"),
            ("epochs", "epochs"))  # run parameters that set the two profiles of an analogue apart
PAPER_SPLIT = FLOOR_SPLITS["paper"]  # the images the paper protocol picks its best epoch on


def scales_beats(frame: pd.DataFrame, epochs: pd.DataFrame, provenance: pd.DataFrame, reference: dict) -> str:
    """The verdicts per analogue x profile x baseline (Markdown table), then one reading per profile after an
    analogue's first. frame: results_frame; epochs: epochs_frame; provenance: runs_frame (for the params)."""
    ok = frame[(frame["status"] == "ok") & frame["selected"] & frame["acc"].notna()
               & ((frame["group"] != "main") | (frame["variant"] == "faithful"))]
    ok = ok.assign(acc=100 * ok["acc"])
    rows, readings = [], []
    for ds, label in labels(reference).items():
        here = ok[ok["dataset"] == ds]
        iic = here[here["group"] == "main"]
        profiles = ranked_profiles(iic["profile"])
        if len(profiles) < 2:
            continue
        for profile in profiles:
            mine = iic[iic["profile"] == profile]
            scale = mine["scale"].iloc[0]
            for group in BASELINES:
                base, _ = same_scale_rows(here[here["group"] == group], profile=profile, scale=scale)
                cells = {rule: seed_difference(mine[mine["rule"] == rule], base[base["rule"] == rule])
                         for rule, _ in PROTOCOLS}
                rows.append({"analogue": label, "profile": profile, "scale": scale, "IIC against": METHODS[group],
                             **{text: beats(cells[rule]) if len(cells[rule]) else NOT_RUN
                                for rule, text in PROTOCOLS}})
        first = iic[iic["profile"] == profiles[0]]
        readings += [_reading(label, iic[iic["profile"] == p], first, epochs=epochs, provenance=provenance)
                     for p in profiles[1:]]
    if not rows:
        return ""
    return ("\nWhere IIC (faithful) beats the baselines at each scale, seed by seed (IIC minus the baseline run of "
            "the same seed at the same scale, in points):\n\n" + to_md(pd.DataFrame(rows))
            + "".join(f"\n{text}\n" for text in readings if text))


def place(ours: pd.Series, theirs: pd.Series) -> str:
    """"75.8 (n = 1), above all 3 (62.8 to 69.0)": scores (points) of one profile among another's seeds."""
    low, high, n = theirs.min(), theirs.max(), len(theirs)
    above, below = int((ours > high).sum()), int((ours < low).sum())
    where = (f"above all {n}" if above == len(ours) else f"below all {n}" if below == len(ours)
             else "within their range" if above == below == 0
             else f"{above} of {len(ours)} above all {n} and {below} below all {n}")
    return f"{mean_sd(ours)} (n = {len(ours)}), {where} ({low:.1f} to {high:.1f})"


def _reading(label: str, runs: pd.DataFrame, first: pd.DataFrame, *, epochs: pd.DataFrame,
             provenance: pd.DataFrame) -> str:
    """Where the IIC scores of one profile (`runs`) lie among the seeds of the first (`first`), per protocol;
    what else differs between the two; whether head B's loss was flat at the end at each; and, when this profile
    trained more epochs, the best of its first as many epochs as the first profile trained (the paper protocol's
    pick grows with the number of epochs it picks from)."""
    profile, first_profile = runs["profile"].iloc[0], first["profile"].iloc[0]
    parts = [f"{text}: {place(mine, theirs)}" for rule, text in PROTOCOLS
             if len(mine := runs[runs["rule"] == rule]["acc"]) and len(theirs := first[first["rule"] == rule]["acc"])]
    if not parts:
        return ""
    seeds = first[first["rule"] == PROTOCOLS[0][0]]["seed"].nunique()
    text = (f"{label}, IIC at {profile} ({runs['scale'].iloc[0]}) against its {seeds} seeds at {first_profile} "
            f"({first['scale'].iloc[0]}): " + "; ".join(parts) + ".")
    mine, theirs = _params(provenance, runs), _params(provenance, first)
    differ = [f"{name} ({_values(mine, key)} against {_values(theirs, key)})" for key, name in COMPARED
              if _values(mine, key) != _values(theirs, key)]
    if differ:
        text += (f" Its runs differ from those at {first_profile} in " + _series(differ)
                 + ", not in scale alone (their run files' parameters).")
    mine_flat, theirs_flat = (head_b_shares(epochs, r["run"].unique(), profile=r["profile"].iloc[0])
                              for r in (runs, first))
    if len(mine_flat):
        text += (f" Head B's training loss moved in the last quarter of training by this share of its drop (flat: "
                 f"under {100 * FLAT_SHARE:.0f} %, the CPU scale's criterion): at {profile} {flat_text(mine_flat)}"
                 + (f"; at {first_profile} {flat_text(theirs_flat)}" if len(theirs_flat) else "") + ".")
    early = _best_of_first(epochs, runs, limit=max((p.get("epochs") or 0) for p in theirs) if theirs else 0)
    paper_first = first[first["rule"] == "paper"]["acc"]
    if len(early) and len(paper_first):
        text += (" The paper protocol picks the best of a run's epochs, so more epochs give it more to pick from: "
                 f"the best of the first {int(early.attrs['limit'])} epochs at {profile} (as many as at "
                 f"{first_profile}) scores {place(early, paper_first)}.")
    return text + (" Within their range a score cannot be told from seed variation; outside it, it is still weak "
                   "evidence: one more run of the same setting lands above all of n seeds one time in n + 1.")


def _params(provenance: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """The params of the run files behind `runs` (rows of one profile)."""
    rows = provenance[provenance["run"].isin(runs["run"]) & (provenance["profile"] == runs["profile"].iloc[0])]
    return list(rows["params"])


def _values(params: list[dict], key: str) -> str:
    """The distinct values of one parameter over some runs, "128" or "10, 12"."""
    return ", ".join(sorted({f"{p.get(key):g}" if isinstance(p.get(key), (int, float)) else str(p.get(key))
                             for p in params}))


def _series(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _best_of_first(epochs: pd.DataFrame, runs: pd.DataFrame, *, limit: int) -> pd.Series:
    """Per run of `runs` that trained more than `limit` epochs: its best head-B accuracy (points) on the paper
    split over epochs 1..limit (the paper protocol's pick had the run stopped there); attrs["limit"]."""
    if limit <= 0:
        return pd.Series(dtype=float)
    rows = epochs[epochs["run"].isin(runs["run"]) & (epochs["profile"] == runs["profile"].iloc[0])
                  & (epochs["split"] == PAPER_SPLIT) & (epochs["head"] == "B") & (epochs["epoch"] >= 1)]
    trained = rows.groupby("run")["epoch"].max()
    rows = rows[rows["run"].isin(trained[trained > limit].index) & (rows["epoch"] <= limit)]
    best = 100 * rows.groupby("run")["acc"].max()
    best.attrs["limit"] = limit
    return best
