"""bf16 on the CPU: the "auto" rule, a training step under autocast, the loss in float32, what the run records."""
from __future__ import annotations

import pytest
import torch

from iicrepro import loss, precision, train
from iicrepro.config import make_config
from test_train import tiny_config, tiny_fit

CPU = torch.device("cpu")


def test_auto_follows_what_torch_reports(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": False})
    assert precision.resolve_bf16("auto", CPU) is False and precision.cpu_bf16_units() == []
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert precision.resolve_bf16("auto", CPU) is True
    assert precision.cpu_bf16_units() == ["amx_bf16", "avx512_bf16"]
    assert precision.resolve_bf16(True, CPU) is True and precision.resolve_bf16(False, CPU) is False


def test_bad_bf16_setting_names_the_parameter():
    with pytest.raises(ValueError, match="bf16='yes'"):
        make_config("camvid3", bf16="yes")
    assert make_config("camvid3", bf16="auto").bf16 == "auto"


def test_cli_reads_bf16_auto():
    from iicrepro.cli import convert

    assert convert("bf16", "auto") == "auto" and convert("bf16", "true") is True and convert("bf16", "off") is False


def test_bf16_training_on_cpu_records_it_and_keeps_the_loss_in_float32(monkeypatch):
    dtypes = []
    real = loss._information_loss

    def spy(joints, valid, lam):
        dtypes.append(joints.dtype)
        return real(joints, valid, lam)
    monkeypatch.setattr(loss, "_information_loss", spy)
    seen_inputs = []
    real_joints = dict(loss._JOINTS)
    for name, function in real_joints.items():
        def wrapped(p1, p2, d, _function=function):
            seen_inputs.append(p1.dtype)
            return _function(p1, p2, d)
        monkeypatch.setitem(loss._JOINTS, name, wrapped)
    history = tiny_fit(tiny_config(epochs=1, bf16=True, channels_last=True))
    assert history["engine"]["bf16"] is True and history["engine"]["channels_last"] is True
    assert "bf16_native" in history["engine"]
    assert seen_inputs and all(d == torch.float32 for d in seen_inputs)  # joints from float32 probabilities
    assert all(d == torch.float64 for d in dtypes)  # information terms wider still
    assert torch.isfinite(torch.tensor(history["epochs"][0]["loss_a"]))


def test_bf16_autocast_is_active_in_the_network_step():
    config = tiny_config(bf16=True)
    engine = train._build(config, CPU, train.setup_world("cpu"))
    with engine.autocast():
        out = engine.net(torch.rand(2, config.in_channels, 16, 16), head="B")[0]
    assert engine.bf16 and out.dtype == torch.bfloat16
