"""QGAC, the quantization-guided artifact corrector of the study ("QGAC crab" variant), in plain torch.

Layer names and shapes follow the published layout (../shared/notes/qgac.md; tests/data/qgac-state-dict.txt lists
them), so official weights load at the default widths; smaller widths keep the same structure for the embedded study.
The network works on DCT coefficients: each 8x8 block's 64 coefficients laid out as an 8x8 tile in natural order,
normalised per frequency by the caller, and on the quantization tables / 255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jpegstudy.jpeg import upsample_chroma_dct


def scaled_kaiming_(module: nn.Module, scale: float = 0.1, a: float = 0.02) -> nn.Module:
    """Kaiming-normal (fan_in) every conv / conv-transpose weight, times `scale`, zero biases (QGAC's init).

    The 0.1 factor (as in ESRGAN's RRDB) keeps every residual branch near zero at the start, so the untrained network
    is close to the identity and deep stacks of residual blocks train stably. PReLUs keep torch's 0.25.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=a, mode="fan_in")
            with torch.no_grad():
                m.weight.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class CFM(nn.Module):
    """Convolutional filter manifold: a convolution whose weights and biases are computed from the quantization table.

    forward(x, q): x (N, in, H, W), q (N, 1, 8, 8) -> (N, out, H/8, W/8), or (N, out, 8H, 8W) when `transposed`.
    With kernel = stride = 8 each output position sees exactly one JPEG block, filtered by its own image's table.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 8, stride: int = 8,
                 transposed: bool = False, manifold_channels: int = 64, post_activation: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.transposed = kernel_size, stride, transposed
        # Registered first to follow the published key order (only the set of keys matters for loading).
        self.post_activation = nn.PReLU() if post_activation else None
        mc = manifold_channels
        # An 8x8 conv over the 8x8 table: one mc-vector per image describing its quantization.
        self.manifold = nn.Sequential(nn.Conv2d(1, mc, 8), nn.PReLU(), nn.Conv2d(mc, mc, 1), nn.PReLU())
        # mc x 1 x 1 -> (out*in) x k x k: all filter taps of one image, laid out as torch's grouped (transposed) conv
        # weight of that image: (out, in, k, k) for a conv, (in, out, k, k) for a transposed conv.
        self.weight_transform = nn.ConvTranspose2d(mc, out_channels * in_channels, kernel_size)
        self.bias_transfrom = nn.Conv2d(mc, out_channels, 1)  # sic: the misspelling is in the published key names

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"CFM expects {self.in_channels} input channels, got {c}")
        if q.shape[0] != n:
            q = q.expand(n, -1, -1, -1)
        m = self.manifold(q)
        k = self.kernel_size
        weight = self.weight_transform(m)  # (N, out*in, k, k)
        bias = self.bias_transfrom(m).reshape(n * self.out_channels)
        # One group per image: the batch goes into the channel axis so every image meets its own filters.
        x = x.reshape(1, n * c, h, w)
        if self.transposed:
            weight = weight.reshape(n * self.in_channels, self.out_channels, k, k)
            y = F.conv_transpose2d(x, weight, bias, stride=self.stride, groups=n)
        else:
            weight = weight.reshape(n * self.out_channels, self.in_channels, k, k)
            y = F.conv2d(x, weight, bias, stride=self.stride, groups=n)
        y = y.reshape(n, self.out_channels, y.shape[-2], y.shape[-1])
        return self.post_activation(y) if self.post_activation is not None else y


class DenseBlock(nn.Module):
    """Five densely connected 3x3 convs (conv i sees the input and every earlier output: C*i channels), residual 0.2."""

    def __init__(self, channels: int):
        super().__init__()
        for i in range(1, 6):
            setattr(self, f"conv{i}", nn.Conv2d(channels * i, channels, 3, padding=1))
            setattr(self, f"relu{i}", nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, 6):
            out = getattr(self, f"relu{i}")(getattr(self, f"conv{i}")(torch.cat(features, 1)))
            features.append(out)
        return out * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, their result added back at 0.2 (ESRGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block1, self.block2, self.block3 = DenseBlock(channels), DenseBlock(channels), DenseBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block3(self.block2(self.block1(x))) * 0.2 + x


class QGAC(nn.Module):
    """QGAC crab: restores luma first, then chroma guided by the restored luma; all in the DCT domain.

    forward(q_y, y, q_c, cbcr): q_y, q_c (N, 1, 8, 8) quantization tables / 255; y (N, 1, H, W) and cbcr
    (N, 2, H/2, W/2) normalised dequantized coefficients, H and W multiples of 16. Returns (N, 3, H, W): normalised
    full-resolution Y, Cb, Cr coefficients. Defaults are the published widths (82,602,604 parameters).
    """

    def __init__(self, luma_channels: int = 256, chroma_channels: int = 32, luma_blocks: int = 3,
                 manifold_channels: int = 16, guide_manifold_channels: int = 64):
        super().__init__()
        lc, cc, mc = luma_channels, chroma_channels, manifold_channels
        # Luma: blocks -> features (one vector per 8x8 block) -> RRDBs -> back to coefficients, as a residual.
        self.block_y = CFM(1, lc, manifold_channels=mc, post_activation=True)
        self.block_enhancer_y = nn.Sequential(*(RRDB(lc) for _ in range(luma_blocks)))
        self.unblock_y = CFM(lc, 1, transposed=True, manifold_channels=mc)
        # Chroma: enhanced at its own (half) resolution, doubled, then fused with features of the restored luma,
        # which carries the detail that 4:2:0 subsampling threw away.
        self.block_c = CFM(2, cc, manifold_channels=mc, post_activation=True)
        self.block_enhancer_lr = RRDB(cc)
        self.block_doubler = nn.Sequential(nn.ConvTranspose2d(cc, cc, 4, stride=2, padding=1), nn.PReLU())
        self.block_guide = CFM(1, cc, manifold_channels=guide_manifold_channels, post_activation=True)
        self.block_enhancer_hr = RRDB(2 * cc)
        self.unblock_c = CFM(2 * cc, 2, transposed=True, manifold_channels=mc)
        scaled_kaiming_(self)

    def forward(self, q_y: torch.Tensor, y: torch.Tensor, q_c: torch.Tensor, cbcr: torch.Tensor,
                chroma_base: torch.Tensor | None = None) -> torch.Tensor:
        n, _, h, w = y.shape
        if y.shape[1] != 1 or h % 16 or w % 16:
            raise ValueError(f"QGAC expects luma (N, 1, H, W) with H, W multiples of 16, got {tuple(y.shape)}")
        if tuple(cbcr.shape) != (n, 2, h // 2, w // 2):
            raise ValueError(f"QGAC expects chroma (N, 2, H/2, W/2) = {(n, 2, h // 2, w // 2)}, "
                             f"got {tuple(cbcr.shape)}")
        y_restored = y + self.unblock_y(self.block_enhancer_y(self.block_y(y, q_y)), q_y)

        c = self.block_doubler(self.block_enhancer_lr(self.block_c(cbcr, q_c)))  # (N, cc, H/8, W/8)
        guide = self.block_guide(y_restored, q_y)  # (N, cc, H/8, W/8): the restored luma's blocks
        c = self.unblock_c(self.block_enhancer_hr(torch.cat([c, guide], 1)), q_c)  # (N, 2, H, W)
        # The chroma residual is added to the nearest-neighbour doubling of the chroma. Doubling normalised
        # coefficients is not the normalised doubling (normalisation is per frequency, doubling mixes frequencies),
        # so a caller that normalises passes the normalised doubling of the raw coefficients as `chroma_base`.
        c = c + (upsample_chroma_dct(cbcr) if chroma_base is None else chroma_base)
        return torch.cat([y_restored, c], 1)
