"""Tables of the Results and Ablations pages (see iicrepro/report.py for the run files and grouping keys).

Results: Table 4 in the paper protocol (paper | seed 000 | seed 001 | ours faithful | ours improved), the
label-free protocol, the baselines (random network, k-means), per-run details, quoted context and sources.
Ablations: one table per study_group "ablation-*", and the accuracy-per-epoch curves of the main runs.
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

from iicrepro.report import (ABLATIONS, BASELINES, MAIN_VARIANTS, cell, command_for, entry_dataset, experiments,
                             link, md_table, missing_list, pct, preferred, row_label, seed_label, select)


# ---------------------------------------------------------------- Results page
def quoted(reference: dict, source: str, dataset: str, notes: list) -> str:
    """A number quoted from a source of the reference file ("—" where that source has none)."""
    entry = (reference.get("iic") or {}).get(source, {}).get(dataset)
    if entry is None:
        return "—"
    short = (reference.get("sources") or {}).get(source, {}).get("short", source)
    label = next((r["label"] for r in experiments(reference) if r["dataset"] == dataset), dataset)
    if entry.get("note"):
        notes.append(f"{short}, {label}: {entry['note']}")
    return "no accuracy obtained" if entry.get("value") is None else str(entry["value"])


def results_paper(runs, reference, manifest) -> str:
    """Table-4 layout, paper protocol: the paper | seed 000 | seed 001 | ours faithful | ours improved."""
    header = ["experiment", "paper", "seed 000", "seed 001", "ours faithful", "ours improved"]
    rows, notes, missing = [], [], []
    for row in experiments(reference):
        ds, label = row["dataset"], row_label(row, reference)
        cells = [label] + [quoted(reference, s, ds, notes) for s in ("paper", "seed000", "seed001")]
        for variant in MAIN_VARIANTS:
            group = select(runs, "main", variant, ds)
            cells.append(cell(group, "paper"))
            if cells[-1] == "*not run*":
                missing.append((f"{row['label']}, ours {variant}", command_for("main", variant, ds, group, manifest)))
        rows.append(cells)
    text = md_table(header, rows)
    if notes:
        text += "\nNotes on the quoted numbers:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text + missing_list(missing)


def results_label_free(runs, reference, manifest) -> str:
    """Our runs under the label-free protocol (no published number uses it)."""
    header = ["experiment"] + [f"ours {v}, {r}" for v in MAIN_VARIANTS for r in ("last epoch", "lowest loss")]
    rows = []
    for row in experiments(reference):
        cells = [row_label(row, reference)]
        for variant in MAIN_VARIANTS:
            group = select(runs, "main", variant, row["dataset"])
            cells += [cell(group, "last"), cell(group, "lowest_loss")]
        rows.append(cells)
    return md_table(header, rows)


def results_baselines(runs, reference, manifest) -> str:
    """Random network and k-means: the paper's numbers and ours on the same data and protocols."""
    header = ["experiment", "baseline", "paper", "authors' logs", "ours, paper protocol", "ours, label-free (held-out)"]
    rows, missing = [], []
    quotes = reference.get("baselines") or {}
    for row in experiments(reference):
        ds = row["dataset"]
        for group, kind in BASELINES.items():
            q = quotes.get(kind, {})
            paper, logs = q.get("paper", {}).get(ds), q.get("released_logs", {}).get(ds)
            found = select(runs, group, None, ds)
            rows.append([row_label(row, reference), q.get("label", kind), "—" if paper is None else str(paper),
                         "—" if logs is None else str(logs), cell(found, "paper"), cell(found, "last")])
            if rows[-1][4] == "*not run*":
                variant = next((r.variant for r in found), _manifest_variant(manifest, group))
                missing.append((f"{row['label']}, {q.get('label', kind)}",
                                command_for(group, variant, ds, found, manifest)))
    return md_table(header, rows) + missing_list(missing)


def _mean(runs, rule: str) -> float | None:
    """Mean head-B accuracy (%) of the ok runs (full profile preferred) under `rule`; None when there is none."""
    values = [r.rule(rule).get("acc") for r in preferred([r for r in runs if r.status == "ok"])]
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return 100 * statistics.fmean(values) if values else None


def _points(iic: float | None, base: float | None, missing: str) -> str:
    """IIC minus a baseline (both in %): percentage points, signed ("+35.0"); `missing` where either is absent."""
    return missing if iic is None or base is None else f"{iic - base:+.1f}"


