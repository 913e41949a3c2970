"""Supervised fine-tuning: the task model trained further on training images that are always JPEG-compressed, at
a quality drawn uniformly from [10, 90] per image. SGD with momentum 0.9, weight decay 5e-4, cosine annealing from
1e-3 to 1e-6 (the paper's recipe); resumable per epoch (train.loop).
"""

from __future__ import annotations

import torch

from jpegstudy import tasks
from jpegstudy.correction import inputs
from jpegstudy.data import training
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.train import loop


def to_device(targets, device):
    """A batch's targets on the device: a label tensor, or a list of detection target dicts."""
    if isinstance(targets, torch.Tensor):
        return targets.to(device)
    return [{k: v.to(device) for k, v in target.items()} for target in targets]


def train(model: torch.nn.Module, transform_spec: dict, manifest: Manifest, *, out, epochs: int, batch_size: int,
          lr: float, lr_min: float, momentum: float, weight_decay: float, seed: int, crop: int | None = None,
          workers: int = 0, device: str = "cpu", task: str = "classification",
          degradation: inputs.Degradation = inputs.JPEG) -> torch.nn.Module:
    """`degradation`: the codec the training images are compressed with (JPEG unless the codec study says)."""
    t = tasks.get(task)
    dev = pick_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    transform = t.tensor_transform(transform_spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = loop.cosine(optimizer, epochs * training.steps_per_epoch(manifest, batch_size), lr_min)

    def epoch(_: int, generator: torch.Generator) -> str:
        total = steps = 0
        # A Fast R-CNN's precomputed proposals travel in the targets, so that flips move them with the image.
        for images, labels in training.batches(manifest, batch_size=batch_size, generator=generator, crop=crop,
                                               workers=workers, proposals=getattr(model, "proposals", None)):
            x = degradation.decoded(images, degradation.qualities(len(images), generator)).to(dev)
            loss = t.finetune_loss(model, transform(x), to_device(labels, dev))
            total, steps = total + loop.step(loss, optimizer, schedule), steps + 1
        return f"mean {task} loss on {degradation.name} images {total / max(steps, 1):.4f}"

    settings = {"what": "finetune", "epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_min": lr_min,
                "momentum": momentum, "weight_decay": weight_decay, "seed": seed, "crop": crop,
                "images": len(manifest.images), "transform": transform_spec, **degradation.settings()}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"model": model, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return model.cpu().eval()
