"""A user's own classifiers, as a newcomer would write them: a builder taking num_classes, returning an nn.Module.

config/smoke.yaml trains `resnet18` in the smoke study (`arch: tests/user_models.py:resnet18`), so the pipeline tests
run a model of one's own through every rule (each job imports this file); tests/test_own_model.py builds the others.
"""

import torch
import torchvision
from torch import nn


def resnet18(num_classes: int) -> nn.Module:
    """One's own ResNet-18, built by one's own code: torchvision's, unchanged, so that the smoke study's numbers stay
    those of the bare name resnet18 (same layers, same initialisation from the same seed)."""
    return torchvision.models.resnet18(num_classes=num_classes)


def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class TinyNet(nn.Module):
    """Three conv blocks (full, 1/2, 1/4 resolution), global average pooling, a linear classifier."""

    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(block(3, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(num_classes: int) -> nn.Module:
    return TinyNet(num_classes)


def build_wide(num_classes: int) -> nn.Module:
    return TinyNet(num_classes, width=16)


def build_ignoring_num_classes(num_classes: int) -> nn.Module:
    """A common mistake: the head's size hard-coded."""
    return TinyNet(1000)


def build_not_a_module(num_classes: int):
    return {"classes": num_classes}
