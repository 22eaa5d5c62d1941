"""Tests of iicrepro.report: run files in a temporary book folder -> tidy frame, generated snippets, figures."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iicrepro.report import effects, frame as report_frame, load, pages, scales, tables_epochs

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
                        "loss_a": -0.1 * i if i % 2 == 0 else None, "loss_b": -0.1 * i if i % 2 else None,
                        "pairs_per_s": 50.0, "peak_mem_mb": 1000.0, "wall_s": 12.0 + i}
                       for i, acc in enumerate(accs)]}


def scale_params(size, dataset="camvid3"):
    """A run's params at crop `size`, pre-scaled so that its scale differs with the crop (as the profiles do)."""
    return {"preset": dataset, "dataset": dataset, "input_size": size, "prescale": 0.33 * size / 128}


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
    pages.generate(book / "book" / "runs", book / "book" / "generated",
                    reference=book / "book" / "reference_numbers.yaml", manifest=book / "study.yaml",
                    benchmarks=bench or book / "benchmarks" / "results")
    return {p.name: p.read_text() for p in (book / "book" / "generated").glob("*.md")}


def row(text, label):
    """The cells of the Markdown table row whose first cell is `label` (padding stripped)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{text}")


def jpeg_notebook(path: Path, marker: str = "figures.qualitative(examples)") -> None:
    """A run notebook whose qualitative cell embedded a small JPEG (as the real notebooks do)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(buffer, format="JPEG")
    output = {"output_type": "display_data", "metadata": {},
              "data": {"image/jpeg": base64.b64encode(buffer.getvalue()).decode(), "text/plain": "<Figure>"}}
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [marker], "outputs": [output],
                                           "metadata": {}, "execution_count": 1}]}))


def with_confusion(hist):
    """A history whose every head-B evaluation also holds a 3 x 3 confusion matrix (clusters x classes)."""
    for record in hist["epochs"]:
        for block in record["eval"].values():
            block["b"]["confusion"] = [[5, 50, 5], [40, 5, 10], [10, 0, 30]]
    return hist


def baseline_block(paper, heldout):
    """A baseline run's "baseline" block: both splits with a 3-class confusion matrix."""
    confusion = [[50, 5, 5], [5, 40, 10], [0, 10, 30]]
    return {"kind": "kmeans", "splits": {"paper_eval": {"acc": paper, "miou": paper / 2, "confusion": confusion},
                                         "heldout": {"acc": heldout, "miou": heldout / 2, "confusion": confusion}}}


# ---------------------------------------------------------------- the tidy frame
def test_load_frame_has_a_row_per_run_rule_and_split(book):
    runs = book / "book" / "runs"
    for seed, acc in enumerate([0.5, 0.7]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  selection=selection(acc), params={"preset": "camvid3", "input_size": 64, "prescale": 0.25})
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection={k: v for k, v in selection(0.4, 0.3).items() if k != "lowest_loss"},
              baseline=baseline_block(0.4, 0.3))
    write_run(runs, "camvid3-faithful-s2", group="main", variant="faithful", dataset="camvid3", seed=2,
              status="failed")
    frame = report_frame.load_frame(runs)
    assert {"run", "dataset", "variant", "group", "seed", "scale", "profile", "device", "code_revision", "rule",
            "split", "selected", "acc", "miou", "wall_time_s"} <= set(frame.columns)
    iic = frame[frame["run"] == "camvid3-faithful-s0"]
    assert len(iic) == 3 and set(iic["rule"]) == {"paper", "last", "lowest_loss"}  # one split each (no history)
    assert set(iic["scale"]) == {"64 px, ×0.25"} and iic["selected"].all()
    kmeans = frame[frame["run"] == "camvid3-kmeans-s0"]
    assert len(kmeans) == 4 and kmeans["selected"].sum() == 2  # 2 rules x 2 splits; each rule selects one
    assert kmeans.query("rule == 'last' and split == 'heldout'")["acc"].item() == pytest.approx(0.3)
    failed = frame[frame["run"] == "camvid3-faithful-s2"]
    assert len(failed) == 1 and failed["rule"].isna().all() and failed["acc"].isna().all()
    means = frame[frame["selected"]].groupby(["group", "rule"])["acc"].mean()
    assert means[("main", "paper")] == pytest.approx(0.6)


def test_history_gives_every_split_of_the_chosen_epoch(book):
    hist = {"epochs": [{"epoch": e, "heads_trained": ["B"], "loss_b": -0.1 * e,
                        "eval": {"paper_eval": {"b": {"acc": 0.1 * e}, "a": {"acc": 0.2}},
                                 "heldout": {"b": {"acc": 0.05 * e}}}} for e in (1, 2)]}
    write_run(book / "book" / "runs", "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection={"last": {"epoch": 2, "split": "heldout", "acc": 0.1, "miou": 0.05}}, history=hist)
    frame = report_frame.load_frame(book / "book" / "runs")
    assert dict(zip(frame["split"], frame["acc"])) == pytest.approx({"heldout": 0.1, "paper_eval": 0.2})
    epochs = report_frame.epochs_frame(json.loads(p.read_text()) | {"study_group": "main", "variant": "faithful",
                                                                   "dataset": "camvid3", "status": "ok",
                                                                   "profile": "full", "name": p.stem}
                                       for p in (book / "book" / "runs").glob("*.json"))
    assert len(epochs) == 2 * 3 and set(epochs["head"]) == {"A", "B"}


# ---------------------------------------------------------------- Results tables
def test_cell_mean_std_over_seeds_with_links(book):
    runs = book / "book" / "runs"
    for seed, acc in enumerate([0.5, 0.7]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(acc))
    out = generate(book)
    line = row(out["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert line[4] == "60.0 ± 14.1 (n = 2: [s0](runs/camvid3-faithful-s0.ipynb), [s1](runs/camvid3-faithful-s1.ipynb))"
    assert row(out["results_paper.md"], "COCO-Stuff-3")[1] == "72.3"  # quoted paper number
    assert "camvid3-faithful-s0" in out["runs_table.md"] and "`abcdef123456`" in out["runs_table.md"]


def test_single_run_links_its_number_and_no_link_without_notebook(book):
    runs = book / "book" / "runs"
    write_run(runs, "dubai3-faithful-s0", group="main", variant="faithful", dataset="dubai3",
              selection=selection(0.4), notebook=True)
    write_run(runs, "dubai5-faithful-s0", group="main", variant="faithful", dataset="dubai5",
              selection=selection(0.3), notebook=False)
    out = generate(book)["results_paper.md"]
    assert row(out, "Dubai-3 (analogue of Potsdam-3)")[4] == "[40.0](runs/dubai3-faithful-s0.ipynb)"
    assert row(out, "Dubai-5 (analogue of Potsdam-6)")[4] == "30.0"


def test_missing_cells_say_not_run_with_command(book):
    out = generate(book)
    paper = out["results_paper.md"]
    assert row(paper, "CamVid-11 (analogue of COCO-Stuff-15)")[4] == "*not run*"
    assert "- CamVid-11, ours faithful: `iicrepro study run --only 'camvid11-faithful-s*'`" in paper
    assert ("- Potsdam-3, ours faithful: `iicrepro download potsdam && iicrepro study run --only "
            "'potsdam3-faithful-s*' --with-downloads`") in paper
    assert "- Dubai-5, ours improved: `none in study.yaml" in paper
    assert "No run has been executed yet" in out["status.md"]
    assert "No IIC run yet" in out["results_answer.md"]


def test_failed_runs_are_named_and_left_out_of_the_mean(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5))
    write_run(runs, "camvid3-faithful-s1", group="main", variant="faithful", dataset="camvid3", seed=1,
              status="failed")
    out = generate(book)
    assert row(out["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")[4] == \
        "[50.0](runs/camvid3-faithful-s0.ipynb); **failed**: [s1](runs/camvid3-faithful-s1.ipynb)"
    assert "1 failed, 1 ok" in out["status.md"]


def test_label_free_cells_and_the_split_they_used(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5, last=0.45, lowest=0.40))
    write_run(runs, "dubai3-faithful-s0", group="main", variant="faithful", dataset="dubai3",
              selection=selection(0.5, last=0.3, split="paper_eval"))
    out = generate(book)["results_label_free.md"]
    assert row(out, "CamVid-3 (analogue of COCO-Stuff-3)")[1:3] == ["[45.0](runs/camvid3-faithful-s0.ipynb)",
                                                                    "[40.0](runs/camvid3-faithful-s0.ipynb)"]
    assert "(on paper_eval)" in row(out, "Dubai-3 (analogue of Potsdam-3)")[1]


def test_splits_table_scores_the_last_epoch_on_both_image_sets_paired_by_seed(book):
    runs = book / "book" / "runs"
    for seed, (train, held) in enumerate([(0.50, 0.70), (0.60, 0.55), (0.40, 0.60)]):
        sel = selection(0.65, last=held)
        sel["last"]["paper_eval_acc"] = train  # the run file's score of its last epoch on the training images
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=sel)
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection=selection(0.6, 0.5), baseline=baseline_block(0.6, 0.5))
    write_run(runs, "camvid3-improved-s0", group="main", variant="improved", dataset="camvid3",
              selection=selection(0.65, last=0.7))  # no training-image score of its last epoch: no row
    out = generate(book)["results_splits.md"]

    def method_row(method):
        (line,) = [text for text in out.splitlines() if f"| {method} " in text]
        return [c.strip() for c in line.strip().strip("|").split(" | ")]

    # training 50 / 60 / 40, held-out 70 / 55 / 60: gaps +20, -5, +20 -> +11.7 +- 14.4, higher in 2 of 3
    assert method_row("IIC faithful") == ["CamVid-3 (analogue of COCO-Stuff-3)", "IIC faithful", "50.0 ± 10.0",
                                          "61.7 ± 7.6", "+11.7 ± 14.4 (higher in 2 of 3)"]
    assert method_row("k-means")[2:] == ["60.0", "50.0", "-10.0 (higher in 0 of 1)"]
    assert "IIC improved" not in out


