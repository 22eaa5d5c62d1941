"""Generated tables of the book: run files in, Markdown snippets out (the book itself never computes).

    python -m iicrepro.report book/runs book/generated [--reference book/reference_numbers.yaml]
        [--manifest study.yaml] [--benchmarks benchmarks/results]

tools/build_book.sh runs this before every build. This module reads run files and makes table cells; the
tables of each page are in iicrepro/report_results.py (Results, Ablations) and iicrepro/report_pages.py
(Performance, Datasets, Run notebooks). Each snippet in OUT (book/generated/) is included by a
page in OUT's parent folder (book/), so links to run notebooks read `runs/NAME.ipynb`. Every snippet is
always written: a table cell with no run file says "not run" and gives the command that would fill it.

Run files (RUNS/NAME.json, written by iicrepro.runner) are grouped by three keys, read from the top level
of the run file or, failing that, from its "params":
  study_group   which table the run belongs to:
                "main"                  Table-4 rows (IIC itself)
                "baseline-kmeans"       k-means baseline          "baseline-random"   untrained network
                "ablation-overcluster"  "ablation-lambda"  "ablation-d"  "ablation-size"  "ablation-sobel"
                "ablation-epochs"       (and any other "ablation-*": shown under "Other ablations")
                "datasets"              a run whose file has "dataset_summary" (Datasets page)
  variant       the column or row label inside the group: for "main" exactly "faithful" or "improved";
                for ablations the setting, e.g. "off", "lambda=1.0", "d=5", "25%"
  dataset       a key of iicrepro.config.DATASETS ("camvid3", "potsdam6", ...): the table row
Runs sharing (study_group, variant, dataset) are seeds of one cell: mean +- sample std (n - 1) over the
runs with status "ok" (profile "full" preferred to "smoke" when both exist; smoke values are marked).

Numbers read per run: run["selection"][rule]["acc" | "miou" | "epoch" | "split"] for the rules
"paper" (best epoch by head-B accuracy on paper_eval: labels choose the epoch), "last" and "lowest_loss"
(label-free, on the held-out split); accuracies are fractions in [0, 1], shown in percent. Also
"history"["epochs"] (per-epoch eval and timing), "status" ("ok" | "failed" | "not run"), "command",
"commands" (downloads a run needs), "code_revision", "device", "torch", "wall_time_s", "profile".
"dataset_summary" (one dict or a list): {"dataset", "splits": {split: images}, "image_size",
"pixel_share": {class: fraction of counted pixels}, "ignored_share", "sample_grid": file in RUNS}.
Benchmarks: every BENCHMARKS/*.json written by `iicrepro bench` (schema in iicrepro/bench.py).
Quoted numbers (paper, student reproductions, original timings): the reference YAML, with sources.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

MAIN_VARIANTS = ("faithful", "improved")
RULES = {"paper": "paper protocol: best epoch by head-B accuracy on the training images (labels choose it)",
         "last": "label-free protocol: last epoch, scored on held-out images",
         "lowest_loss": "label-free protocol: epoch of lowest head-B loss, scored on held-out images"}
BASELINES = {"baseline-random": "random_net", "baseline-kmeans": "kmeans"}
ABLATIONS = {"ablation-overcluster": "overclustering (head A) on / off", "ablation-epochs": "number of epochs",
             "ablation-size": "dataset size", "ablation-lambda": "lambda of head B",
             "ablation-d": "half side d of the displacement window", "ablation-sobel": "Sobel channels"}


@dataclass
class RunFile:
    """One run file with its grouping keys resolved."""

    name: str
    group: str
    variant: str
    dataset: str
    seed: object
    status: str
    profile: str
    data: dict
    notebook: str | None  # link target relative to the pages folder, None when no executed notebook

    def rule(self, rule: str) -> dict:
        return (self.data.get("selection") or {}).get(rule) or {}

    def epochs(self) -> list:
        return (self.data.get("history") or {}).get("epochs") or self.data.get("epochs") or []


def _key(data: dict, name: str, default=""):
    value = data.get(name, (data.get("params") or {}).get(name, default))
    return default if value is None else value


def load_runs(runs_dir: Path, link_prefix: str) -> list[RunFile]:
    """Every RUNS/*.json as a RunFile, sorted by name; unreadable files raise a ValueError naming them."""
    runs = []
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"run file {path}: not valid JSON ({error})") from error
        name = data.get("name", path.stem)
        notebook = path.with_suffix(".ipynb")
        if not notebook.is_file() and data.get("alias_of"):  # a relabelled run: link the run it reuses
            notebook = path.with_name(f"{data['alias_of']}.ipynb")
        runs.append(RunFile(name=name, group=str(_key(data, "study_group")), variant=str(_key(data, "variant")),
                            dataset=str(_key(data, "dataset")), seed=_key(data, "seed", None),
                            status=str(data.get("status", "not run")), profile=str(data.get("profile", "full")),
                            data=data, notebook=f"{link_prefix}/{notebook.name}" if notebook.is_file() else None))
    return runs


def load_manifest(path: Path) -> list[dict]:
    """Raw run entries of the study manifest (empty when there is none): only used to name commands."""
    if not Path(path).is_file():
        return []
    return list((yaml.safe_load(Path(path).read_text()) or {}).get("runs") or [])


def entry_dataset(entry: dict, manifest: list[dict]) -> str | None:
    """Dataset of a manifest entry: its params' dataset or preset, or those of the run it aliases."""
    params = entry.get("params") or {}
    if params.get("dataset", params.get("preset")):
        return params.get("dataset", params.get("preset"))
    source = next((e for e in manifest if e.get("name") == entry.get("alias_of")), None)
    return entry_dataset(source, manifest) if source is not None and source is not entry else None


# ---------------------------------------------------------------- cells: values, mean +- std, commands
def pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def link(text: str, run: RunFile) -> str:
    return f"[{text}]({run.notebook})" if run.notebook else text


def seed_label(run: RunFile) -> str:
    return f"s{run.seed}" if run.seed is not None else run.name


def preferred(runs: list[RunFile]) -> list[RunFile]:
    """Full-profile runs when there are any, else the smoke ones (marked as such in the cell)."""
    full = [r for r in runs if r.profile != "smoke"]
    return full or runs


def cell(runs: list[RunFile], rule: str, metric: str = "acc") -> str:
    """One table cell: mean +- std over ok seeds, each seed linked to its notebook; failures named."""
    runs = preferred([r for r in runs if r.status != "not run"])
    if not runs:
        return "*not run*"
    ok = [r for r in runs if r.status == "ok"]
    others = [r for r in runs if r.status != "ok"]
    values = [(r, r.rule(rule).get(metric)) for r in ok]
    values = [(r, v) for r, v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    parts = []
    if values:
        mean, std = mean_std([v for _, v in values])
        text = pct(mean) + (f" ± {100 * std:.1f}" if std is not None else "")
        if len(values) == 1:
            parts.append(link(text, values[0][0]))
        else:
            seeds = ", ".join(link(seed_label(r), r) for r, _ in values)
            parts.append(f"{text} (n = {len(values)}: {seeds})")
    elif ok:
        parts.append(", ".join(link("n/a", r) for r in ok))
    for status in sorted({r.status for r in others}):
        parts.append(f"**{status}**: " + ", ".join(link(seed_label(r), r) for r in others if r.status == status))
    if any(r.profile == "smoke" for r in runs):
        parts.append("(smoke)")
    splits = {r.rule(rule).get("split") for r, _ in values}
    if rule != "paper" and splits - {"heldout", None}:
        parts.append(f"(on {', '.join(sorted(s for s in splits if s))})")
    return "; ".join(parts)


def command_for(group: str, variant: str, dataset: str, runs: list[RunFile], manifest: list[dict]) -> str:
    """The command that would fill an empty cell: the run file's own, else the manifest's entry."""
    for run in runs:
        if run.data.get("command"):
            commands = list(run.data.get("commands") or [])
            return " && ".join(commands + [run.data["command"]])
    for entry in manifest:
        if (entry.get("study_group"), str(entry.get("variant")), entry_dataset(entry, manifest)) \
                == (group, variant, dataset):
            extra = " --with-downloads" if entry.get("requires") else ""
            first = [f"iicrepro study run --only '{entry['alias_of']}-s*'"] if entry.get("alias_of") else []
            return " && ".join(list(entry.get("commands") or []) + first +
                               [f"iicrepro study run --only '{entry['name']}-s*'{extra}"])
    return (f"none in study.yaml: add a run with study_group {group}, variant {variant}, preset {dataset}; "
            f"then iicrepro study run --only 'NAME-s*'")


def select(runs: list[RunFile], group: str, variant: str | None = None, dataset: str | None = None):
    return [r for r in runs if r.group == group and (variant is None or r.variant == variant)
            and (dataset is None or r.dataset == dataset)]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]) + "\n"


def missing_list(missing: list[tuple[str, str]]) -> str:
    """The commands that fill the cells marked "not run" (below each table)."""
    if not missing:
        return ""
    lines = ["", "Cells marked *not run* and the command that fills each:", ""]
    return "\n".join(lines + [f"- {where}: `{command}`" for where, command in missing]) + "\n"



def experiments(reference: dict) -> list[dict]:
    """Table rows: the reference file's experiments (paper's four, then the offline analogues)."""
    rows = reference.get("experiments")
    if not rows:
        from iicrepro.config import DATASETS
        rows = [{"dataset": name, "label": name} for name in DATASETS]
    return rows


def row_label(row: dict, reference: dict) -> str:
    labels = {r["dataset"]: r["label"] for r in experiments(reference)}
    if row.get("analogue_of"):
        return f"{row['label']} (analogue of {labels.get(row['analogue_of'], row['analogue_of'])})"
    return row["label"]


# ---------------------------------------------------------------- entry point
def generate(runs_dir: Path, out_dir: Path, *, reference: Path, manifest: Path, benchmarks: Path) -> list[Path]:
    """Write every snippet into out_dir; returns the files written."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not Path(reference).is_file():
        raise ValueError(f"reference numbers {reference} not found (expected book/reference_numbers.yaml)")
    out_dir.mkdir(parents=True, exist_ok=True)
    pages_dir = out_dir.parent
    prefix = os.path.relpath(runs_dir, pages_dir).replace(os.sep, "/")
    from iicrepro import report_pages as pages, report_results as results

    runs = load_runs(runs_dir, prefix)
    ref = yaml.safe_load(Path(reference).read_text()) or {}
    entries = load_manifest(manifest)
    from iicrepro.config import DATASETS

    texts = {"status.md": pages.status_line(runs), "results_paper.md": results.results_paper(runs, ref, entries),
             "results_label_free.md": results.results_label_free(runs, ref, entries),
             "results_baselines.md": results.results_baselines(runs, ref, entries),
             "results_margins.md": results.results_margins(runs, ref),
             "results_detail.md": results.results_detail(runs, ref), "results_context.md": results.results_context(ref),
             "sources.md": results.sources(ref), "epoch_curves.md": results.epoch_curves(runs, ref, out_dir, pages_dir),
             "performance_runs.md": pages.performance_runs(runs), "performance_bench.md": pages.performance_bench(benchmarks),
             "performance_original.md": pages.performance_original(ref), "runs_table.md": pages.runs_table(runs),
             **results.ablations(runs, entries, ref),
             **{f"dataset_{name}.md": pages.dataset_snippet(name, runs, entries, prefix) for name in DATASETS}}
    written = []
    for name, text in texts.items():
        path = out_dir / name
        path.write_text("<!-- generated by iicrepro/report.py from run files; do not edit -->\n\n" + text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iicrepro.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder of run files (book/runs)")
    parser.add_argument("out", type=Path, help="folder of generated snippets (book/generated)")
    parser.add_argument("--reference", type=Path, default=None, help="default: RUNS/../reference_numbers.yaml")
    parser.add_argument("--manifest", type=Path, default=Path("study.yaml"))
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    reference = args.reference or args.runs.parent / "reference_numbers.yaml"
    written = generate(args.runs, args.out, reference=reference, manifest=args.manifest, benchmarks=args.benchmarks)
    print(f"iicrepro.report: {len(written)} snippets written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
