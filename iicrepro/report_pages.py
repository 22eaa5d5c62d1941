"""Tables of the Performance, Datasets and Run notebooks pages (see iicrepro/report.py for the run files).

Performance: per-epoch timings recorded by the runs, `iicrepro bench` results, the original's quoted times.
Datasets: the class palette of each dataset and, from a run of study_group "datasets", its statistics and
sample grid. Run notebooks: the provenance of every run file.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from iicrepro.report import entry_dataset, link, md_table, pct, seed_label


# ---------------------------------------------------------------- Performance page
def _median(values) -> float | None:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(values) if values else None


def _num(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def performance_runs(runs) -> str:
    """Per cell of the main table: medians over epochs and seeds of the timings in the run history."""
    groups = {}
    for run in runs:
        if run.status == "ok" and run.epochs() and not run.data.get("alias_of"):
            key = (run.group, run.variant, run.dataset, str(run.data.get("device", "?")), run.profile)
            groups.setdefault(key, []).append(run)
    if not groups:
        return "*Not measured: no run has finished yet (`iicrepro study run`).*\n"
    header = ["group", "variant", "dataset", "device", "runs", "batch", "train s / head-A epoch",
              "train s / head-B epoch", "eval s / epoch", "pairs/s", "peak memory (MB)", "wall time / run (min)"]
    rows = []
    for (group, variant, dataset, device, profile), found in sorted(groups.items()):
        epochs = [e for r in found for e in r.epochs()]
        only = {h: [e.get("train_s") for e in epochs if e.get("heads_trained") == [h]] for h in ("A", "B")}
        rows.append([group, variant, dataset + (" (smoke)" if profile == "smoke" else ""), device,
                     ", ".join(link(seed_label(r), r) for r in found),
                     found[0].data.get("params", {}).get("batch_size", "—"), _num(_median(only["A"])),
                     _num(_median(only["B"])), _num(_median(e.get("eval_s") for e in epochs)),
                     _num(_median(e.get("pairs_per_s") for e in epochs)),
                     _num(_median(e.get("peak_mem_mb") for e in epochs), 0),
                     _num(_median((r.data.get("wall_time_s") or math.nan) / 60 for r in found))])
    return md_table(header, rows)


def performance_bench(bench_dir: Path) -> str:
    """Every `iicrepro bench` result: training step per preset and head, evaluation, targets."""
    files = sorted(Path(bench_dir).glob("*.json")) if Path(bench_dir).is_dir() else []
    if not files:
        return ("*Not measured yet: run `iicrepro bench` (writes benchmarks/results/DEVICE-DATE.json; "
                "add `--bf16` on a GPU), then rebuild the book.*\n")
    parts = []
    for path in files:
        data = json.loads(path.read_text())
        env = data.get("env") or {}
        parts.append(f"\n**{path.name}**: {env.get('device_name', '?')} ({env.get('device', '?')}), torch "
                     f"{env.get('torch', '?')}, revision `{env.get('git_revision', '?')}`, {env.get('date', '')}; "
                     f"data {data.get('data', '?')}; bf16 {(data.get('settings') or {}).get('bf16')}.\n")
        for note in data.get("reductions") or []:
            parts.append(f"- reduced: {note}\n")
        rows = []
        for name, preset in (data.get("presets") or {}).items():
            for head, step in (preset.get("steps") or {}).items():
                rows.append([name, head, step.get("k"), step.get("batch_size"), step.get("input_size"),
                             _num(step.get("step_ms")), _num(step.get("pairs_per_s")), _num(step.get("epoch_s")),
                             _num(step.get("achieved_tflops"), 2), _num(step.get("peak_mem_mb"), 0)])
        parts.append("\n" + md_table(["preset", "head", "K", "batch", "input", "step (ms)", "pairs/s",
                                      "single-head epoch (s)", "TFLOP/s", "peak memory (MB)"], rows))
        parts.append(_bench_details(data))
        items = (data.get("targets") or {}).get("items") or []
        if items:
            parts.append("\n" + md_table(["target", "what", "goal", "measured", "status"],
                                         [[i.get("name"), i.get("what"), i.get("target"),
                                           _num(i.get("measured"), 3) if isinstance(i.get("measured"), (int, float))
                                           else "—", i.get("status")] for i in items]))
    return "".join(parts)


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _bench_details(data: dict) -> str:
    """Split of a step, checkpointing, evaluation, the loss alone per implementation (one bench file)."""
    presets, parts = data.get("presets") or {}, []
    peak = data.get("matmul_peak") or {}
    dtype = peak.get("compared_with")
    if dtype in peak:
        parts.append(f"\nDense matmul peak measured in the same run ({dtype}, n = {peak[dtype].get('n')}): "
                     f"{_num(peak[dtype].get('tflops'), 3)} TFLOP/s.\n")
    phases = ("views", "forward", "loss", "backward", "optimiser")
    rows = [[name, head] + [_num((step.get("split_ms") or {}).get(ph)) for ph in phases]
            + [_pct(step.get("matmul_peak_fraction"))]
            for name, preset in presets.items() for head, step in (preset.get("steps") or {}).items()]
    if rows:
        parts.append("\nSplit of one training step (median ms per phase) and the forward + backward FLOP/s as a "
                     "share of that peak:\n\n" + md_table(["preset", "head"] + [f"{ph} (ms)" for ph in phases]
                                                         + ["of matmul peak"], rows))
    def saved(run: dict) -> str:  # a CPU process's resident high-water mark only grows: no saving visible
        cpu = str(run.get("kind", "")).startswith("process_maxrss")
        return "n/a (CPU high-water mark)" if cpu else _num(run.get("memory_saved_mb"), 0)

    rows = [[name, head, _num(run.get("step_ms")), _pct(run.get("speed_cost")), _num(run.get("peak_mem_mb"), 0),
             saved(run)]
            for name, preset in presets.items() for head, run in (preset.get("checkpointing") or {}).items()]
    if rows:
        parts.append("\nWith activation checkpointing of the trunk (`checkpointing: true`):\n\n" + md_table(
            ["preset", "head", "step (ms)", "slower by", "peak memory (MB)", "memory saved (MB)"], rows))
    rows = [[name, ev.get("batch_size"), _num(ev.get("images_per_s")), ev.get("eval_images") or "—",
             _num(ev.get("eval_s"))] for name, preset in presets.items() if (ev := preset.get("eval"))]
    if rows:
        parts.append("\nEvaluation (forward, arg-max, confusion matrix) of head B:\n\n" + md_table(
            ["preset", "batch", "images/s", "images per evaluation", "evaluation (s)"], rows))
    parts.append(_bench_loss(data.get("loss"), data.get("loss_share")))
    return "".join(parts)


def _bench_loss(loss: dict | None, share: dict | None) -> str:
    """The loss alone: forward + backward ms per implementation, auto's pick, agreement with the first."""
    if not loss:
        return ""
    impls = loss.get("impls") or []
    times = {(r["k"], r["d"], r["impl"]): r.get("fwd_bwd_ms") for r in loss.get("records") or []}
    auto = {(a["k"], a["d"]): a["impl"] for a in loss.get("auto") or []}
    agreement = loss.get("agreement") or []

    def worst(k: int, d: int, field: str) -> str:
        """The largest `field` over the implementations compared at (K, d), or "—" when none has it."""
        values = [a[field] for a in agreement if (a["k"], a["d"]) == (k, d) and a.get(field) is not None]
        return f"{max(values):.1e}" if values else "—"

    rows = [[k, d] + [_num(times.get((k, d, i)), 2) for i in impls]
            + [auto.get((k, d), "—"), worst(k, d, "rel_diff_grad"), worst(k, d, "float32_rel_diff_grad")]
            for k, d in sorted({(k, d) for k, d, _ in times})]
    first = impls[0] if impls else "?"
    text = (f"\nThe loss alone, forward + backward (ms), batch {loss.get('batch_size')}, "
            f"{loss.get('input_size')} × {loss.get('input_size')}, for each implementation; the one "
            f"`loss_impl: auto` picks; the largest relative difference of the gradients from `{first}` "
            f"(float64, judged against {loss.get('tolerance')}; and in float32). All agree: "
            f"**{'yes' if loss.get('all_agree') else 'no'}**.\n\n")
    text += md_table(["K", "d"] + [f"{i} (ms)" for i in impls] + ["auto picks", "grad. diff. float64",
                                                                   "grad. diff. float32"], rows)
    if share:
        text += (f"\nLoss share of a step at K = {share.get('k')}, d = {share.get('d')}, batch "
                 f"{share.get('batch_size')}, {share.get('input_size')} × {share.get('input_size')}: "
                 f"{_pct(share.get('fwd_bwd_share'))} (loss forward + backward alone / step).\n")
    return text


