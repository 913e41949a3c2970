"""Training images for the mitigations (and the detectors): lossless originals, augmented, in a seeded random order.

They are never compressed on disk: the training loops compress every batch on the fly (correction.inputs).
"""

from __future__ import annotations

import itertools

import torch
from torchvision import transforms as T
from torchvision import tv_tensors
from torchvision.transforms import v2

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


def _flip(crop: int | None):
    """A random horizontal flip (after a resize to crop x crop, if given) that transforms.v2 applies alike to the
    image and its boxes, masks and label maps."""
    return v2.Compose([*([v2.Resize((crop, crop))] if crop is not None else []), v2.RandomHorizontalFlip()])


class DetectionTrainingImages(torch.utils.data.Dataset):
    """(uint8 (3, H, W) image, torchvision detection target) of a COCO-layout split: its boxes, labels and masks
    (data/coco.to_targets: crowd regions and degenerate boxes are not targets), flipped at random with the image;
    with `crop`, resized to crop x crop first. torchvision.transforms.v2 moves the boxes and masks with the pixels,
    and the image's precomputed proposals with them (`proposals`: a Fast R-CNN's table, image id -> boxes)."""

    def __init__(self, manifest: Manifest, crop: int | None = None, proposals: dict | None = None):
        from jpegstudy.data import coco  # pycocotools: only detection data needs it

        self.manifest = manifest
        self.coco = coco.load_annotations(manifest)
        self.to_targets = coco.to_targets
        self.proposals = proposals
        self.transform = _flip(crop)

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        entry = self.manifest.images[i]
        image = T.functional.pil_to_tensor(load_rgb(self.manifest.path_of(i), entry.get("sha256")))
        target = self.to_targets(self.coco, entry["id"], self.manifest.source["category_ids"])
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
        masks = tv_tensors.Mask(target["masks"]) if "masks" in target else None
        proposals = None if self.proposals is None else tv_tensors.BoundingBoxes(
            self.proposals[entry["id"]], format="XYXY", canvas_size=tuple(image.shape[-2:]))
        image, boxes, masks, proposals = self.transform(tv_tensors.Image(image), boxes, masks, proposals)
        out = {"boxes": boxes.as_subclass(torch.Tensor), "labels": target["labels"]}
        if masks is not None:
            out["masks"] = masks.as_subclass(torch.Tensor)
        if proposals is not None:
            out["proposals"] = proposals.as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), out


class SegmentationTrainingImages(torch.utils.data.Dataset):
    """(uint8 (3, H, W) image, int64 (H, W) label map) of an ADE20K-layout split, flipped at random together; with
    `crop`, resized to crop x crop first (the label map by nearest neighbour: transforms.v2 does so for a Mask)."""

    def __init__(self, manifest: Manifest, crop: int | None = None):
        from jpegstudy.data import ade20k

        self.manifest = manifest
        self.load_label = ade20k.load_label
        self.transform = _flip(crop)

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        entry = self.manifest.images[i]
        image = T.functional.pil_to_tensor(load_rgb(self.manifest.path_of(i), entry.get("sha256")))
        label = tv_tensors.Mask(torch.from_numpy(self.load_label(self.manifest, entry)).long())
        image, label = self.transform(tv_tensors.Image(image), label)
        return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)


def _stack_detection(items):
    """(images stacked, their targets as a list): the correctors and the JPEG round trip take one tensor."""
    sizes = {tuple(image.shape) for image, _ in items}
    if len(sizes) > 1:
        raise ValueError(f"detection training images of different sizes {sorted(sizes)[:2]} in one batch; set the "
                         f"task's mitigate.crop to resize them to one square")
    return torch.stack([image for image, _ in items]), [target for _, target in items]


def training_set(manifest: Manifest, crop: int | None = None, proposals: dict | None = None):
    """The training items of a split, by its layout: COCO's (detection targets), ADE20K's (label maps) or a
    classification split's."""
    if manifest.source.get("layout") == "coco":
        return DetectionTrainingImages(manifest, crop, proposals), _stack_detection
    if manifest.source.get("layout") == "ade20k":
        return SegmentationTrainingImages(manifest, crop), None
    return TrainingImages(manifest, crop), None


def steps_per_epoch(manifest: Manifest, batch_size: int, images_per_epoch: int | None = None) -> int:
    images = len(manifest.images) if images_per_epoch is None else min(images_per_epoch, len(manifest.images))
    return max(images // batch_size, 1)


def batches(manifest: Manifest, *, batch_size: int, generator: torch.Generator, crop: int | None = None,
            workers: int = 0, images_per_epoch: int | None = None, proposals: dict | None = None):
    """One epoch's batches; the order and the workers' seeds come from `generator` (seeded per epoch). With
    `images_per_epoch`, the epoch stops after that many images of the shuffled split (a fresh sample each epoch);
    `proposals`: a Fast R-CNN's, carried in the targets."""
    if len(manifest.images) < batch_size:
        raise ValueError(f"{manifest.location}: {len(manifest.images)} training images, fewer than one batch of "
                         f"{batch_size}")
    # drop_last: batch norm cannot train on a last batch of one image, and every step then sees batch_size images.
    items, collate = training_set(manifest, crop, proposals)
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator,
                                         num_workers=workers, drop_last=True, collate_fn=collate)
    return itertools.islice(loader, steps_per_epoch(manifest, batch_size, images_per_epoch))
