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
from jpegstudy.data import training
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.tasks import classification
from jpegstudy.train import loop
from jpegstudy.train.restore import qualities_for


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (batch norm uses its running statistics, dropout is off) and no weight gradients at all."""
    return model.eval().requires_grad_(False)


def ttac_loss(task, transform, corrector: Corrector, images: torch.Tensor, batch: inputs.JpegBatch) -> torch.Tensor:
    with torch.no_grad():
        target = task(transform(images.float() / 255))
    return (task(transform(corrector(batch))) - target).abs().mean()


def train(corrector: Corrector, task: torch.nn.Module, transform_spec: dict, manifest: Manifest, *, out,
          epochs: int, batch_size: int, lr: float, lr_min: float, seed: int, crop: int | None = None,
          workers: int = 0, images_per_epoch: int | None = None, device: str = "cpu") -> Corrector:
    dev = pick_device(device)
    torch.manual_seed(seed)
    task = freeze(task.to(dev))
    transform = classification.tensor_transform(transform_spec)
    corrector.to(dev).train()
    optimizer = torch.optim.Adam(corrector.parameters(), lr=lr)
    schedule = loop.cosine(optimizer, epochs * training.steps_per_epoch(manifest, batch_size, images_per_epoch),
                           lr_min)

    def epoch(_: int, generator: torch.Generator) -> str:
        total = steps = 0
        # The labels the loader yields are dropped here, unread: TTAC needs none.
        for images, _labels in training.batches(manifest, batch_size=batch_size, generator=generator, crop=crop,
                                                workers=workers, images_per_epoch=images_per_epoch):
            batch = inputs.from_images(images, qualities_for(corrector, len(images), generator)).to(dev)
            loss = ttac_loss(task, transform, corrector, images.to(dev), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, steps = total + loss.item(), steps + 1
        return f"{corrector.describe()} TTAC loss {total / steps:.4f}"

    settings = {"what": "ttac", "network": corrector.network, "kwargs": corrector.kwargs,
                "quality": corrector.quality, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "lr_min": lr_min, "seed": seed, "crop": crop, "images": len(manifest.images),
                "images_per_epoch": images_per_epoch}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"corrector": corrector, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return corrector.cpu().eval()
