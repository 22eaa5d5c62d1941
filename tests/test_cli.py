"""The command line (iicrepro.cli): parsing, type conversion of overrides, errors, dispatch."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from iicrepro import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, text, expected", [
    ("epochs", "7", 7), ("lr", "1e-5", 1e-5), ("sobel", "false", False), ("bf16", "Yes", True),
    ("mode", "clean", "clean"), ("max_images", "none", None), ("max_images", "12", 12),
    ("data_root", "data/x", "data/x"), ("jitter", "0.1, 0.2,0.3,0.05", (0.1, 0.2, 0.3, 0.05)),
])
def test_convert_uses_the_field_type(name, text, expected):
    assert cli.convert(name, text) == expected


@pytest.mark.parametrize("name, text, message", [
    ("epochs", "ten", "expected int"), ("sobel", "maybe", "true or false"),
    ("jitter", "0.1,0.2", "4 comma-separated"), ("nonsense", "1", "unknown parameter 'nonsense'"),
])
def test_convert_errors_name_the_field(name, text, message):
    with pytest.raises(ValueError, match=message):
        cli.convert(name, text)


def parse_train(*extra: str):
    return cli.parser().parse_args(["train", "--preset", "dubai3", "--out", "runs/x", *extra])


def test_train_flags_and_set_override_the_preset():
    args = parse_train("--epochs", "3", "--batch-size", "8", "--no-overcluster", "--set", "lambda_b=1.0",
                       "--set", "schedule=released", "--lr", "2e-5")
    config = cli.train_config(args)
    assert (config.dataset, config.epochs, config.batch_size, config.overcluster) == ("dubai3", 3, 8, False)
    assert (config.lambda_b, config.schedule, config.lr) == (1.0, "released", 2e-5)
    assert config.half_side == 10  # untouched preset value


def test_set_wins_over_a_flag_and_bad_values_fail():
    assert cli.train_config(parse_train("--seed", "1", "--set", "seed=2")).seed == 2
    with pytest.raises(ValueError, match="NAME=VALUE"):
        cli.train_config(parse_train("--set", "seed"))
    with pytest.raises(ValueError, match="mode='odd'"):
        cli.train_config(parse_train("--set", "mode=odd"))


def test_parse_errors_exit(capsys):
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["train", "--preset", "mnist", "--out", "x"])
    with pytest.raises(SystemExit):
        parse_train("--batch-size", "many")
    assert "batch_size='many': expected int" in capsys.readouterr().err


def test_main_reports_errors_before_work(capsys, tmp_path):
    code = cli.main(["train", "--preset", "camvid3", "--out", str(tmp_path / "r"), "--set", "lamda_b=1"])
    assert code == 2 and "unknown parameter 'lamda_b'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    code = cli.main(["study", "list", "--manifest", str(tmp_path / "none.yaml")])
    assert code == 2 and "none.yaml not found" in capsys.readouterr().err


def test_study_list_prints_every_run(capsys):
    assert cli.main(["study", "list", "--manifest", str(REPO / "study.yaml"), "--only", "camvid3-faithful-*"]) == 0
    out = capsys.readouterr().out
    assert "camvid3-faithful-s0" in out and "camvid3-faithful-s2" in out and "(3 runs" in out


def test_download_and_prepare_call_the_data_functions(monkeypatch):
    calls = []
    fake = types.ModuleType("fake")
    fake.download = lambda **kw: calls.append(("download", kw))
    fake.prepare = lambda **kw: calls.append(("prepare", kw))
    monkeypatch.setitem(sys.modules, "iicrepro.data.download", fake)
    monkeypatch.setitem(sys.modules, "iicrepro.data.prepare", fake)
    assert cli.main(["download", "potsdam", "--root", "data"]) == 0
    assert cli.main(["prepare", "camvid3", "--src", "../shared/data", "--out", "data/cache"]) == 0
    assert calls == [("download", {"name": "potsdam", "root": Path("data")}),
                     ("prepare", {"name": "camvid3", "src": Path("../shared/data"), "out": Path("data/cache"),
                                      "prescale": None})]


def test_bench_passes_its_arguments_and_explains_a_missing_module(monkeypatch, capsys):
    seen = []
    monkeypatch.setitem(sys.modules, "iicrepro.bench", types.SimpleNamespace(main=lambda argv: seen.append(argv)))
    assert cli.main(["bench", "--tiny", "--device", "cpu"]) == 0 and seen == [["--tiny", "--device", "cpu"]]
    monkeypatch.setitem(sys.modules, "iicrepro.bench", None)  # import raises ModuleNotFoundError
    assert cli.main(["bench"]) == 2
    assert "not part of this checkout" in capsys.readouterr().err


def test_train_end_to_end_on_synthetic_images(tmp_path):
    out = tmp_path / "run"
    code = cli.main(["train", "--preset", "camvid3", "--epochs", "1", "--out", str(out), "--synthetic",
                     "--device", "cpu", "--input-size", "24", "--batch-size", "4", "--max-images", "4",
                     "--set", "eval_batch_size=8", "--no-progress", "--set", "k_a=4"])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1]
    assert json.loads((out / "config.json").read_text())["input_size"] == 24
    assert (out / "checkpoint.pt").is_file()
