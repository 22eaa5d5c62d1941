"""Figures and tables of one run, for the training and baseline notebooks.

- curves: training loss per head and head-B accuracy per evaluation split, per epoch.
- qualitative: image | prediction | ground truth per row, as the paper's segmentation figures; the
  prediction is the cluster map mapped to classes by the same Hungarian matching as the reported accuracy,
  drawn in the class palette; pixels that do not count (label 255) are black in both.
- iou_table: per-class IoU as a Markdown table.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from iicrepro.data import batches

IGNORE = 255


def inline_jpeg(quality: int = 85) -> None:
    """Show a notebook's matplotlib figures as JPEG instead of PNG.

    The qualitative grids are photographs: as PNG one grid is ~0.7 MB of base64 in the executed notebook,
    as JPEG ~0.1 MB. Run notebooks are committed (book/runs) and travel with the tree to GPU machines,
    whose copy is capped at 64 MiB, so their size matters.
    """
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("jpeg", pil_kwargs={"quality": quality})


def colourise(labels, palette) -> np.ndarray:
    """(H, W) class ids (255 = ignore) -> (H, W, 3) uint8 colours; ignored pixels black."""
    labels = np.asarray(labels, dtype=np.int64)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[np.clip(labels, 0, 255)]


def as_rgb(image) -> np.ndarray:
    """(C, H, W) float image in [0, 1] -> (H, W, 3) float, the first three channels (RGB of RGB + IR)."""
    return np.clip(np.asarray(image, dtype=np.float32)[:3].transpose(1, 2, 0), 0, 1)


@torch.no_grad()
def predict_examples(predict, eval_set, *, config, mapping, count: int, device) -> dict:
    """Centre crops of the first `count` images of eval_set with mapped predictions.

    predict: images (B, C, H, W) in [0, 1] -> cluster ids (B, H, W). mapping: (K,) cluster -> class
    (-1: no class). Returns {"images" (B, C, H, W), "predictions" (B, H, W), "labels" (B, H, W)} as numpy.
    """
    subset = eval_set.select(range(min(count, len(eval_set))))
    images, labels = next(batches(subset, batch_size=max(len(subset), 1), crop=config.input_size, train=False,
                                  device=device))
    clusters = predict(images).cpu().numpy()  # (B, H, W)
    table = np.asarray(mapping, dtype=np.int64)
    classes = np.where(table[clusters] < 0, IGNORE, table[clusters])
    labels = labels.cpu().numpy()
    classes[labels == IGNORE] = IGNORE
    return {"images": images.cpu().numpy(), "predictions": classes, "labels": labels}


def qualitative(examples: dict, *, palette, class_names, title: str = ""):
    """Rows of image | prediction | ground truth, with a legend of the class colours."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = len(examples["images"])
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row in range(rows):
        panels = (as_rgb(examples["images"][row]), colourise(examples["predictions"][row], palette),
                  colourise(examples["labels"][row], palette))
        for col, (panel, name) in enumerate(zip(panels, ("image", "prediction", "ground truth"))):
            axes[row, col].imshow(panel, interpolation="nearest")
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(name)
    handles = [Patch(color=np.asarray(c) / 255, label=n) for n, c in zip(class_names, palette)]
    handles.append(Patch(color="black", label="not counted"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def curves(history: dict):
    """Two panels: training loss per head (solid: with lambda, dashed: lambda = 1), and head-B accuracy
    (solid) / head-A majority accuracy (dotted) per evaluation split, per epoch."""
    import matplotlib.pyplot as plt

    epochs = history["epochs"]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    for head, colour in (("a", "tab:orange"), ("b", "tab:blue")):
        for suffix, style in (("", "-"), ("_nolambda", "--")):
            points = [(r["epoch"], r[f"loss_{head}{suffix}"]) for r in epochs if r.get(f"loss_{head}{suffix}") is not None]
            if points:
                label = f"head {head.upper()}" + (" (lambda = 1)" if suffix else "")
                loss_ax.plot(*zip(*points), style, color=colour, marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="IIC loss (nats)", title="training loss")
    splits = sorted({name for r in epochs for name in r["eval"]})
    for split, colour in zip(splits, ("tab:green", "tab:red", "tab:purple")):
        for head, style in (("b", "-"), ("a", ":")):
            points = _accuracy_points(history, split, head)
            if points:
                label = f"{split} head {head.upper()}" + (" (many-to-one)" if head == "a" else "")
                acc_ax.plot(*zip(*points), style, color=colour, marker=".", label=label)
    acc_ax.set(xlabel="epoch", ylabel="pixel accuracy", title="accuracy (epoch 0: untrained)")
    for ax in (loss_ax, acc_ax):
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _accuracy_points(history: dict, split: str, head: str) -> list[tuple[int, float]]:
    records = ([history["initial"]] if history.get("initial") else []) + list(history["epochs"])
    points = []
    for record in records:
        scores = (record.get("eval", {}).get(split) or {}).get(head) or {}
        if scores.get("acc") is not None and math.isfinite(scores["acc"]):
            points.append((record["epoch"], scores["acc"]))
    return points


def iou_table(columns: dict, class_names) -> str:
    """Markdown table: one row per class (and the mean), one column per {name: per-class IoU list}."""
    names = list(columns)
    lines = ["| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for index, name in enumerate(class_names):
        lines.append(f"| {name} | " + " | ".join(_pct(columns[c][index]) for c in names) + " |")
    means = [np.nanmean([v if v is not None else np.nan for v in columns[c]]) for c in names]
    lines.append("| **mean IoU** | " + " | ".join(_pct(v) for v in means) + " |")
    return "\n".join(lines)


def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def protocol_iou_table(selection: dict, class_names) -> str:
    """Per-class IoU of head B under both protocols (paper: best epoch; label-free: last epoch)."""
    columns = {}
    for key, label in (("paper", "paper protocol"), ("last", "label-free, last epoch")):
        entry = selection.get(key)
        if entry and entry.get("per_class_iou") is not None:
            columns[f"{label} (epoch {entry['epoch']}, {entry['split']})"] = entry["per_class_iou"]
    return iou_table(columns, class_names)


def md_table(header: list[str], rows: list[list]) -> str:
    """A small Markdown table for a notebook's output (the book's tables are rendered by pandas in
    iicrepro/report, which no notebook imports: it is left out of the run fingerprint)."""
    def esc(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]) + "\n"


def _rule_acc(run: dict, rule: str):
    return ((run.get("selection") or {}).get(rule) or {}).get("acc")


def runs_table(runs: list[dict]) -> str:
    """One row per run file (dicts as read from NAME.json): labels, status, both protocols, time, device."""
    rows = []
    for run in runs:
        failure = run.get("failure") or {}
        note = f"cell {failure.get('cell_index')}: {failure.get('ename')}" if failure else run.get("reason", "")
        rows.append([run.get("name"), run.get("study_group"), run.get("variant"), run.get("dataset"), run.get("status"),
                     run.get("profile"), _pct(_rule_acc(run, "paper")), _pct(_rule_acc(run, "last")),
                     f"{run['wall_time_s']:.0f} s" if run.get("wall_time_s") else "", run.get("device", ""), note])
    return md_table(["run", "group", "variant", "dataset", "status", "profile", "paper acc", "last-epoch acc",
                     "wall time", "device", "note"], rows)


def groups_table(runs: list[dict]) -> str:
    """Mean +- sample std over the ok seeds of each (study_group, variant, dataset), both protocols (%)."""
    import statistics

    def cell(found: list[dict], rule: str) -> str:
        values = [100 * v for r in found if isinstance(v := _rule_acc(r, rule), (int, float)) and math.isfinite(v)]
        if not values:
            return "n/a"
        return f"{statistics.fmean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "") \
            + f" (n = {len(values)})"
    keys = sorted({(str(r.get("study_group")), str(r.get("variant")), str(r.get("dataset"))) for r in runs})
    rows = []
    for key in keys:
        found = [r for r in runs if r.get("status") == "ok"
                 and (str(r.get("study_group")), str(r.get("variant")), str(r.get("dataset"))) == key]
        rows.append([*key, cell(found, "paper"), cell(found, "last")])
    return md_table(["group", "variant", "dataset", "paper protocol acc", "label-free (last) acc"], rows)