def performance_original(reference) -> str:
    block = reference.get("original_timing") or {}
    names = reference.get("sources") or {}
    rows = [[r["what"], r["value"], names.get(r.get("source", block.get("source")), {}).get("short", "")]
            for r in block.get("rows", [])]
    return md_table(["what", "time", "source"], rows) if rows else ""


# ---------------------------------------------------------------- Datasets page
def _swatch(rgb) -> str:
    r, g, b = rgb
    return f'<span class="swatch" style="background: rgb({r}, {g}, {b})"></span>'


def dataset_snippet(name: str, runs, manifest: list[dict], pages_link: str) -> str:
    """Palette legend (from iicrepro.config) and, when a datasets run exists, its statistics and grid."""
    from iicrepro.config import DATASETS

    spec = DATASETS[name]
    legend = md_table(["class", "colour"], [[c, _swatch(rgb)] for c, rgb in zip(spec.class_names, spec.palette)])
    summaries = []
    for run in runs:
        block = run.data.get("dataset_summary")
        for summary in (block if isinstance(block, list) else [block] if block else []):
            if summary.get("dataset") == name and run.status == "ok":
                summaries.append((run, summary))
    if not summaries:
        entry = next((e for e in manifest if e.get("study_group") == "datasets"
                      and entry_dataset(e, manifest) == name), None)
        how = (f"`iicrepro study run --only '{entry['name']}-s*'`" if entry else
               "a run of study_group `datasets` for this dataset in study.yaml (none yet)")
        needs = "" if spec.offline else f" after `iicrepro download {spec.family}` and `iicrepro prepare {name}`"
        return legend + f"\nSample grid and class statistics: *not generated yet* (needs {how}{needs}).\n"
    run, summary = summaries[0]
    splits = md_table(["split", "images"], [[k, v] for k, v in (summary.get("splits") or {}).items()])
    shares = md_table(["class", "share of counted pixels (%)"],
                      [[k, pct(v)] for k, v in (summary.get("pixel_share") or {}).items()])
    text = legend + "\n" + splits + "\n" + shares
    coverage = {split: block["coverage_counts"] for split, block in (summary.get("per_split") or {}).items()
                if block.get("coverage_counts")}
    if coverage:
        thresholds = list(next(iter(coverage.values())))
        text += ("\nImages whose share of counted pixels is at least each threshold (COCO-Stuff's curation keeps "
                 ">= 0.75):\n\n" + md_table(["split"] + [f">= {t}" for t in thresholds],
                                             [[split] + [counts.get(t, "—") for t in thresholds]
                                              for split, counts in coverage.items()]))
    if summary.get("ignored_share") is not None:
        text += f"\nPixels that do not count (masked or unlabelled): {pct(summary['ignored_share'])}%.\n"
    if summary.get("image_size"):
        text += f"\nImage size: {summary['image_size']}.\n"
    if summary.get("sample_grid"):
        text += f"\n![Sample images of {name} with their labels]({pages_link}/{summary['sample_grid']})\n"
    return text + f"\nFrom run {link(run.name, run)}.\n"


