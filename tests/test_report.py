"""Tests of iicrepro.report: run files in a temporary book folder -> generated Markdown snippets."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from iicrepro import report

REPO = Path(__file__).resolve().parents[1]


def selection(paper, last=None, lowest=None, split="heldout"):
    """A run file's "selection" block with the given accuracies (fractions)."""
    last = paper if last is None else last
    lowest = last if lowest is None else lowest
    return {"paper": {"rule": "best", "epoch": 3, "split": "paper_eval", "acc": paper, "miou": paper / 2},
            "last": {"rule": "last", "epoch": 5, "split": split, "acc": last, "miou": last / 2},
            "lowest_loss": {"rule": "lowest", "epoch": 4, "split": split, "acc": lowest, "miou": lowest / 2}}


def history(accs, split="paper_eval"):
    """Per-epoch records: head-B accuracy on `split`, alternating heads, timings."""
    return {"epochs": [{"epoch": i + 1, "heads_trained": ["A"] if i % 2 == 0 else ["B"],
                        "eval": {split: {"b": {"acc": acc}}}, "train_s": 10.0 + i, "eval_s": 2.0,
                        "pairs_per_s": 50.0, "peak_mem_mb": 1000.0, "wall_s": 12.0 + i}
                       for i, acc in enumerate(accs)]}


def write_run(runs, name, *, group, variant, dataset, seed=0, status="ok", notebook=True, **extra):
    data = {"name": name, "status": status, "profile": "full", "study_group": group, "variant": variant,
            "dataset": dataset, "seed": seed, "code_revision": "abcdef1234567890", "device": "cpu",
            "torch": "2.13.0", "wall_time_s": 600.0, "started": "2025-01-01T00:00:00+00:00",
            "params": {"preset": dataset, "dataset": dataset, "seed": seed, "lambda_b": 1.0},
            "command": f"iicrepro study run --only {name} --profile full", **extra}
    (runs / f"{name}.json").write_text(json.dumps(data))
    if notebook:
        (runs / f"{name}.ipynb").write_text("{}")


@pytest.fixture
def book(tmp_path):
    """A book folder with runs/, the repository's reference numbers and a small manifest."""
    (tmp_path / "book" / "runs").mkdir(parents=True)
    shutil.copy(REPO / "book" / "reference_numbers.yaml", tmp_path / "book" / "reference_numbers.yaml")
    manifest = {"runs": [
        {"name": "camvid11-faithful", "study_group": "main", "variant": "faithful", "params": {"preset": "camvid11"}},
        {"name": "potsdam3-faithful", "study_group": "main", "variant": "faithful", "requires": "download",
         "commands": ["iicrepro download potsdam"], "params": {"preset": "potsdam3"}},
        {"name": "camvid3-faithful", "study_group": "main", "variant": "faithful", "params": {"preset": "camvid3"}},
        {"name": "camvid3-lambda-1.0", "study_group": "ablation-lambda", "variant": "lambda=1.0",
         "params": {"preset": "camvid3", "lambda_b": 1.0}},
        {"name": "camvid3-lambda-1.5", "study_group": "ablation-lambda", "variant": "lambda=1.5",
         "alias_of": "camvid3-faithful"},
    ]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(manifest))
    return tmp_path


def generate(book, bench=None):
    report.generate(book / "book" / "runs", book / "book" / "generated",
                    reference=book / "book" / "reference_numbers.yaml", manifest=book / "study.yaml",
                    benchmarks=bench or book / "benchmarks" / "results")
    return {p.name: p.read_text() for p in (book / "book" / "generated").glob("*.md")}


