"""Training images for the mitigations: lossless originals, augmented, in a seeded random order.

They are never compressed on disk: the training loops compress every batch on the fly (correction.inputs).
"""

from __future__ import annotations

import itertools

import torch
from torchvision import transforms as T

from jpegstudy.data.images import load_rgb
from jpegstudy.data.manifest import Manifest


class TrainingImages(torch.utils.data.Dataset):
    """(uint8 (3, H, W) image, label). Without `crop`, the images keep their size (all equal, as the embedded
    data's) and are shifted by up to 4 px; with `crop`, a random resized crop of that side (ImageNet training)."""

    def __init__(self, manifest: Manifest, crop: int | None = None):
        self.manifest = manifest
        self.crop = crop

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        image = load_rgb(self.manifest.path_of(i), self.manifest.images[i].get("sha256"))
        if self.crop is None:
            size = (image.height, image.width)
            t = T.Compose([T.RandomCrop(size, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip()])
        else:
            t = T.Compose([T.RandomResizedCrop(self.crop), T.RandomHorizontalFlip()])
        return T.functional.pil_to_tensor(t(image)), self.manifest.images[i]["label"]


def steps_per_epoch(manifest: Manifest, batch_size: int, images_per_epoch: int | None = None) -> int:
    images = len(manifest.images) if images_per_epoch is None else min(images_per_epoch, len(manifest.images))
    return max(images // batch_size, 1)


def batches(manifest: Manifest, *, batch_size: int, generator: torch.Generator, crop: int | None = None,
            workers: int = 0, images_per_epoch: int | None = None):
    """One epoch's batches; the order and the workers' seeds come from `generator` (seeded per epoch). With
    `images_per_epoch`, the epoch stops after that many images of the shuffled split (a fresh sample each epoch)."""
    if len(manifest.images) < batch_size:
        raise ValueError(f"{manifest.location}: {len(manifest.images)} training images, fewer than one batch of "
                         f"{batch_size}")
    # drop_last: batch norm cannot train on a last batch of one image, and every step then sees batch_size images.
    loader = torch.utils.data.DataLoader(TrainingImages(manifest, crop), batch_size=batch_size, shuffle=True,
                                         generator=generator, num_workers=workers, drop_last=True)
    return itertools.islice(loader, steps_per_epoch(manifest, batch_size, images_per_epoch))