# ---------------------------------------------------------------- Run notebooks page
def _params_summary(params: dict) -> str:
    """The preset and every parameter that differs from it (what identifies the run)."""
    from iicrepro.config import FIELDS, make_config

    preset = params.get("preset")
    try:
        base = make_config(preset=preset).to_dict() if preset else make_config().to_dict()
    except ValueError:
        base = {}
    diff = [f"{k}={params[k]}" for k in FIELDS if k in params and k in base
            and (list(base[k]) if isinstance(base[k], tuple) else base[k]) != params[k]]
    return ", ".join(([f"preset={preset}"] if preset else []) + diff) or "defaults"


def runs_table(runs) -> str:
    """Provenance of every run file: labels, status, parameters, revision, device, wall time."""
    if not runs:
        return ("*No run file yet.* `iicrepro study run` executes the study into book/runs/ "
                "(`iicrepro study list` shows what exists).\n")
    header = ["run", "status", "group", "variant", "dataset", "seed", "parameters (preset + changes)",
              "code revision", "device", "torch", "wall time (min)", "started"]
    rows = []
    for r in sorted(runs, key=lambda r: (r.group, r.dataset, r.variant, str(r.seed))):
        wall = r.data.get("wall_time_s")
        rows.append([link(r.name, r), r.status + (" (smoke)" if r.profile == "smoke" else ""), r.group, r.variant,
                     r.dataset, r.seed, _params_summary(r.data.get("params") or {}),
                     f"`{str(r.data.get('code_revision', '?'))[:12]}`", r.data.get("device", "—"),
                     r.data.get("torch", "—"), _num(wall / 60 if isinstance(wall, (int, float)) else None),
                     r.data.get("started", "—")])
    commands = "\n".join(f"- {r.name}: `{r.data['command']}`" for r in runs if r.data.get("command"))
    return md_table(header, rows) + ("\nCommand that reproduces each run:\n\n" + commands + "\n" if commands else "")


def status_line(runs) -> str:
    counts = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    if not counts:
        return "No run has been executed yet: every table shows *not run* and the command that fills it.\n"
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    smoke = sum(r.profile == "smoke" for r in runs)
    return f"Run files found: {len(runs)} ({parts})" + (f"; {smoke} from the smoke profile" if smoke else "") + ".\n"
