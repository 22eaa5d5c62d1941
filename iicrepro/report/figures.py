"""The book's figures, drawn with seaborn from the tidy frames at build time (never committed, never trained).

Each function returns the path it wrote, or None when the runs it needs do not exist yet (the page then
says so). Plots are small PNGs; the qualitative grid, made of photographs, is a JPEG.
"""
from __future__ import annotations

import base64
import functools
import io
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd

from iicrepro.report.frame import comparable_rows, main_epoch_records, main_epochs
from iicrepro.report.load import BASELINES, METHODS, experiments, labels, paper_iic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import seaborn as sns  # noqa: E402

DPI = 80
PALETTE = {"IIC": "tab:blue", "k-means": "tab:orange", "random network": "tab:grey"}


def steady_jitter(draw):
    """seaborn's strip plots jitter their dots with numpy's global generator, so two builds of the same runs drew
    the dots in different places: draw with the generator seeded 0 (state restored after).
    Enough for one axes; a catplot's facets take their jitter in an order that varies between processes."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        state = np.random.get_state()
        np.random.seed(0)
        try:
            return draw(*args, **kwargs)
        finally:
            np.random.set_state(state)
    return drawn


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"pil_kwargs": {"quality": 85}} if path.suffix == ".jpg" else {}
    fig.savefig(path, dpi=DPI, bbox_inches="tight", **kwargs)
    plt.close(fig)
    return path


def epoch_curves(epochs: pd.DataFrame, reference: dict, path: Path) -> Path | None:
    """Accuracy per epoch of the main runs, a band of ±1 sd over seeds; columns datasets, rows heads,
    colour variant, solid paper_eval (paper protocol) / dashed held-out."""
    main = main_epochs(epochs).copy()
    if main.empty:
        return None
    main["accuracy (%)"] = 100 * main["acc"]
    main["dataset"] = main["dataset"].map(labels(reference)).fillna(main["dataset"])
    main["head"] = main["head"].map({"A": "A (many-to-one)", "B": "B"}).fillna(main["head"])
    grid = sns.relplot(data=main, x="epoch", y="accuracy (%)", hue="variant", style="split", col="dataset",
                       row="head", kind="line", errorbar="sd", height=2.8, aspect=1.3,
                       facet_kws={"sharey": False, "margin_titles": True})
    grid.set_titles(row_template="head {row_name}", col_template="{col_name}")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _save(grid.figure, path)


def loss_curves(epochs: pd.DataFrame, reference: dict, path: Path) -> Path | None:
    """Training loss per epoch of the main runs (head A on its epochs, head B on its), band of ±1 sd over
    seeds, the last quarter of training shaded: convergence means a flat curve there (issue 15)."""
    main = main_epoch_records(epochs).copy()
    if main.empty:
        return None
    main["dataset"] = main["dataset"].map(labels(reference)).fillna(main["dataset"])
    main["training loss"] = main["loss_b"].where(main["heads_trained"].str.contains("B"), main["loss_a"])
    main["head"] = main["heads_trained"]
    main = main.dropna(subset=["training loss"])
    if main.empty:
        return None
    grid = sns.relplot(data=main, x="epoch", y="training loss", hue="variant",
                       col="dataset", row="head", kind="line", errorbar="sd", marker="o", height=2.4, aspect=1.4,
                       facet_kws={"sharey": False, "margin_titles": True})
    grid.set_titles(row_template="head {row_name}", col_template="{col_name}")
    last = main["epoch"].max()
    for ax in grid.axes.flat:
        ax.axvspan(0.75 * last, last, color="0.9", zorder=0)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _save(grid.figure, path)


def ablation_points(frame: pd.DataFrame, group: str, reference: dict, path: Path) -> Path | None:
    """One ablation: accuracy per variant, one dot per seed and the mean; paper protocol and label-free."""
    rows = frame[(frame["group"] == group) & (frame["status"] == "ok") & frame["selected"]
                 & frame["rule"].isin(["paper", "last"])].copy()
    if rows.empty:
        return None
    rows["accuracy (%)"] = 100 * rows["acc"]
    rows["protocol"] = rows["rule"].map({"paper": "paper protocol", "last": "label-free (last, held-out)"})
    rows["dataset"] = rows["dataset"].map(labels(reference)).fillna(rows["dataset"])
    rows["seed"] = rows["seed"].astype(str)  # seed s sits at the same offset in every column (no random jitter)
    seeds = sorted(rows["seed"].unique())
    grid = sns.catplot(data=rows, x="variant", y="accuracy (%)", col="dataset", row="protocol", kind="strip",
                       hue="seed", hue_order=seeds, palette=["tab:blue"] * len(seeds), dodge=True, jitter=False,
                       legend=False, height=2.6, aspect=1.2, sharey=False, margin_titles=True)
    for (protocol, dataset), ax in grid.axes_dict.items():
        sub = rows[(rows["protocol"] == protocol) & (rows["dataset"] == dataset)]
        sns.pointplot(data=sub, x="variant", y="accuracy (%)", errorbar=None, color="black", markers="_",
                      linestyles="none", ax=ax, order=list(dict.fromkeys(rows["variant"])))
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    return _save(grid.figure, path)


def _paper_points(reference: dict) -> pd.DataFrame:
    """The paper's Table-4 accuracies (%) of IIC, k-means and the random network."""
    names = labels(reference)
    iic = paper_iic(reference)
    rows = [{"experiment": names[ds], "method": "IIC", "accuracy (%)": v} for ds, v in iic.items() if v is not None]
    for group, kind in BASELINES.items():
        rows += [{"experiment": names.get(ds, ds), "method": METHODS[group], "accuracy (%)": v}
                 for ds, v in ((reference.get("baselines") or {}).get(kind, {}).get("paper") or {}).items()]
    return pd.DataFrame(rows)


