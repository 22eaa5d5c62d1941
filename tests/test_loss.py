"""Tests of iicrepro.loss: against an independent brute-force transcription of eq. 5 (Ji et al. 2019,
section 3.3) and against properties of mutual information."""

import math
import sys
from functools import lru_cache

import pytest
import torch

from iicrepro.loss import _JOINTS, LOSS_IMPLS, choose_impl, iic_seg_loss

IMPLS = list(LOSS_IMPLS)


# ---------------------------------------------------------------- independent reference
def shifted(x, dy, dx):
    """y[b, k, v] = x[b, k, v + (dy, dx)], zero where v + t leaves the image. x: (B, K, H, W)."""
    height, width = x.shape[2:]
    out = torch.zeros_like(x)
    y0, y1 = max(0, -dy), min(height, height - dy)  # rows v with 0 <= v + dy < H
    x0, x1 = max(0, -dx), min(width, width - dx)
    if y0 < y1 and x0 < x1:
        out[:, :, y0:y1, x0:x1] = x[:, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


def brute_force_joint(p1, p2, dy, dx):
    """P_t[i, j] = sum_{b, u} p1[b, i, u + t] p2[b, j, u], t = (dy, dx). Returns (K, K)."""
    return torch.einsum("biyx,bjyx->ij", shifted(p1, dy, dx), p2)


def brute_force_loss(p1, p2, mask, d, lam):
    """Eq. 5 displacement by displacement, in the inputs' dtype; empty displacements are skipped."""
    eps = sys.float_info.epsilon
    if mask is not None:
        p1, p2 = p1 * mask[:, None].to(p1.dtype), p2 * mask[:, None].to(p2.dtype)
    losses, losses_1 = [], []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            joint = brute_force_joint(p1, p2, dy, dx)
            if float(joint.detach().sum()) == 0.0:
                continue
            joint = joint / joint.sum()
            joint = (joint + joint.t()) / 2
            p_i, p_j = joint.sum(1), joint.sum(0)
            joint, p_i, p_j = joint.clamp(min=eps), p_i.clamp(min=eps), p_j.clamp(min=eps)
            for weight, out in ((lam, losses), (1.0, losses_1)):
                log_ratio = joint.log() - weight * p_i.log()[:, None] - weight * p_j.log()[None, :]
                out.append(-(joint * log_ratio).sum())
    if not losses:
        return None
    return torch.stack(losses).mean(), torch.stack(losses_1).mean()


@lru_cache(maxsize=None)
def random_case(k, d, seed=0, height=9, width=7, batch=2):
    """Softmax of randn for both views, a random mask (about 60% in), float64."""
    gen = torch.Generator().manual_seed(seed + 100 * k + d)
    p1 = torch.randn(batch, k, height, width, generator=gen, dtype=torch.float64).softmax(1)
    p2 = torch.randn(batch, k, height, width, generator=gen, dtype=torch.float64).softmax(1)
    mask = torch.rand(batch, height, width, generator=gen) > 0.4
    return p1, p2, mask


def assert_close(got, want, rtol=1e-7, atol=1e-12):
    """Element-wise |got - want| <= atol + rtol |want| for tensors or tuples of tensors.

    (torch.testing.assert_close would do, but its first call imports a large part of torch.)"""
    pairs = zip(got, want) if isinstance(got, tuple) else [(got, want)]
    for a, b in pairs:
        assert a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol), f"{a} != {b}"


def one_hot_maps(labels, k):
    """(B, H, W) labels -> (B, K, H, W) float64 one-hot probabilities."""
    return torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).to(torch.float64)


