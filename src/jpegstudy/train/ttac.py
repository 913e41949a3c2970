"""Task-Targeted Artifact Correction: the corrector trained so the task network cannot tell its output from the
original image. Loss = mean |Task(x) - Task(AC(JPEG_q(x)))|, q ~ U[10, 90] (or the corrector's own quality for the
quality-aware baselines), where Task is the task's ttac_target (classification: the logits; detection: the backbone
features). The task network is frozen in eval mode and no label is ever read.

Task(x) is computed once per batch without a graph; the corrector's output goes through the model's own
(differentiable) transform, so the gradient reaches the corrector through the task network.
"""

from __future__ import annotations

import torch

from jpegstudy import tasks
from jpegstudy.correction import inputs
from jpegstudy.correction.corrector import Corrector
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.train import restore


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (batch norm uses its running statistics, dropout is off) and no weight gradients at all."""
    return model.eval().requires_grad_(False)


def ttac_loss(target, model, transform, corrector: Corrector, images: torch.Tensor,
              batch: inputs.JpegBatch) -> torch.Tensor:
    """`target(model, x)`: what is compared (a tasks module's ttac_target); a tensor, or a list/dict of them (every
    FPN level), each level's mean absolute difference weighted alike."""
    with torch.no_grad():
        original = target(model, transform(images.float() / 255))
    corrected = target(model, transform(corrector(batch)))
    if isinstance(original, torch.Tensor):
        return (corrected - original).abs().mean()
    pairs = zip(original.values(), corrected.values()) if isinstance(original, dict) else zip(original, corrected)
    return torch.stack([(c - o).abs().mean() for o, c in pairs]).mean()


def train(corrector: Corrector, model: torch.nn.Module, transform_spec: dict, manifest: Manifest, *,
          task: str = "classification", device: str = "cpu", **kwargs) -> Corrector:
    """kwargs: those of restore.fit() (epochs, batch_size, lr, lr_min, seed, out, ...)."""
    t = tasks.get(task)
    model = freeze(model.to(pick_device(device)))
    transform = t.tensor_transform(transform_spec)
    return restore.fit(corrector, manifest,
                       lambda images, batch: ttac_loss(t.ttac_target, model, transform, corrector, images, batch),
                       what="ttac", device=device, **kwargs)
