"""Train an embedded task model (a detector: tasks/detection.build; a segmenter: tasks/segmentation.build; a forensic
detector: tasks/forensics.build) on an embedded training split (COCO, ADE20K or CNNDetection layout): the embedded
study's stand-in for published COCO, ADE20K and CNNDetection weights. A detector's or segmenter's backbone starts
from an embedded classifier's weights, as the real ones start from ImageNet weights; the images are the lossless
originals, flipped at random; the loss is the task's own (finetune_loss).

AdamW with a one-cycle schedule (15 % warm-up): at 64 px, 400 scenes and 12 epochs Faster R-CNN reached 39.7 box
mAP this way (benchmarks/detection_cpu.py). Resumable per epoch (train.loop); deterministic for a seed on CPU.
"""

from __future__ import annotations

import torch

from jpegstudy.data import training
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy import tasks
from jpegstudy.train import loop
from jpegstudy.train.finetune import to_device


def train(model: torch.nn.Module, task: str, arch: str, manifest: Manifest, *, out, epochs: int, batch_size: int,
          lr: float, weight_decay: float, seed: int, device: str = "cpu") -> torch.nn.Module:
    """The trained model of `task`, on the CPU, in eval mode."""
    t = tasks.get(task)
    dev = pick_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * training.steps_per_epoch(manifest, batch_size), pct_start=0.15)

    def epoch(_: int, generator: torch.Generator) -> str:
        total = steps = 0
        for images, targets in training.batches(manifest, batch_size=batch_size, generator=generator,
                                                proposals=getattr(model, "proposals", None)):
            loss = t.finetune_loss(model, images.to(dev).float() / 255, to_device(targets, dev))
            total, steps = total + loop.step(loss, optimizer, schedule), steps + 1
        return f"mean {task} loss {total / steps:.4f}"

    what = {"detection": "detector", "segmentation": "segmenter", "forensics": "forensic detector"}[task]
    settings = {"what": what, "arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "weight_decay": weight_decay, "seed": seed, "images": len(manifest.images)}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"model": model, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return model.cpu().eval()