# ---------------------------------------------------------------- agreement with the reference
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("d", [0, 1, 3])
def test_matches_brute_force_float64(impl, k, d):
    p1, p2, mask = random_case(k, d)
    expected = brute_force_loss(p1, p2, mask, d, lam=1.5)
    loss, loss_1 = iic_seg_loss(p1, p2, mask, half_side=d, lam=1.5, impl=impl)
    assert loss.dtype == torch.float64 and loss.shape == () and loss_1.shape == ()
    assert loss.item() == pytest.approx(expected[0].item(), rel=1e-6)
    assert loss_1.item() == pytest.approx(expected[1].item(), rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_brute_force_without_mask(impl):
    p1, p2, _ = random_case(3, 2)
    expected = brute_force_loss(p1, p2, None, 2, lam=1.0)
    loss, _ = iic_seg_loss(p1, p2, None, half_side=2, impl=impl)
    assert loss.item() == pytest.approx(expected[0].item(), rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_close_to_float64_reference(impl):
    p1, p2, mask = random_case(5, 3)
    expected = brute_force_loss(p1, p2, mask, 3, lam=1.5)
    loss, loss_1 = iic_seg_loss(p1.float(), p2.float(), mask, half_side=3, lam=1.5, impl=impl)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected[0].item(), rel=1e-5)
    assert loss_1.item() == pytest.approx(expected[1].item(), abs=1e-6)  # -MI is near 0 here


@pytest.mark.parametrize("impl", IMPLS)
def test_joint_orientation(impl):
    """Row i of P_t is p1 at u + t, column j is p2_back at u, joints[dy + d, dx + d] is t = (dy, dx)."""
    d, k = 3, 2
    p1 = torch.zeros(1, k, 9, 8, dtype=torch.float64)
    p2 = torch.zeros_like(p1)
    p1[0, 0, 5, 3] = 1.0  # cluster 0 of view 1 at u + t
    p2[0, 1, 3, 4] = 1.0  # cluster 1 of view 2 at u   ->  t = (2, -1)
    joints = _JOINTS[impl](p1, p2, d)  # (T, T, K, K)
    expected = torch.zeros(2 * d + 1, 2 * d + 1, k, k, dtype=torch.float64)
    expected[d + 2, d - 1, 0, 1] = 1.0
    assert_close(joints, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_joints_match_brute_force(impl):
    p1, p2, _ = random_case(3, 2)
    joints = _JOINTS[impl](p1, p2, 2)  # (5, 5, K, K)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            assert_close(joints[dy + 2, dx + 2], brute_force_joint(p1, p2, dy, dx))


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_identical_balanced_one_hot_gives_minus_log_k(impl, k):
    labels = torch.arange(k).repeat(12)[torch.randperm(12 * k, generator=torch.Generator().manual_seed(k))]
    p = one_hot_maps(labels.view(2, 6, k), k)  # (2, K, 6, K): every cluster equally often
    loss, loss_1 = iic_seg_loss(p, p.clone(), half_side=0, impl=impl)
    assert loss.item() == pytest.approx(-math.log(k), rel=1e-6)
    assert loss_1.item() == pytest.approx(-math.log(k), rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_uniform_outputs_give_zero_and_lambda_reward(impl):
    k = 4
    p = torch.full((2, k, 7, 6), 1.0 / k, dtype=torch.float64)
    mask = random_case(k, 1)[2][:, :7, :6]
    loss, loss_1 = iic_seg_loss(p, p, mask, half_side=2, lam=1.0, impl=impl)
    assert abs(loss.item()) < 1e-12 and abs(loss_1.item()) < 1e-12
    # P = 1/K^2, Pi = Pj = 1/K: loss = -2 (lam - 1) ln K
    loss, loss_1 = iic_seg_loss(p, p, mask, half_side=2, lam=1.5, impl=impl)
    assert loss.item() == pytest.approx(-math.log(k), rel=1e-9) and abs(loss_1.item()) < 1e-12


@pytest.mark.parametrize("impl", IMPLS)
def test_swapping_views_is_invariant(impl):
    p1, p2, mask = random_case(3, 3)
    forward = iic_seg_loss(p1, p2, mask, half_side=3, lam=1.5, impl=impl)
    backward = iic_seg_loss(p2, p1, mask, half_side=3, lam=1.5, impl=impl)
    assert_close(forward, backward, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_permuting_clusters_is_invariant(impl):
    p1, p2, mask = random_case(5, 1)
    perm = torch.tensor([3, 0, 4, 1, 2])
    plain = iic_seg_loss(p1, p2, mask, half_side=1, lam=1.5, impl=impl)
    permuted = iic_seg_loss(p1[:, perm], p2[:, perm], mask, half_side=1, lam=1.5, impl=impl)
    assert_close(plain, permuted, rtol=1e-10, atol=1e-14)


def test_lambda_changes_loss_but_not_loss_no_lambda():
    p1, p2, mask = random_case(3, 1)
    loss, loss_1 = iic_seg_loss(p1, p2, mask, half_side=1, lam=1.5)
    plain, plain_1 = iic_seg_loss(p1, p2, mask, half_side=1, lam=1.0)
    assert abs(loss.item() - loss_1.item()) > 1e-3
    assert loss_1.item() == pytest.approx(plain.item(), rel=1e-12)
    assert plain_1.item() == pytest.approx(plain.item(), rel=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_displacements_are_left_out(impl):
    """One masked-in pixel: only t = 0 has a pair, so any d gives the d = 0 loss (the original: NaN)."""
    p1, p2, _ = random_case(3, 0)
    mask = torch.zeros(2, 9, 7, dtype=torch.bool)
    mask[0, 4, 2] = True
    wide = iic_seg_loss(p1, p2, mask, half_side=3, impl=impl)
    narrow = iic_seg_loss(p1, p2, mask, half_side=0, impl=impl)
    assert_close(wide, narrow, rtol=1e-9, atol=1e-12)
    expected = brute_force_loss(p1, p2, mask, 3, lam=1.0)
    assert wide[0].item() == pytest.approx(expected[0].item(), rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])
def test_all_masked_batch_is_zero_with_zero_gradient(impl, mask_dtype):
    p1, p2, _ = random_case(3, 1)
    logits1, logits2 = p1.log().requires_grad_(), p2.log().requires_grad_()
    mask = torch.zeros(2, 9, 7, dtype=mask_dtype)
    loss, loss_1 = iic_seg_loss(logits1.softmax(1), logits2.softmax(1), mask, half_side=2, lam=1.5, impl=impl)
    assert torch.isfinite(loss) and loss.item() == 0.0 and loss_1.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    for logits in (logits1, logits2):
        assert logits.grad is not None and torch.all(logits.grad == 0)


def test_gradients_agree_between_impls_and_reference():
    p1, p2, mask = random_case(3, 2)
    grads = {}
    for name in IMPLS + ["reference"]:
        a, b = p1.clone().requires_grad_(), p2.clone().requires_grad_()
        if name == "reference":
            loss = brute_force_loss(a, b, mask, 2, lam=1.5)[0]
        else:
            loss = iic_seg_loss(a, b, mask, half_side=2, lam=1.5, impl=name)[0]
        grads[name] = torch.autograd.grad(loss, (a, b))
    for name in IMPLS:
        for got, want in zip(grads[name], grads["reference"]):
            assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_half_precision_inputs_are_computed_in_float32():
    p1, p2, mask = random_case(3, 1)
    loss, _ = iic_seg_loss(p1.bfloat16(), p2.bfloat16(), mask, half_side=1)
    reference, _ = iic_seg_loss(p1.bfloat16().double(), p2.bfloat16().double(), mask, half_side=1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_auto_and_choose_impl():
    assert choose_impl("cpu", 15, 10, 8, 64, 64) in LOSS_IMPLS
    assert choose_impl("cuda", 45, 10, 60, 128, 128) in LOSS_IMPLS
    assert choose_impl("cpu", 3, 0, 8, 64, 64) in LOSS_IMPLS
    p1, p2, mask = random_case(2, 1)
    auto = iic_seg_loss(p1, p2, mask, half_side=1)
    chosen = iic_seg_loss(p1, p2, mask, half_side=1, impl=choose_impl("cpu", 2, 1, 2, 9, 7))
    assert_close(auto, chosen)


def _entry(device, k, d, size, fastest, batch=16):
    return {"device": device, "k": k, "d": d, "batch": batch, "height": size, "width": size, "fastest": fastest}


def test_choose_impl_follows_the_table_nearest_shape():
    table = {"entries": [_entry("cpu", 3, 10, 128, "fft"), _entry("cpu", 45, 10, 128, "fftmm"),
                         _entry("cpu", 24, 5, 200, "conv"), _entry("cuda", 45, 10, 128, "shift")]}
    assert choose_impl("cpu", 3, 10, 16, 128, 128, table=table) == "fft"  # exact shape
    assert choose_impl("cpu", 4, 10, 32, 120, 120, table=table) == "fft"  # nearest: K = 3
    assert choose_impl("cpu", 36, 10, 16, 128, 128, table=table) == "fftmm"  # nearest: K = 45
    assert choose_impl("cpu", 24, 5, 16, 200, 200, table=table) == "conv"
    assert choose_impl("cuda", 3, 5, 8, 64, 64, table=table) == "shift"  # only its device type counts
    assert choose_impl("mps", 3, 5, 8, 64, 64, table=table) == "fftmm"  # no entry: documented fallback
    assert choose_impl("cpu", 45, 0, 16, 128, 128, table=table) == "shift"  # d = 0: one product
    # an implementation this module does not offer is ignored, not returned
    assert choose_impl("cpu", 3, 10, 16, 128, 128, table={"entries": [_entry("cpu", 3, 10, 128, "gone")]}) \
        == "fftmm"


def test_committed_choice_table_names_the_measured_fastest():
    from iicrepro import loss

    table = loss._choice_table()
    for entry in table.get("entries", []):
        assert entry["fastest"] in LOSS_IMPLS
        assert entry["fastest"] == min(entry["fwd_bwd_ms"], key=entry["fwd_bwd_ms"].get)
        # auto reproduces the table at its own shapes
        shape = (entry["k"], entry["d"], entry["batch"], entry["height"], entry["width"])
        assert choose_impl(entry["device"], *shape) == entry["fastest"]


# ---------------------------------------------------------------- bad input
def _maps(*shape):
    return torch.full(shape, 0.5)


@pytest.mark.parametrize(
    "p1, p2, mask, kwargs, message",
    [
        (_maps(3, 8, 8), _maps(3, 8, 8), None, {}, r"p1: expected shape \(B, K, H, W\), got \(3, 8, 8\)"),
        (
            _maps(2, 3, 8, 8),
            _maps(2, 3, 8, 7),
            None,
            {},
            r"p2_back: expected shape \(B, K, H, W\) = \(2, 3, 8, 8\) like p1, got \(2, 3, 8, 7\)",
        ),
        (
            _maps(2, 3, 8, 8),
            _maps(2, 3, 8, 8),
            torch.ones(2, 1, 8, 8),
            {},
            r"mask: expected shape \(B, H, W\) = \(2, 8, 8\), got \(2, 1, 8, 8\)",
        ),
        (_maps(2, 3, 8, 8), _maps(2, 3, 8, 8), None,
         {"impl": "fast"}, r"impl: expected one of .*'conv'.*'fast'"),
        (_maps(2, 3, 8, 8), _maps(2, 3, 8, 8), None,
         {"half_side": -1}, r"half_side: expected 0 <= half_side"),
        (_maps(2, 3, 8, 5), _maps(2, 3, 8, 5), None, {"half_side": 5}, r"min\(H, W\) = 5 .*\(2, 3, 8, 5\)"),
        (_maps(2, 3, 5, 8), _maps(2, 3, 5, 8), None, {"half_side": 7}, r"min\(H, W\) = 5"),
        (_maps(2, 3, 8, 8), _maps(2, 3, 8, 8), None, {"half_side": 1.5}, r"half_side: expected an int"),
    ],
)
def test_bad_input_raises_value_error(p1, p2, mask, kwargs, message):
    kwargs = {"half_side": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        iic_seg_loss(p1, p2, mask, **kwargs)


def test_largest_legal_half_side_works():
    p = torch.full((1, 2, 8, 5), 0.5, dtype=torch.float64)
    for impl in IMPLS:
        loss, _ = iic_seg_loss(p, p, half_side=4, impl=impl)
        assert abs(loss.item()) < 1e-12


def test_run_config_accepts_every_loss_implementation():
    from iicrepro import config

    assert config.LOSS_IMPLS == ("auto",) + LOSS_IMPLS
    assert config.make_config(preset="camvid3", loss_impl="fft").loss_impl == "fft"
    with pytest.raises(ValueError, match="loss_impl"):
        config.make_config(preset="camvid3", loss_impl="fast")


@pytest.mark.parametrize("keep", [0.95, 0.6, 0.3, 0.01])
def test_valid_displacements_match_pair_counts(keep):
    """Both the counting shortcut (most pixels in) and the FFT count (few in) agree with brute force."""
    from iicrepro.loss import _valid_displacements

    gen = torch.Generator().manual_seed(int(keep * 100))
    mask = torch.rand(2, 20, 18, generator=gen) < keep  # (B, H, W); 0.95: 2n > H W + d (H + W)
    d = 3
    support = mask[:, None].to(torch.float64)  # (B, 1, H, W)
    expected = torch.tensor([[bool((shifted(support, dy, dx) * support).sum() > 0) for dx in range(-d, d + 1)]
                             for dy in range(-d, d + 1)])
    assert torch.equal(_valid_displacements(mask, d), expected)
