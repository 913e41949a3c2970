"""Off-the-shelf artifact correction: the corrector trained for image quality alone, no task in sight.

QGAC: pixel loss L1 - 0.05 SSIM (its published recipe) at a quality drawn uniformly from [10, 90] for every image.
ARCNN and IDCN are quality-aware: one network per quality, trained with MSE (their papers' loss) at that quality.
Adam with cosine annealing; resumable per epoch (train.loop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def qualities_for(corrector: Corrector, n: int, generator: torch.Generator,
                  degradation: inputs.Degradation = inputs.JPEG) -> list[int]:
    """A quality-aware corrector sees its own quality only; QGAC one drawn per image from [10, 90] (a codec's
    corrector, from that codec's range)."""
    if corrector.quality is not None:
        return [corrector.quality] * n
    return degradation.qualities(n, generator)


@dataclass(frozen=True)
class Stream:
    """One training set a corrector learns from: its batches (`crop`, `images_per_epoch`: training.batches') and
    `loss_fn(images, jpeg_batch)` on them (uint8 originals and their JPEGs, on the device)."""
    manifest: Manifest
    loss_fn: Callable
    batch_size: int
    crop: int | None = None
    images_per_epoch: int | None = None
    name: str = ""

    def steps(self) -> int:
        return training.steps_per_epoch(self.manifest, self.batch_size, self.images_per_epoch)


def fit(corrector: Corrector, manifest: Manifest, loss_fn, *, what: str, out, epochs: int, batch_size: int,
        lr: float, lr_min: float, seed: int, crop: int | None = None, workers: int = 0,
        images_per_epoch: int | None = None, device: str = "cpu",
        degradation: inputs.Degradation = inputs.JPEG) -> Corrector:
    """Adam with cosine annealing on the corrector, resumable per epoch; `loss_fn(images, jpeg_batch)` (uint8
    originals and their JPEGs, on the device) is what `what` (offtheshelf, ttac) minimises. fit_streams with one
    stream (its settings, and so its resume checkpoints, as before there were several)."""
    stream = Stream(manifest, loss_fn, batch_size, crop, images_per_epoch)
    data = {"batch_size": batch_size, "crop": crop, "images": len(manifest.images),
            "images_per_epoch": images_per_epoch, **degradation.settings()}
    return fit_streams(corrector, [stream], what=what, out=out, epochs=epochs, lr=lr, lr_min=lr_min, seed=seed,
                       workers=workers, device=device, data_settings=data, degradation=degradation)


def _endless(stream: Stream, generator: torch.Generator, workers: int):
    """A stream's batches, its epoch's loader started again (a fresh shuffle from `generator`) when it runs out:
    a member with fewer steps than the epoch's repeats its images."""
    while True:
        yield from training.batches(stream.manifest, batch_size=stream.batch_size, generator=generator,
                                    crop=stream.crop, workers=workers, images_per_epoch=stream.images_per_epoch)


def fit_streams(corrector: Corrector, streams: list[Stream], *, what: str, out, epochs: int, lr: float,
                lr_min: float, seed: int, data_settings: dict, workers: int = 0, device: str = "cpu",
                degradation: inputs.Degradation = inputs.JPEG) -> Corrector:
    """fit() on several training sets at once: each step takes one batch of every stream, sums their losses and
    makes one update. An epoch is as many steps as the stream with most; the shorter ones start again. All random
    choices come from the epoch's generator, the streams' in their order. `data_settings`: what of the streams
    the resume checkpoint's fingerprint holds (beside the corrector's and the optimiser's settings)."""
    if not streams:
        raise ValueError(f"{what}: no training set to train the corrector on")
    dev = pick_device(device)
    torch.manual_seed(seed)
    corrector.to(dev).train()
    optimizer = torch.optim.Adam(corrector.parameters(), lr=lr)
    steps = max(s.steps() for s in streams)
    schedule = loop.cosine(optimizer, epochs * steps, lr_min)

    def epoch(_: int, generator: torch.Generator) -> str:
        totals = [0.0] * len(streams)
        feeds = [_endless(s, generator, workers) for s in streams]
        for _step in range(steps):
            losses = [_stream_loss(corrector, s, next(feed), generator, dev, degradation)
                      for s, feed in zip(streams, feeds)]
            loop.step(sum(losses[1:], losses[0]), optimizer, schedule)  # one stream: its loss itself
            totals = [t + loss.item() for t, loss in zip(totals, losses)]
        return _epoch_line(f"{corrector.describe()} {what}", streams, [t / steps for t in totals])

    settings = {"what": what, "network": corrector.network, "kwargs": corrector.kwargs,
                "quality": corrector.quality, "epochs": epochs, "lr": lr, "lr_min": lr_min, "seed": seed,
                **data_settings}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"corrector": corrector, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return corrector.cpu().eval()


def _stream_loss(corrector: Corrector, stream: Stream, item, generator: torch.Generator, dev,
                 degradation: inputs.Degradation) -> torch.Tensor:
    # The labels the loader yields are dropped here, unread: correctors are trained without any.
    images, _labels = item
    batch = degradation.batch(images, qualities_for(corrector, len(images), generator, degradation)).to(dev)
    return stream.loss_fn(images.to(dev), batch)


def _epoch_line(what: str, streams: list[Stream], means: list[float]) -> str:
    """The mean loss of the epoch's steps; with several streams, the sum's and each stream's."""
    line = f"{what} loss {sum(means):.4f}"
    if len(streams) == 1:
        return line
    return line + " (" + ", ".join(f"{s.name or i + 1} {m:.4f}" for i, (s, m) in enumerate(zip(streams, means))) + ")"


def train(corrector: Corrector, manifest: Manifest, **kwargs) -> Corrector:
    """Off the shelf: the pixel loss against the lossless original. kwargs: those of fit()."""
    def loss(images, batch):
        return pixel_loss(corrector.network, corrector(batch), images.float() / 255)

    return fit(corrector, manifest, loss, what="offtheshelf", **kwargs)