def row(text, label):
    """The Markdown table row whose first cell is `label`."""
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_mean_std_is_sample_std():
    mean, std = report.mean_std([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(0.1414213, rel=1e-5)
    assert report.mean_std([0.4]) == (0.4, None)


def test_cell_mean_std_over_seeds_with_links(book):
    runs = book / "book" / "runs"
    for seed, acc in enumerate([0.5, 0.7]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(acc))
    out = generate(book)
    line = row(out["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert "60.0 ± 14.1 (n = 2: [s0](runs/camvid3-faithful-s0.ipynb), [s1](runs/camvid3-faithful-s1.ipynb))" in line
    assert "72.3" in row(out["results_paper.md"], "COCO-Stuff-3")  # quoted paper number
    assert "camvid3-faithful-s0" in out["runs_table.md"] and "`abcdef123456`" in out["runs_table.md"]


def test_single_run_links_its_number_and_no_link_without_notebook(book):
    runs = book / "book" / "runs"
    write_run(runs, "dubai3-faithful-s0", group="main", variant="faithful", dataset="dubai3",
              selection=selection(0.4), notebook=True)
    write_run(runs, "dubai5-faithful-s0", group="main", variant="faithful", dataset="dubai5",
              selection=selection(0.3), notebook=False)
    out = generate(book)["results_paper.md"]
    assert "[40.0](runs/dubai3-faithful-s0.ipynb)" in row(out, "Dubai-3 (analogue of Potsdam-3)")
    line = row(out, "Dubai-5 (analogue of Potsdam-6)")
    assert "30.0" in line and "](" not in line


def test_missing_cells_say_not_run_with_command(book):
    out = generate(book)["results_paper.md"]
    assert "*not run*" in row(out, "CamVid-11 (analogue of COCO-Stuff-15)")
    assert "- CamVid-11, ours faithful: `iicrepro study run --only 'camvid11-faithful-s*'`" in out
    assert ("- Potsdam-3, ours faithful: `iicrepro download potsdam && iicrepro study run --only "
            "'potsdam3-faithful-s*' --with-downloads`") in out
    assert "- Dubai-5, ours improved: `none in study.yaml" in out
    assert "No run has been executed yet" in generate(book)["status.md"]


def test_not_run_file_gives_its_own_commands(book):
    write_run(book / "book" / "runs", "potsdam6-faithful-s0", group="main", variant="faithful", dataset="potsdam6",
              status="not run", notebook=False, commands=["iicrepro download potsdam", "iicrepro prepare potsdam6"])
    out = generate(book)["results_paper.md"]
    assert "*not run*" in row(out, "Potsdam-6")
    assert ("`iicrepro download potsdam && iicrepro prepare potsdam6 && iicrepro study run --only "
            "potsdam6-faithful-s0 --profile full`") in out


def test_failed_runs_are_shown_as_failed_and_left_out_of_the_mean(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5))
    write_run(runs, "camvid3-faithful-s1", group="main", variant="faithful", dataset="camvid3", seed=1,
              status="failed")
    write_run(runs, "camvid11-improved-s0", group="main", variant="improved", dataset="camvid11", status="failed")
    out = generate(book)
    line = row(out["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert "[50.0](runs/camvid3-faithful-s0.ipynb); **failed**: [s1](runs/camvid3-faithful-s1.ipynb)" in line
    assert "**failed**: [s0](runs/camvid11-improved-s0.ipynb)" in row(out["results_paper.md"],
                                                                      "CamVid-11 (analogue of COCO-Stuff-15)")
    assert "2 ok" not in out["status.md"] and "1 failed" not in out["status.md"]
    assert "2 failed" in out["status.md"]


def test_label_free_cells_and_the_split_they_used(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5, last=0.45, lowest=0.40))
    write_run(runs, "dubai3-faithful-s0", group="main", variant="faithful", dataset="dubai3",
              selection=selection(0.5, last=0.3, split="paper_eval"))
    out = generate(book)["results_label_free.md"]
    camvid = row(out, "CamVid-3 (analogue of COCO-Stuff-3)")
    assert "[45.0](runs/camvid3-faithful-s0.ipynb)" in camvid and "[40.0](runs/camvid3-faithful-s0.ipynb)" in camvid
    assert "(on paper_eval)" in row(out, "Dubai-3 (analogue of Potsdam-3)")


def test_full_profile_preferred_and_smoke_marked(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5), profile="smoke")
    out = generate(book)["results_paper.md"]
    assert "(smoke)" in row(out, "CamVid-3 (analogue of COCO-Stuff-3)")
    write_run(runs, "camvid3-faithful-full-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.7))
    line = row(generate(book)["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert "70.0" in line and "smoke" not in line


def test_baselines_and_ablations_grouped_by_study_group_and_variant(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection=selection(0.33), baseline={"kind": "kmeans", "acc": 0.33})
    write_run(runs, "camvid3-lambda-1.0-s0", group="ablation-lambda", variant="lambda=1.0", dataset="camvid3",
              selection=selection(0.55))
    write_run(runs, "camvid3-x-s0", group="ablation-crop", variant="crop=64", dataset="camvid3",
              selection=selection(0.25))
    out = generate(book)
    baselines = out["results_baselines.md"]
    assert "[33.0](runs/camvid3-kmeans-s0.ipynb)" in next(
        line for line in baselines.splitlines() if line.startswith("| CamVid-3") and "k-means" in line)
    assert "52.2" in baselines  # the paper's k-means on COCO-Stuff-3
    lam = out["ablation_lambda.md"]
    assert "[55.0](runs/camvid3-lambda-1.0-s0.ipynb)" in row(lam, "CamVid-3").replace("| lambda=1.0 ", "")
    assert ("CamVid-3, lambda=1.5: `iicrepro study run --only 'camvid3-faithful-s*' && iicrepro study run "
            "--only 'camvid3-lambda-1.5-s*'`") in lam  # alias resolved to its source's dataset
    assert "ablation-crop" in out["ablations_other.md"] and "25.0" in out["ablations_other.md"]
    assert "Not run" in out["ablation_sobel.md"]
    assert "69.1" in out["ablation_lambda_quoted.md"]


def test_epoch_curves_and_performance_from_history(book):
    write_run(book / "book" / "runs", "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.6), history=history([0.4, 0.6, 0.5]))
    out = generate(book)
    assert "| CamVid-3 | faithful | paper_eval | 1 | 40.0 (epoch 1) | 60.0 (epoch 2) | 50.0 (epoch 3) |" \
        in out["epoch_curves.md"]
    assert "](generated/epoch_curves.png)" in out["epoch_curves.md"]
    assert (book / "book" / "generated" / "epoch_curves.png").stat().st_size > 1000
    perf = out["performance_runs.md"]
    assert "| main | faithful | camvid3 | cpu |" in perf and "| 11.0 | 11.0 |" in perf  # medians A, B
    assert "Not measured yet" in out["performance_bench.md"]


def test_benchmark_files_are_tabulated(book):
    bench = book / "benchmarks" / "results"
    bench.mkdir(parents=True)
    step = {"k": 15, "batch_size": 120, "input_size": 128, "step_ms": 250.0, "pairs_per_s": 480.0,
            "epoch_s": 76.4, "achieved_tflops": 12.5, "peak_mem_mb": 9000.0}
    payload = {"env": {"device": "cuda", "device_name": "NVIDIA H100", "torch": "2.13", "git_revision": "abc",
                       "date": "2025-01-01"}, "data": "synthetic", "settings": {"bf16": True},
               "presets": {"cocostuff3": {"steps": {"A": step}}},
               "targets": {"items": [{"name": "cocostuff3_epoch_s", "what": "epoch", "target": "<= 60",
                                      "measured": 76.4, "status": "fail"}]}}
    (bench / "cuda-2025-01-01.json").write_text(json.dumps(payload))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "NVIDIA H100" in out and "| cocostuff3 | A | 15 | 120 | 128 | 250.0 | 480.0 | 76.4 |" in out
    assert "| cocostuff3_epoch_s | epoch | <= 60 | 76.400 | fail |" in out
    step["split_ms"] = {"views": 1.0, "forward": 80.0, "loss": 20.0, "backward": 140.0, "optimiser": 9.0}
    step["matmul_peak_fraction"] = 0.45
    payload["matmul_peak"] = {"bfloat16": {"n": 8192, "tflops": 700.0}, "compared_with": "bfloat16"}
    payload["presets"]["cocostuff3"]["checkpointing"] = {"A": {**step, "speed_cost": 0.3, "memory_saved_mb": 4000.0,
                                                               "kind": "cuda_allocated"}}
    payload["presets"]["cocostuff3"]["eval"] = {"batch_size": 64, "images_per_s": 900.0, "eval_images": 36660,
                                                "eval_s": 40.7}
    payload["loss"] = {"impls": ["conv", "fft"], "batch_size": 60, "input_size": 128, "tolerance": 1e-5,
                       "all_agree": True, "records": [{"k": 45, "d": 10, "impl": "conv", "fwd_bwd_ms": 30.0},
                                                      {"k": 45, "d": 10, "impl": "fft", "fwd_bwd_ms": 6.0}],
                       "agreement": [{"k": 45, "d": 10, "impl": "fft", "rel_diff_grad": 3e-12,
                                      "float32_rel_diff_grad": 2e-5, "ok": True}],
                       "auto": [{"k": 45, "d": 10, "impl": "fft"}]}
    (bench / "cuda-2025-01-01.json").write_text(json.dumps(payload))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "700.000 TFLOP/s" in out and "| cocostuff3 | A | 1.0 | 80.0 | 20.0 | 140.0 | 9.0 | 45% |" in out
    assert "| cocostuff3 | A | 250.0 | 30% | 9,000 | 4,000 |" in out
    assert "| cocostuff3 | 64 | 900.0 | 36660 | 40.7 |" in out
    assert "| 45 | 10 | 30.00 | 6.00 | fft | 3.0e-12 | 2.0e-05 |" in out and "All agree: **yes**" in out


def test_dataset_summary_or_not_generated(book):
    write_run(book / "book" / "runs", "datasets-camvid3-s0", group="datasets", variant="summary",
              dataset="camvid3", dataset_summary={"dataset": "camvid3", "splits": {"train": 468, "heldout": 233},
                                                  "pixel_share": {"sky": 0.25, "plant": 0.15, "ground": 0.6},
                                                  "ignored_share": 0.37, "sample_grid": "datasets-camvid3.png"})
    out = generate(book)
    camvid = out["dataset_camvid3.md"]
    assert "| sky | 25.0 |" in camvid and "| heldout | 233 |" in camvid and "37.0%" in camvid
    assert "](runs/datasets-camvid3.png)" in camvid and 'class="swatch"' in camvid
    assert "not generated yet" in out["dataset_dubai3.md"]
    assert "iicrepro download potsdam" in out["dataset_potsdam3.md"]


def test_cli_writes_every_snippet_and_rejects_bad_json(book, monkeypatch):
    monkeypatch.chdir(book)
    assert report.main(["book/runs", "book/generated"]) == 0
    written = {p.name for p in (book / "book" / "generated").glob("*.md")}
    included = set()
    for page in (REPO / "book").glob("*.md"):
        included |= {line.split("generated/")[1].strip() for line in page.read_text().splitlines()
                     if line.startswith("```{include} generated/")}
    assert included and included <= written  # every snippet a page includes exists
    (book / "book" / "runs" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        report.main(["book/runs", "book/generated"])


def test_margins_over_baselines_paper_and_ours(book):
    runs = book / "book" / "runs"
    for seed, (iic, held) in enumerate([(0.70, 0.60), (0.60, 0.50)]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(iic, held))
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection=selection(0.40, 0.45))
    write_run(runs, "camvid3-random-s0", group="baseline-random", variant="random", dataset="camvid3",
              selection=selection(0.30), status="failed")
    margins = generate(book)["results_margins.md"]
    coco = row(margins, "COCO-Stuff-3").rstrip(" |").split(" | ")
    assert coco[1:3] == ["+35.0", "+20.1"]  # 72.3 - 37.3 and 72.3 - 52.2, from the reference file
    camvid = row(margins, "CamVid-3 (analogue of COCO-Stuff-3)").rstrip(" |").split(" | ")
    # random network failed -> not run; k-means: mean(70, 60) - 40 = +25.0 and mean(60, 50) - 45 = +10.0
    assert camvid[3:7] == ["*not run*", "+25.0", "*not run*", "+10.0"]
