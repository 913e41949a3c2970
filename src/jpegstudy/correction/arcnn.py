"""ARCNN (Dong et al., "Compression artifacts reduction by a deep convolutional network", ICCV 2015) on RGB pixels.

Four convolutions: feature extraction 9x9, feature enhancement 7x7, mapping 1x1, reconstruction 5x5, "same" padding.
Quality-aware in the study's sense: one model is trained per JPEG quality.

Difference from the paper: the network predicts a residual added to its input instead of the clean image, with the
hidden layers Kaiming-initialised and the reconstruction layer scaled down, so the untrained model is (almost) the
identity. Training then starts from "leave the JPEG as it is" and only has to learn the artifact, which is stable
and fast, and needs none of the paper's layer-wise transfer tricks.
"""

from __future__ import annotations

import torch
from torch import nn


class ARCNN(nn.Module):
    """forward(rgb01): (N, 3, H, W) decoded JPEG in [0, 1] -> (N, 3, H, W) corrected image (not clamped)."""

    def __init__(self, channels: tuple[int, int, int] = (64, 32, 16)):
        super().__init__()
        c0, c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c0, 9, padding=4), nn.PReLU(),
            nn.Conv2d(c0, c1, 7, padding=3), nn.PReLU(),
            nn.Conv2d(c1, c2, 1), nn.PReLU(),
        )
        self.reconstruct = nn.Conv2d(c2, 3, 5, padding=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.25, mode="fan_in")  # a = the PReLUs' initial slope
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.reconstruct.weight.mul_(0.01)  # small residual at init: output ~ input

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return rgb01 + self.reconstruct(self.features(rgb01))
