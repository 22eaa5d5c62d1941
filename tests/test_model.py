"""Tests of iicrepro.model: Net10a shapes, head modes, init, checkpointing, complexity, bad input."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iicrepro.model import SegNet, complexity, trunk_output_size


def assert_close(actual, expected, atol=1e-5, rtol=1.3e-6, msg=""):
    """torch.allclose with a message (torch.testing.assert_close imports torch.distributed: ~6 s)."""
    assert actual.shape == expected.shape, f"{msg} shape {actual.shape} != {expected.shape}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{msg} max abs diff {diff}"


def small_net(**kwargs):
    torch.manual_seed(0)
    args = dict(in_channels=5, k_a=7, k_b=3)
    args.update(kwargs)
    return SegNet(**args)


def test_trunk_output_size():
    assert trunk_output_size(128) == 60
    assert trunk_output_size(200) == 96
    assert trunk_output_size((128, 200)) == (60, 96)


@pytest.mark.parametrize("in_channels,size,sizes,k_a", [
    (5, 128, [128, 128, 64, 64, 64, 62, 60], 15),  # COCO-Stuff preset
    (4, 200, [200, 200, 100, 100, 100, 98, 96], 24),  # Potsdam preset
])
def test_paper_sizes_and_flops(in_channels, size, sizes, k_a):
    net = SegNet(in_channels, k_a=k_a, k_b=3).eval()
    seen = []
    handles = [layer.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
               for layer in net.trunk.layers]
    x = torch.rand(1, in_channels, size, size)
    flops = conv_flops_by_hooks(net, x, head="B")  # one real forward
    for h in handles:
        h.remove()
    assert seen == sizes
    assert complexity(net, in_channels, size, head="B")["flops"] == flops
    with torch.no_grad():
        assert [p.shape for p in net(x[..., :32, :48], head="A")] == [(1, k_a, 32, 48)]


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_forward_probabilities(mode):
    net = small_net(num_subheads=2, mode=mode)
    x = torch.rand(2, 5, 24, 24)
    for head, k in (("A", 7), ("B", 3)):
        outs = net(x, head=head)
        assert len(outs) == 2
        for p in outs:
            assert p.shape == (2, k, 24, 24)
            assert (p >= 0).all()
            assert_close(p.sum(1), torch.ones(2, 24, 24))
    assert not torch.equal(net(x)[0], net(x)[1])  # sub-heads are independent


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_several_heads_share_one_trunk_pass(mode):
    net = small_net(num_subheads=2, mode=mode).eval()
    x = torch.rand(2, 5, 24, 24)
    calls = []
    hook = net.trunk.register_forward_hook(lambda *_: calls.append(1))
    both = net(x, head=("B", "A"))
    assert len(calls) == 1 and list(both) == ["B", "A"]
    hook.remove()
    for head in ("A", "B"):
        for shared, alone in zip(both[head], net(x, head=head)):
            assert torch.equal(shared, alone)


def test_faithful_matches_manual_and_has_uniform_border():
    net = small_net().eval()
    x = torch.rand(2, 5, 24, 24)
    features = net.trunk(x)  # (2, 512, 8, 8)
    logits = net.heads["B"][0](features)
    assert logits.shape == (2, 3, 10, 10)  # padding 1 adds a border
    assert (logits[..., 0, :] == 0).all() and (logits[..., :, -1] == 0).all()
    expected = F.interpolate(F.softmax(logits, 1), size=(24, 24), mode="bilinear", align_corners=False)
    out = net(x)[0]
    assert_close(out, expected)
    # corner pixels sample only the zero-logit border: uniform probabilities
    assert_close(out[..., 0, 0], torch.full((2, 3), 1 / 3))


def test_clean_mode_upsamples_logits_then_softmax():
    net = small_net(mode="clean").eval()
    x = torch.rand(2, 5, 24, 24)
    logits = net.heads["B"][0](net.trunk(x))
    assert logits.shape == (2, 3, 8, 8)
    expected = F.softmax(F.interpolate(logits, size=(24, 24), mode="bilinear", align_corners=False), 1)
    assert_close(net(x)[0], expected)


def test_architecture_and_init():
    net = small_net()
    convs = [m for m in net.trunk.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (5, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert [c.dilation[0] for c in convs] == [1, 1, 1, 1, 2, 2]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(b.track_running_stats for b in bns)
    assert all((b.weight == 1).all() and (b.bias == 0).all() for b in bns)
    big = convs[-1].weight  # Kaiming normal, fan_in: std = sqrt(2 / (512 * 9))
    assert abs(big.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.02
    assert abs(big.mean().item()) < 1e-3


def test_checkpointing_matches_plain_forward_backward_and_running_stats():
    plain = small_net().train()
    ckpt = copy.deepcopy(plain)
    ckpt.trunk.checkpointing = True
    x = torch.rand(2, 5, 24, 24)
    for net in (plain, ckpt):
        (net(x, head="A")[0] * torch.arange(7.0).view(1, 7, 1, 1)).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        if name.startswith("heads.B"):
            assert a.grad is None and b.grad is None  # head B did not run
        else:
            assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        assert_close(a, b, msg=name)  # running stats updated once, not twice
    assert int(ckpt.trunk.layers[0].bn.num_batches_tracked) == 1


def conv_flops_by_hooks(net, x, head):
    """Independent count: 2 * MACs of every conv that actually ran, from its real output shape."""
    total, handles = [0], []

    def hook(module, inputs, output):
        b, c_out, h, w = output.shape
        kh, kw = module.kernel_size
        total[0] += 2 * c_out * (module.in_channels // module.groups) * kh * kw * h * w * b

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        net(x, head=head)
    for h in handles:
        h.remove()
    return total[0] // x.shape[0]


@pytest.mark.parametrize("mode", ["faithful", "clean"])
@pytest.mark.parametrize("head", ["A", "B"])
def test_complexity_matches_hook_count(mode, head):
    net = small_net(mode=mode, num_subheads=2).eval()
    stats = complexity(net, 5, 24, head=head)
    assert stats["flops"] == conv_flops_by_hooks(net, torch.rand(2, 5, 24, 24), head)
    assert stats["flops"] == stats["trunk_flops"] + stats["head_flops"]
    assert complexity(net, 5, (24, 40), head=head)["flops"] == conv_flops_by_hooks(
        net, torch.rand(1, 5, 24, 40), head)


def test_complexity_params_by_hand():
    net = SegNet(5, 15, 3)
    convs = 9 * (5 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 512 * 512)
    bn = 2 * (64 + 128 + 256 + 256 + 512 + 512)
    heads = 512 * (15 + 3)
    assert complexity(net, 5, 128)["params"] == convs + bn + heads == 4_512_960


def test_bad_input():
    net = small_net()
    with pytest.raises(ValueError, match=r"\(B, in_channels=5, H, W\)"):
        net(torch.rand(5, 24, 24))
    with pytest.raises(ValueError, match=r"\(B, in_channels=5, H, W\)"):
        net(torch.rand(2, 3, 24, 24))
    with pytest.raises(ValueError, match="H, W >= 10"):
        net(torch.rand(2, 5, 8, 8))
    with pytest.raises(ValueError, match="head"):
        net(torch.rand(2, 5, 24, 24), head="C")
    with pytest.raises(ValueError, match="head"):
        net(torch.rand(2, 5, 24, 24), head=("B", "C"))
    with pytest.raises(ValueError, match="head"):
        net(torch.rand(2, 5, 24, 24), head=())
    with pytest.raises(ValueError, match="mode"):
        SegNet(5, 7, 3, mode="other")
