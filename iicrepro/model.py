"""The segmentation network of IIC: the Net10a trunk and a two-head (overclustering) output.

The trunk is "VGG network C" of the paper's supplement (Ji, Henriques, Vedaldi, ICCV 2019), released
as `SegmentationNet10aTwoHead`: six 3x3 convolutions with one max-pool, the last two dilated. Head A
overclusters (K_A > number of classes, an auxiliary task, Sec. 3.3 "overclustering"); head B has K =
number of classes and is the one evaluated. Each head holds `num_subheads` independent sub-heads
(Sec. 3.3 "multiple heads"; all Table-4 runs used 1).

Two head modes:
- "faithful": what the released code does. The 1x1 head conv keeps padding=1, which adds a one-pixel
  border whose logits are exactly 0 (no bias), i.e. uniform probabilities; softmax over K comes
  *before* the bilinear upsampling (align_corners=False) to the input size.
- "clean": no padding on the 1x1 conv, and the logits are upsampled before the softmax, so the output
  is a proper softmax at every input pixel and the uniform border does not bleed into the image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

HEADS = ("A", "B")
MODES = ("faithful", "clean")
# (out_channels, dilation) per 3x3 conv, "M" = 2x2 max-pool: Net10a of the released code.
TRUNK_CFG = ((64, 1), (128, 1), "M", (256, 1), (256, 1), (512, 2), (512, 2))
TRUNK_CHANNELS = 512
MIN_INPUT_SIZE = 10  # pool halves, the two dilated convs remove 4: 10 -> 5 -> 1


class ConvBlock(nn.Module):
    """3x3 conv (stride 1, padding 1 even when dilated, no bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1,
                              dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, track_running_stats=True)

    def forward(self, x: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        y = self.conv(x)
        if self.training and not update_stats:
            # Recomputation under checkpointing: same batch statistics, but the running stats update
            # goes to throw-away copies (otherwise every checkpointed step would update them twice).
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias,
                             True, bn.momentum, bn.eps)
        else:
            y = self.bn(y)
        return F.relu(y)


def _checkpointed(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    """Run `block` under activation checkpointing; BN running stats update on the first call only."""
    calls = [0]

    def run(inp: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return block(inp, update_stats=calls[0] == 1)

    return checkpoint(run, x, use_reentrant=False)


class Net10aTrunk(nn.Module):
    """Net10a trunk (supplement "VGG network C"): (B, C_in, H, W) -> (B, 512, H//2 - 4, W//2 - 4)."""

    def __init__(self, in_channels: int, checkpointing: bool = False):
        super().__init__()
        layers, channels = [], in_channels
        for item in TRUNK_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels, dilation = item
                layers.append(ConvBlock(channels, out_channels, dilation))
                channels = out_channels
        self.layers = nn.ModuleList(layers)
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_ckpt = self.checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if use_ckpt and isinstance(layer, ConvBlock):
                x = _checkpointed(layer, x)
            else:
                x = layer(x)
        return x  # (B, 512, h, w)


def trunk_output_size(input_size):
    """Spatial size after the trunk: 128 -> 60, 200 -> 96 (int, or an (H, W) pair -> pair)."""
    if isinstance(input_size, int):
        return input_size // 2 - 4  # pool halves; each dilated 3x3 conv with padding 1 removes 2
    return tuple(trunk_output_size(int(s)) for s in input_size)


def _init_weights(module: nn.Module) -> None:
    """Released-code init: Kaiming normal (fan_in, relu) for convs, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SegNet(nn.Module):
    """Two-head IIC segmentation network (Sec. 3.3 and supplement; `SegmentationNet10aTwoHead`).

    forward(x, head="B") -> list (one per sub-head) of (B, K, H, W) probabilities at the input size,
    K = k_a for head "A" (overclustering), k_b for head "B" (evaluated).
    forward(x, head=("B", "A")) -> {head: that list}: several heads on one trunk pass (evaluation; the
    result equals one call per head, at the trunk cost of one).
    """

    def __init__(self, in_channels: int, k_a: int, k_b: int, num_subheads: int = 1,
                 mode: str = "faithful", checkpointing: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.in_channels, self.mode, self.num_subheads = in_channels, mode, num_subheads
        self.k = {"A": k_a, "B": k_b}
        self.trunk = Net10aTrunk(in_channels, checkpointing=checkpointing)
        padding = 1 if mode == "faithful" else 0
        self.heads = nn.ModuleDict({
            name: nn.ModuleList(nn.Conv2d(TRUNK_CHANNELS, k, kernel_size=1, padding=padding, bias=False)
                                for _ in range(num_subheads))
            for name, k in self.k.items()})
        _init_weights(self)

    def _check_input(self, x: torch.Tensor, heads: tuple) -> None:
        if not heads or any(h not in HEADS for h in heads):
            raise ValueError(f"head must be one of {HEADS} or a tuple of them, got {heads!r}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, in_channels={self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"expected x of shape (B, in_channels={self.in_channels}, H, W) with "
                             f"H, W >= {MIN_INPUT_SIZE}, got {tuple(x.shape)}")

    def _subhead(self, conv: nn.Conv2d, features: torch.Tensor, size) -> torch.Tensor:
        logits = conv(features)  # (B, K, h + 2, w + 2) faithful, (B, K, h, w) clean
        if self.mode == "faithful":
            probs = F.softmax(logits, dim=1)
            return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return F.softmax(logits, dim=1)  # (B, K, H, W)

    def forward(self, x: torch.Tensor, head: str | tuple = "B") -> list[torch.Tensor] | dict:
        heads = (head,) if isinstance(head, str) else tuple(head)
        self._check_input(x, heads)
        features = self.trunk(x)  # (B, 512, H//2 - 4, W//2 - 4)
        outputs = {h: [self._subhead(conv, features, x.shape[-2:]) for conv in self.heads[h]] for h in heads}
        return outputs[head] if isinstance(head, str) else outputs


def complexity(model: SegNet, in_channels: int, input_size, head: str = "B") -> dict:
    """Parameters and forward FLOPs for one image, computed analytically from the layer shapes.

    FLOPs = 2 x multiply-accumulates of the convolutions (MACs = C_out C_in k_h k_w H_out W_out); the
    elementwise layers (BatchNorm, ReLU, max-pool, softmax, bilinear upsampling) are not counted: they
    cost a few operations per activation, well under 1% of the convolutions here. `params` counts the
    whole network (trunk and both heads); `flops` is trunk + the sub-heads of `head` (what forward runs).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    trunk_flops, channels = 0, in_channels
    for item in TRUNK_CFG:
        if item == "M":
            h, w = h // 2, w // 2
            continue
        out_channels, dilation = item
        h, w = h + 2 - 2 * dilation, w + 2 - 2 * dilation  # 3x3, padding 1
        trunk_flops += 2 * out_channels * channels * 9 * h * w
        channels = out_channels
    pad = 1 if model.mode == "faithful" else 0
    head_hw = (h + 2 * pad) * (w + 2 * pad)
    head_flops = model.num_subheads * 2 * model.k[head] * TRUNK_CHANNELS * head_hw
    params = sum(p.numel() for p in model.parameters())
    return dict(params=params, trunk_flops=trunk_flops, head_flops=head_flops,
                flops=trunk_flops + head_flops)