@steady_jitter
def versus_baselines(frame: pd.DataFrame, reference: dict, path: Path) -> Path | None:
    """IIC (faithful) against k-means and the random network: the paper's Table 4 beside our analogues,
    paper protocol and label-free; a bar is the mean, a dot one seed."""
    analogues = [r for r in experiments(reference) if r.get("analogue_of")]
    names = {r["dataset"]: r["label"] for r in analogues}  # in the paper panel's order: CamVid-3 under COCO-Stuff-3
    paper_order = [labels(reference)[r["analogue_of"]] for r in analogues]
    ours = frame[frame["dataset"].isin(names) & (frame["status"] == "ok") & frame["selected"]
                 & frame["rule"].isin(["paper", "last"]) & frame["group"].isin(["main", *BASELINES])
                 & ((frame["group"] != "main") | (frame["variant"] == "faithful"))]
    ours = comparable_rows(ours).copy()
    if ours.empty:
        return None
    ours["experiment"] = ours["dataset"].map(names)
    ours["accuracy (%)"] = 100 * ours["acc"]
    panels = [("paper, Table 4 (quoted)", _paper_points(reference), paper_order),
              ("ours (offline analogues), paper protocol", ours[ours["rule"] == "paper"], list(names.values())),
              ("ours (offline analogues), label-free: last epoch, held-out", ours[ours["rule"] == "last"],
               list(names.values()))]
    hues = list(PALETTE)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharey=True)
    for ax, (title, data, order) in zip(axes, panels):
        if not data.empty:
            sns.barplot(data=data, x="experiment", y="accuracy (%)", hue="method", order=order, hue_order=hues,
                        palette=PALETTE, errorbar=None, alpha=0.6, ax=ax, legend=ax is axes[0])
            if "seed" in data:
                sns.stripplot(data=data, x="experiment", y="accuracy (%)", hue="method", order=order, hue_order=hues,
                              palette=PALETTE, dodge=True, size=4, ax=ax, legend=False, edgecolor="black",
                              linewidth=0.5)
        ax.set(title=title, xlabel="")
        ax.tick_params(axis="x", labelsize=8)
    if axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "upper center", bbox_to_anchor=(1.7, -0.22), ncol=3, title=None, frameon=False)
    return _save(fig, path)


def _confusion_counts(run: dict, split: str, epoch) -> list | None:
    """The (K, C) head-B counts of a run on `split` at `epoch` (a baseline: its only evaluation)."""
    block = ((run.get("baseline") or {}).get("splits") or {}).get(split)
    if block:
        return block.get("confusion")
    history = run.get("history") or {}
    records = [history.get("initial") or {}] + list(history.get("epochs") or [])
    record = next((r for r in records if r.get("epoch") == epoch), {})
    return (((record.get("eval") or {}).get(split) or {}).get("b") or {}).get("confusion")


def confusion(run: dict, *, rule: str, path: Path) -> Path | None:
    """Share of each true class's pixels per predicted class (clusters matched by the Hungarian algorithm)."""
    from iicrepro.config import DATASETS
    from iicrepro.metrics import class_confusion, match_hungarian

    entry = (run.get("selection") or {}).get(rule) or {}
    counts = _confusion_counts(run, entry.get("split"), entry.get("epoch"))
    if counts is None:
        return None
    names = DATASETS[run["dataset"]].class_names
    classes = class_confusion(np.asarray(counts), match_hungarian(counts)).T  # (C, C) rows true, cols predicted
    share = classes / np.maximum(classes.sum(axis=1, keepdims=True), 1)
    table = pd.DataFrame(100 * share, index=pd.Index(names, name="true class"),
                         columns=pd.Index(names, name="predicted class (matched cluster)"))
    size = 1.2 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(table, annot=len(names) <= 11, fmt=".0f", cmap="Blues", vmin=0, vmax=100, cbar_kws={"label": "%"},
                annot_kws={"fontsize": 7}, ax=ax)
    return _save(fig, path)


def notebook_figure(notebook_file: str | None, marker: str = "figures.qualitative(") -> bytes | None:
    """The JPEG (or PNG) a run notebook embedded from the cell that calls `marker`, or None."""
    if not notebook_file or not Path(notebook_file).is_file():
        return None
    for cell in json.loads(Path(notebook_file).read_text()).get("cells", []):
        if marker in "".join(cell.get("source", [])):
            for output in cell.get("outputs", []):
                data = output.get("data") or {}
                for kind in ("image/jpeg", "image/png"):
                    if kind in data:
                        return base64.b64decode("".join(data[kind]) if isinstance(data[kind], list) else data[kind])
    return None


def qualitative(panels: list[tuple[str, bytes]], path: Path) -> Path | None:
    """The notebooks' own qualitative figures side by side (each: image | prediction | ground truth)."""
    if not panels:
        return None
    from PIL import Image

    pictures = [(title, np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))) for title, raw in panels]
    height = max(p.shape[0] for _, p in pictures) / 100
    fig, axes = plt.subplots(1, len(pictures), figsize=(sum(p.shape[1] for _, p in pictures) / 100, height + 0.4),
                             squeeze=False)
    for ax, (title, picture) in zip(axes[0], pictures):
        ax.imshow(picture)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