def test_full_profile_preferred_smoke_marked_and_profile_folders_read(book):
    runs = book / "book" / "runs"
    (runs / "cpu").mkdir()
    write_run(runs / "cpu", "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5), profile="cpu")
    line = row(generate(book)["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert line[4] == "[50.0](runs/cpu/camvid3-faithful-s0.ipynb) (cpu profile)"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.7))
    out = generate(book)
    assert row(out["results_paper.md"], "CamVid-3 (analogue of COCO-Stuff-3)")[4] == \
        "[70.0](runs/camvid3-faithful-s0.ipynb)"
    assert "Run files found: 2: 1 of the full profile (1 ok); 1 of the cpu profile (1 ok)." in out["status.md"]


def test_baselines_and_ablations_grouped_by_study_group_and_variant(book):
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection=selection(0.33), baseline=baseline_block(0.33, 0.33))
    write_run(runs, "camvid3-lambda-1.0-s0", group="ablation-lambda", variant="lambda=1.0", dataset="camvid3",
              selection=selection(0.55))
    write_run(runs, "camvid3-x-s0", group="ablation-crop", variant="crop=64", dataset="camvid3",
              selection=selection(0.25))
    out = generate(book)
    kmeans = next(line for line in out["results_baselines.md"].splitlines()
                  if line.startswith("| CamVid-3") and "k-means" in line)
    assert "[33.0](runs/camvid3-kmeans-s0.ipynb)" in kmeans
    assert row(out["results_baselines.md"], "COCO-Stuff-3")[2] == "52.2"  # the paper's k-means
    lam = out["ablation_lambda.md"]
    assert row(lam, "CamVid-3")[1:3] == ["lambda=1.0", "[55.0](runs/camvid3-lambda-1.0-s0.ipynb)"]
    assert ("CamVid-3, lambda=1.5: `iicrepro study run --only 'camvid3-faithful-s*' && iicrepro study run "
            "--only 'camvid3-lambda-1.5-s*'`") in lam  # alias resolved to its source's dataset
    assert "](generated/figures/ablation-lambda.png)" in lam
    assert (book / "book" / "generated" / "figures" / "ablation-lambda.png").stat().st_size > 1000
    assert "ablation-crop" in out["ablations_other.md"] and "25.0" in out["ablations_other.md"]
    assert "Not run" in out["ablation_sobel.md"]
    assert "69.1" in out["ablation_lambda_quoted.md"]


def test_an_alias_shows_its_source_as_it_is_now_not_its_older_copy(book):
    """A reference variant's file is a copy of its source; when the source is trained again, the book must
    show the new source (the copy would otherwise keep the old numbers), under the alias's own labels."""
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.62), fingerprint="new")
    write_run(runs, "camvid3-lambda-1.5-s0", group="ablation-lambda", variant="lambda=1.5", dataset="camvid3",
              notebook=False, selection=selection(0.68), fingerprint="old", alias_of="camvid3-faithful-s0")
    write_run(runs, "camvid3-lambda-1.0-s0", group="ablation-lambda", variant="lambda=1.0", dataset="camvid3",
              selection=selection(0.55))
    alias = next(r for r in load.read_runs(runs, pages_dir=book / "book") if r["name"] == "camvid3-lambda-1.5-s0")
    assert (alias["fingerprint"], alias["study_group"], alias["variant"]) == ("new", "ablation-lambda", "lambda=1.5")
    assert alias["notebook_link"] == "runs/camvid3-faithful-s0.ipynb"
    reference = next(line for line in generate(book)["ablation_lambda.md"].splitlines() if "| lambda=1.5 " in line)
    assert "[62.0](runs/camvid3-faithful-s0.ipynb)" in reference and "68.0" not in reference
    (runs / "camvid3-faithful-s0.json").write_text("{not json")
    with pytest.raises(ValueError, match="camvid3-faithful-s0.json"):
        load.read_runs(runs)


def test_ablation_effect_is_paired_by_seed_against_the_reference_variant(book):
    """variant - reference per seed both have: seed 2 of lambda=1.0 is missing, so the mean of +5 and -2 (not
    the difference of the two means, 66.5 - 60.0 = +6.5)."""
    runs = book / "book" / "runs"
    for seed, acc in enumerate([0.60, 0.70, 0.50]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  selection=selection(acc, last=acc - 0.1))
        write_run(runs, f"camvid3-lambda-1.5-s{seed}", group="ablation-lambda", variant="lambda=1.5",
                  dataset="camvid3", seed=seed, notebook=False, selection=selection(0.99),
                  alias_of=f"camvid3-faithful-s{seed}")
    for seed, acc in enumerate([0.65, 0.68]):
        write_run(runs, f"camvid3-lambda-1.0-s{seed}", group="ablation-lambda", variant="lambda=1.0",
                  dataset="camvid3", seed=seed, selection=selection(acc, last=acc))
    text = generate(book)["ablation_lambda.md"]
    assert "paired by seed" in text
    effect = row(text.split("paired by seed")[1], "CamVid-3")
    assert effect[1:4] == ["lambda=1.0 − lambda=1.5", "+1.5 ± 4.9, higher in 1 of 2 seeds",
                           "+11.5 ± 4.9, higher in 2 of 2 seeds"]
    assert effect[5] == "-3.2 (COCO-Stuff-3)"  # the paper's lambda_B = 1 run (69.1) minus its Table 4 (72.3)
    assert effects.quoted_effect(load.read_reference(book / "book" / "reference_numbers.yaml"), dataset="dubai3",
                                 variant="lambda=1.0") == "-1.2 / -1.7 (Potsdam-3)"
    assert effects.describe(pd.Series(dtype=float)) == "—"
    # one pair has no spread and no direction to weigh: no "higher in 1 of 1 seed"
    assert effects.describe(pd.Series([2.7])) == "+2.7, one seed (no spread)"


