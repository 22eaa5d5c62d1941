"""Tables about the runs themselves: status, provenance (Run notebooks), timings (Performance), datasets.

Each is a groupby of a frame of iicrepro.report.frame rendered by pandas; the dataset snippets read the
"dataset_summary" block of a run of study_group "datasets" ({"dataset", "splits", "image_size",
"pixel_share", "ignored_share", "per_split", "sample_grid"}).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iicrepro.config import DATASETS
from iicrepro.report.frame import best_profile_rows, preferred_profile, ranked_profiles
from iicrepro.report.load import entry_dataset, experiments, labels
from iicrepro.report.tables import link, pct, to_md


def status_line(runs: pd.DataFrame) -> str:
    """One sentence: how many run files, per profile (in the cells' order of profiles) by status."""
    if runs.empty:
        return "No run has been executed yet: every table shows *not run* and the command that fills it.\n"
    parts = []
    for profile in ranked_profiles(runs["profile"]):
        mine = runs[runs["profile"] == profile]
        counts = ", ".join(f"{n} {status}" for status, n in mine["status"].value_counts().sort_index().items())
        parts.append(f"{len(mine)} of the {profile} profile ({counts})")
    return f"Run files found: {len(runs)}: " + "; ".join(parts) + ".\n"


def precision_note(runs: pd.DataFrame, reference) -> str:
    """What the main cells' seeds trained in (each run file's `engine`): the cells by precision, and every cell
    whose seeds mix bf16 and float32 named with its seeds, since its spread then includes any effect of
    precision. '' when no main training run has finished."""
    main = runs[(runs["group"] == "main") & (runs["status"] == "ok") & runs["precision"].notna()]
    main = best_profile_rows(main, ["dataset", "variant"])  # the profile each cell shows
    if main.empty:
        return ""
    names = labels(reference)
    order = {dataset: i for i, dataset in enumerate(names)}
    main = main.assign(order=main["dataset"].map(order).fillna(len(order))).sort_values(["order", "variant", "seed"])
    uniform, mixed = {}, []
    for (dataset, variant), cell in main.groupby(["dataset", "variant"], sort=False):
        label = f"{names.get(dataset, dataset)} {variant}"
        kinds = cell.groupby("precision", sort=True)["seed"].agg(lambda s: ", ".join(str(int(x)) for x in s))
        if len(kinds) == 1:
            uniform.setdefault(kinds.index[0], []).append(label)
        else:
            mixed.append(f"{label} (" + "; ".join(f"{precision}: seed{'s' if ',' in seeds else ''} {seeds}"
                                                  for precision, seeds in kinds.items()) + ")")
    described = {"bf16": "bf16 autocast (the loss in float32)", "float32": "float32"}
    parts = [f"every seed in {described.get(p, p)}: {', '.join(cells)}" for p, cells in sorted(uniform.items())]
    if mixed:
        parts.append("**mixed precision**, the spread over seeds then includes any effect of precision: "
                     + "; ".join(mixed))
    return ("**Precision of the main cells** (each run file's `engine`; {doc}`deviations`, *Precision*): "
            + "; ".join(parts) + ".\n")


def settings_note(runs: pd.DataFrame, reference) -> str:
    """Every cell (study group, variant, dataset, at the profile it shows) whose seeds' run files differ in a
    parameter other than the seed, e.g. a cell partly rerun after its epochs were raised: named with each
    setting's seeds, since its mean and spread then pool runs of different settings. '' when none does.
    `runs` is frame.runs_frame (its `params` column)."""
    ok = runs[(runs["status"] == "ok") & runs["seed"].notna()]
    ok = best_profile_rows(ok, ["group", "variant", "dataset"])  # the profile each cell shows
    names = labels(reference)
    mixed = []
    for (group, variant, dataset), cell in sorted(ok.groupby(["group", "variant", "dataset"], sort=False),
                                                  key=lambda item: tuple(map(str, item[0]))):
        cell = cell.sort_values("seed")
        params = [{k: v for k, v in p.items() if k != "seed"} for p in cell["params"]]
        keys = sorted({k for p in params for k in p if len({repr(q.get(k)) for q in params}) > 1})
        if not keys:
            continue
        seeds: dict[str, list[str]] = {}
        for seed, p in zip(cell["seed"], params):
            seeds.setdefault(", ".join(f"{k}={p.get(k)}" for k in keys), []).append(str(int(seed)))
        mixed.append(f"{names.get(dataset, dataset)} {group} {variant} (" + "; ".join(
            f"{setting}: seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for setting, s in seeds.items()) + ")")
    if not mixed:
        return ""
    return ("**Mixed settings**: the seeds of these cells ran with different parameters (their run files' "
            "`params`), so their mean and spread pool different runs until the cell is rerun alike: "
            + "; ".join(mixed) + ".\n")


def progress(runs: pd.DataFrame, manifest: Path, *, profile: str = "cpu") -> str:
    """What the manifest plans for one profile against the run files that exist, per study group.

    A run counts as done when its run file (any code revision) has status ok and, for a training run, trained
    the epochs the manifest plans (a run whose epochs were raised later is priced at those it lacks); runs
    that reuse another run's results (alias_of) cost nothing and are left out. The time left is an estimate
    from the run files: each remaining training run costs its epochs over the whole training set (epochs x
    data_fraction) times the median cost of such an epoch in the runs done on the same images and crop side
    (`_epoch_costs`); a crop side no run has measured is scaled from the others by pixel count. Rates are
    kept apart by precision: a run left is priced at the rates of the precision it will train in (`bf16: true`
    bf16, `false` float32, `"auto"` that of the latest run done, i.e. of the machine the study is on now), and
    not priced when no run done trained in that precision (bf16 and float32 epochs differ several-fold).
    """
    from iicrepro.study import load_study, resolved_config  # the manifest's expansion, as `study list` sees it

    try:
        study = load_study(manifest, profile=profile)
    except ValueError:
        return ""
    rows = []
    for r in study.runs:
        if r.alias_of or r.requires:
            continue
        row = {"run": r.name, "group": r.study_group, "trains": r.notebook.endswith("train.ipynb")}
        if row["trains"]:
            cfg = resolved_config(r.params)
            row.update(family=DATASETS[cfg.dataset].family, input_size=cfg.input_size, bf16=cfg.bf16,
                       epoch_units=cfg.epochs * cfg.data_fraction)
        rows.append(row)
    planned = pd.DataFrame(rows, columns=["run", "group", "trains", "family", "input_size", "bf16", "epoch_units"])
    if planned.empty:
        return ""
    ok = runs[(runs["profile"] == profile) & (runs["status"] == "ok")]
    planned["done"] = planned["run"].isin(set(ok["run"]))
    lacking = _epochs_lacking(planned, ok)
    planned["done"] &= ~planned["run"].isin(set(lacking))
    trained = ok[ok["run"].isin(set(planned.loc[planned["trains"], "run"]))]
    trained = trained.assign(precision=trained["precision"].fillna("float32"))  # no engine record: before bf16
    costs = _epoch_costs(trained)
    current = _latest_precision(trained)
    wall = trained["cost_s"].dropna()
    todo = planned[planned["trains"] & ~planned["done"]]
    todo = todo.assign(epoch_units=todo["run"].map(lacking).fillna(todo["epoch_units"]))
    todo = todo.assign(precision=todo["bf16"].map(lambda b: "bf16" if b is True else "float32" if b is False
                                                  else current))
    per_run = wall.median() if len(wall) else None  # the estimate when no run file tells its epochs' cost
    estimate = {r["run"]: _run_estimate(r, costs, per_run=per_run if r["precision"] == current else None)
                for _, r in todo.iterrows()}
    planned["hours"] = planned["run"].map(lambda run: (estimate.get(run) or (None, None))[0])
    planned["todo"] = planned["run"].isin(set(todo["run"]))
    planned["unpriced"] = planned["todo"] & planned["hours"].isna()
    order = list(dict.fromkeys(planned["group"]))
    table = (planned.groupby("group", sort=False)
             .agg(planned=("run", "size"), done=("done", "sum"), trains=("trains", "any"), todo=("todo", "sum"),
                  hours=("hours", lambda h: h.sum(min_count=1)), unpriced=("unpriced", "sum"))
             .reindex(order).reset_index())
    table["remaining"] = table["planned"] - table["done"]
    table["training left (estimate)"] = [_left(row) for _, row in table.iterrows()]
    table = table.drop(columns=["trains", "todo", "hours", "unpriced"])
    text = (f"Progress of the {profile} profile of study.yaml (every run it plans except those that reuse another "
            f"run's results or need a download; {int(planned['done'].sum())} of {len(planned)} done):\n\n"
            + to_md(table) + "\n")
    if not len(wall):
        return text
    took = (f"The {len(wall)} IIC training runs done took a median {wall.median() / 60:.0f} min each"
            if len(wall) > 1 else f"The one IIC training run done took {wall.median() / 60:.0f} min")
    devices = sorted(set(trained["device"].dropna()))
    device = ("device: " if len(devices) < 2 else "devices: ") + ", ".join(devices)
    machine = ("on the same machine" if len(devices) < 2 else
               "on machines like those (the rates pool the runs of all of them; each one's timings: "
               "{doc}`performance`)")
    left = len(todo)
    if not left:
        return text + f"\n{took} ({device}); no training run is left.\n"
    kinds = [kind for _, kind in estimate.values()]
    total = sum(h for h, _ in estimate.values() if h is not None) * 3600
    scaled, unknown = kinds.count("scaled"), kinds.count(None)
    known = len(kinds) - unknown
    runs_left = f"{known} training run{'s' if known > 1 else ''} left need{'' if known > 1 else 's'}"
    if costs:
        rates = "; ".join(f"{family_label(f)} at {px} px in {p}: {_hours(s)}"
                          for (f, px, p), s in sorted(costs.items()))
        text += (f"\n{took} ({device}). One epoch over all training images (evaluation included) costs, "
                 f"as a median of those runs: {rates}. At these rates the {runs_left} about {_hours(total)} "
                 + machine)
    else:  # run files without a training history: the median run
        text += f"\n{took} ({device}); at that rate the {runs_left} about {_hours(total)} {machine}"
    if scaled:
        text += (f" ({scaled} of them on images or crop sides no run has measured yet, scaled from the others by "
                 "pixel count)")
    if (todo["bf16"] == "auto").any():
        text += f"; runs with `bf16: auto` are priced in {current}, the precision of the latest run done"
    if lacking:
        n = len(lacking)
        text += (f"; {n} of the runs left {'are runs' if n > 1 else 'is a run'} done with fewer epochs than the "
                 f"manifest now plans, priced at the epochs {'they lack' if n > 1 else 'it lacks'} (a run continues "
                 "from its checkpoint where the machine kept it)")
    text += ". That is an estimate from the runs done, not a measurement."
    if unknown:
        unpriced = todo[todo["run"].map(lambda run: estimate[run][1] is None)]
        for precision, n in unpriced["precision"].value_counts().sort_index().items():
            text += (f" The {n} {precision} run{'s' if n > 1 else ''} left {'are' if n > 1 else 'is'} not in it: no "
                     f"run done here trained in {precision}, and bf16 and float32 epochs differ several-fold (on a "
                     "CPU without bf16 matrix units bf16 is far slower than float32; {doc}`performance`).")
    return text + "\n"


def _epochs_lacking(planned: pd.DataFrame, ok: pd.DataFrame) -> dict[str, float]:
    """{run: epochs over all training images it lacks} for the training runs done whose run file trained
    fewer epochs than the manifest now plans for them (its epochs were raised after it ran): not done, and
    priced at the difference. Run files that do not say how much they trained count as done."""
    have = planned["run"].map(ok.dropna(subset=["epoch_units"]).set_index("run")["epoch_units"])
    short = planned["trains"] & planned["done"] & (have < planned["epoch_units"] - 1e-9)  # NaN: not short
    return dict(zip(planned.loc[short, "run"], planned.loc[short, "epoch_units"] - have[short]))


def family_label(family: str) -> str:
    """"camvid" -> "CamVid" (the image sets the analogues share)."""
    return {"camvid": "CamVid", "dubai": "Dubai", "cocostuff": "COCO-Stuff", "potsdam": "Potsdam"}.get(family, family)


def _latest_precision(trained: pd.DataFrame) -> str:
    """The precision of the latest training run done ("bf16" | "float32"): what `bf16: auto` trains in on the
    machine the study is on now. float32 when no run file says (the default of `bf16`)."""
    known = trained.dropna(subset=["precision", "started"])
    return str(known.sort_values("started")["precision"].iloc[-1]) if not known.empty else "float32"


def _epoch_costs(trained: pd.DataFrame) -> dict[tuple[str, int, str], float]:
    """{(image family, crop side, precision): median seconds of one epoch over all training images} of the runs
    done.

    An epoch's cost is the run's cost (`cost_s`, evaluation included) over its epochs x data_fraction; the
    analogues of one family (CamVid-3 and CamVid-11) train on the same images, so they share a rate.
    """
    known = trained.dropna(subset=["cost_s", "input_size", "epoch_units", "precision"])
    known = known[(known["epoch_units"] > 0) & known["dataset"].isin(list(DATASETS))]
    if known.empty:
        return {}
    per_epoch = known.assign(family=known["dataset"].map(lambda d: DATASETS[d].family),
                             rate=known["cost_s"] / known["epoch_units"])
    medians = per_epoch.groupby(["family", "input_size", "precision"])["rate"].median()
    return {(str(f), int(px), str(p)): float(r) for (f, px, p), r in medians.items()}


def _run_estimate(run: pd.Series, costs: dict, *, per_run: float | None) -> tuple[float | None, str | None]:
    """(hours, "measured" | "scaled" | "per run") of one remaining training run at the rates of its precision
    (run["precision"]); (None, None) when no run done trained in that precision, or when nothing is known.
    Without any epoch costs (run files without a history), the median run (per_run)."""
    if not costs:
        return (None, None) if per_run is None or pd.isna(per_run) else (per_run / 3600, "per run")
    costs = {(f, px): c for (f, px, p), c in costs.items() if p == run["precision"]}
    if not costs:
        return None, None
    key = (run["family"], int(run["input_size"]))
    if key in costs:
        return costs[key] * run["epoch_units"] / 3600, "measured"
    per_pixel = pd.Series([s / px ** 2 for (_, px), s in costs.items()]).median()
    return per_pixel * run["input_size"] ** 2 * run["epoch_units"] / 3600, "scaled"


def _left(group: pd.Series) -> str:
    """A group's estimated training left: "12 hours", "0" when nothing is left, "—" for groups that do not
    train, and "not estimated" for the runs `_run_estimate` cannot price (a precision no run done trained in)."""
    if not group["trains"]:
        return "—"
    todo, unpriced = int(group["todo"]), int(group["unpriced"])
    if not todo:
        return "0"
    if unpriced == todo:
        return "not estimated"
    known = _hours(group["hours"] * 3600)
    return known if not unpriced else f"{known} + {unpriced} run{'s' if unpriced > 1 else ''} not estimated"


def _hours(seconds: float) -> str:
    """"93 hours"; under 90 minutes in minutes ("40 min") and under two minutes in seconds ("20 s"), so that a
    short rest never reads "0 hours" or "0 min"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} hours"


def _num(value, digits: int = 1) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:,.{digits}f}"


def _cost(run: pd.Series) -> str:
    """A run's wall time in minutes; a resumed run shows its epochs' sum and its last call's."""
    if pd.notna(run["cost_s"]) and pd.notna(run["wall_time_s"]) and run["cost_s"] > run["wall_time_s"] + 1:
        return f"{_num(run['cost_s'] / 60)} (resumed; last call {_num(run['wall_time_s'] / 60)})"
    return _num(run["wall_time_s"] / 60)


def runs_table(runs: pd.DataFrame) -> str:
    """Provenance of every run file: labels, status, scale, parameters, revision, device, wall time."""
    if runs.empty:
        return ("*No run file yet.* `iicrepro study run` executes the study into book/runs/ "
                "(`iicrepro study list` shows what exists).\n")
    ordered = runs.sort_values(["group", "dataset", "variant", "seed"], key=lambda s: s.astype(str))
    table = pd.DataFrame({
        "run": [link(r["run"], r) for _, r in ordered.iterrows()],
        "status": ordered["status"], "profile": ordered["profile"], "scale": ordered["scale"],
        "group": ordered["group"], "variant": ordered["variant"], "dataset": ordered["dataset"],
        "seed": ordered["seed"].astype(str), "parameters (preset + changes)": ordered["parameters"],
        "code revision": "`" + ordered["code_revision"].fillna("?").astype(str).str[:12] + "`",
        "device": ordered["device"].fillna("—"), "torch": ordered["torch"].fillna("—"),
        "wall time (min)": [_cost(r) for _, r in ordered.iterrows()], "started": ordered["started"].fillna("—")})
    commands = "\n".join(f"- {r['run']}: `{r['command']}`" for _, r in ordered.iterrows() if r["command"])
    return to_md(table) + ("\nCommand that reproduces each run:\n\n" + commands + "\n" if commands else "")


def performance_runs(epochs: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Medians over epochs and seeds of the timings in the histories, per (group, variant, dataset, device)."""
    trained = epochs[(epochs["epoch"] > 0) & epochs["alias_of"].isna()]
    per_epoch = trained.drop_duplicates(["run", "profile", "epoch"])  # the cpu profile reuses the full one's names
    if per_epoch.empty:
        return "*Not measured: no run has finished yet (`iicrepro study run`).*\n"
    keys = ["group", "variant", "dataset", "device", "profile", "scale"]
    grouped = per_epoch.groupby(keys, dropna=False)
    table = pd.DataFrame({
        "runs": grouped["run"].nunique().astype(str),
        "batch": runs.groupby(keys, dropna=False)["batch_size"].first().reindex(grouped.size().index).map(
            lambda b: "—" if pd.isna(b) else str(int(b))),
        "precision": runs.groupby(keys, dropna=False)["precision"].agg(
            lambda v: ", ".join(sorted(set(v.dropna()))) or "—").reindex(grouped.size().index),
        "train s / head-A epoch": per_epoch[per_epoch["heads_trained"] == "A"].groupby(keys)["train_s"].median(),
        "train s / head-B epoch": per_epoch[per_epoch["heads_trained"] == "B"].groupby(keys)["train_s"].median(),
        "eval s / epoch": grouped["eval_s"].median(), "pairs/s": grouped["pairs_per_s"].median(),
        "peak memory (MB)": grouped["peak_mem_mb"].median()})
    wall = runs[runs["run"].isin(per_epoch["run"])].groupby(keys, dropna=False)["cost_s"].median() / 60
    table["wall time / run (min)"] = wall
    for column, digits in (("train s / head-A epoch", 1), ("train s / head-B epoch", 1), ("eval s / epoch", 1),
                           ("pairs/s", 1), ("peak memory (MB)", 0), ("wall time / run (min)", 1)):
        table[column] = table[column].map(lambda v, d=digits: _num(v, d))
    return to_md(table.reset_index())


# ---------------------------------------------------------------- Datasets page
def _swatch(rgb) -> str:
    r, g, b = rgb
    return f'<span class="swatch" style="background: rgb({r}, {g}, {b})"></span>'


def _summaries(runs: list[dict], name: str) -> list[tuple[dict, dict]]:
    found = []
    for run in runs:
        block = run.get("dataset_summary")
        for summary in (block if isinstance(block, list) else [block] if block else []):
            if summary.get("dataset") == name and run["status"] == "ok":
                found.append((run, summary))
    return found


def dataset_snippet(name: str, *, runs: list[dict], manifest: list[dict], runs_link: str) -> str:
    """Palette legend (iicrepro.config) and, when a datasets run exists, its statistics and sample grid."""
    from iicrepro.config import DATASETS

    spec = DATASETS[name]
    legend = to_md(pd.DataFrame({"class": spec.class_names, "colour": [_swatch(c) for c in spec.palette]}))
    found = _summaries(runs, name)
    if not found:
        entry = next((e for e in manifest if e.get("study_group") == "datasets"
                      and entry_dataset(e, manifest) == name), None)
        how = (f"`iicrepro study run --only '{entry['name']}-s*'`" if entry else
               "a run of study_group `datasets` for this dataset in study.yaml (none yet)")
        needs = "" if spec.offline else f" after `iicrepro download {spec.family}` and `iicrepro prepare {name}`"
        return legend + f"\nSample grid and class statistics: *not generated yet* (needs {how}{needs}).\n"
    run, summary = found[0]
    splits = pd.Series(summary.get("splits") or {}, name="images").rename_axis("split").reset_index()
    shares = pd.Series(summary.get("pixel_share") or {}, dtype=float).map(pct)
    text = legend + "\n" + to_md(splits) + "\n" + to_md(
        shares.rename("share of counted pixels (%)").rename_axis("class").reset_index())
    per_split = summary.get("per_split") or {}
    coverage = pd.DataFrame({split: block["coverage_counts"] for split, block in per_split.items()
                             if block.get("coverage_counts")}).T
    if not coverage.empty:
        coverage.columns = [f">= {t}" for t in coverage.columns]
        text += ("\nImages whose share of counted pixels is at least each threshold (COCO-Stuff's curation keeps "
                 ">= 0.75):\n\n" + to_md(coverage.fillna("—").rename_axis("split").reset_index()))
    if summary.get("ignored_share") is not None:
        text += f"\nPixels that do not count (masked or unlabelled): {pct(summary['ignored_share'])}%.\n"
    if summary.get("image_size"):
        text += f"\nImage size: {summary['image_size']}.\n"
    if summary.get("sample_grid"):
        text += f"\n![Sample images of {name} with their labels]({runs_link}/{summary['sample_grid']})\n"
    return text + f"\nFrom run {link(run['name'], {'notebook': run.get('notebook_link')})}.\n"


def majority_floors(runs: list[dict], frame: pd.DataFrame, reference: dict) -> dict[str, dict]:
    """{dataset: {"run": the datasets run read, "paper_eval" / "heldout": (largest class, its pixel share)}}: the
    floor of every accuracy, from the dataset summaries (`*-data-s0`) of the profile the analogue's IIC cells
    come from. A clustering that puts every pixel into one cluster scores exactly this share (the one-to-one
    matching sends that cluster to the largest class)."""
    floors = {}
    for row in experiments(reference):
        ds = row["dataset"]
        found = _summaries(runs, ds)
        if not found:
            continue
        main = frame[(frame["dataset"] == ds) & (frame["group"] == "main") & (frame["status"] == "ok")]
        profile = preferred_profile(main["profile"]) if not main.empty else None
        run, summary = next(((r, s) for r, s in found if r.get("profile") == profile), found[0])
        floors[ds] = {"run": run}
        for split in ("paper_eval", "heldout"):
            shares = ((summary.get("per_split") or {}).get(split) or {}).get("pixel_share") or {}
            if shares:
                top = max(shares, key=shares.get)
                floors[ds][split] = (top, shares[top])
    return floors


def majority_shares(floors: dict[str, dict], reference: dict) -> str:
    """The table of `majority_floors`: an accuracy at or below its floor says the clusters carry nothing the
    class sizes do not."""
    names, rows = labels(reference, analogue=True), []
    for ds, floor in floors.items():
        run = floor["run"]
        cells = {"experiment": names[ds], "data summary": link(run["name"], {"notebook": run.get("notebook_link")})}
        for split, title in (("paper_eval", "paper protocol's images"), ("heldout", "held-out images")):
            cells[title] = f"{pct(floor[split][1])} ({floor[split][0]})" if split in floor else "—"
        rows.append(cells)
    if not rows:
        return "*No dataset summary has run yet.*\n"
    return to_md(pd.DataFrame(rows))
