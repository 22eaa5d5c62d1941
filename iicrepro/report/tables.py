"""Tables of the Results and Ablations pages: groupbys and pivots of the tidy frame, rendered by pandas.

A cell is the mean +- sample standard deviation (n - 1) over the seeds of (study_group, variant, dataset)
with status "ok", each seed linked to its executed notebook; failed seeds are named; a cell without any
run says *not run* and the command that fills it is listed below the table (iicrepro.report.load).
"""
from __future__ import annotations

import math

import pandas as pd

from iicrepro.report.frame import (best_profile_rows, comparable_rows, preferred_profile, protocol_rows,
                                   ranked_profiles, same_scale_rows, seed_difference)
from iicrepro.report.load import (BASELINES, MAIN_VARIANTS, METHODS, command_for, experiments, labels,
                                   manifest_cells, manifest_entry)

NOT_RUN = "*not run*"
PAPER_SCALE = ("full", "paper-cpu")  # the study.yaml profiles that train the presets' own crops and batches


def to_md(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (every cell as text; pipes escaped)."""
    text = frame.astype(str).apply(lambda column: column.str.replace("|", "\\|", regex=False))
    return text.to_markdown(index=False, disable_numparse=True) + "\n"


def pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def mean_sd(values: pd.Series, *, signed: bool = False) -> str:
    """"+1.2 ± 0.8": the mean and, when n > 1, the sample sd (n - 1) of points, one decimal."""
    spread = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
    return f"{values.mean():{'+' if signed else ''}.1f}{spread}"


def link(text: str, row) -> str:
    return f"[{text}]({row['notebook']})" if isinstance(row.get("notebook"), str) else text


def seed_label(row) -> str:
    return f"s{row['seed']}" if row.get("seed") is not None and not pd.isna(row["seed"]) else row["run"]


def cell_text(rows: pd.DataFrame, *, metric: str = "acc", rule: str = "paper") -> str:
    """One cell from the rows of one (group, variant, dataset) under one rule (protocol_rows)."""
    rows = rows[rows["profile"] == preferred_profile(rows["profile"])]
    ran = rows[rows["status"] != "not run"]
    if ran.empty:
        return NOT_RUN
    ok = ran[(ran["status"] == "ok") & ran[metric].notna()]
    parts = []
    if len(ok) == 1:
        parts.append(link(pct(ok[metric].iloc[0]), ok.iloc[0]))
    elif len(ok) > 1:
        seeds = ", ".join(link(seed_label(r), r) for _, r in ok.iterrows())
        parts.append(f"{pct(ok[metric].mean())} ± {100 * ok[metric].std(ddof=1):.1f} (n = {len(ok)}: {seeds})")
    elif (ran["status"] == "ok").any():
        parts.append("n/a")
    for status, failed in ran[ran["status"] != "ok"].groupby("status"):
        parts.append(f"**{status}**: " + ", ".join(link(seed_label(r), r) for _, r in failed.iterrows()))
    profile = preferred_profile(rows["profile"])
    other = sorted(set(ok["split"].dropna()) - {"heldout"})
    notes = ([f"({profile} profile)"] if profile != "full" else []) + (
        [f"(on {', '.join(other)})"] if rule != "paper" and other else [])
    return " ".join(["; ".join(parts)] + notes)


def cells(frame: pd.DataFrame, *, keys: list[str], rule: str, metric: str = "acc") -> pd.Series:
    """cell_text of every (keys) group of the frame under `rule`, indexed by keys."""
    rows = best_profile_rows(protocol_rows(frame, rule), keys)
    texts = {key: cell_text(group, metric=metric, rule=rule) for key, group in rows.groupby(keys, dropna=False)}
    index = pd.MultiIndex.from_tuples(list(texts), names=keys) if len(keys) > 1 else pd.Index(
        [k[0] if isinstance(k, tuple) else k for k in texts], name=keys[0])
    return pd.Series(list(texts.values()), index=index, dtype=object)


def missing_list(missing: list[tuple[str, str]]) -> str:
    """The commands that fill the cells marked *not run* (below each table)."""
    if not missing:
        return ""
    lines = ["", "Cells marked *not run* and the command that fills each:", ""]
    return "\n".join(lines + [f"- {where}: `{command}`" for where, command in missing]) + "\n"


def quoted(reference: dict, source: str, dataset: str, notes: list) -> str:
    """A number quoted from a source of the reference file ("—" where that source has none)."""
    entry = (reference.get("iic") or {}).get(source, {}).get(dataset)
    if entry is None:
        return "—"
    short = (reference.get("sources") or {}).get(source, {}).get("short", source)
    if entry.get("note"):
        notes.append(f"{short}, {labels(reference).get(dataset, dataset)}: {entry['note']}")
    return "no accuracy obtained" if entry.get("value") is None else str(entry["value"])


def _main_pivot(frame: pd.DataFrame, reference: dict, rule: str, metric: str = "acc") -> pd.DataFrame:
    """(dataset rows in experiment order) x (faithful, improved) cells of the main study group."""
    main = frame[frame["group"] == "main"]
    order = [r["dataset"] for r in experiments(reference)]
    if main.empty:
        return pd.DataFrame(NOT_RUN, index=order, columns=list(MAIN_VARIANTS))
    table = cells(main, keys=["dataset", "variant"], rule=rule, metric=metric).unstack("variant")
    return table.reindex(index=order, columns=list(MAIN_VARIANTS)).fillna(NOT_RUN)


def results_paper(frame, reference, *, runs, manifest) -> str:
    """Table-4 layout, paper protocol: the paper | seed 000 | seed 001 | ours faithful | ours improved."""
    notes, ours = [], _main_pivot(frame, reference, "paper")
    table = pd.DataFrame({"experiment": labels(reference, analogue=True)}).reindex(ours.index)
    for source, column in (("paper", "paper"), ("seed000", "seed 000"), ("seed001", "seed 001")):
        table[column] = [quoted(reference, source, ds, notes) for ds in ours.index]
    for variant in MAIN_VARIANTS:
        table[f"ours {variant}"] = ours[variant]
    missing = [(f"{labels(reference)[ds]}, ours {v}", command_for(group="main", variant=v, dataset=ds, runs=runs,
                                                                  manifest=manifest))
               for ds in ours.index for v in MAIN_VARIANTS if ours.loc[ds, v] == NOT_RUN]
    text = to_md(table)
    if notes:
        text += "\nNotes on the quoted numbers:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text + missing_list(missing)


def results_label_free(frame, reference) -> str:
    """Our runs under the label-free protocol (no published number uses it)."""
    table = pd.DataFrame({"experiment": labels(reference, analogue=True)})
    for variant in MAIN_VARIANTS:
        for rule, name in (("last", "last epoch"), ("lowest_loss", "lowest loss")):
            table[f"ours {variant}, {name}"] = _main_pivot(frame, reference, rule)[variant]
    return to_md(table.reindex(_main_pivot(frame, reference, "last").index))


SPLIT_ROWS = [("main", variant) for variant in MAIN_VARIANTS] + [(group, None) for group in BASELINES]


def results_splits(frame, reference) -> str:
    """The last epoch of every main and baseline run scored on both image sets, paired by seed: the training
    images (paper_eval, which the paper protocol scores) and the held-out ones (the label-free protocol's).
    A gap between the two protocols' cells has two causes, the epoch (the paper protocol's best against the
    last) and the images; this table measures the second alone. Each analogue at its IIC cells' scale
    (comparable_rows), as the baselines table."""
    last = comparable_rows(frame)
    last = last[(last["rule"] == "last") & (last["status"] == "ok") & last["acc"].notna()]
    rows = []
    for ds, label in labels(reference, analogue=True).items():
        for group, variant in SPLIT_ROWS:
            method = METHODS[group] if variant is None else f"{METHODS[group]} {variant}"
            runs = last[(last["dataset"] == ds) & (last["group"] == group)]
            runs = runs if variant is None else runs[runs["variant"] == variant]
            train, held = (runs[runs["split"] == split] for split in ("paper_eval", "heldout"))
            gap = 100 * seed_difference(held, train)
            if gap.empty:
                continue
            seeds = list(gap.index)
            rows.append({"experiment": label, "method": method,
                         "training images": mean_sd(100 * train.set_index("seed")["acc"].loc[seeds]),
                         "held-out images": mean_sd(100 * held.set_index("seed")["acc"].loc[seeds]),
                         "held-out − training": f"{mean_sd(gap, signed=True)} (higher in {int((gap > 0).sum())} "
                                                f"of {len(gap)})"})
    if not rows:
        return "No run has scored its last epoch on both image sets yet.\n"
    return to_md(pd.DataFrame(rows))


def results_baselines(frame, reference, *, runs, manifest) -> str:
    """Random network and k-means: the paper's numbers and ours on the same data and protocols, each analogue's
    at the scale of its IIC cells (comparable_rows), so that IIC minus a baseline read off the two tables is
    the margin the margins table gives."""
    quotes, rows, missing = reference.get("baselines") or {}, [], []
    base = comparable_rows(frame)  # each analogue's baselines at the scale of its IIC cells, as the margins
    base = base[base["group"].isin(list(BASELINES))]
    ours = {rule: cells(base, keys=["dataset", "group"], rule=rule) if not base.empty else pd.Series(dtype=object)
            for rule in ("paper", "last")}
    for ds, label in labels(reference, analogue=True).items():
        for group, kind in BASELINES.items():
            q = quotes.get(kind, {})
            paper, logs = q.get("paper", {}).get(ds), q.get("released_logs", {}).get(ds)
            found = {rule: ours[rule].get((ds, group), NOT_RUN) for rule in ours}
            rows.append({"experiment": label, "baseline": q.get("label", kind),
                         "paper": "—" if paper is None else paper, "authors' logs": "—" if logs is None else logs,
                         "ours, paper protocol": found["paper"], "ours, label-free (held-out)": found["last"]})
            if found["paper"] == NOT_RUN:
                missing.append((f"{labels(reference)[ds]}, {q.get('label', kind)}",
                                command_for(group=group, variant=None, dataset=ds, runs=runs, manifest=manifest)))
    return to_md(pd.DataFrame(rows)) + missing_list(missing)


def results_scales(frame, reference, *, manifest: list[dict], beats: str = "") -> str:
    """Every analogue whose faithful IIC ran at more than one scale (study.yaml profile): one row per profile,
    IIC and both baselines read from that profile's runs only, so a row is like for like and the rows of an
    analogue compare its scales (issue 15 d: the paper scale beside the CPU scale). Below: the analogues with
    no faithful IIC run at the paper scale yet, each with the command that runs it on a CPU. `beats`
    (scales.scales_beats) goes between the two."""
    return _scales_table(frame, reference) + beats + _paper_scale_missing(frame, reference, manifest=manifest)


def _scales_table(frame, reference) -> str:
    """The rows of `results_scales` (or a line saying that no analogue has two scales yet)."""
    names = labels(reference, analogue=True)
    runs = frame[frame["group"].isin(["main", *BASELINES])
                 & ((frame["group"] != "main") | (frame["variant"] == "faithful"))]
    rows = []
    for ds, label in names.items():
        iic = runs[(runs["dataset"] == ds) & (runs["group"] == "main") & (runs["status"] == "ok")]
        profiles = ranked_profiles(iic["profile"])
        if len(profiles) < 2:
            continue
        for profile in profiles:
            scale = iic[iic["profile"] == profile]["scale"].iloc[0]
            row = {"experiment": label, "profile": profile, "scale": scale}
            for group in ("main", *BASELINES):
                here, note = _same_scale(runs, dataset=ds, group=group, profile=profile, scale=scale)
                for rule, protocol in (("paper", "paper protocol"), ("last", "label-free")):
                    cell = protocol_rows(here, rule)
                    row[f"{METHODS[group]}, {protocol}"] = (cell_text(cell, rule=rule) + note if not cell.empty
                                                            else NOT_RUN)
            rows.append(row)
    if not rows:
        return ("*No analogue has faithful IIC runs at more than one scale yet: every number above is at the one "
                "scale its cell names.*\n")
    return to_md(pd.DataFrame(rows))


def _paper_scale_missing(frame, reference, *, manifest: list[dict]) -> str:
    """The offline analogues without an ok faithful IIC run in a PAPER_SCALE profile, each with the command that
    trains its faithful main run (seed 0, the one seed of `paper-cpu`) at the presets' own scale on a CPU."""
    main = frame[(frame["group"] == "main") & (frame["variant"] == "faithful") & (frame["status"] == "ok")]
    done = set(main[main["profile"].isin(PAPER_SCALE)]["dataset"])
    names = labels(reference, analogue=True)
    lines = []
    for row in experiments(reference):
        ds = row["dataset"]
        entry = manifest_entry(manifest, group="main", variant="faithful", dataset=ds)
        if row.get("analogue_of") and ds not in done and entry is not None:
            lines.append(f"- {names[ds]}: `iicrepro study run --profile paper-cpu --only '{entry['name']}-s0'`")
    if not lines:
        return ""
    head = ("Not yet run at the paper scale (faithful IIC, seed 0, on a CPU), and the command that runs each (it "
            "resumes from its last epoch's checkpoint after an interruption; the profile's number of epochs, and "
            "which analogues need more: {ref}`paper-cpu`):")
    return "\n".join(["", head, "", *lines]) + "\n"


def _same_scale(runs: pd.DataFrame, *, dataset: str, group: str, profile: str, scale: str):
    """The runs of (dataset, group) in `profile`; a baseline without any there takes another profile's at the
    very same scale (`same_scale_rows`) and says so. -> (rows, note)"""
    rows = runs[(runs["dataset"] == dataset) & (runs["group"] == group)]
    if group == "main":
        return rows[rows["profile"] == profile], ""
    same, other = same_scale_rows(rows, profile=profile, scale=scale)
    return same, f" (same scale, {other} profile)" if other == "full" else ""


def results_detail(frame, reference) -> str:
    """Per (dataset, variant) of the main runs: seeds, epochs each rule chose, accuracy and mIoU per rule. The
    epochs are those of the cell's own profile, as its accuracies are (a paper-cpu run beside cpu ones is not
    listed here; the scales table shows it)."""
    main = frame[(frame["group"] == "main") & (frame["status"] == "ok") & frame["selected"]]
    main = best_profile_rows(main, ["dataset", "variant"])
    if main.empty:
        return "*No run of the main table has finished yet.*\n"
    epochs = main.pivot_table(index=["dataset", "variant"], columns="rule", values="epoch",
                              aggfunc=lambda s: ", ".join(str(int(e)) for e in s))
    table = pd.concat({f"{rule}: {metric}": cells(main, keys=["dataset", "variant"], rule=rule, metric=metric)
                       for rule, metric in (("paper", "acc"), ("paper", "miou"), ("last", "acc"), ("last", "miou"),
                                            ("lowest_loss", "acc"))}, axis=1)
    table.insert(0, "epochs chosen (paper)", epochs.get("paper"))
    table.insert(1, "epochs chosen (lowest loss)", epochs.get("lowest_loss"))
    table = table.reset_index()
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return to_md(table.fillna("—"))


def results_context(reference) -> str:
    """Other baselines of Table 4, quoted for context (not computed here)."""
    rows = (reference.get("other_baselines") or {}).get("rows") or []
    if not rows:
        return ""
    keys = [r["dataset"] for r in experiments(reference) if not r.get("analogue_of")]
    table = pd.DataFrame(rows).set_index("method").reindex(columns=keys).rename(columns=labels(reference))
    return to_md(table.rename_axis("method (paper, Table 4)").reset_index().fillna("—"))


def sources(reference) -> str:
    items = (reference.get("sources") or {}).items()
    return "\n".join(f"- **{v.get('short', k)}**: {v.get('citation', '').strip()}" + (f" <{v['url']}>" if v.get("url")
                                                                                     else "") for k, v in items) + "\n"


def ablation(frame, group: str, *, runs, manifest, reference) -> str:
    """One ablation: a row per (dataset, variant) from manifest and run files (in manifest order), both
    protocols."""
    found = frame[frame["group"] == group]
    keys = list(dict.fromkeys(manifest_cells(manifest, group) + list(zip(found["dataset"], found["variant"]))))
    if not keys:
        return (f"*Not run: no run of the study has study_group `{group}` yet (add one to study.yaml).*\n"
                if group != "ablation-epochs" else
                "*No separate runs: the number of epochs is read from the main runs' per-epoch history.*\n")
    order = [r["dataset"] for r in experiments(reference)]
    keys.sort(key=lambda k: order.index(k[0]) if k[0] in order else len(order))  # stable: variants keep order
    index = pd.MultiIndex.from_tuples(keys, names=["dataset", "variant"])
    columns = {"paper protocol: acc": ("paper", "acc"), "paper protocol: mIoU": ("paper", "miou"),
               "label-free (last): acc": ("last", "acc"), "label-free (lowest loss): acc": ("lowest_loss", "acc")}
    table = pd.DataFrame(index=index)
    for column, (rule, metric) in columns.items():
        series = cells(found, keys=["dataset", "variant"], rule=rule, metric=metric) if not found.empty else None
        table[column] = series.reindex(index) if series is not None else NOT_RUN
    table = table.fillna(NOT_RUN)
    missing = [(f"{labels(reference).get(ds, ds)}, {v}", command_for(group=group, variant=v, dataset=ds, runs=runs,
                                                                      manifest=manifest))
               for (ds, v), value in table["paper protocol: acc"].items() if value == NOT_RUN]
    table = table.reset_index()
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return to_md(table) + missing_list(missing)


def lambda_quoted(reference) -> str:
    """The authors' lambda_B = 1 numbers (quoted)."""
    block = reference.get("lambda_ablation") or {}
    if not block.get("rows"):
        return ""
    short = (reference.get("sources") or {}).get(block.get("source"), {}).get("short", block.get("source"))
    table = pd.DataFrame(block["rows"])
    table["dataset"] = table["dataset"].map(labels(reference)).fillna(table["dataset"])
    return to_md(table.rename(columns={"lambda_b": "lambda_B", "value": f"accuracy ({short})"}))