def results_margins(runs, reference) -> str:
    """IIC's margin over the random network and k-means: the paper's (Table 4) beside ours (same data).

    Ours: mean over seeds of our faithful IIC runs minus mean over seeds of our baseline runs on the same
    dataset, in percentage points, under the paper protocol and under the label-free protocol (last epoch,
    held-out images). A baseline has no epochs: its paper-protocol value is scored on the training images
    and its label-free value on the held-out ones, as IIC's.
    """
    header = ["experiment", "paper: IIC − random network", "paper: IIC − k-means",
              "ours faithful − random network (paper protocol)", "ours faithful − k-means (paper protocol)",
              "ours faithful − random network (label-free)", "ours faithful − k-means (label-free)"]
    quotes, rows = reference.get("baselines") or {}, []
    for row in experiments(reference):
        ds = row["dataset"]
        iic_paper = ((reference.get("iic") or {}).get("paper", {}).get(ds) or {}).get("value")
        cells = [row_label(row, reference)]
        for kind in BASELINES.values():
            cells.append(_points(iic_paper, quotes.get(kind, {}).get("paper", {}).get(ds), "—"))
        ours = select(runs, "main", "faithful", ds)
        for rule in ("paper", "last"):
            iic = _mean(ours, rule)
            for group in BASELINES:
                cells.append(_points(iic, _mean(select(runs, group, None, ds), rule), "*not run*"))
        rows.append(cells)
    return md_table(header, rows)


def _manifest_variant(manifest: list[dict], group: str) -> str:
    return next((str(e.get("variant")) for e in manifest if e.get("study_group") == group), "")


def results_detail(runs, reference) -> str:
    """Per cell of the main table: seeds, epochs chosen, accuracy and mean IoU under every rule."""
    header = ["experiment", "variant", "runs", "paper: epoch", "paper: acc", "paper: mIoU", "last: acc",
              "last: mIoU", "lowest loss: epoch", "lowest loss: acc", "split (label-free)"]
    rows = []
    for row in experiments(reference):
        for variant in MAIN_VARIANTS:
            group = [r for r in preferred(select(runs, "main", variant, row["dataset"])) if r.status == "ok"]
            if not group:
                continue
            epochs = ", ".join(str(r.rule("paper").get("epoch")) for r in group)
            low = ", ".join(str(r.rule("lowest_loss").get("epoch")) for r in group)
            splits = ", ".join(sorted({str(r.rule("last").get("split")) for r in group}))
            rows.append([row["label"], variant, ", ".join(link(seed_label(r), r) for r in group), epochs,
                         cell(group, "paper"), cell(group, "paper", "miou"), cell(group, "last"),
                         cell(group, "last", "miou"), low, cell(group, "lowest_loss"), splits])
    return md_table(header, rows) if rows else "*No run of the main table has finished yet.*\n"


def results_context(reference) -> str:
    """Other baselines of Table 4, quoted for context (not computed here)."""
    block = reference.get("other_baselines") or {}
    keys = [r["dataset"] for r in experiments(reference) if not r.get("analogue_of")]
    labels = {r["dataset"]: r["label"] for r in experiments(reference)}
    rows = [[r["method"]] + [str(r[k]) if k in r else "—" for k in keys] for r in block.get("rows", [])]
    return md_table(["method (paper, Table 4)"] + [labels[k] for k in keys], rows) if rows else ""


def sources(reference) -> str:
    items = (reference.get("sources") or {}).items()
    return "\n".join(f"- **{v.get('short', k)}**: {v.get('citation', '').strip()} <{v['url']}>" if v.get("url")
                     else f"- **{v.get('short', k)}**: {v.get('citation', '').strip()}" for k, v in items) + "\n"