def test_ablation_rows_follow_the_manifest_not_the_file_names(book):
    """File names sort 10, 100, 25; the manifest says 10 %, 25 %, 100 %: table and effects follow it."""
    manifest = yaml.safe_load((book / "study.yaml").read_text())
    manifest["runs"] += [{"name": f"camvid3-size-{p}", "study_group": "ablation-size", "variant": f"{p}%",
                          "params": {"preset": "camvid3", "data_fraction": p / 100}} for p in (10, 25)]
    manifest["runs"].append({"name": "camvid3-size-100", "study_group": "ablation-size", "variant": "100%",
                             "alias_of": "camvid3-faithful"})
    (book / "study.yaml").write_text(yaml.safe_dump(manifest))
    runs = book / "book" / "runs"
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.6))
    write_run(runs, "camvid3-size-100-s0", group="ablation-size", variant="100%", dataset="camvid3", notebook=False,
              selection=selection(0.6), alias_of="camvid3-faithful-s0")
    for p, acc in ((25, 0.5), (10, 0.4)):
        write_run(runs, f"camvid3-size-{p}-s0", group="ablation-size", variant=f"{p}%", dataset="camvid3",
                  selection=selection(acc))
    table, effect = generate(book)["ablation_size.md"].split("paired by seed")
    lines = [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| CamVid-3")]
    assert lines == ["10%", "25%", "100%"]
    assert [line.split("|")[2].strip() for line in effect.splitlines() if line.startswith("| CamVid-3")] == \
        ["10% − 100%", "25% − 100%"]


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
    assert row(margins, "COCO-Stuff-3")[1:3] == ["+20.1", "+35.0"]  # 72.3 - 52.2 and 72.3 - 37.3 (quoted)
    # paired by seed: only seed 0 has both, 70 - 40 = +30.0 and 60 - 45 = +15.0 (IIC seed 1 has no k-means
    # partner, so it is not averaged in as an unpaired mean would); the random network failed
    assert row(margins, "CamVid-3 (analogue of COCO-Stuff-3)")[3:7] == ["+30.0 (n = 1)", "*not run*",
                                                                       "+15.0 (n = 1)", "*not run*"]


def test_scales_table_compares_profiles_like_for_like(book):
    """An analogue with IIC at two scales: a row per profile, each from that profile's runs only (no baseline
    borrowed from another scale); an analogue at one scale has no row."""
    runs = book / "book" / "runs"
    before = generate(book)["results_scales.md"]
    assert "No analogue has faithful IIC runs at more than one scale" in before
    assert "--profile paper-cpu --only 'camvid3-faithful-s0'" in before  # not yet run at the paper scale

    for seed, acc in enumerate([0.70, 0.60]):
        write_run(runs, f"camvid3-faithful-s{seed}-cpu", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, profile="cpu", params=scale_params(64), selection=selection(acc))
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="paper-cpu",
              params=scale_params(128), selection=selection(0.75, 0.72))
    write_run(runs, "camvid3-kmeans-s0-cpu", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="cpu", params=scale_params(64), selection=selection(0.40))
    write_run(runs, "camvid3-random-s0-cpu", group="baseline-random", variant="random-net", dataset="camvid3",
              profile="cpu", params=scale_params(64), selection=selection(0.30))
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="paper-cpu", params=scale_params(128), selection=selection(0.45))
    write_run(runs, "camvid11-faithful-s0", group="main", variant="faithful", dataset="camvid11", profile="cpu",
              params=scale_params(64, "camvid11"), selection=selection(0.5))
    out = generate(book)["results_scales.md"]
    write_run(runs, "camvid3-random-s0", group="baseline-random", variant="random-net", dataset="camvid3",
              profile="full", params=scale_params(128), selection=selection(0.35))  # the paper scale, profile full
    borrowed = generate(book)["results_scales.md"]
    table = out.split("Where IIC")[0]  # the scales table (the verdicts below it: the next test)
    lines = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in table.splitlines()
             if line.startswith("| CamVid-3")]
    cpu, paper = (next(cells for cells in lines if cells[1] == profile) for profile in ("cpu", "paper-cpu"))
    assert len(lines) == 2
    assert cpu[1:3] == ["cpu", "64 px, ×0.165"] and cpu[3].startswith("65.0 ± 7.1 (n = 2")
    assert paper[1:3] == ["paper-cpu", "128 px, ×0.33"]
    assert paper[3].startswith("[75.0](runs/camvid3-faithful-s0.ipynb)") and paper[4].startswith("[72.0]")
    assert paper[5].startswith("[45.0]") and paper[7:9] == ["*not run*", "*not run*"]  # no cpu random borrowed
    assert cpu[7].startswith("[30.0]") and "| CamVid-11" not in out
    assert "--only 'camvid3-faithful-s0'" not in out  # its paper-scale run exists now
    paper = next(line for line in borrowed.splitlines() if "| paper-cpu" in line).split(" | ")
    assert paper[7].strip().startswith("[35.0](runs/camvid3-random-s0.ipynb) (same scale, full profile)")


def test_scales_say_where_iic_beats_the_baselines_at_each_scale(book):
    """Below the scales table: IIC minus each baseline paired by seed at each scale (a baseline of another profile
    at the very same scale counts, one of another scale never does; improved runs are not IIC's cells), where the
    paper-scale seed lies among the CPU scale's seeds, what else differs, and the best of its first epochs."""
    runs = book / "book" / "runs"
    assert "at each scale" not in generate(book)["results_scales.md"]  # one scale: nothing to say
    cpu = {**scale_params(64), "half_side": 5, "batch_size": 32, "epochs": 4}
    (runs / "cpu").mkdir()
    # head B's loss per epoch: seed 0 flat at the end (0.05 of a 2.0 drop after epoch 3), seed 1 not (1.0 of 2.0)
    for seed, (iic, kmeans, losses) in enumerate([(0.70, 0.60, [-1.0, -2.0, -2.95, -3.0]),
                                                  (0.60, 0.65, [-1.0, -1.5, -2.0, -3.0])]):
        curve = history([0.5, 0.6, 0.6, 0.7])
        for record, loss in zip(curve["epochs"], losses):
            record["loss_b"] = loss
        write_run(runs / "cpu", f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, profile="cpu", params=cpu, selection=selection(iic), history=curve)  # names as at paper-cpu
        write_run(runs, f"camvid3-improved-s{seed}-cpu", group="main", variant="improved", dataset="camvid3",
                  seed=seed, profile="cpu", params=cpu, selection=selection(0.99))
        write_run(runs, f"camvid3-kmeans-s{seed}-cpu", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
                  seed=seed, profile="cpu", params=scale_params(64), selection=selection(kmeans))
    write_run(runs, "camvid3-random-s0-cpu", group="baseline-random", variant="random-net", dataset="camvid3",
              profile="cpu", params=scale_params(64), selection=selection(0.30))  # another scale: never borrowed
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="paper-cpu",
              params={**scale_params(128), "half_side": 10, "batch_size": 32, "epochs": 6},
              selection=selection(0.75, 0.64), history=history([0.55, 0.68, 0.62, 0.60, 0.75, 0.70]))
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="full", params=scale_params(128), selection=selection(0.80, 0.50))
    out = generate(book)["results_scales.md"]
    below = out.split("at each scale")[1]
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in below.splitlines()
            if line.startswith("| CamVid-3")]
    assert rows == [
        ["CamVid-3", "cpu", "64 px, ×0.165", "k-means", "mixed: 1 of 2 seeds, +2.5 ± 10.6",
         "mixed: 1 of 2 seeds, +2.5 ± 10.6"],
        ["CamVid-3", "cpu", "64 px, ×0.165", "random network", "beats, one seed only: +40.0",
         "beats, one seed only: +40.0"],
        ["CamVid-3", "paper-cpu", "128 px, ×0.33", "k-means", "does not beat, one seed only: -5.0",
         "beats, one seed only: +14.0"],
        ["CamVid-3", "paper-cpu", "128 px, ×0.33", "random network", "*not run*", "*not run*"]]
    reading = next(line for line in below.splitlines() if line.startswith("CamVid-3, IIC at paper-cpu"))
    assert reading.startswith(
        "CamVid-3, IIC at paper-cpu (128 px, ×0.33) against its 2 seeds at cpu (64 px, ×0.165): paper protocol: "
        "75.0 (n = 1), above all 2 (60.0 to 70.0); label-free (last epoch, held-out): 64.0 (n = 1), within their "
        "range (60.0 to 70.0). Its runs differ from those at cpu in crop (128 against 64), pre-scale (0.33 against "
        "0.165), d (10 against 5) and epochs (6 against 4), not in scale alone")
    assert "the best of the first 4 epochs at paper-cpu (as many as at cpu) scores 68.0 (n = 1), within" in reading
    # head B's loss -0.1, -0.3, -0.5 at epochs 2, 4, 6: the last quarter (after epoch 4.5) holds 0.2 of 0.4; the
    # cpu seeds' own curves (same run names as the paper-cpu run, other profile), never the paper-cpu run's
    assert ("the CPU scale's criterion): at paper-cpu 50.0 %, not flat; at cpu 2.5 %, 50.0 %: 1 of 2 not flat. "
            "The paper protocol picks") in reading
    assert below.index("CamVid-3, IIC at paper-cpu") < below.index("Not yet run")  # the commands stay last


