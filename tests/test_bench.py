"""Tests of iicrepro.bench: the --tiny run on the CPU writes every documented field, and the loss
implementations agree (to 1e-5) in the same run. No timing assertions (CI machines vary)."""

import json

import pytest

from iicrepro import bench
from iicrepro.bench.common import allocator


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    code = bench.main(["--tiny", "--device", "cpu", "--presets", "potsdam3,camvid3", "--heads", "A",
                       "--checkpointing", "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def test_header_fields(tiny_result):
    assert tiny_result["schema_version"] == bench.SCHEMA_VERSION
    assert tiny_result["data"] == "synthetic"
    for key in ("device", "device_name", "torch", "git_revision", "date"):
        assert tiny_result["env"][key]
    assert tiny_result["env"]["device"] == "cpu"
    assert tiny_result["env"]["allocator"]["name"] in ("libc malloc", "jemalloc", "tcmalloc")
    assert tiny_result["reference"]["cocostuff3_single_head_epoch_min"] == 30
    assert tiny_result["reductions"]  # tiny sizes are said to be reductions
    assert tiny_result["matmul_peak"]["float32"]["tflops"] > 0


def test_step_split_and_checkpointing(tiny_result):
    potsdam = tiny_result["presets"]["potsdam3"]
    assert potsdam["paper_batch_size"] == 75 and potsdam["epoch_pairs"] == 8550
    run = potsdam["steps"]["A"]
    assert set(run["split_ms"]) == set(bench.PHASES)
    assert run["step_ms"] == pytest.approx(sum(run["split_ms"].values()))
    for key in ("pairs_per_s", "epoch_s", "achieved_tflops", "matmul_peak_fraction", "peak_mem_mb"):
        assert run[key] > 0
    assert "speed_cost" in potsdam["checkpointing"]["A"]
    assert potsdam["eval"]["images_per_s"] > 0
    assert tiny_result["presets"]["camvid3"]["epoch_pairs"] is None  # not looked up with --tiny


def test_loss_sweep_and_agreement(tiny_result):
    loss = tiny_result["loss"]
    assert len(loss["impls"]) >= 2
    keys = {(r["k"], r["d"], r["impl"]) for r in loss["records"]}
    assert keys == {(k, d, i) for k in bench.LOSS_KS for d in bench.LOSS_DS for i in loss["impls"]}
    assert loss["agreement"] and loss["all_agree"], loss["agreement"]
    assert {a["impl"] for a in loss["auto"]} <= set(loss["impls"])
    share = tiny_result["loss_share"]
    assert (share["k"], share["d"]) == (45, 10) and 0 < share["fwd_bwd_share"]


def test_targets_not_judged_on_cpu(tiny_result):
    items = {item["name"]: item for item in tiny_result["targets"]["items"]}
    assert {"potsdam3_epoch_s", "cocostuff3_epoch_s", "loss_share", "matmul_peak_fraction",
            "memory_potsdam3_gib"} <= set(items)
    assert all(item["status"].startswith("not applicable") for item in items.values())


def test_targets_judged_when_applicable():
    presets = {"potsdam3": {"steps": {"A": {"epoch_s": 25.0, "peak_mem_mb": 20 * 1024,
                                            "matmul_peak_fraction": 0.5}},
                            "checkpointing": {"A": {"epoch_s": 40.0, "peak_mem_mb": 8 * 1024,
                                                    "matmul_peak_fraction": 0.3}}}}
    items = {i["name"]: i for i in bench.targets({"presets": presets, "loss_share": {"fwd_bwd_share": 0.2}},
                                                 applicable=True, reason="")}
    assert items["potsdam3_epoch_s"]["status"] == "pass"
    assert items["loss_share"]["status"] == "fail"
    assert items["memory_potsdam3_gib"]["status"] == "pass"  # with checkpointing: 8 GiB
    assert items["cocostuff3_epoch_s"]["status"] == "not measured"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown preset"):
        bench.main(["--tiny", "--presets", "nosuchset"])
    with pytest.raises(ValueError, match="--heads"):
        bench.main(["--tiny", "--heads", "C"])


@pytest.fixture(scope="module")
def tiny_table4(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table4")
    out, choice = folder / "t4.json", folder / "choice.json"
    assert bench.main(["--loss-table4", "--tiny", "--device", "cpu", "--out", str(out),
                       "--write-loss-choice", str(choice)]) == 0
    return json.loads(out.read_text()), choice


def test_loss_table4_records_every_head(tiny_table4):
    result, choice = tiny_table4
    table4 = result["loss_table4"]
    assert [(r["k"], r["d"]) for r in table4["cases"]] == [(k, d) for k, _, d in bench.TABLE4_CASES]
    for record in table4["cases"]:
        assert set(record["fwd_bwd_ms"]) == {"conv", "fft", "fftmm", "auto"}
        assert record["auto_impl"] in ("conv", "shift", "fft", "fftmm")
        assert record["speedup"]["fftmm"] == pytest.approx(record["fwd_bwd_ms"]["conv"] / record["fwd_bwd_ms"]["fftmm"])
        assert record["agreement_float64"]["fftmm"]["ok"], record["agreement_float64"]
    assert table4["all_agree"]
    assert result["reductions"]  # tiny sizes: no verdict, and the choice table is left alone
    assert all(i["status"].startswith("not applicable") for i in result["targets"]["items"])
    assert not choice.exists()


def test_write_loss_choice_replaces_the_same_shape(tmp_path):
    table = {"entries": [{"device": "cpu", "k": 3, "d": 5, "batch": 16, "height": 200, "width": 200,
                          "fastest": "conv", "fwd_bwd_ms": {"conv": 1.0}}]}
    bench.set_choice(table, device="cpu", k=3, d=5, batch=16, size=200, times={"conv": 9.0, "fftmm": 2.0})
    bench.set_choice(table, device="cpu", k=6, d=5, batch=16, size=200, times={"conv": 9.0, "fft": 1.0})
    assert [(e["k"], e["fastest"]) for e in table["entries"]] == [(3, "fftmm"), (6, "fft")]
    bench.write_loss_choice(table, tmp_path / "choice.json", source="test")
    from iicrepro.loss import choose_impl

    written = json.loads((tmp_path / "choice.json").read_text())
    assert choose_impl("cpu", 3, 5, 16, 200, 200, table=written) == "fftmm"
    assert choose_impl("cpu", 6, 5, 16, 200, 200, table=written) == "fft"


def test_precision_bench_tiny(tmp_path):
    """`--precision --tiny`: float32 vs channels_last vs bf16 steps, ratios to float32, targets named."""
    from iicrepro import bench

    out = tmp_path / "precision.json"
    assert bench.main(["--precision", "--tiny", "--device", "cpu", "--presets", "camvid3", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    cases = data["precision"]["cases"]
    assert [c["variant"] for c in cases] == ["float32", "float32+cl", "bf16+cl"]
    assert cases[0]["speedup_vs_float32"] == 1.0 and all(c["step_ms"] > 0 for c in cases)
    assert set(cases[0]["split_ms"]) == {"views", "forward", "loss", "backward", "optimiser"}
    assert "cpu_bf16_units" in data["precision"]


def test_precision_choices_select_variants_and_crops():
    """`--variants` and `--crops` pick the cases; an unknown variant is an error that names the option."""
    from iicrepro.bench.precision import precision_choices, preset_crops

    chosen = precision_choices(variants="float32, float32+cl", crops="cpu")
    assert chosen["variants"] == ("float32", "float32+cl")
    assert chosen["crops_for"]("camvid3") == [(64, 5)] == preset_crops("camvid3")[:1]
    assert precision_choices(variants="all", crops="preset")["crops_for"]("dubai3") == [(200, 10)]
    assert len(precision_choices(variants="all", crops="both")["variants"]) == 4
    assert precision_choices(variants="float32+cl,float32+cl", crops="cpu")["variants"] == ("float32", "float32+cl")
    with pytest.raises(ValueError, match="--variants.*fp16"):
        precision_choices(variants="float32,fp16", crops="both")
    with pytest.raises(ValueError, match="--crops"):
        precision_choices(variants="all", crops="half")


def test_precision_bench_writes_only_the_chosen_cases(tmp_path, monkeypatch):
    """The CLI passes --variants / --crops through: one crop (the CPU scale's), two variants, ratios to float32."""
    from iicrepro import bench
    from iicrepro.bench import precision

    monkeypatch.setattr(precision, "preset_crops", lambda preset: [(16, 2), (24, 3)])
    out = tmp_path / "precision.json"
    assert bench.main(["--precision", "--device", "cpu", "--presets", "camvid3", "--variants", "float32,float32+cl",
                       "--crops", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0", "--peak-n", "64",
                       "--threads", "1", "--out", str(out)]) == 0
    cases = json.loads(out.read_text())["precision"]["cases"]
    assert [(c["variant"], c["input_size"]) for c in cases] == [("float32", 16), ("float32+cl", 16)]
    assert cases[0]["speedup_vs_float32"] == 1.0 and cases[1]["speedup_vs_float32"] > 0


def fake_case(*, preset, head, batch, checkpointing):
    """A measured case without a process: 1000 MB plus 100 MB per pair (50 checkpointed), head A 10% more."""
    per_pair = (50 if checkpointing else 100) * (1.1 if head == "A" else 1.0)
    return {"preset": preset, "head": head, "k": 15 if head == "A" else 3, "batch": batch, "input_size": 128,
            "checkpointing": checkpointing, "rss_peak_mb": 1000 + per_pair * batch}


def test_memory_bench_extrapolates_to_the_preset_batch(monkeypatch):
    """Two batches -> MB per pair -> the peak at the preset's batch, and whether it fits this machine."""
    from iicrepro.bench import memory

    monkeypatch.setattr(memory, "machine_memory_mb", lambda: 10_000.0)
    table = memory.bench_memory(presets=["camvid3"], batches=(8, 4), jobs=3, runner=fake_case,
                                progress=lambda *a, **k: None)
    assert [c["batch"] for c in table["cases"]] == [4, 8] * 4  # sorted, per (checkpointing, head)
    plain_a = next(e for e in table["estimates"] if e["head"] == "A" and not e["checkpointing"])
    assert plain_a["batch"] == 120 and plain_a["per_pair_mb"] == pytest.approx(110)
    assert plain_a["estimated_peak_mb"] == pytest.approx(1000 + 110 * 120) and not plain_a["fits"]
    items = {i["name"]: i for i in memory.memory_targets(table)}
    assert items["memory_camvid3_plain"]["status"] == "fail" and "head A" in items["memory_camvid3_plain"]["what"]
    assert items["memory_camvid3_checkpointed"]["measured"] == round(1000 + 55 * 120)  # 7600 < 10000
    assert items["memory_camvid3_checkpointed"]["status"] == "pass"
    with pytest.raises(ValueError, match="two different batch sizes"):
        memory.bench_memory(presets=["camvid3"], batches=(4, 4), runner=fake_case)
    with pytest.raises(ValueError, match="two different batch sizes"):
        memory.bench_memory(presets=["camvid3"], batches=(4, 8, 8), runner=fake_case)  # would pair wrong cases
    with pytest.raises(ValueError, match="--memory-jobs"):
        memory.bench_memory(presets=["camvid3"], jobs=0, runner=fake_case)


def test_memory_case_runs_in_its_own_process():
    """run_case: one real training step in a fresh interpreter, its maxrss above the one before the step."""
    from iicrepro.bench.memory import run_case

    from iicrepro.bench.memory import high_water_mb

    ballast = bytearray(2048 * 2**20)  # this process's high-water mark is not the child's floor
    ballast[::4096] = b"x" * len(ballast[::4096])
    case = run_case(preset="camvid3", head="B", batch=1, checkpointing=True)
    assert high_water_mb() > 2048 > case["rss_before_mb"]  # a child with torch imported: ~0.3 GB on CPU builds
    del ballast
    assert case["input_size"] == 128 and case["checkpointing"] is True and case["k"] == 3
    assert case["rss_peak_mb"] > case["rss_before_mb"] > 0 and case["step_ms"] > 0


def test_memory_cli_writes_its_file(tmp_path, monkeypatch):
    """`--memory` writes cpu-memory JSON with estimates and a target per preset and checkpointing."""
    from iicrepro import bench
    from iicrepro.bench import memory

    monkeypatch.setattr(memory, "run_case", fake_case)
    out = tmp_path / "memory.json"
    assert bench.main(["--memory", "--presets", "dubai3", "--memory-batches", "2,6", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {e["batch"] for e in data["memory"]["estimates"]} == {75}  # Potsdam's batch
    assert [i["name"] for i in data["targets"]["items"]] == ["memory_dubai3_plain", "memory_dubai3_checkpointed"]
    with pytest.raises(ValueError, match="--memory-batches"):
        bench.main(["--memory", "--presets", "dubai3", "--memory-batches", "two,six", "--out", str(out)])
    with pytest.raises(SystemExit):  # one kind of measurement per call: each writes its own kind of file
        bench.main(["--memory", "--precision", "--out", str(out)])
    for ignored in (["--memory", "--tiny"], ["--memory", "--heads", "B"], ["--memory-jobs", "2"],
                    ["--crops", "cpu"], ["--variants=float32"]):  # would be silently ignored
        with pytest.raises(SystemExit):
            bench.main([*ignored, "--out", str(out)])


def test_memory_keeps_the_cases_measured_when_one_fails():
    """A case whose process fails (say, killed for memory) is recorded under "failed"; its pair has no estimate,
    every other pair still has one."""
    from iicrepro.bench import memory

    def runner(**case):
        if case["checkpointing"] is False and case["batch"] == 8 and case["head"] == "A":
            raise RuntimeError("bench --memory: case failed (exit -9)")
        return fake_case(**case)

    table = memory.bench_memory(presets=["camvid3"], runner=runner, progress=lambda *a, **k: None)
    assert [(e["head"], e["checkpointing"]) for e in table["estimates"]] == [("B", False), ("A", True),
                                                                            ("B", True)]
    assert len(table["failed"]) == 1 and "exit -9" in table["failed"][0]["error"] and len(table["cases"]) == 7


@pytest.mark.parametrize("argv, kind", [([], "step"), (["--tiny"], "step"), (["--memory"], "memory"),
                                        (["--precision"], "precision"), (["--loss-table4"], "loss-table4")])
def test_measurement_kind_names_what_a_call_measures(argv, kind):
    """One value decides both what `run` measures and the default file's suffix (cpu-memory-<date>.json)."""
    from iicrepro.bench.cli import _parser, measurement_kind
    assert measurement_kind(_parser().parse_args(argv)) == kind


def test_allocator_read_from_the_process_maps(monkeypatch):
    jemalloc = "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
    libc = "7f20-7f30 r-xp 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    assert allocator(jemalloc + libc) == {"name": "jemalloc", "malloc_conf": "dirty_decay_ms:-1"}
    monkeypatch.delenv("MALLOC_CONF")
    assert allocator(libc) == {"name": "libc malloc", "malloc_conf": None}
    assert allocator("") == {"name": "libc malloc", "malloc_conf": None}
