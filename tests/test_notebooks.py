"""The real notebooks, end to end, through the study's smoke profile (issue 3 item 10).

One run per notebook template of study.yaml (train, baseline k-means and random network, datasets) is
executed by papermill on CPU into a temporary folder: a few real CamVid / Dubai frames when ../shared/data
or a prepared cache is there, generated images otherwise. Then the summary notebook gathers those run files
and the book's report reads them. About a minute on two CPU cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from iicrepro import cli
from iicrepro.report.frame import load_frame

REPO = Path(__file__).resolve().parents[1]
RUNS = ("camvid3-faithful-s0", "camvid3-kmeans-s0", "dubai3-random-s0", "dubai3-data-s0",
        "camvid3-overcluster-on-s0")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs-smoke")
    args = ["study", "run", "--manifest", str(REPO / "study.yaml"), "--profile", "smoke", "--out", str(out)]
    for name in RUNS:
        args += ["--only", name]
    assert cli.main(args) == 0
    return out


def load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_every_notebook_runs_in_the_smoke_profile(smoke_runs):
    for name in RUNS:
        data = load(smoke_runs, name)
        assert data["status"] == "ok", (name, data.get("failure"))
        assert data["profile"] == "smoke"
        if data.get("alias_of"):
            assert data["alias_of"] == "camvid3-faithful-s0"
        else:
            assert (smoke_runs / f"{name}.ipynb").is_file()
            assert {"code_revision", "device", "wall_time_s", "params"} <= set(data)
            assert data["device"] == "cpu"


def test_figures_are_embedded_as_jpeg(smoke_runs):
    """Run notebooks are committed and travel to GPU machines: photos go in as JPEG, never as PNG."""
    for name in ("camvid3-faithful-s0", "camvid3-kmeans-s0", "dubai3-data-s0"):
        notebook = json.loads((smoke_runs / f"{name}.ipynb").read_text())
        kinds = {kind for cell in notebook["cells"] for output in cell.get("outputs", [])
                 for kind in output.get("data", {}) if kind.startswith("image/")}
        assert kinds == {"image/jpeg"}, (name, kinds)


def test_training_run_records_both_protocols_and_a_history(smoke_runs):
    data = load(smoke_runs, "camvid3-faithful-s0")
    assert {"paper", "last"} <= set(data["selection"])
    assert 0.0 <= data["selection"]["paper"]["acc"] <= 1.0
    assert len(data["history"]["epochs"]) == 2  # the smoke profile's epochs


def test_baselines_and_dataset_summary(smoke_runs):
    for name in ("camvid3-kmeans-s0", "dubai3-random-s0"):
        assert 0.0 <= load(smoke_runs, name)["baseline"]["acc"] <= 1.0
    summary = load(smoke_runs, "dubai3-data-s0")["dataset_summary"]
    assert summary["dataset"] == "dubai3"
    assert abs(sum(summary["pixel_share"].values()) - 1.0) < 1e-9
    assert (smoke_runs / summary["sample_grid"]).is_file()


def test_summary_notebook_and_report_read_the_smoke_runs(smoke_runs, tmp_path):
    import papermill

    executed = tmp_path / "summary.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "summary.ipynb"), str(executed),
                               parameters={"runs_dir": str(smoke_runs)}, cwd=str(REPO), progress_bar=False)
    text = executed.read_text()
    assert "5 of 5 runs ok" in text
    frame = load_frame(smoke_runs)
    assert set(frame["run"]) == set(RUNS) and set(frame["status"]) == {"ok"}
    iic = frame[(frame["run"] == "camvid3-faithful-s0") & frame["selected"]]
    assert set(iic["rule"]) == {"paper", "last", "lowest_loss"} and iic["acc"].between(0, 1).all()
    assert set(frame[frame["run"] == "camvid3-faithful-s0"]["split"]) == {"paper_eval", "heldout"}
