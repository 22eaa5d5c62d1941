"""Tables of the Performance page from `iicrepro bench` result files (schema: iicrepro/bench/,
benchmarks/README.md) and the original's quoted timings: records -> DataFrame -> Markdown."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from iicrepro.report.tables import to_md


def _num(value, digits: int = 1) -> str:
    return "—" if not isinstance(value, (int, float)) or pd.isna(value) else f"{value:,.{digits}f}"


def _share(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def performance_bench(bench_dir: Path) -> str:
    """Every bench result: training step per preset and head, phases, checkpointing, evaluation, loss, targets."""
    files = sorted(Path(bench_dir).glob("*.json")) if Path(bench_dir).is_dir() else []
    if not files:
        return ("*Not measured yet: run `iicrepro bench` (writes benchmarks/results/DEVICE-DATE.json; "
                "add `--bf16` on a GPU), then rebuild the book.*\n")
    return "".join(_bench_file(path.name, json.loads(path.read_text())) for path in files)


def _cpu_conditions(env: dict) -> str:
    """'; torch threads 2 of 2 CPUs, 1-min load 0.7 -> 1.9; allocator jemalloc': CPU timings depend on all three
    (empty without threads; files written before the allocator was recorded name none)."""
    if env.get("torch_threads") is None:
        return ""
    load = [env.get(k) for k in ("load_average_1min", "load_average_1min_end")]
    loads = " -> ".join(_num(v) for v in load if v is not None)
    alloc = env.get("allocator") or {}
    conf = f" (`MALLOC_CONF={alloc['malloc_conf']}`)" if alloc.get("malloc_conf") else ""
    alloc_text = alloc.get("name", "") + conf
    return (f"; torch threads {env['torch_threads']} of {env.get('cpu_count', '?')} CPUs"
            + (f", 1-min load {loads}" if loads else "") + (f"; allocator {alloc_text}" if alloc_text else ""))


def _steps(presets: dict, block: str) -> list[tuple[str, str, dict]]:
    return [(name, head, step) for name, preset in presets.items() for head, step in (preset.get(block) or {}).items()]


def _bench_file(name: str, data: dict) -> str:
    env, presets = data.get("env") or {}, data.get("presets") or {}
    parts = [f"\n**{name}**: {env.get('device_name', '?')} ({env.get('device', '?')}), torch {env.get('torch', '?')}, "
             f"revision `{env.get('git_revision', '?')}`, {env.get('date', '')}; data {data.get('data', '?')}; "
             f"bf16 {(data.get('settings') or {}).get('bf16')}{_cpu_conditions(env)}.\n"]
    parts += [f"- reduced: {note}\n" for note in data.get("reductions") or []]
    steps = pd.DataFrame([{"preset": p, "head": h, "K": s.get("k"), "batch": s.get("batch_size"),
                           "input": s.get("input_size"), "step (ms)": _num(s.get("step_ms")),
                           "pairs/s": _num(s.get("pairs_per_s")), "single-head epoch (s)": _num(s.get("epoch_s")),
                           "TFLOP/s": _num(s.get("achieved_tflops"), 2),
                           "peak memory (MB)": _num(s.get("peak_mem_mb"), 0)} for p, h, s in _steps(presets, "steps")])
    if not steps.empty:
        parts.append("\n" + to_md(steps))
    parts.append(_details(data, presets))
    parts.append(_loss_table4(data.get("loss_table4")))
    parts.append(_precision(data.get("precision")))
    parts.append(_memory(data.get("memory")))
    items = (data.get("targets") or {}).get("items") or []
    if items:
        targets = pd.DataFrame([{"target": i.get("name"), "what": i.get("what"), "goal": i.get("target"),
                                 "measured": _num(i.get("measured"), 3), "status": i.get("status")} for i in items])
        parts.append("\n" + to_md(targets))
    return "".join(parts)


def _loss_table4(table: dict | None) -> str:
    """The loss alone at every Table-4 head: the authors' conv form against the others (forward + backward)."""
    if not table:
        return ""
    impls = table.get("impls") or []
    rows = []
    for case in table.get("cases") or []:
        ms, speedup = case.get("fwd_bwd_ms") or {}, case.get("speedup") or {}
        row = {"K": case.get("k"), "d": case.get("d"), "input": case.get("input_size"), "batch": case.get("batch_size")}
        row.update({f"{impl} (ms)": _num(ms.get(impl), 0) for impl in impls + ["auto"]})
        row.update({"auto picks": case.get("auto_impl"), "conv / auto": f"{_num(speedup.get('auto'))}×",
                    f"≥ {_num(table.get('target_speedup'), 0)}×": "yes" if case.get("meets_target") else "**no**"})
        rows.append(row)
    return (f"\nThe loss alone at every Table-4 head ({table.get('timing', '')}; batch {table.get('batch_size')}):\n\n"
            + to_md(pd.DataFrame(rows)))