def test_flat_text_counts_the_runs_whose_head_b_loss_still_moves():
    assert tables_epochs.flat_text(pd.Series([0.019])) == "1.9 %, flat"
    assert tables_epochs.flat_text(pd.Series([0.12])) == "12.0 %, not flat"
    assert tables_epochs.flat_text(pd.Series([0.001, 0.099, 0.102])) == "0.1 %, 9.9 %, 10.2 %: 1 of 3 not flat"
    assert tables_epochs.flat_text(pd.Series([0.01, -0.05])) == "1.0 %, -5.0 %: all flat"
    assert tables_epochs.flat_text(pd.Series([float("nan")])) == "did not fall, not flat"


def test_scales_place_several_runs_among_the_seeds():
    """Scores of one profile among another's seeds: all above, all below, within, or some each way."""
    seeds = pd.Series([60.0, 65.0, 70.0])
    assert scales.place(pd.Series([75.0]), seeds) == "75.0 (n = 1), above all 3 (60.0 to 70.0)"
    assert scales.place(pd.Series([50.0, 55.0]), seeds).startswith("52.5 ± 3.5 (n = 2), below all 3 (")
    assert scales.place(pd.Series([60.0, 70.0]), seeds).endswith("(n = 2), within their range (60.0 to 70.0)")
    assert scales.place(pd.Series([50.0, 90.0, 65.0]), seeds).endswith("1 of 3 above all 3 and 1 below all 3 "
                                                                          "(60.0 to 70.0)")


def test_details_list_the_epochs_of_the_cells_own_profile_only(book):
    """A paper-cpu run beside the cpu seeds of one cell: the detail table's epochs, like its accuracies, are
    the cpu seeds' only (one epoch per seed, not one more from the other profile)."""
    runs = book / "book" / "runs"
    for seed in (0, 1):
        write_run(runs, f"camvid3-faithful-s{seed}-cpu", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, profile="cpu", params=scale_params(64), selection=selection(0.6 + seed / 10))
    paper_scale = selection(0.75)
    paper_scale["paper"]["epoch"] = 33
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="paper-cpu",
              params=scale_params(128), selection=paper_scale)
    line = next(line for line in generate(book)["results_detail.md"].splitlines() if line.startswith("| CamVid-3"))
    cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    assert cells[2:4] == ["3, 3", "4, 4"] and "33" not in cells[2]
    assert cells[4].startswith("65.0 ± 7.1 (n = 2")


def test_answer_is_formatted_from_the_runs(book):
    runs = book / "book" / "runs"
    for seed, (iic, base, paper) in enumerate([(0.70, 0.40, 0.45), (0.60, 0.40, 0.44)]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(paper, last=iic))
        write_run(runs, f"camvid3-kmeans-s{seed}", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
                  seed=seed, selection=selection(base), baseline=baseline_block(base, base))
    answer = generate(book)["results_answer.md"]
    assert "IIC's gain over k-means is **+25.0 ± 7.1 points (n = 2)**" in answer  # paired by seed: 30 and 20
    assert row(answer, "CamVid-3")[1:] == ["k-means", "beats: 2 of 2 seeds, +4.5 ± 0.7",
                                           "beats: 2 of 2 seeds, +25.0 ± 7.1"]
    # the paper's +20.1 (paper protocol) is set against ours under the paper protocol (+4.5 ± 0.7), never against
    # the label-free +25.0 ± 7.1 it would lie within two sd of
    assert "**+20.1 points** on COCO-Stuff-3" in answer
    assert "Under the same protocol as the paper's, its gain is larger than ours (+4.5 ± 0.7)." in answer
    assert not any(line.startswith("| CamVid-3") and "one cluster" in line for line in answer.splitlines())
    split = {"paper_eval": {"pixel_share": {"sky": 0.5, "ground": 0.3}},
             "heldout": {"pixel_share": {"sky": 0.3, "ground": 0.55}}}
    write_run(runs, "camvid3-data-s0", group="datasets", variant="summary", dataset="camvid3",
              dataset_summary={"dataset": "camvid3", "per_split": split})
    floor = next(line for line in generate(book)["results_answer.md"].splitlines() if "| one cluster" in line)
    # IIC minus the largest class's share of the images each protocol scores: 45, 44 - 50; 70, 60 - 55
    assert [c.strip() for c in floor.strip("|").split(" | ")][2:] == [
        "does not beat: 0 of 2 seeds, -5.5 ± 0.7", "beats: 2 of 2 seeds, +10.0 ± 7.1"]
    assert "](generated/figures/versus_baselines.png)" in answer


# ---------------------------------------------------------------- figures
def test_figures_from_history_confusion_and_notebooks(book):
    runs = book / "book" / "runs"
    chosen = selection(0.6, split="paper_eval")
    chosen["last"]["epoch"] = 3  # the history's last epoch (its only split: paper_eval)
    for seed in (0, 1):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  selection=chosen, history=with_confusion(history([0.4, 0.6, 0.5 + 0.1 * seed])))
    jpeg_notebook(runs / "camvid3-faithful-s0.ipynb")
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              selection=selection(0.4), baseline=baseline_block(0.4, 0.4), notebook=False)
    jpeg_notebook(runs / "camvid3-kmeans-s0.ipynb", marker="figures.qualitative(examples, title=...)")
    out = generate(book)
    figures = book / "book" / "generated" / "figures"
    assert "](generated/figures/epoch_curves.png)" in out["epoch_curves.md"]
    assert row(out["epoch_curves.md"], "CamVid-3")[1:7] == ["faithful", "paper_eval", "2", "40.0 (epoch 1)",
                                                            "60.0 (epoch 2)", "55.0 (epoch 3)"]
    assert "](generated/figures/qualitative.jpg)" in out["results_qualitative.md"]
    assert "](generated/figures/confusion.png)" in out["results_confusion.md"]
    assert "](generated/figures/loss_curves.png)" in out["epoch_curves.md"]  # convergence: loss per epoch
    for name in ("epoch_curves.png", "loss_curves.png", "versus_baselines.png", "qualitative.jpg"):
        assert (figures / name).stat().st_size > 1000, name
    perf = out["performance_runs.md"]
    assert row(perf, "main")[1:4] == ["faithful", "camvid3", "cpu"] and "| 11.0 " in perf  # median head-B train s


def test_confusion_of_a_baseline_while_no_iic_run_exists(book):
    write_run(book / "book" / "runs", "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans",
              dataset="camvid3", selection=selection(0.4), baseline=baseline_block(0.4, 0.4))
    out = generate(book)
    assert "No IIC run yet" in out["results_confusion.md"] and "camvid3-kmeans-s0" in out["results_confusion.md"]
    assert "Not yet run" in out["results_qualitative.md"]  # the fixture notebook embeds no figure
    assert "Not yet run" in out["epoch_curves.md"] and "loss_curves" not in out["epoch_curves.md"]


