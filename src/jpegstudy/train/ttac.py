"""Task-Targeted Artifact Correction: the corrector trained so the task network cannot tell its output from the
original image. Loss = mean |Task(x) - Task(AC(JPEG_q(x)))|, q ~ U[10, 90] (or the corrector's own quality for the
quality-aware baselines). The task network is frozen in eval mode and no label is ever read.

Task(x) is computed once per batch without a graph; the corrector's output goes through the model's own
(differentiable) transform, so the gradient reaches the corrector through the task network.
"""

from __future__ import annotations

import torch

from jpegstudy.correction import inputs
from jpegstudy.correction.corrector import Corrector
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.tasks import classification
from jpegstudy.train import restore


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (batch norm uses its running statistics, dropout is off) and no weight gradients at all."""
    return model.eval().requires_grad_(False)


def ttac_loss(task, transform, corrector: Corrector, images: torch.Tensor, batch: inputs.JpegBatch) -> torch.Tensor:
    with torch.no_grad():
        target = task(transform(images.float() / 255))
    return (task(transform(corrector(batch))) - target).abs().mean()


def train(corrector: Corrector, task: torch.nn.Module, transform_spec: dict, manifest: Manifest, *,
          device: str = "cpu", **kwargs) -> Corrector:
    """kwargs: those of restore.fit() (epochs, batch_size, lr, lr_min, seed, out, ...)."""
    task = freeze(task.to(pick_device(device)))
    transform = classification.tensor_transform(transform_spec)
    return restore.fit(corrector, manifest, lambda images, batch: ttac_loss(task, transform, corrector, images, batch),
                       what="ttac", device=device, **kwargs)
