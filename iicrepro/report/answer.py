"""The answer the Results page opens with: a few sentences formatted from the tidy frame, never typed.

The headline compares IIC's gain over k-means on an offline analogue (CamVid-3 first) with the paper's gain
on the dataset it stands in for (COCO-Stuff-3): gains are paired by seed (IIC seed s minus k-means seed s),
mean +- sample sd over the seeds both have. Without IIC runs it says so and gives the baselines alone.
"""
from __future__ import annotations

import pandas as pd

from iicrepro.report.frame import comparable_rows, seed_difference
from iicrepro.report.load import BASELINES, METHODS, experiments, labels, paper_iic
from iicrepro.report.tables import NOT_RUN, mean_sd, to_md


def per_seed(frame: pd.DataFrame, *, group: str, dataset: str, rule: str) -> pd.DataFrame:
    """Accuracy (%) per seed of one group on one dataset under a rule (ok runs; IIC's profile, see
    comparable_rows)."""
    rows = frame[(frame["dataset"] == dataset) & (frame["rule"] == rule) & frame["selected"]
                 & (frame["status"] == "ok") & frame["acc"].notna()
                 & ((frame["group"] != "main") | (frame["variant"] == "faithful"))]
    rows = comparable_rows(rows)
    rows = rows[rows["group"] == group]
    return rows.assign(acc=100 * rows["acc"])[["seed", "acc", "scale", "profile"]]


def _mean_sd(values: pd.Series, *, signed: bool = False, unit: str = "") -> str:
    """"+12.3 ± 1.0 points (n = 3)": mean, sample sd (when n > 1), unit, number of seeds."""
    return f"{mean_sd(values, signed=signed)}{unit} (n = {len(values)})"


def gain(frame: pd.DataFrame, *, dataset: str, rule: str, baseline: str = "baseline-kmeans") -> pd.Series:
    """IIC minus the baseline, in points, per seed both have (index: seed)."""
    return seed_difference(per_seed(frame, group="main", dataset=dataset, rule=rule),
                           per_seed(frame, group=baseline, dataset=dataset, rule=rule))


def _paper_gain(reference: dict, dataset: str) -> tuple[float, float, float] | None:
    """(IIC, k-means, gain) of the paper on a dataset, or None."""
    iic = paper_iic(reference).get(dataset)
    kmeans = (((reference.get("baselines") or {}).get("kmeans") or {}).get("paper") or {}).get(dataset)
    return None if iic is None or kmeans is None else (iic, kmeans, iic - kmeans)


def headline_dataset(frame: pd.DataFrame, reference: dict) -> dict | None:
    """The first analogue with a finished faithful IIC run, else the first analogue."""
    analogues = [r for r in experiments(reference) if r.get("analogue_of")]
    for row in analogues:
        if not per_seed(frame, group="main", dataset=row["dataset"], rule="last").empty:
            return row
    return analogues[0] if analogues else None


def _verdict(ours: pd.Series, paper: float) -> str:
    """Where the paper's gain lies against ours under the same (paper) protocol: mean +- 2 sd over seeds, or the
    single value. Never against a label-free gain, which scores other images and another epoch."""
    spread = 2 * ours.std(ddof=1) if len(ours) > 1 else 0.0
    if abs(paper - ours.mean()) <= spread:
        return "within two standard deviations of ours"
    return "larger than ours" if paper > ours.mean() else "smaller than ours"


def answer(frame: pd.DataFrame, reference: dict, *, figure: str | None, floors: dict | None = None) -> str:
    """The opening paragraph of the Results page (Markdown), with the figure when there is one; `floors`
    (tables_runs.majority_floors) adds the one-cluster floor to the table of where IIC beats what."""
    row = headline_dataset(frame, reference)
    if row is None:
        return "*No offline analogue is defined in the reference file.*\n"
    names = labels(reference)
    ds, paper_ds = row["dataset"], row["analogue_of"]
    paper = _paper_gain(reference, paper_ds)
    paper_text = (f"The paper reports a gain of **{paper[2]:+.1f} points** on {names[paper_ds]} "
                  f"({paper[0]:.1f} % against {paper[1]:.1f} %, paper protocol)." if paper else "")
    free = gain(frame, dataset=ds, rule="last")
    if free.empty:
        text = _no_iic(frame, ds, names) + " " + paper_text
    else:
        paper_protocol = gain(frame, dataset=ds, rule="paper")
        iic = per_seed(frame, group="main", dataset=ds, rule="last")
        text = (f"On {names[ds]}, our offline analogue of {names[paper_ds]}, IIC's gain over k-means is "
                f"**{_mean_sd(free, signed=True, unit=' points')}** under the label-free protocol (last epoch, "
                f"held-out images; mean ± sd over seeds, paired by seed)"
                + (f" and {_mean_sd(paper_protocol, signed=True)} under the paper protocol"
                   if len(paper_protocol) else "")
                + f"; IIC ran at {iic['scale'].iloc[0]} ({iic['profile'].iloc[0]} profile). " + paper_text
                + (f" Under the same protocol as the paper's, its gain is {_verdict(paper_protocol, paper[2])} "
                   f"({mean_sd(paper_protocol, signed=True)})." if paper and len(paper_protocol) else ""))
        text += " " + _others(frame, reference, skip=ds) + "\n\n" + beats_table(frame, reference, floors=floors)
    image = f"\n\n![IIC against k-means and the random network, the paper's and ours]({figure})\n" if figure else ""
    return text.strip() + "\n" + image