# ---------------------------------------------------------------- Performance, Datasets, CLI
def test_benchmark_files_are_tabulated(book):
    assert "Not measured yet" in generate(book)["performance_bench.md"]
    bench = book / "benchmarks" / "results"
    bench.mkdir(parents=True)
    step = {"k": 15, "batch_size": 120, "input_size": 128, "step_ms": 250.0, "pairs_per_s": 480.0,
            "epoch_s": 76.4, "achieved_tflops": 12.5, "peak_mem_mb": 9000.0,
            "split_ms": {"views": 1.0, "forward": 80.0, "loss": 20.0, "backward": 140.0, "optimiser": 9.0},
            "matmul_peak_fraction": 0.45}
    payload = {"env": {"device": "cuda", "device_name": "NVIDIA H100", "torch": "2.13", "git_revision": "abc",
                       "date": "2025-01-01"}, "data": "synthetic", "settings": {"bf16": True},
               "presets": {"cocostuff3": {"steps": {"A": step},
                                          "checkpointing": {"A": {**step, "speed_cost": 0.3, "memory_saved_mb": 4000.0,
                                                                  "kind": "cuda_allocated"}},
                                          "eval": {"batch_size": 64, "images_per_s": 900.0, "eval_images": 36660,
                                                   "eval_s": 40.7}}},
               "matmul_peak": {"bfloat16": {"n": 8192, "tflops": 700.0}, "compared_with": "bfloat16"},
               "targets": {"items": [{"name": "cocostuff3_epoch_s", "what": "epoch", "target": "<= 60",
                                      "measured": 76.4, "status": "fail"}]},
               "loss": {"impls": ["conv", "fft"], "batch_size": 60, "input_size": 128, "tolerance": 1e-5,
                        "all_agree": True, "records": [{"k": 45, "d": 10, "impl": "conv", "fwd_bwd_ms": 30.0},
                                                       {"k": 45, "d": 10, "impl": "fft", "fwd_bwd_ms": 6.0}],
                        "agreement": [{"k": 45, "d": 10, "impl": "fft", "rel_diff_grad": 3e-12,
                                       "float32_rel_diff_grad": 2e-5, "ok": True}],
                        "auto": [{"k": 45, "d": 10, "impl": "fft"}]}}
    (bench / "cuda-2025-01-01.json").write_text(json.dumps(payload))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "NVIDIA H100" in out and "700.000 TFLOP/s" in out and "All agree: **yes**" in out
    assert row(out, "cocostuff3")[:8] == ["cocostuff3", "A", "15", "120", "128", "250.0", "480.0", "76.4"]
    assert row(out, "cocostuff3_epoch_s") == ["cocostuff3_epoch_s", "epoch", "<= 60", "76.400", "fail"]
    assert row(out, "45") == ["45", "10", "30.00", "6.00", "fft", "3.0e-12", "2.0e-05"]
    assert row(out, "cocostuff3")[-1] == "45%" or "45%" in out  # share of the matmul peak


def test_benchmark_header_names_threads_and_load(book):
    """CPU timings depend on the threads used and the machine's load: a file's header says both."""
    bench = book / "benchmarks" / "results"
    bench.mkdir(parents=True)
    env = {"device": "cpu", "device_name": "x86_64", "torch": "2.13", "git_revision": "abc", "date": "2025-01-01",
           "cpu_count": 2, "torch_threads": 1, "load_average_1min": 0.66, "load_average_1min_end": 1.94}
    (bench / "cpu-threads1-2025-01-01.json").write_text(json.dumps({"env": env, "data": "synthetic"}))
    (bench / "cuda-2025-01-01.json").write_text(json.dumps({"env": {**env, "torch_threads": None}}))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "torch threads 1 of 2 CPUs, 1-min load 0.7 -> 1.9." in out
    assert out.count("torch threads") == 1


def test_benchmark_header_names_the_allocator(book):
    """A preloaded allocator changes CPU timings: the header names it and its options; older files name none."""
    bench = book / "benchmarks" / "results"
    bench.mkdir(parents=True)
    env = {"device": "cpu", "device_name": "x86_64", "torch": "2.13", "git_revision": "abc", "date": "2025-01-01",
           "cpu_count": 2, "torch_threads": 2}
    allocators = {"jemalloc": {"name": "jemalloc", "malloc_conf": "dirty_decay_ms:-1"},
                  "libc": {"name": "libc malloc", "malloc_conf": None}, "old": None}
    for name, alloc in allocators.items():
        extra = {"allocator": alloc} if alloc else {}
        (bench / f"cpu-{name}-2025-01-01.json").write_text(json.dumps({"env": env | extra, "data": "synthetic"}))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "torch threads 2 of 2 CPUs; allocator jemalloc (`MALLOC_CONF=dirty_decay_ms:-1`)." in out
    assert "torch threads 2 of 2 CPUs; allocator libc malloc." in out
    assert out.count("allocator") == 2


def test_memory_bench_file_is_tabulated(book):
    """A `bench --memory` file: per preset, head and checkpointing, MB per pair, the estimate, whether it fits."""
    bench = book / "benchmarks" / "results"
    bench.mkdir(parents=True)
    estimate = {"preset": "dubai3", "head": "A", "k": 24, "input_size": 200, "checkpointing": False,
                "per_pair_mb": 430.0, "batch": 75, "estimated_peak_mb": 33 * 1024, "fits": False}
    payload = {"env": {"device": "cpu", "device_name": "x86_64", "torch": "2.13", "git_revision": "abc",
                       "date": "2026-12-04"}, "data": "synthetic", "settings": {"bf16": False},
               "memory": {"batches": [4, 8], "machine_memory_mb": 23 * 1024,
                          "estimates": [estimate, {**estimate, "checkpointing": True, "per_pair_mb": 270.0,
                                                   "estimated_peak_mb": 20 * 1024, "fits": True}]},
               "targets": {"items": []}}
    (bench / "cpu-memory-2026-12-04.json").write_text(json.dumps(payload))
    out = generate(book, bench=bench)["performance_bench.md"]
    assert "this machine has 23.0 GiB" in out
    rows = [line for line in out.splitlines() if line.startswith("| dubai3")]
    assert [[c.strip() for c in r.split("|")[5:10]] for r in rows] == [["no", "430", "75", "33.0", "**no**"],
                                                                       ["yes", "270", "75", "20.0", "yes"]]


def test_dataset_summary_or_not_generated(book):
    write_run(book / "book" / "runs", "datasets-camvid3-s0", group="datasets", variant="summary",
              dataset="camvid3", dataset_summary={"dataset": "camvid3", "splits": {"train": 468, "heldout": 233},
                                                  "pixel_share": {"sky": 0.25, "plant": 0.15, "ground": 0.6},
                                                  "ignored_share": 0.37, "sample_grid": "datasets-camvid3.png"})
    out = generate(book)
    camvid = out["dataset_camvid3.md"]
    shares = next(t for t in camvid.split("\n\n") if "share of counted pixels" in t)  # not the palette legend
    assert row(camvid, "heldout")[1] == "233" and row(shares, "sky")[1] == "25.0" and "37.0%" in camvid
    assert "](runs/datasets-camvid3.png)" in camvid and 'class="swatch"' in camvid
    assert "not generated yet" in out["dataset_dubai3.md"]
    assert "iicrepro download potsdam" in out["dataset_potsdam3.md"]


def test_majority_class_share_from_the_summary_of_the_iic_scale(book):
    """The floor of an accuracy (one cluster for every pixel): the largest class share per evaluation split,
    read from the dataset summary of the profile the IIC cells come from (here cpu, not the full one)."""
    runs = book / "book" / "runs"
    (runs / "cpu").mkdir()
    assert "No dataset summary has run yet" in generate(book)["results_majority.md"]
    for folder, profile, ground in ((runs, "full", 0.9), (runs / "cpu", "cpu", 0.6)):
        split = {"paper_eval": {"pixel_share": {"sky": 0.3, "ground": ground}},
                 "heldout": {"pixel_share": {"sky": 0.55, "ground": 0.45}}}
        write_run(folder, "camvid3-data-s0", group="datasets", variant="summary", dataset="camvid3", profile=profile,
                  dataset_summary={"dataset": "camvid3", "per_split": split})
    write_run(runs / "cpu", "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              profile="cpu", selection=selection(0.7))
    cells = row(generate(book)["results_majority.md"], "CamVid-3 (analogue of COCO-Stuff-3)")
    assert cells[1].startswith("[camvid3-data-s0](runs/cpu/") and cells[2:] == ["60.0 (ground)", "55.0 (sky)"]


def test_cli_writes_every_snippet_and_rejects_bad_json(book, monkeypatch):
    monkeypatch.chdir(book)
    assert pages.main(["book/runs", "book/generated"]) == 0
    written = {p.name for p in (book / "book" / "generated").glob("*.md")}
    included = set()
    for page in (REPO / "book").glob("*.md"):
        included |= {line.split("generated/")[1].strip() for line in page.read_text().splitlines()
                     if line.startswith("```{include} generated/")}
    assert included and included <= written  # every snippet a page includes exists
    (book / "book" / "runs" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        pages.main(["book/runs", "book/generated"])


def test_progress_counts_the_profile_plan_against_ok_run_files(tmp_path):
    """The progress table reads the real manifest's cpu profile; only ok files of that profile count."""
    from iicrepro.report import load, tables_runs
    from iicrepro.study import load_study, resolved_config

    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="cpu",
              wall_time_s=3000.0)
    write_run(runs, "camvid3-faithful-s1", group="main", variant="faithful", dataset="camvid3", seed=1,
              profile="cpu", status="failed")
    write_run(runs, "camvid3-faithful-s2", group="main", variant="faithful", dataset="camvid3", seed=2)  # full
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="cpu", wall_time_s=12.0)
    frame = report_frame.runs_frame(load.read_runs(runs, pages_dir=tmp_path))
    text = tables_runs.progress(frame, REPO / "study.yaml", profile="cpu")

    plan = [r for r in load_study(REPO / "study.yaml", profile="cpu").runs if not r.alias_of and not r.requires]
    main = sum(r.study_group == "main" for r in plan)
    kmeans = sum(r.study_group == "baseline-kmeans" for r in plan)
    assert row(text, "main")[1:] == [str(main), "1", str(main - 1), f"{(main - 1) * 50 / 60:.0f} hours"]
    assert row(text, "baseline-kmeans")[1:] == [str(kmeans), "1", str(kmeans - 1), "—"]
    trains = [r for r in plan if r.notebook.endswith("train.ipynb")]
    bf16 = sum(resolved_config(r.params).bf16 is True for r in trains)
    assert bf16 and row(text, "precision")[-1].endswith(f"+ {bf16} runs not estimated")
    # these run files carry no training history: every run left is priced at the median run (50 min)
    assert "The one IIC training run done took 50 min" in text
    assert f"the {len(trains) - 1 - bf16} training runs left need about" in text
    assert f"The {bf16} bf16 runs left are not in it" in text
    assert f"2 of {len(plan)} done" in text
    assert tables_runs.progress(frame, tmp_path / "missing.yaml") == ""