def _precision(table: dict | None) -> str:
    """One training step in float32 against channels_last, bf16 autocast and torch.compile (same run)."""
    if not table:
        return ""
    rows = [{"preset": c.get("preset"), "crop": c.get("input_size"), "d": c.get("d"), "batch": c.get("batch_size"),
             "variant": c.get("variant"), "step (ms)": _num(c.get("step_ms"), 0),
             **{f"{phase} (ms)": _num((c.get("split_ms") or {}).get(phase), 0)
                for phase in ("views", "forward", "loss", "backward", "optimiser")},
             "vs float32": f"{_num(c.get('speedup_vs_float32'), 2)}×"} for c in table.get("cases") or []]
    units = table.get("cpu_bf16_units")
    note = ("" if units is None else f" bf16 matrix units torch reports on this CPU: {', '.join(units) or 'none'}"
            " (bf16 is emulated without them).")
    return (f"\nOne training step of head {table.get('head')} per precision and memory format (median of "
            f"{table.get('steps')} after {table.get('warmup')} warm-up).{note}\n\n" + to_md(pd.DataFrame(rows)))


def _memory(table: dict | None) -> str:
    """Peak memory of one training step at the preset's batch, extrapolated from two small batches."""
    if not table:
        return ""
    rows = [{"preset": e.get("preset"), "head": e.get("head"), "K": e.get("k"), "crop": e.get("input_size"),
             "checkpointing": "yes" if e.get("checkpointing") else "no",
             "MB per pair": _num(e.get("per_pair_mb"), 0), "batch": e.get("batch"),
             "estimated peak (GiB)": _num((e.get("estimated_peak_mb") or 0) / 1024),
             "fits this machine": "yes" if e.get("fits") else "**no**"} for e in table.get("estimates") or []]
    machine = _num((table.get("machine_memory_mb") or 0) / 1024)
    return (f"\nMemory of one training step at each preset's own crop and batch on the CPU: the process's peak "
            f"resident memory measured at batches {table.get('batches')} (a fresh process each), extrapolated on "
            f"the line through them; this machine has {machine} GiB. The training images held in memory, the "
            f"evaluation and the notebook's kernel come on top.\n\n" + to_md(pd.DataFrame(rows))
            + "".join(f"\n- **failed**: {c.get('preset')} head {c.get('head')} batch {c.get('batch')} checkpointing "
                      f"{c.get('checkpointing')}: {str(c.get('error', ''))[-300:]}" for c in table.get("failed") or []))


