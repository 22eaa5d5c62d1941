"""The study manifest (iicrepro.study) and its runner (iicrepro.runner), on tiny notebooks that need no torch."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from iicrepro import runner, study

REPO = Path(__file__).resolve().parents[1]

PARAMS = '''preset = "camvid3"  # preset
seed = 0  # seed
epochs = 1  # epochs
overrides = {}  # other RunConfig fields
fail = False  # raise in the work cell
metrics_path = None  # set by the runner
profile = "interactive"  # recorded'''

WORK = '''import json
from pathlib import Path
if fail:
    raise ValueError("deliberate failure")
value = 0.5 + 0.01 * seed
'''

SAVE = '''if metrics_path is not None:
    Path(metrics_path).write_text(json.dumps({"selection": {"paper": {"acc": value, "epoch": epochs}},
                                               "device": "cpu", "torch": "n/a"}))'''


def write_notebook(path: Path, params: str = PARAMS, cells=(WORK, SAVE)) -> None:
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    book = new_notebook(cells=[new_markdown_cell("# toy"), cell, *[new_code_cell(c) for c in cells]],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, path)


def write_manifest(root: Path, runs: list[dict], profiles: dict | None = None, **top) -> Path:
    import yaml

    data = {"seeds": [0, 1, 2], "notebooks": {"toy": "nb/toy.ipynb"},
            "profiles": profiles or {"full": {"out": "out/full"},
                                     "smoke": {"out": "out/smoke", "seeds": [0], "params": {"epochs": 2}}},
            "runs": runs, **top}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_notebook(tmp_path / "nb" / "toy.ipynb")
    (tmp_path / "iicrepro").mkdir()
    (tmp_path / "iicrepro" / "code.py").write_text("x = 1\n")
    return tmp_path


def entry(name="toy", **extra) -> dict:
    return {"name": name, "notebook": "toy", "study_group": "main", "variant": "faithful",
            "params": {"preset": "camvid3"}, **extra}


# ---------------------------------------------------------------- manifest
def test_seeds_expand_into_named_runs(root):
    loaded = study.load_study(write_manifest(root, [entry()]))
    assert [r.name for r in loaded.runs] == ["toy-s0", "toy-s1", "toy-s2"]
    assert [r.params["seed"] for r in loaded.runs] == [0, 1, 2]
    assert loaded.runs[0].study_group == "main" and loaded.runs[0].variant == "faithful"
    assert loaded.out == root / "out" / "full"


def test_smoke_profile_overrides_params_and_seeds(root):
    loaded = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 30})]),
                              profile="smoke")
    assert [r.name for r in loaded.runs] == ["toy-s0"]
    assert loaded.runs[0].params["epochs"] == 2  # the profile wins over the run
    assert loaded.runs[0].params["profile"] == "smoke"
    assert loaded.out == root / "out" / "smoke"


def test_config_fields_the_notebook_does_not_declare_go_into_overrides(root):
    loaded = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "lambda_b": 1.0})]))
    assert loaded.runs[0].params["overrides"] == {"lambda_b": 1.0}
    assert "lambda_b" not in loaded.runs[0].params


def test_unknown_parameter_names_run_and_parameter(root):
    manifest = write_manifest(root, [entry(name="bad-run", params={"preset": "camvid3", "lamda_b": 1.0})])
    with pytest.raises(ValueError, match=r"bad-run.*lamda_b"):
        study.load_study(manifest)


def test_unknown_preset_is_an_error(root):
    with pytest.raises(ValueError, match=r"toy.*unknown preset 'nope'"):
        study.load_study(write_manifest(root, [entry(params={"preset": "nope"})]))


def test_bad_config_value_names_the_run(root):
    with pytest.raises(ValueError, match=r"toy.*mode='odd'"):
        study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "mode": "odd"})]))


def test_unquoted_yaml_off_is_caught(root):
    with pytest.raises(ValueError, match="variant must be a string"):
        study.load_study(write_manifest(root, [entry(variant=False)]))


def test_unknown_profile_and_profile_typo(root):
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        study.load_study(write_manifest(root, [entry()]), profile="tiny")
    manifest = write_manifest(root, [entry()], profiles={"full": {"params": {"epochz": 1}}})
    with pytest.raises(ValueError, match="epochz"):
        study.load_study(manifest)


def test_duplicates_aliases_and_reserved_names(root):
    with pytest.raises(ValueError, match="duplicate"):
        study.load_study(write_manifest(root, [entry(), entry()]))
    alias = {"name": "ref", "study_group": "g", "variant": "v", "alias_of": "missing"}
    with pytest.raises(ValueError, match="alias_of"):
        study.load_study(write_manifest(root, [entry(), alias]))
    with pytest.raises(ValueError, match="alias_of"):
        study.load_study(write_manifest(root, [entry(), {**alias, "alias_of": "toy", "params": {"seed": 1}}]))
    with pytest.raises(ValueError, match="set by the runner"):
        study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "metrics_path": "x"})]))


def test_select_by_glob(root):
    loaded = study.load_study(write_manifest(root, [entry(), entry(name="other")]))
    assert [r.name for r in study.select(loaded, ["other-*"])] == ["other-s0", "other-s1", "other-s2"]
    with pytest.raises(ValueError, match="no run"):
        study.select(loaded, ["zzz"])


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_the_study_manifest_loads(profile):
    loaded = study.load_study(REPO / "study.yaml", profile=profile)
    names = [r.name for r in loaded.runs]
    assert len(names) == len(set(names))
    groups = {r.study_group for r in loaded.runs}
    assert {"main", "baseline-kmeans", "baseline-random", "ablation-overcluster", "ablation-size",
            "ablation-lambda", "ablation-d"} <= groups
    for dataset in ("camvid3", "camvid11", "dubai3", "dubai5"):
        assert f"{dataset}-faithful-s0" in names and f"{dataset}-improved-s0" in names
    assert all(r.requires == "download" for r in loaded.runs if r.params.get("preset", "").startswith(("coco", "pots")))
    if profile == "full":
        assert {"camvid3-faithful-s1", "camvid3-faithful-s2"} <= set(names)
        assert loaded.out == REPO / "book" / "runs"
    else:
        assert all(r.params.get("device", r.params.get("overrides", {}).get("device")) == "cpu"
                   for r in loaded.runs if not r.alias_of)
        assert loaded.out != REPO / "book" / "runs"


# ---------------------------------------------------------------- runner
def run(loaded, names=None, **kwargs):
    return {r.name: (action, record) for r, action, record in
            runner.run_study(loaded, study.select(loaded, names), **kwargs)}


def test_run_writes_files_and_skips_when_unchanged(root):
    manifest = write_manifest(root, [entry()], seeds=[0])
    loaded = study.load_study(manifest)
    action, record = run(loaded)["toy-s0"]
    assert action == "ok"
    saved = json.loads((loaded.out / "toy-s0.json").read_text())
    assert saved["status"] == "ok" and saved["selection"]["paper"]["acc"] == 0.5
    assert saved["params"]["study_group"] == "main" and saved["params"]["dataset"] == "camvid3"
    assert saved["params"]["lambda_b"] == 1.5  # the resolved RunConfig is recorded
    assert saved["command"] == "iicrepro study run --only toy-s0 --profile full"
    assert {"code_revision", "fingerprint", "wall_time_s", "started", "device", "torch"} <= set(saved)
    assert (loaded.out / "toy-s0.ipynb").is_file()
    assert not list(loaded.out.glob(".*"))  # no temporary files left
    assert run(loaded)["toy-s0"][0] == "skipped"
    assert run(loaded, force=True)["toy-s0"][0] == "ok"
    (root / "iicrepro" / "report").mkdir()
    (root / "iicrepro" / "report" / "pages.py").write_text("x = 2\n")  # the book's report package: still current
    (root / "iicrepro" / "bench").mkdir()
    (root / "iicrepro" / "bench" / "cli.py").write_text("x = 2\n")  # the benchmark package: still current
    assert runner.statuses(loaded)[0][1] == "ok"
    (root / "iicrepro" / "code.py").write_text("x = 2\n")  # code changed: runs again
    assert runner.statuses(loaded)[0][1] == "ok (stale)"
    assert run(loaded)["toy-s0"][0] == "ok"


def test_changed_parameters_rerun(root):
    loaded = study.load_study(write_manifest(root, [entry()], seeds=[0]))
    run(loaded)
    changed = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 3})], seeds=[0]))
    action, record = run(changed)["toy-s0"]
    assert action == "ok" and record["selection"]["paper"]["epoch"] == 3


def test_failed_run_keeps_notebook_and_names_the_cell(root, capsys):
    loaded = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "fail": True})], seeds=[0]))
    action, record = run(loaded)["toy-s0"]
    assert action == "failed"
    saved = json.loads((loaded.out / "toy-s0.json").read_text())
    failure = saved["failure"]
    assert saved["status"] == "failed"
    assert failure["cell_index"] == 2  # markdown 0, parameters 1, the work cell 2 (injected cell not counted)
    assert failure["ename"] == "ValueError" and "deliberate failure" in failure["evalue"]
    assert "cell 2 of the template" in runner.describe_failure(failure)
    assert "cell 2 of the template" in capsys.readouterr().out
    partial = nbformat.read(loaded.out / "toy-s0.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in partial.cells for o in c.get("outputs", []))
    assert run(loaded)["toy-s0"][0] == "failed"  # a failed run is never skipped


def test_requires_download_and_alias(root):
    runs = [entry(name="main"), entry(name="paper", requires="download", commands=["iicrepro download potsdam"]),
            {"name": "ref", "study_group": "ablation-lambda", "variant": "lambda=1.5", "alias_of": "main"}]
    loaded = study.load_study(write_manifest(root, runs, seeds=[0]))
    results = run(loaded)
    assert results["paper-s0"][0] == "not run"
    stub = json.loads((loaded.out / "paper-s0.json").read_text())
    assert stub["status"] == "not run" and stub["commands"] == ["iicrepro download potsdam"]
    assert stub["command"].endswith("--with-downloads")
    assert results["ref-s0"][0] == "alias"
    ref = json.loads((loaded.out / "ref-s0.json").read_text())
    assert ref["alias_of"] == "main-s0" and ref["selection"]["paper"]["acc"] == 0.5
    assert ref["study_group"] == "ablation-lambda" and ref["params"]["variant"] == "lambda=1.5"


def test_write_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "x.json"
    runner.write_json(path, {"a": math.nan, "b": [math.inf, 1.0]})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_modules_left_out_of_the_fingerprint_are_not_used_by_runs():
    """NOT_IN_RUNS code is left out of the fingerprint; that is sound only while no run can import it: no
    notebook and no library module outside the report package imports iicrepro.report; only the CLI the bench."""
    repo = Path(__file__).resolve().parents[1]
    assert runner.NOT_IN_RUNS == {"iicrepro/report/", "iicrepro/bench/"}
    assert runner.left_out("iicrepro/report/pages.py") and runner.left_out("iicrepro/bench/step.py")
    assert not runner.left_out("iicrepro/reporting.py") and not runner.left_out("iicrepro/figures.py")
    assert not runner.left_out("iicrepro/bench.py") and not runner.left_out("iicrepro/benchmarks.py")
    patterns = {"report": (r"(?:from|import) iicrepro\.report\b|from iicrepro import[^\n]*\breport\b"
                           r"|from \.\s*import[^\n]*\breport\b", set()),
                "bench": (r"import bench\b|\bbench import|,\s*bench\b|iicrepro\.bench\b", {"iicrepro/cli.py"}),
                "bench_precision": (r"bench_precision", set())}
    for path in sorted((repo / "notebooks").glob("*.ipynb")) + sorted((repo / "iicrepro").rglob("*.py")):
        rel = path.relative_to(repo).as_posix()
        if runner.left_out(rel) or rel == "iicrepro/runner.py":  # the left-out code itself; the runner names it
            continue
        text = path.read_text()
        for name, (pattern, allowed) in patterns.items():
            assert rel in allowed or not re.search(pattern, text), \
                f"{rel} uses {name}, which the run fingerprint leaves out"


def test_a_run_that_computes_what_an_earlier_one_computes_becomes_its_alias(root):
    runs = [entry(name="main", params={"preset": "camvid3", "epochs": 3}),
            entry(name="same", params={"preset": "camvid3", "epochs": 3, "data_fraction": 1.0}),  # the default
            entry(name="other", params={"preset": "camvid3", "epochs": 3, "data_fraction": 0.5}),
            entry(name="later", params={"preset": "camvid3", "epochs": 4})]
    profiles = {"full": {"out": "out/full"}, "short": {"out": "out/short", "params": {"epochs": 3}}}
    full = {r.name: r for r in study.load_study(write_manifest(root, runs, profiles), profile="full").runs}
    assert full["same-s1"].alias_of == "main-s1" and full["same-s1"].variant == "faithful"
    assert not any(full[f"{n}-s1"].alias_of for n in ("main", "other", "later"))
    short = {r.name: r for r in study.load_study(root / "study.yaml", profile="short").runs}
    assert short["later-s2"].alias_of == "main-s2"  # the profile's epochs make it the same run
    assert short["other-s2"].alias_of is None
    results = run(study.load_study(root / "study.yaml", profile="short"), ["main-s0", "same-s0"])
    assert results["same-s0"][0] == "alias"
    other_notebook = [entry(name="main"), entry(name="nb2", notebook="nb/toy2.ipynb"),
                      entry(name="dl", requires="download", commands=["x"])]
    write_notebook(root / "nb" / "toy2.ipynb")
    kept = {r.name: r for r in study.load_study(write_manifest(root, other_notebook, profiles), profile="full").runs}
    assert kept["nb2-s0"].alias_of is None and kept["dl-s0"].alias_of is None  # another notebook; a download


def test_cpu_scale_size_100_runs_are_the_main_runs():
    cpu = {r.name: r for r in study.load_study(REPO / "study.yaml", profile="cpu").runs}
    assert cpu["camvid3-size-100-s0"].alias_of == "camvid3-faithful-s0"
    assert cpu["dubai3-size-100-s2"].alias_of == "dubai3-faithful-s2"
    assert cpu["camvid3-size-50-s0"].alias_of is None and cpu["camvid3-precision-fp32-s0"].alias_of is None
    full = {r.name: r for r in study.load_study(REPO / "study.yaml", profile="full").runs}
    assert full["camvid3-size-100-s0"].alias_of is None  # batch 32 there, the preset's 120 in the main run


def test_profile_scale_halves_crop_prescale_and_d_and_scales_epochs():
    from iicrepro.study import scaled

    profile = {"scale": 0.5, "epoch_factor": 0.2}
    assert scaled({"preset": "camvid3", "epochs": 60}, profile) == {
        "input_size": 64, "prescale": 0.25, "half_side": 5, "epochs": 12}
    assert scaled({"preset": "dubai5", "half_side": None}, profile)["half_side"] == 3  # 5 -> 3 (half up)
    assert scaled({"preset": "dubai3", "half_side": 0, "epochs": 600}, profile) == {
        "input_size": 100, "prescale": 0.25, "half_side": 0, "epochs": 120}
    assert scaled({"preset": "camvid3"}, {}) == {}


def test_cpu_profile_of_the_manifest():
    loaded = study.load_study(REPO / "study.yaml", profile="cpu")
    run = next(r for r in loaded.runs if r.name == "camvid3-faithful-s0")
    flat = {**run.params, **run.params.get("overrides", {})}
    assert (flat["input_size"], flat["prescale"], flat["half_side"], flat["bf16"]) == (64, 0.25, 5, "auto")
    assert loaded.out.name == "cpu" and loaded.out.parent.name == "runs"


def test_paper_cpu_profile_of_the_manifest():
    """Profile paper-cpu (issue 15 d): the presets' own crops, pre-scales, d and batches, seed 0, 60 epochs
    for CamVid-3 (its full-profile count) and Dubai-3 (half its full-profile 120; book: Method)."""
    runs = {r.name: r for r in study.load_study(REPO / "study.yaml", profile="paper-cpu").runs}
    full = {r.name: r for r in study.load_study(REPO / "study.yaml", profile="full").runs}
    assert "camvid3-faithful-s1" not in runs
    assert (full["camvid3-faithful-s0"].params["epochs"], full["dubai3-faithful-s0"].params["epochs"]) == (60, 120)
    for name, batch in (("camvid3-faithful-s0", 120), ("dubai3-faithful-s0", 75)):
        flat = {**runs[name].params, **runs[name].params.get("overrides", {})}
        config = study.resolved_config(runs[name].params)
        assert (flat["epochs"], flat["checkpointing"], flat["device"]) == (60, True, "cpu")
        assert not {"input_size", "prescale", "half_side"} & set(flat)  # the preset's own scale
        assert config.batch_size == batch
        assert config == dataclasses.replace(study.resolved_config(full[name].params), epochs=60,  # all else full's
                                             checkpointing=True, device="cpu", bf16="auto", channels_last=True)


RESUMABLE_PARAMS = PARAMS + '''
out_dir = None  # checkpoint folder (set by the runner)
resume = False  # continue from out_dir (set by the runner)'''

RESUMABLE_WORK = '''import json, os
from pathlib import Path
state = Path(out_dir) / "state.json"
start = json.loads(state.read_text())["epoch"] if resume and state.is_file() else 0
value = json.loads(state.read_text())["value"] if start else 0.0
for epoch in range(start + 1, epochs + 1):
    if os.environ.get("TOY_STOP_AT") == str(epoch):
        raise KeyboardInterrupt(f"stopped in epoch {epoch}")  # as a killed job: the last checkpoint stays
    value += 0.1 * epoch + 0.01 * seed
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"epoch": epoch, "value": value}))
    (Path(out_dir) / "history.json").write_text(json.dumps({"epochs": [{"epoch": e} for e in range(1, epoch + 1)]}))
'''

RESUMABLE_SAVE = '''Path(metrics_path).write_text(json.dumps({"selection": {"paper": {"acc": value, "epoch": epochs}},
                                           "resumed_from": start}))'''


def test_interrupted_run_resumes_from_its_checkpoint_and_equals_an_uninterrupted_one(root, monkeypatch):
    """issue 15 item 3: `study run` again with the same parameters and code continues from the last epoch."""
    write_notebook(root / "nb" / "toy.ipynb", params=RESUMABLE_PARAMS, cells=(RESUMABLE_WORK, RESUMABLE_SAVE))
    manifest = write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 4})])
    loaded = study.load_study(manifest)
    run = loaded.runs[:1]
    monkeypatch.setenv("TOY_STOP_AT", "3")
    [(_, action, record)] = runner.run_study(loaded, run, checkpoints=root / "ckpt")
    assert action == "failed"
    folder = root / "ckpt" / f"toy-s0-{record['checkpoint_key']}"
    assert json.loads((folder / "state.json").read_text())["epoch"] == 2
    monkeypatch.delenv("TOY_STOP_AT")
    [(_, action, resumed)] = runner.run_study(loaded, run, checkpoints=root / "ckpt")
    assert action == "ok" and resumed["resumed_from"] == 2
    [(_, _, fresh)] = runner.run_study(loaded, run, checkpoints=root / "fresh", force=True)
    assert fresh["resumed_from"] == 0
    assert resumed["selection"]["paper"]["acc"] == pytest.approx(fresh["selection"]["paper"]["acc"])
    (root / "iicrepro" / "code.py").write_text("x = 2\n")  # other code: another folder, no resume
    [(_, _, changed)] = runner.run_study(study.load_study(manifest), run, checkpoints=root / "ckpt", force=True)
    assert changed["fingerprint"] != record["fingerprint"] and changed["resumed_from"] == 0


def test_a_run_given_more_epochs_continues_from_its_last_checkpoint(root):
    write_notebook(root / "nb" / "toy.ipynb", params=RESUMABLE_PARAMS, cells=(RESUMABLE_WORK, RESUMABLE_SAVE))
    short = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 2})], seeds=[0]))
    [(_, action, first)] = runner.run_study(short, short.runs, checkpoints=root / "ckpt")
    assert action == "ok" and first["resumed_from"] == 0
    longer = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 4})], seeds=[0]))
    [(_, action, extended)] = runner.run_study(longer, longer.runs, checkpoints=root / "ckpt")
    assert action == "ok" and extended["resumed_from"] == 2  # epochs 3 and 4 only
    assert extended["fingerprint"] != first["fingerprint"] and extended["checkpoint_key"] == first["checkpoint_key"]
    [(_, _, fresh)] = runner.run_study(longer, longer.runs, checkpoints=root / "fresh", force=True)
    assert fresh["resumed_from"] == 0
    assert extended["selection"]["paper"]["acc"] == pytest.approx(fresh["selection"]["paper"]["acc"])
    [(_, action, shorter)] = runner.run_study(short, short.runs, checkpoints=root / "ckpt")  # 2 again: own folder
    assert action == "ok" and shorter["resumed_from"] == 0
    assert shorter["selection"]["paper"]["acc"] == pytest.approx(first["selection"]["paper"]["acc"])
    assert (root / "ckpt" / f"toy-s0-{shorter['fingerprint']}").is_dir()


def test_a_run_stopped_early_and_given_fewer_epochs_still_continues(root, monkeypatch):
    """Lowering a run's epochs (as paper-cpu did, 120 -> 60) above what its checkpoint holds keeps the folder:
    the run continues from its last epoch and stops at the new length (that the result equals an uninterrupted
    run's is test_train's test_extended_run_... and test_resume_equals_uninterrupted, on the real network)."""
    write_notebook(root / "nb" / "toy.ipynb", params=RESUMABLE_PARAMS, cells=(RESUMABLE_WORK, RESUMABLE_SAVE))
    planned = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 6})], seeds=[0]))
    monkeypatch.setenv("TOY_STOP_AT", "3")
    [(_, action, stopped)] = runner.run_study(planned, planned.runs, checkpoints=root / "ckpt")
    assert action == "failed"
    monkeypatch.delenv("TOY_STOP_AT")
    fewer = study.load_study(write_manifest(root, [entry(params={"preset": "camvid3", "epochs": 4})], seeds=[0]))
    [(_, action, done)] = runner.run_study(fewer, fewer.runs, checkpoints=root / "ckpt")
    assert action == "ok" and done["resumed_from"] == 2 and done["checkpoint_key"] == stopped["checkpoint_key"]
    assert done["params"]["epochs"] == 4 and done["selection"]["paper"]["epoch"] == 4


def test_profile_defaults_fill_only_what_a_run_leaves_unset(root):
    profiles = {"cpu": {"out": "out/cpu", "seeds": [0], "defaults": {"bf16": "auto"}, "params": {"epochs": 3}}}
    runs = [entry(name="plain"), entry(name="asks", params={"preset": "camvid3", "bf16": True})]
    loaded = study.load_study(write_manifest(root, runs, profiles=profiles), profile="cpu")
    flat = {r.name: {**r.params, **r.params.get("overrides", {})} for r in loaded.runs}
    assert flat["plain-s0"]["bf16"] == "auto" and flat["asks-s0"]["bf16"] is True
    assert flat["plain-s0"]["epochs"] == 3 == flat["asks-s0"]["epochs"]