def test_beats_verdicts_are_seed_by_seed():
    import pandas as pd

    from iicrepro.report import answer

    assert answer.beats(pd.Series([1.0, 2.0, 3.0])) == "beats: 3 of 3 seeds, +2.0 ± 1.0"
    assert answer.beats(pd.Series([-1.0, 3.0])).startswith("mixed: 1 of 2 seeds, +1.0 ± ")
    assert answer.beats(pd.Series([-0.5])) == "does not beat, one seed only: -0.5"
    assert answer.beats(pd.Series([2.0])) == "beats, one seed only: +2.0"
    assert answer.beats(pd.Series([0.0])).startswith("does not beat")


def test_a_resumed_run_costs_the_sum_of_its_epochs(tmp_path):
    """wall_time_s of a run resumed from a checkpoint covers its last call only; the tables show the epochs' sum."""
    from iicrepro.report import load, tables_runs

    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="cpu",
              wall_time_s=100.0, history=history([0.5, 0.6, 0.7]))
    data = json.loads((runs / "camvid3-faithful-s0.json").read_text())
    for record in data["history"]["epochs"]:
        record["wall_s"] = 100.0
    (runs / "camvid3-faithful-s0.json").write_text(json.dumps(data))
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="cpu", wall_time_s=12.0)
    frame = report_frame.runs_frame(load.read_runs(runs, pages_dir=tmp_path))
    assert frame.set_index("run")["cost_s"].to_dict() == {"camvid3-faithful-s0": 300.0, "camvid3-kmeans-s0": 12.0}
    table = tables_runs.runs_table(frame)
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")] for line in table.splitlines()
             if line.startswith("| [")}
    assert [c for c in cells if "faithful" in c] and "5.0 (resumed; last call 1.7)" in next(
        v for k, v in cells.items() if "faithful" in k)
    assert "0.2" in next(v for k, v in cells.items() if "kmeans" in k)
    assert "run done took 5 min" in tables_runs.progress(frame, REPO / "study.yaml", profile="cpu")


def test_convergence_share_of_the_loss_drop_in_the_last_quarter(book):
    """Head B logs at epochs 2, 4, ..., 12: losses -1, -2, -3, -3.5, -3.9, -4.0 -> the last quarter (after epoch 9)
    holds (-3.5 - -4.0) / 3.0 = 17 % of the drop for seed 0; seed 1 is flat from epoch 8 (0 %)."""
    runs = book / "book" / "runs"
    for seed, tail in ((0, [-3.5, -3.9, -4.0]), (1, [-4.0, -4.0, -4.0])):
        hist = history([0.5] * 12)
        losses_b = [-1.0, -2.0, -3.0] + tail
        for record in hist["epochs"]:
            e = record["epoch"]
            record["loss_b"] = losses_b[e // 2 - 1] if e % 2 == 0 else None
            record["loss_a"] = -0.1 * e if e % 2 else None
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(0.5), history=hist)
    text = generate(book)["epoch_curves.md"]
    assert row(text, "CamVid-3")  # the accuracy table
    lines = [line for line in text.splitlines() if line.startswith("| CamVid-3") and "%" in line]
    b = next(line for line in lines if "| B " in line)
    a = next(line for line in lines if "| A " in line)
    assert "16.7 %, 0.0 %" in b and "| no " in b
    assert "20.0 %, 20.0 %" in a and "| no " in a  # A: -0.1 .. -1.1 at epochs 1 .. 11; epoch 9 -> 11: 0.2 of 1.0


def small_cpu_study(root: Path, seeds: list[int]) -> Path:
    """A manifest with a cpu profile and one IIC run (camvid3-faithful) over the given seeds."""
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "train.ipynb", root / "notebooks" / "train.ipynb")
    manifest = {"seeds": seeds, "notebooks": {"train": "notebooks/train.ipynb"}, "profiles": {"cpu": {"out": "runs"}},
                "runs": [{"name": "camvid3-faithful", "study_group": "main", "variant": "faithful",
                          "params": {"preset": "camvid3"}}]}
    (root / "study.yaml").write_text(yaml.safe_dump(manifest))
    return root / "study.yaml"


@pytest.mark.parametrize("seeds, says", [
    ([0, 1], "The one IIC training run done took 50 min (device: cpu); at that rate the 1 training run left needs "
             "about 50 min on the same machine"),
    ([0], "The one IIC training run done took 50 min (device: cpu); no training run is left."),
])
def test_progress_sentence_reads_right_for_one_run_and_none_left(tmp_path, seeds, says):
    from iicrepro.report import load, tables_runs

    manifest = small_cpu_study(tmp_path, seeds)
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="cpu",
              wall_time_s=3000.0)
    text = tables_runs.progress(report_frame.runs_frame(load.read_runs(runs, pages_dir=tmp_path)), manifest)
    assert says in text and "0 hours" not in text and "1 training runs" not in text


def test_convergence_counts_a_loss_that_rises_late_as_not_flat(book):
    """Head B falls 1.0 over training but rises 0.3 in the last quarter (share -30 %): not flat."""
    runs = book / "book" / "runs"
    hist = history([0.5] * 12)
    losses_b = [-1.0, -1.5, -2.0, -2.3, -1.7, -2.0]  # epochs 2, 4, ..., 12; from epoch 8 (-2.3) to 12 (-2.0)
    for record in hist["epochs"]:
        e = record["epoch"]
        record["loss_b"] = losses_b[e // 2 - 1] if e % 2 == 0 else None
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5), history=hist)
    b = next(line for line in generate(book)["epoch_curves.md"].splitlines()
             if line.startswith("| CamVid-3") and "| B " in line)
    assert "-30.0 %" in b and "| no " in b


def test_a_cpu_run_and_a_full_run_of_one_name_are_two_curves(book):
    """The cpu profile reuses the full profile's run names (book/runs/cpu/NAME.json): the convergence table
    shows the preferred (full) profile alone, as the table cells do, and the Performance timings keep both
    apart; neither splices the two histories into one."""
    runs = book / "book" / "runs"
    (runs / "cpu").mkdir()
    full, cpu = history([0.5] * 12), history([0.5] * 12)
    for record in cpu["epochs"]:
        record["train_s"] = 100.0
        e = record["epoch"]
        record["loss_b"] = [-1.0, -2.0, -3.0, -3.5, -3.9, -4.0][e // 2 - 1] if e % 2 == 0 else None
    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5), history=full)
    write_run(runs / "cpu", "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3",
              selection=selection(0.5), history=cpu, profile="cpu")
    out = generate(book)
    b = next(line for line in out["epoch_curves.md"].splitlines() if line.startswith("| CamVid-3") and "| B " in line)
    assert "| 40.0 % " in b and "16.7" not in b  # the full curve alone: B at -0.1, -0.3, .., -1.1; (-0.7 - -1.1) / 1.0
    perf = {cells[4]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in out["performance_runs.md"].splitlines() if "faithful" in line)}
    assert perf["cpu"][9:11] == ["100.0", "100.0"] and perf["full"][9:11] == ["15.0", "16.0"]  # train s / epoch


