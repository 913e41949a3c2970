"""Off-the-shelf artifact correction: the corrector trained for image quality alone, no task in sight.

QGAC: pixel loss L1 - 0.05 SSIM (its published recipe) at a quality drawn uniformly from [10, 90] for every image.
ARCNN and IDCN are quality-aware: one network per quality, trained with MSE (their papers' loss) at that quality.
Adam with cosine annealing; resumable per epoch (train.loop).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from jpegstudy.correction import inputs
from jpegstudy.correction.corrector import Corrector
from jpegstudy.data import training
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.train import loop

SSIM_WEIGHT = 0.05


def pixel_loss(network: str, restored: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    if network == "qgac":
        return (restored - original).abs().mean() - SSIM_WEIGHT * ssim(restored, original, data_range=1.0)
    return torch.nn.functional.mse_loss(restored, original)


def qualities_for(corrector: Corrector, n: int, generator: torch.Generator) -> list[int]:
    """A quality-aware corrector sees its own quality only; QGAC one drawn per image from [10, 90]."""
    if corrector.quality is not None:
        return [corrector.quality] * n
    return inputs.draw_qualities(n, generator)


def fit(corrector: Corrector, manifest: Manifest, loss_fn, *, what: str, out, epochs: int, batch_size: int,
        lr: float, lr_min: float, seed: int, crop: int | None = None, workers: int = 0,
        images_per_epoch: int | None = None, device: str = "cpu") -> Corrector:
    """Adam with cosine annealing on the corrector, resumable per epoch; `loss_fn(images, jpeg_batch)` (uint8
    originals and their JPEGs, on the device) is what `what` (offtheshelf, ttac) minimises."""
    dev = pick_device(device)
    torch.manual_seed(seed)
    corrector.to(dev).train()
    optimizer = torch.optim.Adam(corrector.parameters(), lr=lr)
    schedule = loop.cosine(optimizer, epochs * training.steps_per_epoch(manifest, batch_size, images_per_epoch),
                           lr_min)

    def epoch(_: int, generator: torch.Generator) -> str:
        total = steps = 0
        # The labels the loader yields are dropped here, unread: correctors are trained without any.
        for images, _labels in training.batches(manifest, batch_size=batch_size, generator=generator, crop=crop,
                                                workers=workers, images_per_epoch=images_per_epoch):
            batch = inputs.from_images(images, qualities_for(corrector, len(images), generator)).to(dev)
            loss = loss_fn(images.to(dev), batch)
            total, steps = total + loop.step(loss, optimizer, schedule), steps + 1
        return f"{corrector.describe()} {what} loss {total / steps:.4f}"

    settings = {"what": what, "network": corrector.network, "kwargs": corrector.kwargs,
                "quality": corrector.quality, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "lr_min": lr_min, "seed": seed, "crop": crop, "images": len(manifest.images),
                "images_per_epoch": images_per_epoch}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"corrector": corrector, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return corrector.cpu().eval()


def train(corrector: Corrector, manifest: Manifest, **kwargs) -> Corrector:
    """Off the shelf: the pixel loss against the lossless original. kwargs: those of fit()."""
    def loss(images, batch):
        return pixel_loss(corrector.network, corrector(batch), images.float() / 255)

    return fit(corrector, manifest, loss, what="offtheshelf", **kwargs)