def _details(data: dict, presets: dict) -> str:
    """Split of a step, checkpointing, evaluation, the loss alone (one bench file)."""
    parts, peak = [], data.get("matmul_peak") or {}
    dtype = peak.get("compared_with")
    if dtype in peak:
        parts.append(f"\nDense matmul peak measured in the same run ({dtype}, n = {peak[dtype].get('n')}): "
                     f"{_num(peak[dtype].get('tflops'), 3)} TFLOP/s.\n")
    phases = ("views", "forward", "loss", "backward", "optimiser")
    split = pd.DataFrame([{"preset": p, "head": h, **{f"{ph} (ms)": _num((s.get("split_ms") or {}).get(ph))
                                                      for ph in phases},
                           "of matmul peak": _share(s.get("matmul_peak_fraction"))}
                          for p, h, s in _steps(presets, "steps") if s.get("split_ms")])
    if not split.empty:
        parts.append("\nSplit of one training step (median ms per phase) and the forward + backward FLOP/s as a "
                     "share of that peak:\n\n" + to_md(split))

    def saved(run: dict) -> str:  # a CPU process's resident high-water mark only grows: no saving visible
        cpu = str(run.get("kind", "")).startswith("process_maxrss")
        return "n/a (CPU high-water mark)" if cpu else _num(run.get("memory_saved_mb"), 0)
    ckpt = pd.DataFrame([{"preset": p, "head": h, "step (ms)": _num(r.get("step_ms")),
                          "slower by": _share(r.get("speed_cost")), "peak memory (MB)": _num(r.get("peak_mem_mb"), 0),
                          "memory saved (MB)": saved(r)} for p, h, r in _steps(presets, "checkpointing")])
    if not ckpt.empty:
        parts.append("\nWith activation checkpointing of the trunk (`checkpointing: true`):\n\n" + to_md(ckpt))
    evals = pd.DataFrame([{"preset": p, "batch": ev.get("batch_size"), "images/s": _num(ev.get("images_per_s")),
                           "images per evaluation": ev.get("eval_images") or "—",
                           "evaluation (s)": _num(ev.get("eval_s"))}
                          for p, preset in presets.items() if (ev := preset.get("eval"))])
    if not evals.empty:
        parts.append("\nEvaluation (forward, arg-max, confusion matrix) of head B:\n\n" + to_md(evals))
    parts.append(_loss(data.get("loss"), data.get("loss_share")))
    return "".join(parts)


def _loss(loss: dict | None, share: dict | None) -> str:
    """The loss alone: forward + backward ms per implementation (pivot), auto's pick, worst agreement."""
    if not loss or not loss.get("records"):
        return ""
    impls = loss.get("impls") or []
    times = pd.DataFrame(loss["records"]).pivot_table(index=["k", "d"], columns="impl", values="fwd_bwd_ms")
    table = times.reindex(columns=impls).map(lambda v: _num(v, 2))
    table.columns = [f"{i} (ms)" for i in impls]
    auto = pd.DataFrame(loss.get("auto") or [], columns=["k", "d", "impl"]).set_index(["k", "d"])["impl"]
    table["auto picks"] = auto.reindex(table.index).fillna("—")
    agreement = pd.DataFrame(loss.get("agreement") or [], columns=["k", "d", "rel_diff_grad", "float32_rel_diff_grad"])
    worst = agreement.groupby(["k", "d"])[["rel_diff_grad", "float32_rel_diff_grad"]].max().reindex(table.index)
    table["grad. diff. float64"] = worst["rel_diff_grad"].map(lambda v: "—" if pd.isna(v) else f"{v:.1e}")
    table["grad. diff. float32"] = worst["float32_rel_diff_grad"].map(lambda v: "—" if pd.isna(v) else f"{v:.1e}")
    first = impls[0] if impls else "?"
    text = (f"\nThe loss alone, forward + backward (ms), batch {loss.get('batch_size')}, "
            f"{loss.get('input_size')} × {loss.get('input_size')}, for each implementation; the one "
            f"`loss_impl: auto` picks; the largest relative difference of the gradients from `{first}` "
            f"(float64, judged against {loss.get('tolerance')}; and in float32). All agree: "
            f"**{'yes' if loss.get('all_agree') else 'no'}**.\n\n")
    text += to_md(table.rename_axis(["K", "d"]).reset_index())
    if share:
        text += (f"\nLoss share of a step at K = {share.get('k')}, d = {share.get('d')}, batch "
                 f"{share.get('batch_size')}, {share.get('input_size')} × {share.get('input_size')}: "
                 f"{_share(share.get('fwd_bwd_share'))} (loss forward + backward alone / step).\n")
    return text


def performance_original(reference: dict) -> str:
    """The original's timings, quoted from the reference file with their source."""
    block = reference.get("original_timing") or {}
    names = reference.get("sources") or {}
    rows = [{"what": r["what"], "time": r["value"],
             "source": names.get(r.get("source", block.get("source")), {}).get("short", "")}
            for r in block.get("rows", [])]
    return to_md(pd.DataFrame(rows)) if rows else ""