def test_cpu_runs_are_timed_apart_by_their_bf16_units(book):
    """Seeds of one cell trained on an AMX CPU and on a CPU with AVX512-BF16 alone: the Performance timings keep
    the two machines apart (their epochs differ several-fold); a run file without an engine record stays "cpu"."""
    runs = book / "book" / "runs"
    for seed, units, train_s in ((0, ["amx_bf16", "avx512_bf16"], 40.0), (1, ["amx_bf16", "avx512_bf16"], 44.0),
                                 (2, ["avx512_bf16"], 130.0)):
        hist = history([0.5] * 4)
        hist["engine"] = {"bf16": True, "cpu_bf16_units": units}
        for record in hist["epochs"]:
            record["train_s"] = train_s
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  selection=selection(0.5), history=hist)
    write_run(runs, "camvid11-faithful-s0", group="main", variant="faithful", dataset="camvid11",
              selection=selection(0.5), history=history([0.5] * 4))
    perf = {(cells[2], cells[3]): cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                                      for line in generate(book)["performance_runs.md"].splitlines()
                                                      if "faithful" in line)}
    assert set(perf) == {("camvid3", "cpu (AMX)"), ("camvid3", "cpu (AVX512-BF16)"), ("camvid11", "cpu")}
    assert perf["camvid3", "cpu (AMX)"][6] == "2" and perf["camvid3", "cpu (AMX)"][9] == "42.0"  # runs, head-B s
    assert perf["camvid3", "cpu (AVX512-BF16)"][6] == "1" and perf["camvid3", "cpu (AVX512-BF16)"][9] == "130.0"


def test_progress_names_every_machine_its_rates_pool(tmp_path):
    """Seed 0 trained on an AMX CPU, seed 1 on one with AVX512-BF16 alone: the estimate says it pools both."""
    from iicrepro.report import load, tables_runs

    manifest = small_cpu_study(tmp_path, [0, 1, 2])
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed, units in ((0, ["amx_bf16", "avx512_bf16"]), (1, ["avx512_bf16"])):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  profile="cpu", wall_time_s=3000.0, history={"engine": {"bf16": True, "cpu_bf16_units": units}})
    text = tables_runs.progress(report_frame.runs_frame(load.read_runs(runs, pages_dir=tmp_path)), manifest)
    assert "(devices: cpu (AMX), cpu (AVX512-BF16))" in text and "on machines like those" in text
    assert "same machine" not in text


def test_progress_prices_each_run_left_by_its_epochs_images_and_crop(tmp_path):
    """One CamVid run done (64 px, 4 epochs of 150 s, float32): an epoch costs 150 s. A 10 % run of 40 epochs
    counts 4 epochs (10 min); a Dubai run at 128 px, on a crop no run measured, is scaled by pixel count:
    4 x 150 s x 4 = 40 min; a bf16 run is not priced (no run here trained in bf16). Once a later run trained in
    bf16, the `bf16: auto` runs are priced at bf16's rates."""
    from iicrepro.report import load, tables_runs

    manifest = {"seeds": [0], "notebooks": {"train": "notebooks/train.ipynb"}, "profiles": {"cpu": {"out": "runs"}},
                "runs": [
                    {"name": "camvid3-faithful", "study_group": "main", "variant": "faithful",
                     "params": {"preset": "camvid3", "input_size": 64, "epochs": 4, "bf16": "auto"}},
                    {"name": "camvid3-size-10", "study_group": "ablation-size", "variant": "10%",
                     "params": {"preset": "camvid3", "input_size": 64, "epochs": 40, "data_fraction": 0.1,
                                "bf16": "auto"}},
                    {"name": "dubai3-faithful", "study_group": "main", "variant": "faithful",
                     "params": {"preset": "dubai3", "input_size": 128, "epochs": 4, "bf16": "auto"}},
                    {"name": "camvid3-bf16", "study_group": "precision", "variant": "bf16",
                     "params": {"preset": "camvid3", "input_size": 64, "epochs": 4, "bf16": True}}]}
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "train.ipynb", tmp_path / "notebooks" / "train.ipynb")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(manifest))
    runs = tmp_path / "runs"
    runs.mkdir()

    def timed_history(epoch_s, **extra):
        """4 epochs of epoch_s seconds each at 64 px on all images."""
        hist = history([0.5] * 4)
        for record in hist["epochs"]:
            record["wall_s"] = epoch_s
        return {**hist, "config": {"input_size": 64, "data_fraction": 1.0}, **extra}

    def progress():
        return tables_runs.progress(report_frame.runs_frame(load.read_runs(runs, pages_dir=tmp_path)),
                                    tmp_path / "study.yaml")

    write_run(runs, "camvid3-faithful-s0", group="main", variant="faithful", dataset="camvid3", profile="cpu",
              wall_time_s=600.0, history=timed_history(150.0))
    text = progress()
    assert row(text, "main")[1:] == ["2", "1", "1", "40 min"]
    assert row(text, "ablation-size")[1:] == ["1", "0", "1", "10 min"]
    assert row(text, "precision")[1:] == ["1", "0", "1", "not estimated"]
    assert "CamVid at 64 px in float32: 2 min" in text and "the 2 training runs left need about 50 min" in text
    assert "(1 of them on images or crop sides no run has measured yet" in text
    assert "The 1 bf16 run left is not in it" in text

    # a later run on a machine with bf16 units, 4 epochs of 15 s: `bf16: auto` runs are now priced in bf16
    # (Dubai 4 x 15 s x 4 = 4 min, the 10 % run 4 x 15 s = 60 s), the bf16 run too (60 s)
    write_run(runs, "camvid3-bf16-s0", group="precision", variant="bf16", dataset="camvid3", profile="cpu",
              wall_time_s=60.0, history=timed_history(15.0, engine={"bf16": True}),
              started="2025-02-01T00:00:00+00:00")
    text = progress()
    assert row(text, "main")[1:] == ["2", "1", "1", "4 min"]
    assert row(text, "ablation-size")[1:] == ["1", "0", "1", "60 s"]
    assert row(text, "precision")[1:] == ["1", "1", "0", "0"]
    assert "CamVid at 64 px in bf16: 15 s" in text and "`bf16: auto` are priced in bf16, the precision of" in text
    assert "not in it" not in text

    # the manifest raises CamVid-3's epochs from 4 to 10 after it ran: that run is no longer done, and is
    # priced at the 6 epochs it lacks (`bf16: auto`, so at bf16's 15 s an epoch)
    manifest["runs"][0]["params"]["epochs"] = 10
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(manifest))
    text = progress()
    assert row(text, "main")[1:] == ["2", "0", "2", "6 min"]  # Dubai 4 min + CamVid 6 x 15 s
    assert "1 of the runs left is a run done with fewer epochs than the manifest now plans" in text


def test_results_page_names_the_cells_whose_head_b_was_still_moving(book):
    """Seed 0's head B drops 17 % of its loss in the last quarter, seed 1 none: the note under the main table
    names CamVid-3 faithful with both shares; with both seeds flat there is no note."""
    runs = book / "book" / "runs"

    def write(tails):
        for seed, tail in enumerate(tails):
            hist = history([0.5] * 12)
            losses_b = [-1.0, -2.0, -3.0] + tail
            for record in hist["epochs"]:
                e = record["epoch"]
                record["loss_b"] = losses_b[e // 2 - 1] if e % 2 == 0 else None
            write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                      seed=seed, selection=selection(0.5), history=hist)
        return generate(book)["results_convergence.md"]

    note = write([[-3.5, -3.9, -4.0], [-4.0, -4.0, -4.0]])
    assert "**Not converged**" in note and "CamVid-3 faithful (1 of 2 seeds: 16.7 %, 0.0 %)" in note
    note = write([[-4.0, -4.0, -4.0], [-4.0, -4.0, -4.0]])
    assert "Not converged" not in note
    note = write([[-4.0, -4.0, -4.0], [0.0, 0.5, 1.0]])  # seed 1 ends above its first value: not flat either
    assert "CamVid-3 faithful (1 of 2 seeds: 0.0 %, did not fall)" in note


