"""Task-Targeted Artifact Correction: the corrector trained so the task network cannot tell its output from the
original image. Loss = mean |Task(x) - Task(AC(JPEG_q(x)))|, q ~ U[10, 90] (or the corrector's own quality for the
quality-aware baselines), where Task is the task's ttac_target (classification: the logits; detection: the backbone
features). The task network is frozen in eval mode and no label is ever read.

Task(x) is computed once per batch without a graph; the corrector's output goes through the model's own
(differentiable) transform, so the gradient reaches the corrector through the task network.

Multihead TTAC (the paper's Section 4.4): one corrector against several frozen task networks at once, each with its
own training set; a step sums the members' TTAC losses on one batch of each into one update (restore.fit_streams).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


@dataclass
class Member:
    """One frozen task network of a multihead corrector and its own training set (batches of `batch_size`, resized
    to `crop` if given, `images_per_epoch` of them if given: training.batches')."""
    task: str
    model: torch.nn.Module
    transform_spec: dict
    manifest: Manifest
    batch_size: int
    crop: int | None = None
    images_per_epoch: int | None = None


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's weights and buffers: a resume checkpoint made against another network is not resumed."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _member_settings(m: Member) -> dict:
    return {"task": m.task, "weights": weights_digest(m.model), "transform": m.transform_spec,
            "manifest": str(m.manifest.location), "images": len(m.manifest.images), "batch_size": m.batch_size,
            "crop": m.crop, "images_per_epoch": m.images_per_epoch}


def _member_stream(corrector: Corrector, m: Member, dev) -> restore.Stream:
    t = tasks.get(m.task)
    model = freeze(m.model.to(dev))
    transform = t.tensor_transform(m.transform_spec)

    def loss(images, batch):
        return ttac_loss(t.ttac_target, model, transform, corrector, images, batch)

    return restore.Stream(m.manifest, loss, m.batch_size, m.crop, m.images_per_epoch, name=m.task)


def train_multihead(corrector: Corrector, members: list[Member], *, out, epochs: int, lr: float, lr_min: float,
                    seed: int, workers: int = 0, device: str = "cpu") -> Corrector:
    """Multihead TTAC: every step one batch of each member's set through its frozen network, the members' TTAC
    losses summed, one Adam step; an epoch is as many steps as the member with most (restore.fit_streams)."""
    if not members:
        raise ValueError("multihead TTAC needs at least one member (a task network and its training set)")
    dev = pick_device(device)
    streams = [_member_stream(corrector, m, dev) for m in members]
    return restore.fit_streams(corrector, streams, what="multihead", out=out, epochs=epochs, lr=lr, lr_min=lr_min,
                               seed=seed, workers=workers, device=device,
                               data_settings={"members": [_member_settings(m) for m in members]})
