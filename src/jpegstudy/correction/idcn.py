"""IDCN (Zheng et al., "Implicit dual-domain convolutional network for robust color image compression artifact
reduction", IEEE TCSVT 2019) on RGB pixels, guided by the file's quantization tables.

Structure, as in the authors' public (Keras) code: a 5x5 and a 3x3 conv; `blocks` dual-domain blocks; a 3x3 and a
5x5 conv. Each dual-domain block runs
  - a dilated dense pyramid: 3x3 conv to 2C, six densely connected 3x3 convs with dilations 3, 2, 1, 1, 1, 1
    (C each), a 1x1 fusion back to C;
  - an implicit DCT branch for luma (3x3 conv to 64 maps, hard threshold to [-0.5, 0.5]) and one for chroma
    (dilated 3x3 conv to 64 maps, no threshold). The 64 maps are read as one block's quantized DCT coefficients
    (error in units of the quantization step, hence the 0.5 bound for luma) and turned into 64 pixel-position maps
    by a *fixed* 1x1 conv, the inverse DCT basis weighted by the quantization table (a buffer, not learned);
  - a 3x3 pixel branch; the DCT branches are fused by a 3x3 conv, added to the pixel branch, scaled by 0.1 and added
    to the block's input.
The study trains it with an MSE loss, one model per quality.

Differences from the published model, all deliberate:
  - The tables are inputs (N, 1, 8, 8) per image instead of constants baked into the graph, so one module serves any
    quality (the study still trains one model per quality); the fixed basis is multiplied by each image's table.
  - No fourth input channel: the original appends a "position labeling" map (per-position statistics precomputed
    for each quality and tiled with the 16x16 period of 4:2:0 blocks); we feed RGB only.
  - The DCT branches always have 64 maps (one per coefficient of an 8x8 block) whatever `channels` is; the original
    ties them to its 64 filters. At channels=64 the two agree.
  - The output is a residual added to the input, with the last conv scaled down at init so the untrained model is
    close to the identity (the original predicts the image through a final ReLU); this trains stably from scratch.
  - RGB in [0, 1] instead of OpenCV's BGR.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DILATIONS = (3, 2, 1, 1, 1, 1)


def idct_basis() -> torch.Tensor:
    """(64, 64) matrix B with B[8i + j, 8u + v] = c(u) c(v) cos((2i+1)u pi/16) cos((2j+1)v pi/16): orthonormal
    inverse DCT from coefficient (u, v) to pixel (i, j) of an 8x8 block."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)  # d[u, i]
    d[0] = math.sqrt(1 / 8)
    return torch.kron(d.T, d.T).to(torch.float32)


def implicit_trans(x: torch.Tensor, q: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(N, 64, H, W) coefficient maps -> (N, 64, H, W) pixel-position maps: scale map (u, v) by q[u, v] (quantization
    step / 255, i.e. in [0, 1] pixel units), then the fixed inverse-DCT 1x1 conv."""
    return F.conv2d(x * q.reshape(q.shape[0], 64, 1, 1), basis[:, :, None, None])


class PyramidCell(nn.Module):
    """Dilated dense pyramid: wide receptive field (dilations 3, 2) first, then dense 3x3 convs, fused by a 1x1."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = DILATIONS):
        super().__init__()
        c = channels
        self.head = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(2 * c + i * c, c, 3, padding=d, dilation=d) for i, d in enumerate(dilations))
        self.fuse = nn.Conv2d((2 + len(dilations)) * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [F.relu(self.head(x))]
        for conv in self.convs:
            features.append(F.relu(conv(torch.cat(features, 1))))
        return F.relu(self.fuse(torch.cat(features, 1)))


class DualDomainBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.pyramid = PyramidCell(channels)
        self.luma_dct = nn.Conv2d(channels, 64, 3, padding=1)
        self.chroma_dct = nn.Conv2d(channels, 64, 3, padding=2, dilation=2)  # chroma blocks span 16x16 pixels
        self.pixel = nn.Conv2d(channels, channels, 3, padding=1)
        self.fuse = nn.Conv2d(128, channels, 3, padding=1)

    def forward(self, x, q_y, q_c, basis):
        t = self.pyramid(x)
        # Hard threshold: a quantization error is at most half a step, so luma coefficients stay in [-0.5, 0.5].
        ty = implicit_trans(self.luma_dct(t).clamp(-0.5, 0.5), q_y, basis)
        tc = implicit_trans(self.chroma_dct(t), q_c, basis)
        return x + 0.1 * (self.fuse(torch.cat([ty, tc], 1)) + self.pixel(t))


class IDCN(nn.Module):
    """forward(rgb01, q_y, q_c): (N, 3, H, W) decoded JPEG in [0, 1] and its tables / 255 as (N, 1, 8, 8) ->
    (N, 3, H, W) corrected image (not clamped). Published width: channels=64, blocks=8."""

    def __init__(self, channels: int = 64, blocks: int = 8):
        super().__init__()
        c = channels
        self.head = nn.Sequential(nn.Conv2d(3, c, 5, padding=2), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList(DualDomainBlock(c) for _ in range(blocks))
        self.tail = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 3, 5, padding=2))
        # Fixed, so a non-persistent buffer: it follows .to(device) but is not part of the weights.
        self.register_buffer("dct_basis", idct_basis(), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.tail[-1].weight.mul_(0.01)  # small residual at init: output ~ input

    def forward(self, rgb01: torch.Tensor, q_y: torch.Tensor, q_c: torch.Tensor) -> torch.Tensor:
        n = rgb01.shape[0]
        q_y, q_c = q_y.expand(n, -1, -1, -1), q_c.expand(n, -1, -1, -1)
        t = self.head(rgb01)
        for block in self.blocks:
            t = block(t, q_y, q_c, self.dct_basis)
        return rgb01 + self.tail(t)