def _no_iic(frame: pd.DataFrame, ds: str, names: dict) -> str:
    """The sentence while no IIC run exists: what the baselines reach."""
    parts = []
    for group, name in (("baseline-kmeans", "k-means"), ("baseline-random", "the random network")):
        base = per_seed(frame, group=group, dataset=ds, rule="last")
        if not base.empty:
            parts.append(f"{name} reaches {_mean_sd(base['acc'], unit=' %')}")
    baselines = (f" The baselines are in: on {names[ds]} held-out images " + " and ".join(parts) + "."
                 if parts else "")
    return ("**No IIC run yet**: no training run of the main table has landed in `book/runs/`, so IIC's gain "
            "over the baselines is still open." + baselines)


def _others(frame: pd.DataFrame, reference: dict, *, skip: str) -> str:
    """One clause per other analogue with IIC and k-means runs: the label-free gain."""
    names = labels(reference)
    clauses = [f"{names[r['dataset']]} {_mean_sd(g, signed=True)}" for r in experiments(reference)
               if r.get("analogue_of") and r["dataset"] != skip
               and not (g := gain(frame, dataset=r["dataset"], rule="last")).empty]
    return ("Label-free gains over k-means on the other analogues: " + "; ".join(clauses) + ".") if clauses else ""


PROTOCOLS = (("paper", "paper protocol"), ("last", "label-free (last epoch, held-out)"))


def beats(gains: pd.Series) -> str:
    """Plain verdict on per-seed gains (points): beats when every seed gains, does not when none does; a
    single seed says so ("beats, one seed only: +1.2") rather than "1 of 1 seed", which reads as a count."""
    wins, n = int((gains > 0).sum()), len(gains)
    verdict = "beats" if wins == n else "does not beat" if wins == 0 else "mixed"
    if n == 1:
        return f"{verdict}, one seed only: {mean_sd(gains, signed=True)}"
    return f"{verdict}: {wins} of {n} seeds, {mean_sd(gains, signed=True)}"


FLOOR = "one cluster (largest class)"
FLOOR_SPLITS = {"paper": "paper_eval", "last": "heldout"}  # the images each protocol's cells score


def beats_table(frame: pd.DataFrame, reference: dict, *, floors: dict | None = None) -> str:
    """Where faithful IIC beats each baseline, per analogue and protocol, seed by seed (paired gains); with
    `floors`, also the one-cluster floor (the largest class's share of the images the protocol scores)."""
    names = labels(reference)
    rows = []
    for row in experiments(reference):
        if not row.get("analogue_of"):
            continue
        for group in BASELINES:
            cells = {rule: gain(frame, dataset=row["dataset"], rule=rule, baseline=group) for rule, _ in PROTOCOLS}
            if all(c.empty for c in cells.values()):
                continue
            rows.append({"analogue": names[row["dataset"]], "IIC against": METHODS[group],
                         **{label: beats(cells[rule]) if len(cells[rule]) else "—" for rule, label in PROTOCOLS}})
        floor = (floors or {}).get(row["dataset"], {})
        cells = {rule: per_seed(frame, group="main", dataset=row["dataset"], rule=rule).set_index("seed")["acc"]
                 - 100 * floor[FLOOR_SPLITS[rule]][1] for rule, _ in PROTOCOLS if FLOOR_SPLITS[rule] in floor}
        if any(len(c) for c in cells.values()):
            rows.append({"analogue": names[row["dataset"]], "IIC against": FLOOR,
                         **{label: beats(cells[rule]) if len(cells.get(rule, ())) else "—"
                            for rule, label in PROTOCOLS}})
    if not rows:
        return ""
    return ("Where IIC (faithful) beats the baselines, seed by seed (a seed's gain is IIC minus the baseline "
            "run of the same seed, in points; the random network of seed s is the very network IIC seed s starts "
            f"training from; *{FLOOR}* is what putting every pixel into one cluster scores, the share of the "
            "largest class in the images the protocol scores):\n\n" + to_md(pd.DataFrame(rows)) + "\n")


def results_margins(frame: pd.DataFrame, reference: dict) -> str:
    """IIC's margin over the random network and k-means (percentage points): the paper's beside ours.

    Ours: faithful IIC minus the baseline, paired by seed (IIC seed s minus the baseline of seed s, as in the
    answer above the table), mean over the seeds both have and their number, under the paper protocol and the
    label-free one (last epoch, held-out images)."""
    quotes = reference.get("baselines") or {}
    table = pd.DataFrame({"experiment": labels(reference, analogue=True)})
    quoted_iic = paper_iic(reference)
    for group in BASELINES:
        kind = BASELINES[group]
        table[f"paper: IIC − {METHODS[group]}"] = [
            "—" if quoted_iic.get(ds) is None or (base := quotes.get(kind, {}).get("paper", {}).get(ds)) is None
            else f"{quoted_iic[ds] - base:+.1f}" for ds in table.index]
    for rule, protocol in (("paper", "paper protocol"), ("last", "label-free")):
        for group in BASELINES:
            column = []
            for ds in table.index:
                gains = gain(frame, dataset=ds, rule=rule, baseline=group)
                column.append(f"{gains.mean():+.1f} (n = {len(gains)})" if len(gains) else NOT_RUN)
            table[f"ours faithful − {METHODS[group]} ({protocol})"] = column
    return to_md(table)