def test_baselines_and_margins_read_the_scale_of_the_iic_cells(book):
    """IIC ran at the CPU scale only; k-means ran at the paper scale (profile full, 128 px) and at the CPU scale
    (64 px), the random network at the paper scale only. The Baselines table and the margins both use the CPU
    k-means (IIC - k-means = 70 - 40), and the random network, with no run at IIC's scale, is not compared."""
    runs = book / "book" / "runs"

    write_run(runs, "camvid3-faithful-s0-cpu", group="main", variant="faithful", dataset="camvid3", profile="cpu",
              params=scale_params(64), selection=selection(0.70))
    write_run(runs, "camvid3-kmeans-s0-cpu", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="cpu", params=scale_params(64), selection=selection(0.40))
    write_run(runs, "camvid3-kmeans-s0", group="baseline-kmeans", variant="kmeans", dataset="camvid3",
              profile="full", params=scale_params(128), selection=selection(0.55))
    write_run(runs, "camvid3-random-s0", group="baseline-random", variant="random-net", dataset="camvid3",
              profile="full", params=scale_params(128), selection=selection(0.35))
    out = generate(book)
    lines = [line for line in out["results_baselines.md"].splitlines() if line.startswith("| CamVid-3")]
    kmeans = next(line for line in lines if "k-means" in line)
    assert "[40.0](runs/camvid3-kmeans-s0-cpu.ipynb) (cpu profile)" in kmeans and "55.0" not in kmeans
    assert "35.0" not in next(line for line in lines if "k-means" not in line)
    assert row(out["results_margins.md"], "CamVid-3 (analogue of COCO-Stuff-3)")[3:5] == ["+30.0 (n = 1)",
                                                                                        "*not run*"]


def test_precision_note_names_cells_that_mix_precisions(book):
    """Each main cell's seeds by precision (their run files' engine): a cell mixing bf16 and float32 is named
    with its seeds, uniform cells are listed by precision; baselines and ablations do not count."""
    runs = book / "book" / "runs"
    assert "Precision" not in generate(book)["results_precision.md"]

    def engine(bf16):
        return {"history": {"engine": {"bf16": bf16}, "epochs": []}}

    for seed, bf16 in enumerate([False, False, True]):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3", seed=seed,
                  selection=selection(0.6), **engine(bf16))
    write_run(runs, "camvid11-faithful-s0", group="main", variant="faithful", dataset="camvid11",
              selection=selection(0.5), **engine(True))
    write_run(runs, "camvid3-lambda-1.0-s0", group="ablation-lambda", variant="lambda=1.0", dataset="camvid3",
              selection=selection(0.5), **engine(False))
    note = generate(book)["results_precision.md"]
    assert "every seed in bf16 autocast (the loss in float32): CamVid-11 faithful; " in note
    assert "**mixed precision**" in note and "CamVid-3 faithful (bf16: seed 2; float32: seeds 0, 1)" in note
    assert "float32: " not in note.split("**mixed precision**")[0]  # no uniform float32 cell (ablations ignored)
    (runs / "camvid11-faithful-s0.json").unlink()
    note = generate(book)["results_precision.md"]
    assert "(each run file's `engine`; {doc}`deviations`, *Precision*): **mixed precision**" in note


def test_settings_note_names_cells_whose_seeds_ran_with_different_parameters(book):
    """A cell whose seeds differ in a parameter other than the seed (seed 0 rerun with more epochs) is named
    with each setting's seeds; the seed itself, other cells and a profile the cell does not show do not count."""
    runs = book / "book" / "runs"

    def params(dataset, seed, epochs):
        return {"params": {"preset": dataset, "dataset": dataset, "seed": seed, "epochs": epochs}}

    for seed in range(3):
        write_run(runs, f"camvid3-faithful-s{seed}", group="main", variant="faithful", dataset="camvid3",
                  seed=seed, selection=selection(0.6), **params("camvid3", seed, 12))
    assert "Mixed settings" not in generate(book)["results_precision.md"]
    for seed, epochs in enumerate([80, 12, 12]):
        write_run(runs, f"dubai5-faithful-s{seed}", group="main", variant="faithful", dataset="dubai5", seed=seed,
                  selection=selection(0.5), **params("dubai5", seed, epochs))
    note = generate(book)["results_precision.md"]
    assert "**Mixed settings**" in note and "Dubai-5 main faithful (epochs=80: seed 0; epochs=12: seeds 1, 2)" in note
    assert "CamVid-3" not in note.split("**Mixed settings**")[1]
    for seed in range(3):  # full-profile runs alike hide the mixed cpu ones
        write_run(runs, f"dubai5-faithful-s{seed}-cpu", group="main", variant="faithful", dataset="dubai5",
                  seed=seed, selection=selection(0.5), **params("dubai5", seed, 12 + 68 * (seed == 0)),
                  profile="cpu")
        write_run(runs, f"dubai5-faithful-s{seed}", group="main", variant="faithful", dataset="dubai5", seed=seed,
                  selection=selection(0.5), **params("dubai5", seed, 60))
    assert "Mixed settings" not in generate(book)["results_precision.md"]


def test_figures_are_the_same_bytes_in_every_process(book):
    """A figure drawn twice from the same runs, in processes with different string hash seeds (which reorder
    seaborn's facets), is byte-identical: the same runs always give the same picture."""
    import subprocess
    import sys
    runs = book / "book" / "runs"
    for dataset in ("camvid3", "dubai3"):
        for seed, acc in enumerate([0.60, 0.70, 0.50]):
            for variant, shift in (("lambda=1.5", 0.0), ("lambda=1.0", 0.05)):
                write_run(runs, f"{dataset}-{variant}-s{seed}", group="ablation-lambda", variant=variant,
                          dataset=dataset, seed=seed, selection=selection(acc + shift, last=acc - shift))
            for group, variant in (("main", "faithful"), ("baseline-kmeans", "kmeans")):
                write_run(runs, f"{dataset}-{variant}-s{seed}", group=group, variant=variant, dataset=dataset,
                          seed=seed, selection=selection(acc - 0.1 * (group != "main")))
    drawn = []
    for hash_seed in ("1", "2"):
        out = book / f"generated-{hash_seed}"
        code = ("import sys; from pathlib import Path; from iicrepro.report import figures, frame, load; "
                "b, out = Path(sys.argv[1]), Path(sys.argv[2]); runs = frame.load_frame(b / 'book' / 'runs'); "
                "ref = load.read_reference(b / 'book' / 'reference_numbers.yaml'); "
                "figures.ablation_points(runs, 'ablation-lambda', ref, out / 'figures' / 'ablation-lambda.png'); "
                "figures.versus_baselines(runs, ref, out / 'figures' / 'versus_baselines.png')")
        subprocess.run([sys.executable, "-c", code, str(book), str(out)], check=True, cwd=REPO,
                       env={**__import__("os").environ, "PYTHONHASHSEED": hash_seed})
        drawn.append({p.name: p.read_bytes() for p in (out / "figures").glob("*.png")})
    assert {"ablation-lambda.png", "versus_baselines.png"} <= set(drawn[0])
    assert drawn[0] == drawn[1]


def test_manifest_entry_matches_group_variant_and_dataset_through_aliases():
    """One lookup serves both the empty cells' commands and the paper-scale list (no twin of the walk)."""
    manifest = [
        {"name": "a-faithful", "study_group": "main", "variant": "faithful", "params": {"preset": "a"}},
        {"name": "a-improved", "study_group": "main", "variant": "improved", "params": {"preset": "a"}},
        {"name": "a-ref", "study_group": "lambda", "variant": 2.0, "alias_of": "a-faithful"},
    ]
    assert load.manifest_entry(manifest, group="main", variant="improved", dataset="a")["name"] == "a-improved"
    assert load.manifest_entry(manifest, group="main", variant=None, dataset="a")["name"] == "a-faithful"
    assert load.manifest_entry(manifest, group="lambda", variant="2.0", dataset="a")["name"] == "a-ref"
    assert load.manifest_entry(manifest, group="main", variant="faithful", dataset="b") is None
    assert load.manifest_entry(manifest, group="lambda", variant="1.0", dataset="a") is None
