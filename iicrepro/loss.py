"""The IIC segmentation loss (Ji, Henriques, Vedaldi, ICCV 2019, section 3.3 "IIC for segmentation", eq. 5).

For dense outputs p1 = Phi(x) and p2_back = g^-1 Phi(g x) (B, K, H, W), eq. 5 maximises the mutual
information of the pair (cluster of pixel u + t in view 1, cluster of pixel u in view 2) for every small
displacement t in T = [-d, d]^2 (local spatial invariance). As in the authors' released code (the
"uncollapsed" loss of all Table-4 runs), each displacement gets its own joint distribution:

    P_t[i, j] = sum_{b, u} p1[b, i, u + t] * p2_back[b, j, u]          (zero outside the image)
    P_t <- P_t / sum(P_t);  P_t <- (P_t + P_t^T) / 2;  Pi, Pj = row, column sums of P_t
    loss = mean_t sum_ij -P_t[i, j] (log P_t[i, j] - lam log Pi[i] - lam log Pj[j])

with P_t, Pi, Pj clamped below at EPS after the marginals are taken. lam = 1 gives minus the mutual
information (minimum -ln K); lam > 1 adds a reward for balanced clusters (the paper's lambda_B = 1.5).

Orientation: row i of P_t belongs to p1 at pixel u + t, column j to p2_back at pixel u; ``joints[a, c]``
is the displacement t = (dy, dx) = (a - d, c - d). This is exactly what the authors' ``F.conv2d`` form
gives (conv2d is a cross-correlation: out[i, j, a, c] = sum_{b,y,x} p1pad[i, b, a + y, c + x] p2[j, b, y, x]
with p1pad[.., a + y, ..] = p1[.., y + (a - d), ..]). The symmetrisation makes the loss invariant to the
orientation, but the three implementations below agree on the joints themselves.

Implementations (all give the same joints, (2d+1, 2d+1, K, K)):
  "conv":  the authors' form, one conv2d of p1 (K, B, H, W) by p2_back as weight; ~K^2 (2d+1)^2 B H W MACs.
  "shift": the definition written out: one (K, N) x (N, K) product per displacement on zero-copy views
           of the zero-padded, flattened maps; same MACs, low memory, exact.
  "fft":   cross-correlation theorem on zero-padded maps, inverse FFT of all K^2 cross-spectra, then the
           (2d+1)^2 lags kept.
  "fftmm": the same theorem with the work cut to what is used: real FFTs of the K B maps, the sum over
           the batch as one batched complex matmul per frequency ((K x B) times (B x K)), the inverse
           transform restricted to the (2d+1)^2 lags by two small DFT-matrix products, and a hand-written
           backward of the same three steps (inverse real FFTs of K B maps).
           Work ~ K B H W log(HW) + K^2 B H W + K^2 (2d+1) H W instead of conv's K^2 (2d+1)^2 B H W.

Which one "auto" runs is read from the table the benchmark measured (loss_choice.json, ``choose_impl``):
all of them agree to float rounding (1e-6 relative in float64, tests/test_loss.py), so the choice changes
speed, never the result beyond rounding.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

EPS = sys.float_info.epsilon  # the original's clamp value (float64 epsilon), also used for float32 inputs
LOSS_IMPLS = ("conv", "shift", "fft", "fftmm")


def iic_seg_loss(p1, p2_back, mask=None, *, half_side: int, lam: float = 1.0, impl: str = "auto"):
    """IIC segmentation loss, eq. 5 / section 3.3 of Ji et al. 2019 (uncollapsed form of the released code).

    p1, p2_back: (B, K, H, W) probabilities of view 1 and of view 2 mapped back into view 1's frame.
    mask: (B, H, W) bool or float weights of the pixels that count, or None (all count). Both maps are
        multiplied by it, so a pixel pair counts only if both of its pixels are masked in.
    half_side: d, displacements t in [-d, d]^2; 0 <= d < min(H, W).
    lam: lambda of the marginal terms (1 = minus mutual information).
    impl: "conv", "shift", "fft", "fftmm" (same result) or "auto" (``choose_impl``).
    Returns (loss, loss_no_lambda): 0-dim tensors, loss_no_lambda is the lam = 1 value (for logging).
    Computed with autocast off, in float32 for half/bfloat16 inputs, else in the inputs' dtype.

    Empty displacements: a displacement t whose joint has no mass (no pair of masked-in pixels at offset t)
    is left out of the mean over t, because its P_t is 0/0 (the original returned NaN). A batch with no
    masked-in pixel at all (legal with COCO-Stuff-3 masking: a crop of only "other" pixels) returns
    loss 0 with an exactly zero gradient, still connected to the graph, so it neither crashes nor
    poisons training: such a batch carries no information about the clusters.
    """
    p1, p2_back, mask, half_side = _check_inputs(p1, p2_back, mask, half_side)
    if impl == "auto":
        batch, k, height, width = p1.shape
        impl = choose_impl(p1.device.type, k, half_side, batch, height, width)
    if impl not in _JOINTS:
        raise ValueError(f"impl: expected one of {('auto',) + LOSS_IMPLS}, got {impl!r}")
    with torch.autocast(device_type=p1.device.type, enabled=False):
        dtype = _compute_dtype(p1, p2_back)
        p1, p2_back = p1.to(dtype), p2_back.to(dtype)  # (B, K, H, W)
        if mask is not None:
            weight = mask.to(dtype).unsqueeze(1)  # (B, 1, H, W)
            p1, p2_back = p1 * weight, p2_back * weight
        joints = _JOINTS[impl](p1, p2_back, half_side)  # (T, T, K, K), T = 2d + 1
        valid = _valid_displacements(mask, half_side)  # (T, T) bool
        # the (T, T, K, K) information terms in float64: cheap, and -MI near 0 is a difference of
        # entropies of size ln K, which float32 would round to about 1e-7 absolute
        wide = torch.float32 if joints.device.type == "mps" else torch.float64
        loss, loss_no_lambda = _information_loss(joints.to(wide), valid, lam)
        return loss.to(dtype), loss_no_lambda.to(dtype)


def choose_impl(device_type: str, k: int, half_side: int, batch: int, height: int, width: int, *,
                table: dict | None = None) -> str:
    """The implementation "auto" uses for a problem of this size on this device ("cpu", "cuda", ...).

    Read from the measurements, not a rule: ``loss_choice.json`` beside this module (written by
    ``iicrepro bench --loss-table4 --write-loss-choice``; schema in benchmarks/README.md) lists, per device
    type and measured shape (K, d, B, H, W), the implementation that was fastest (forward + backward).
    The entry of this device type nearest in log K, log(2d+1), log B, log H, log W is used (ties: the first
    in the file), so a run's choice is a fixed function of the committed file, never of timing noise; all
    implementations agree to float rounding (1e-6 relative in float64), so the choice moves speed only.
    Fallbacks, documented rather than measured: d = 0 is one (K, BHW) x (BHW, K) product, "shift"; a device
    type with no entry gets "fftmm", the fastest at every case measured so far (CPU, K 3..45, d 5..10).
    table: {"entries": [...]} to use instead of the file (tests, a benchmark writing a new table).
    """
    if half_side == 0:
        return "shift"
    entries = [e for e in (table if table is not None else _choice_table()).get("entries", [])
               if e.get("device") == device_type and e.get("fastest") in LOSS_IMPLS]
    if not entries:
        return "fftmm"
    point = [math.log(v) for v in (k, 2 * half_side + 1, batch, height, width)]

    def distance(entry) -> float:
        shape = (entry["k"], 2 * entry["d"] + 1, entry["batch"], entry["height"], entry["width"])
        return sum((math.log(v) - x) ** 2 for v, x in zip(shape, point))

    return min(entries, key=distance)["fastest"]


CHOICE_FILE = Path(__file__).with_name("loss_choice.json")


@functools.lru_cache(maxsize=1)
def _choice_table() -> dict:
    """The committed table of measured fastest implementations ({} when the file is absent)."""
    return json.loads(CHOICE_FILE.read_text()) if CHOICE_FILE.is_file() else {}


def _check_inputs(p1, p2_back, mask, half_side):
    """Validate shapes and types; returns (p1, p2_back, mask or None, half_side as int)."""
    if not isinstance(p1, torch.Tensor) or p1.dim() != 4:
        shape = tuple(p1.shape) if isinstance(p1, torch.Tensor) else type(p1).__name__
        raise ValueError(f"p1: expected shape (B, K, H, W), got {shape}")
    batch, k, height, width = p1.shape
    if not isinstance(p2_back, torch.Tensor) or p2_back.shape != p1.shape:
        shape = tuple(p2_back.shape) if isinstance(p2_back, torch.Tensor) else type(p2_back).__name__
        raise ValueError(f"p2_back: expected shape (B, K, H, W) = {tuple(p1.shape)} like p1, got {shape}")
    if min(batch, k, height, width) < 1:
        raise ValueError(f"p1: expected shape (B, K, H, W) with every size >= 1, got {tuple(p1.shape)}")
    if not (p1.is_floating_point() and p2_back.is_floating_point()):
        raise ValueError(
            f"p1, p2_back: expected floating-point probabilities, got {p1.dtype} and {p2_back.dtype}"
        )
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != (batch, height, width)):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected shape (B, H, W) = {(batch, height, width)}, got {shape}")
    try:
        half_side = operator.index(half_side)
    except TypeError:
        raise ValueError(f"half_side: expected an int, got {half_side!r}") from None
    if not 0 <= half_side < min(height, width):
        raise ValueError(
            f"half_side: expected 0 <= half_side < min(H, W) = {min(height, width)} for p1 of shape "
            f"(B, K, H, W) = {tuple(p1.shape)}, got {half_side}"
        )
    return p1, p2_back, mask, half_side


def _compute_dtype(p1, p2_back) -> torch.dtype:
    """float64 stays float64; half and bfloat16 are lifted to float32 (log and EPS need the range)."""
    dtype = torch.promote_types(p1.dtype, p2_back.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _joints_conv(p1, p2_back, d):
    """Authors' form: conv2d of p1 (K, B, H, W) [input, channels = batch] by p2_back (K, B, H, W) [weight].

    Output (K1, K2, 2d+1, 2d+1): out[i, j, dy + d, dx + d] = sum_{b,u} p1[b, i, u + t] p2_back[b, j, u].
    """
    x1 = p1.permute(1, 0, 2, 3).contiguous()  # (K, B, H, W): K "images" with B channels
    x2 = p2_back.permute(1, 0, 2, 3).contiguous()  # (K, B, H, W): K filters of size H x W
    out = F.conv2d(x1, weight=x2, padding=(d, d))  # (K, K, 2d+1, 2d+1)
    return out.permute(2, 3, 0, 1)  # (T, T, K, K)


def _joints_shift(p1, p2_back, d):
    """Shifted products: P_t = A[:, o_t : o_t + n] @ C[:, o_0 : o_0 + n]^T on flattened padded maps.

    Both maps are zero-padded by d on every side and flattened over (B, H + 2d, W + 2d); a displacement
    (dy, dx) is then the flat offset dy (W + 2d) + dx, and the zero border keeps every product inside one
    image (|dx| <= d never wraps into the next row's pixels, |dy| <= d never into the next image).
    The slices are views (BLAS leading dimension), so no copy per displacement.
    """
    batch, k, height, width = p1.shape
    t_side, row = 2 * d + 1, width + 2 * d
    a = F.pad(p1, (d, d, d, d)).transpose(0, 1).reshape(k, -1)  # (K, B (H+2d) (W+2d))
    c = F.pad(p2_back, (d, d, d, d)).transpose(0, 1).reshape(k, -1)  # (K, B (H+2d) (W+2d))
    start = d * row + d  # flat index of pixel (0, 0) of image 0
    n = a.shape[1] - 2 * start  # from that pixel to pixel (H-1, W-1) of image B-1
    c_t = c[:, start : start + n].t()  # (n, K), the p2_back pixels u
    joints = [
        a[:, start + dy * row + dx : start + dy * row + dx + n] @ c_t  # (K, K), p1 at pixels u + t
        for dy in range(-d, d + 1)
        for dx in range(-d, d + 1)
    ]
    return torch.stack(joints).view(t_side, t_side, k, k)  # (T, T, K, K)


def _joints_fft(p1, p2_back, d):
    """Cross-correlation theorem: corr = irfft2(sum_b F(p1[b, i]) conj(F(p2_back[b, j]))).

    Zero-padding each map to at least (H + d, W + d) makes the circular correlation equal to the linear one
    at the offsets |t| <= d that are kept; sizes are rounded up to 2,3,5,7-smooth lengths for FFT speed.
    """
    batch, k, height, width = p1.shape
    size = (_fast_length(height + d), _fast_length(width + d))
    f1 = torch.view_as_real(torch.fft.rfft2(p1, s=size)).flatten(2, 3)  # (B, K, F, 2), F frequencies
    f2 = torch.view_as_real(torch.fft.rfft2(p2_back, s=size)).flatten(2, 3)  # (B, K, F, 2)
    # f1 * conj(f2) summed over b as one real batched product over frequencies:
    # re = ar br + ai bi, im = ai br - ar bi  ->  [ar ai; ai -ar] (2K, 2B) @ [br; bi] (2B, K)
    ar, ai = f1[..., 0].permute(2, 1, 0), f1[..., 1].permute(2, 1, 0)  # (F, K, B)
    left = torch.cat([torch.cat([ar, ai], 2), torch.cat([ai, -ar], 2)], 1)  # (F, 2K, 2B)
    right = f2.permute(2, 3, 0, 1).flatten(1, 2)  # (F, 2B, K): rows [br; bi]
    cross = torch.bmm(left, right).view(-1, 2, k, k).permute(2, 3, 0, 1)  # (K, K, F, 2)
    cross = torch.view_as_complex(cross.contiguous()).view(k, k, size[0], -1)  # (K, K, Hs, Ws/2+1)
    offsets = torch.arange(-d, d + 1, device=p1.device)  # dy or dx; negative ones wrap to the end
    rows = torch.fft.ifft(cross, dim=2).index_select(2, offsets % size[0])  # (K, K, T, Ws/2+1)
    corr = torch.fft.irfft(rows, n=size[1], dim=3).index_select(3, offsets % size[1])  # (K, K, T, T)
    return corr.permute(2, 3, 0, 1)  # (T, T, K, K)


def _joints_fftmm(p1, p2_back, d):
    """Joints (T, T, K, K) by real FFTs, one batched matmul per frequency and lag-restricted inverse DFTs.

    Same P_t as "conv" (eq. 5 / section 3.3): P_t = sum_b sum_u p1[b, :, u + t] p2_back[b, :, u]^T.
    """
    return _FFTMatmulJoints.apply(p1, p2_back, d)


class _FFTMatmulJoints(torch.autograd.Function):
    """cross[f] = X1[f] X2[f]^H (the sum over the batch as a matmul), then only the lags |t| <= d transformed back.

    Spectra X = rfft2 of each map zero-padded to (Nh, Nw) >= (H + d, W + d), so the circular lags |t| <= d
    are the linear ones. Backward, the exact adjoint: G = dL/dcross is the DFT of the (T, T) lag gradient,
    then dX1 = G X2 and dX2 = G^H X1 per frequency, then inverse real FFTs (cropped: adjoint of the padding).
    """

    @staticmethod
    def forward(ctx, p1, p2_back, d):
        batch, k, height, width = p1.shape
        size = (_fast_length(height + d), _fast_length(width + d))
        x1, x2 = _spectrum(p1, size), _spectrum(p2_back, size)  # (F, K, B) complex, F = Nh (Nw/2+1)
        cross = torch.bmm(x1, x2.conj().resolve_conj().mT)  # (F, K, K): sum_b X1[f, i, b] conj X2[f, j, b]
        ctx.save_for_backward(x1, x2)
        ctx.geometry = (height, width, d, size)
        return _to_lags(cross, d, size).view(2 * d + 1, 2 * d + 1, k, k)  # (T, T, K, K)

    @staticmethod
    def backward(ctx, grad):
        x1, x2 = ctx.saved_tensors  # (F, K, B) complex
        height, width, d, size = ctx.geometry
        g = _from_lags(grad, d, size)  # (F, K, K): dL/dRe cross + i dL/dIm cross, up to w_fx / (Nh Nw)
        d1 = torch.bmm(g, x2)  # (F, K, B): G X2
        d2 = torch.bmm(x1.conj().resolve_conj().mT, g).conj_physical_()  # (F, B, K): (G^H X1)^T
        return (_inverse_spectrum(d1, size, height, width, (3, 2, 0, 1)),
                _inverse_spectrum(d2, size, height, width, (2, 3, 0, 1)), None)


def _spectrum(maps, size):
    """(B, K, H, W) real -> (F, K, B) complex rfft2 of the maps zero-padded to size = (Nh, Nw)."""
    spectrum = torch.fft.rfft2(maps, s=size)  # (B, K, Nh, Nw/2+1)
    return spectrum.permute(2, 3, 1, 0).contiguous().flatten(0, 1)  # (F, K, B): frequency-major for bmm


def _inverse_spectrum(grad, size, height, width, to_bk):
    """(F, ., .) complex gradient of the spectrum -> (B, K, H, W) gradient of the maps (real).

    With X[f] = sum_n x[n] e^{-i phi(f, n)} on the half spectrum, dL/dx[n] = Re sum_f g[f] e^{i phi}, which
    is Nh Nw irfft2 of g with its mirrored columns halved. ``_from_lags`` leaves out the same factors
    (weights 2 / (Nh Nw)), so this is a plain irfft2, cropped. to_bk: permutation of (Nh, Nf, ., .) to
    (B, K, Nh, Nf).
    """
    spectrum = grad.view(size[0], -1, *grad.shape[1:]).permute(*to_bk)  # (B, K, Nh, Nw/2+1)
    return torch.fft.irfft2(spectrum, s=size)[..., :height, :width].contiguous()  # (B, K, H, W)


def _lag_phases(n: int, d: int, like, sign: int):
    """(T, n) complex exp(sign 2 pi i f t / n) for lags t in [-d, d] and frequencies f in [0, n)."""
    angle = torch.outer(torch.arange(-d, d + 1, dtype=torch.float64), torch.arange(n, dtype=torch.float64))
    return torch.polar(torch.ones_like(angle), angle * (sign * 2 * torch.pi / n)).to(like.device, like.dtype)


def _to_lags(cross, d, size):
    """(F, K, K) half cross-spectrum -> (T, T, K^2) correlation at the lags |t| <= d only.

    corr[t] = Re sum_{fy, fx} w_fx / (Nh Nw) cross[fy, fx] e^{2 pi i (fy ty / Nh + fx tx / Nw)}, w = 2 for
    the columns whose mirror image the half spectrum leaves out, 1 for fx = 0 and the Nyquist column:
    two DFT-matrix products, (T x Nh) then (T x Nw/2+1), instead of an inverse FFT of every lag.
    """
    (nh, nw), t_side, kk = size, 2 * d + 1, cross.shape[-1] ** 2
    nf = nw // 2 + 1
    rows = (_lag_phases(nh, d, cross, 1) @ cross.view(nh, nf * kk)).view(t_side, nf, kk)  # (Ty, Nf, K^2)
    weight = torch.full((nf,), 2.0 / (nh * nw), dtype=torch.float64)
    weight[0] = 1.0 / (nh * nw)
    if nw % 2 == 0:  # even Nw: the last column is the Nyquist frequency, its own mirror image
        weight[-1] = 1.0 / (nh * nw)
    cols = _lag_phases(nw, d, cross, 1)[:, :nf] * weight.to(cross.device, cross.dtype)  # (Tx, Nf)
    return (cols @ rows).real.contiguous()  # (Ty, Tx, K^2)


def _from_lags(grad, d, size):
    """The adjoint of ``_to_lags`` without its weights: (T, T, K, K) -> (F, K, K) sum_t g[t] e^{-2 pi i f.t}."""
    (nh, nw), t_side, k = size, 2 * d + 1, grad.shape[-1]
    nf = nw // 2 + 1
    like = torch.empty((), dtype=torch.complex128 if grad.dtype == torch.float64 else torch.complex64,
                       device=grad.device)
    g = grad.reshape(t_side, t_side, k * k).to(like.dtype)  # (Ty, Tx, K^2)
    cols = _lag_phases(nw, d, like, -1)[:, :nf].T @ g  # (Ty, Nf, K^2)
    out = _lag_phases(nh, d, like, -1).T @ cols.view(t_side, nf * k * k)  # (Nh, Nf K^2)
    return out.view(nh * nf, k, k)  # (F, K, K)


_JOINTS = {"conv": _joints_conv, "shift": _joints_shift, "fft": _joints_fft, "fftmm": _joints_fftmm}


def _fast_length(n: int) -> int:
    """Smallest m >= n whose prime factors are all in {2, 3, 5, 7} (fast sizes for pocketfft and cuFFT)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _valid_displacements(mask, d):
    """(2d+1, 2d+1) bool: True where at least one pair (u + t, u) of masked-in pixels exists.

    Counted exactly, independent of the implementation's rounding: the autocorrelation of the 0/1 support
    of the mask, an integer, computed by FFT in float64 (error far below 0.5) and compared with 0.5.
    """
    t_side = 2 * d + 1
    if mask is None:  # every pixel counts and d < H, W: every displacement has pairs
        return torch.ones(t_side, t_side, dtype=torch.bool)
    height, width = mask.shape[1:]
    # exact shortcut: an image with n masked-in pixels has at least n - (H W - n) - (|dy| W + |dx| H) pairs
    # at offset t (pixels u whose u + t is off or outside removed), so 2n > H W + d (H + W) fills every t
    if bool((2 * (mask != 0).flatten(1).sum(1) > height * width + d * (height + width)).any()):
        return torch.ones(t_side, t_side, dtype=torch.bool)
    support = (mask != 0).to(device="cpu" if mask.device.type == "mps" else mask.device, dtype=torch.float64)
    size = (_fast_length(height + d), _fast_length(width + d))
    spectrum = torch.fft.rfft2(support, s=size)  # (B, Hs, Ws/2+1)
    power = (spectrum * spectrum.conj()).sum(0)  # (Hs, Ws/2+1): sum over the batch
    counts = torch.fft.irfft2(power, s=size)  # (Hs, Ws): counts[t] = sum_{b,u} s[b, u + t] s[b, u]
    offsets = torch.arange(-d, d + 1, device=support.device)
    counts = counts.index_select(0, offsets % size[0]).index_select(1, offsets % size[1])  # (T, T)
    return (counts > 0.5).cpu()


def _information_loss(joints, valid, lam):
    """Eq. 5 per displacement, mean over the displacements that have mass; see ``iic_seg_loss``.

    joints: (T, T, K, K) unnormalised; valid: (T, T) bool. Empty displacements are normalised by 1
    instead of 0 and then dropped with ``where``, so their (finite) terms get an exactly zero gradient.
    """
    valid = valid.to(joints.device)
    total = joints.sum(dim=(2, 3), keepdim=True)  # (T, T, 1, 1)
    safe_total = torch.where(valid[..., None, None], total, torch.ones_like(total))
    p = joints / safe_total.clamp_min(torch.finfo(joints.dtype).tiny)  # (T, T, K, K), each sums to 1
    p = (p + p.transpose(2, 3)) / 2  # symmetrise
    p_i = p.sum(dim=3, keepdim=True)  # (T, T, K, 1) row marginals
    p_j = p.sum(dim=2, keepdim=True)  # (T, T, 1, K) column marginals
    # clamp after the marginals, as the original; tiny entries are multiplied by themselves anyway
    log_p, log_i, log_j = (x.clamp_min(EPS).log() for x in (p, p_i, p_j))
    p = p.clamp_min(EPS)
    count = valid.sum().clamp_min(1).to(joints.dtype)
    zero = torch.zeros((), dtype=joints.dtype, device=joints.device)

    def mean_over_t(weight):
        per_t = -(p * (log_p - weight * log_i - weight * log_j)).sum(dim=(2, 3))  # (T, T)
        return torch.where(valid, per_t, zero).sum() / count

    return mean_over_t(lam), mean_over_t(1.0)
