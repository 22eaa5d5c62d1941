"""fit(): schedules, history, determinism, resume, non-finite loss, bad input (CPU, tiny synthetic data)."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from iicrepro import train
from iicrepro.checkpoint import load_checkpoint
from iicrepro.config import make_config
from iicrepro.data.base import SegmentationSet
from iicrepro.history import History, select_epochs


def tiny_set(n: int = 8, size: int = 20, seed: int = 0, split: str = "train") -> SegmentationSet:
    """n RGB images (3, size, size) of three flat regions (classes 0..2) plus a band of ignored pixels."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, size, size, dtype=torch.uint8)
    labels[:, size // 3:] = 1
    labels[:, 2 * size // 3:] = 2
    labels[:, :, :4] = 255  # the centre crop (offset 2) keeps two of these columns
    colours = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=torch.float32)
    images = colours[labels.long().clamp(max=2)].permute(0, 3, 1, 2)  # (n, 3, size, size)
    images = (images + 30 * torch.randn(images.shape, generator=gen)).clamp(0, 255).to(torch.uint8)
    return SegmentationSet("camvid3", split, images, labels, ("sky", "plant", "ground"),
                           tuple(f"{split}{i}" for i in range(n)), mask_from_labels=True)


def tiny_config(**overrides):
    values = dict(input_size=16, batch_size=4, k_a=4, k_b=3, half_side=2, epochs=2, lr=1e-3, device="cpu",
                  eval_batch_size=8, seed=0)
    values.update(overrides)
    return make_config("camvid3", **values)


def tiny_fit(config, **kwargs):
    """fit() on tiny sets; one batch per head and epoch unless max_batches says otherwise (CPU time)."""
    arguments = dict(train_set=tiny_set(), eval_sets={"paper_eval": tiny_set(2, seed=1, split="paper_eval"),
                                                      "heldout": tiny_set(2, seed=2, split="heldout")},
                     progress=False, max_batches=1)
    arguments.update(kwargs)
    return train.fit(config, **arguments)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """An uninterrupted 2-epoch run (paper schedule: epoch 1 head A, epoch 2 head B) with checkpoints."""
    out = tmp_path_factory.mktemp("two")
    return tiny_fit(tiny_config(), out_dir=out), out


def test_loss_mask_by_family():
    labels = torch.tensor([[[0, 255], [2, 1]]])
    assert torch.equal(train.loss_mask(labels, "cocostuff"), labels != 255)
    assert torch.equal(train.loss_mask(labels, "camvid"), labels != 255)
    assert train.loss_mask(labels, "potsdam") is None and train.loss_mask(labels, "dubai") is None
    assert train.loss_mask(labels, "camvid", from_labels=False) is None
    with pytest.raises(ValueError, match="family"):
        train.loss_mask(labels, "mnist")


def test_heads_for_epoch():
    paper, released = tiny_config(), tiny_config(schedule="released")
    assert [train.heads_for_epoch(paper, e) for e in (1, 2, 3)] == [["A"], ["B"], ["A"]]
    assert train.heads_for_epoch(released, 1) == ["A", "B"]
    assert train.heads_for_epoch(tiny_config(overcluster=False), 1) == ["B"]


def test_history_records(two_epochs):
    history, _ = two_epochs
    first, second = history["epochs"]
    assert (first["epoch"], first["heads_trained"], second["heads_trained"]) == (1, ["A"], ["B"])
    assert first["loss_b"] is None and second["loss_a"] is None
    assert all(math.isfinite(v) for v in (first["loss_a"], first["loss_a_nolambda"], second["loss_b"]))
    for record in history["epochs"]:
        assert record["wall_s"] >= record["train_s"] > 0 and record["pairs_per_s"] > 0
        assert record["peak_mem_mb"] > 0
        assert set(record["eval"]) == {"paper_eval", "heldout"}
        b, a = record["eval"]["paper_eval"]["b"], record["eval"]["paper_eval"]["a"]
        assert (b["matching"], a["matching"]) == ("hungarian", "majority")
        assert 0 <= b["acc"] <= 1 and len(b["per_class_iou"]) == 3
        assert b["counted_pixels"] == 2 * 16 * 14  # centre crops, two ignored columns
    assert history["initial"]["epoch"] == 0 and "paper_eval" in history["initial"]["eval"]
    assert set(history["selection"]) == {"paper", "last", "lowest_loss"}
    assert history["selection"]["last"]["split"] == "heldout"
    assert history["selection"]["lowest_loss"]["epoch"] == 2  # the only epoch that trained head B
    json.dumps(history.to_dict(), allow_nan=False)


def test_released_schedule_and_single_head():
    released = tiny_fit(tiny_config(schedule="released", epochs=1))
    record = released["epochs"][0]
    assert record["heads_trained"] == ["A", "B"] and None not in (record["loss_a"], record["loss_b"])
    single = tiny_fit(tiny_config(overcluster=False, epochs=1))
    record = single["epochs"][0]
    assert record["heads_trained"] == ["B"] and record["loss_a"] is None
    assert record["eval"]["heldout"]["a"] is None


def test_eval_every_skips_epochs_and_leaves_training_unchanged():
    every = tiny_fit(tiny_config(epochs=3))
    sparse = tiny_fit(tiny_config(epochs=3, eval_every=2))
    assert [bool(r["eval"]) for r in sparse["epochs"]] == [False, True, True]  # epoch 2, and the last
    for a, b in zip(every["epochs"], sparse["epochs"]):
        assert (a["loss_a"], a["loss_b"]) == (b["loss_a"], b["loss_b"])  # evaluation draws no random numbers
    assert sparse["epochs"][1]["eval"] == every["epochs"][1]["eval"]
    assert sparse["selection"]["paper"]["epoch"] in (2, 3) and sparse["selection"]["last"]["epoch"] == 3
    with pytest.raises(ValueError, match="eval_every=0"):
        tiny_config(eval_every=0)


def test_seed_makes_cpu_runs_deterministic(two_epochs):
    history, _ = two_epochs
    again = tiny_fit(tiny_config(epochs=1))
    assert again["epochs"][0]["loss_a"] == history["epochs"][0]["loss_a"]
    assert again["epochs"][0]["eval"] == history["epochs"][0]["eval"]
    other = tiny_fit(tiny_config(seed=1, epochs=1))
    assert other["epochs"][0]["loss_a"] != history["epochs"][0]["loss_a"]


def test_resume_equals_uninterrupted(two_epochs, tmp_path):
    history, out = two_epochs
    tiny_fit(tiny_config(epochs=1), out_dir=tmp_path)  # the run "killed" after epoch 1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    resumed = tiny_fit(tiny_config(epochs=2), out_dir=tmp_path, resume=True)
    final, reference = load_checkpoint(tmp_path / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert final["epoch"] == 2
    for name, tensor in reference["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=0, atol=1e-6)
    for key in ("loss_a", "loss_a_nolambda", "loss_b", "loss_b_nolambda"):
        for ours, theirs in zip(resumed["epochs"], history["epochs"]):
            assert (ours[key] is None and theirs[key] is None) or abs(ours[key] - theirs[key]) <= 1e-6
    assert resumed["epochs"][1]["eval"]["heldout"]["b"]["acc"] == history["epochs"][1]["eval"]["heldout"]["b"]["acc"]
    done = tiny_fit(tiny_config(epochs=2), out_dir=tmp_path, resume=True)  # nothing left to train
    assert len(done["epochs"]) == 2


def test_extended_run_records_its_new_length_and_a_shorter_one_is_refused(two_epochs, tmp_path):
    tiny_fit(tiny_config(epochs=1), out_dir=tmp_path)
    extended = tiny_fit(tiny_config(epochs=2), out_dir=tmp_path, resume=True)
    assert extended["config"] == two_epochs[0]["config"] and len(extended["epochs"]) == 2
    assert [r["loss_b"] for r in extended["epochs"]] == [r["loss_b"] for r in two_epochs[0]["epochs"]]
    with pytest.raises(ValueError, match=r"holds epoch 2, past epochs=1"):
        tiny_fit(tiny_config(epochs=1), out_dir=tmp_path, resume=True)


def test_resume_refuses_other_parameters(two_epochs):
    _, out = two_epochs
    with pytest.raises(ValueError, match="lr"):
        tiny_fit(tiny_config(epochs=3, lr=5e-4), out_dir=out, resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        tiny_fit(tiny_config(), resume=True)


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, monkeypatch):
    tiny_fit(tiny_config(epochs=1), out_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    real, calls = train.seg_loss, [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        loss, no_lambda = real(*args, **kwargs)
        return (loss * math.nan, no_lambda) if calls[0] == 2 else (loss, no_lambda)

    monkeypatch.setattr(train, "seg_loss", poisoned)
    with pytest.raises(RuntimeError, match=r"epoch 2, head B, batch 2 of 2"):
        tiny_fit(tiny_config(epochs=2), out_dir=tmp_path, resume=True, max_batches=None)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "checkpoint.pt.tmp").exists()


def test_bad_input_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=9.*8 images"):
        tiny_fit(tiny_config(batch_size=9), out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="unknown parameter"):
        make_config("camvid3", bacth_size=4)
    with pytest.raises(ValueError, match="device='cuda'") if not torch.cuda.is_available() else _nothing():
        tiny_fit(tiny_config(device="cuda"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def test_progress_bars(capsys, monkeypatch):
    monkeypatch.setattr(train, "_interactive", lambda: False)  # a log file: one plain line per epoch
    tiny_fit(tiny_config(epochs=1), progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "\r" not in err
    monkeypatch.setattr(train, "_interactive", lambda: True)  # a terminal or a notebook: live bars
    tiny_fit(tiny_config(epochs=1), progress=True)
    assert "epochs" in capsys.readouterr().err
    tiny_fit(tiny_config(epochs=1), progress=False)
    assert capsys.readouterr().err == ""


def test_select_epochs_rules():
    def record(epoch, acc_paper, acc_heldout, loss_b):
        scores = lambda acc: {"b": {"acc": acc, "miou": acc / 2, "per_class_iou": [acc]}}
        return {"epoch": epoch, "loss_b": loss_b,
                "eval": {"paper_eval": scores(acc_paper), "heldout": scores(acc_heldout)}}

    history = History(epochs=[record(1, 0.5, 0.4, None), record(2, 0.7, 0.3, -1.0),
                              record(3, 0.6, 0.6, -1.2), record(4, float("nan"), 0.5, -1.1)])
    chosen = select_epochs(history)
    assert (chosen["paper"]["epoch"], chosen["paper"]["split"], chosen["paper"]["acc"]) == (2, "paper_eval", 0.7)
    assert (chosen["last"]["epoch"], chosen["last"]["split"], chosen["last"]["acc"]) == (4, "heldout", 0.5)
    assert chosen["lowest_loss"]["epoch"] == 3 and chosen["lowest_loss"]["paper_eval_acc"] == 0.6
    assert "labels choose" in chosen["paper"]["rule"] and "label-free" in chosen["last"]["rule"]
    for r in history["epochs"]:
        del r["eval"]["heldout"]
    assert select_epochs(history)["last"]["split"] == "paper_eval"
    assert select_epochs(History(epochs=[])) == {}
    history["epochs"][2]["eval"] = {}  # eval_every > 1: epoch 3, of the lowest loss, was not evaluated
    chosen = select_epochs(history)
    assert chosen["lowest_loss"]["epoch"] == 4 and chosen["paper"]["epoch"] == 2
    history["epochs"].append({"epoch": 5, "loss_b": -2.0, "eval": {}})  # mid-run, between evaluations
    chosen = select_epochs(history)
    assert chosen["last"]["epoch"] == 4 and chosen["lowest_loss"]["epoch"] == 4
    for r in history["epochs"]:
        r["eval"] = {k: {"b": {**v["b"], "acc": float("nan")}} for k, v in r["eval"].items()}
    assert select_epochs(history)["paper"]["epoch"] == 1  # all undefined: the first evaluated epoch


def test_history_json_written_after_every_epoch(tmp_path, monkeypatch):
    """history.json appears after epoch 1 already (a running job can be watched), written atomically."""
    seen = []
    real = train.write_history

    def spy(path, history):
        real(path, history)
        seen.append(len(json.loads(path.read_text())["epochs"]))
    monkeypatch.setattr(train, "write_history", spy)
    tiny_fit(tiny_config(epochs=2), out_dir=tmp_path)
    assert seen == [1, 2]
    assert not list(tmp_path.glob(".history.json.tmp*"))