# ---------------------------------------------------------------- Ablations page
def ablation(runs, group: str, manifest: list[dict], reference: dict) -> str:
    """One ablation: a row per (dataset, variant), both protocols, mean +- std over seeds."""
    labels = {r["dataset"]: r["label"] for r in experiments(reference)}
    keys = []
    for r in runs:
        if r.group == group and (r.dataset, r.variant) not in keys:
            keys.append((r.dataset, r.variant))
    for e in manifest:
        key = (entry_dataset(e, manifest), str(e.get("variant")))
        if e.get("study_group") == group and key not in keys and key[0] is not None:
            keys.append(key)
    if not keys and group == "ablation-epochs":
        return "*No separate runs: the number of epochs is read from the main runs' per-epoch history.*\n"
    if not keys:
        return f"*Not run: no run of the study has study_group `{group}` yet (add one to study.yaml).*\n"
    order = [r["dataset"] for r in experiments(reference)]
    first = {k: i for i, k in enumerate(keys)}
    keys.sort(key=lambda k: (order.index(k[0]) if k[0] in order else len(order), first[k]))
    header = ["dataset", "variant", "paper protocol: acc", "paper protocol: mIoU", "label-free (last): acc",
              "label-free (lowest loss): acc"]
    rows, missing = [], []
    for dataset, variant in keys:
        found = select(runs, group, variant, dataset)
        rows.append([labels.get(dataset, dataset), variant, cell(found, "paper"), cell(found, "paper", "miou"),
                     cell(found, "last"), cell(found, "lowest_loss")])
        if rows[-1][2] == "*not run*":
            missing.append((f"{labels.get(dataset, dataset)}, {variant}", command_for(group, variant, dataset, found,
                                                                                       manifest)))
    return md_table(header, rows) + missing_list(missing)


def ablations(runs, manifest, reference) -> dict[str, str]:
    """ablation_<group>.md for every known ablation, ablations_other.md for the rest."""
    out = {f"{g.replace('-', '_')}.md": ablation(runs, g, manifest, reference) for g in ABLATIONS}
    others = sorted({r.group for r in runs if r.group.startswith("ablation-") and r.group not in ABLATIONS})
    out["ablations_other.md"] = "".join(f"\n**{g}**\n\n" + ablation(runs, g, manifest, reference) for g in others) \
        or "*No other ablation has run files.*\n"
    lam = reference.get("lambda_ablation") or {}
    if lam.get("rows"):
        labels = {r["dataset"]: r["label"] for r in experiments(reference)}
        short = (reference.get("sources") or {}).get(lam.get("source"), {}).get("short", lam.get("source"))
        out["ablation_lambda_quoted.md"] = md_table(
            ["dataset", "lambda_B", f"accuracy ({short})"],
            [[labels.get(r["dataset"], r["dataset"]), r["lambda_b"], r["value"]] for r in lam["rows"]])
    return out


def epoch_curves(runs, reference, out_dir: Path, pages_dir: Path) -> str:
    """Head-B accuracy per epoch of every main run (mean over seeds): the epochs ablation needs no runs."""
    curves = {}
    for row in experiments(reference):
        for variant in MAIN_VARIANTS:
            for run in [r for r in preferred(select(runs, "main", variant, row["dataset"])) if r.status == "ok"]:
                for split in ("paper_eval", "heldout"):
                    points = [(e["epoch"], ((e.get("eval") or {}).get(split) or {}).get("b", {}).get("acc"))
                              for e in run.epochs()]
                    points = [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y)]
                    if points:
                        curves.setdefault((row["label"], variant, split), []).append(dict(points))
    if not curves:
        return "*Not run: no main run has finished yet; the curves come from the main runs' per-epoch history.*\n"
    rows = []
    for (label, variant, split), series in curves.items():
        mean = {x: statistics.fmean(s[x] for s in series if x in s) for x in sorted(set().union(*series))}
        best = max(mean, key=mean.get)
        rows.append([label, variant, split, len(series), f"{pct(mean[min(mean)])} (epoch {min(mean)})",
                     f"{pct(mean[best])} (epoch {best})", f"{pct(mean[max(mean)])} (epoch {max(mean)})"])
        curves[(label, variant, split)] = mean
    figure = _plot_curves(curves, out_dir / "epoch_curves.png")
    header = ["experiment", "variant", "split", "seeds", "first epoch", "best epoch", "last epoch"]
    rel = os.path.relpath(figure, pages_dir)
    return f"![Head-B accuracy per epoch, mean over seeds]({rel})\n\n" + md_table(header, rows)


def _plot_curves(curves: dict, path: Path) -> Path:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for (label, variant, split), mean in curves.items():
        xs = sorted(mean)
        ax.plot(xs, [100 * mean[x] for x in xs], linestyle="-" if split == "paper_eval" else "--",
                label=f"{label} {variant} ({split})")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("head-B pixel accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
