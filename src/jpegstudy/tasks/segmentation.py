"""Semantic segmentation: CSAIL's encoder/decoder pairs (mit-semseg) behind the task interface (jpegstudy.tasks).

Architectures (a model's `encoder` and `decoder`): the paper's seven ADE20K pairs, built by mit-semseg's own classes
and loaded from CSAIL's encoder_epoch_*.pth / decoder_epoch_*.pth strictly (tasks/segmentation_models), and the
embedded pairs, whose encoder is an embedded classifier (a torchvision ResNet or MobileNetV2, its weights kept, made
dilated at output stride 8 as CSAIL's) under a mit-semseg decoder. The network normalises (ImageNet mean/std)
inside, so the eval transform only makes a [0, 1] tensor and the differentiable transform is the identity.

Test protocol: single scale. The paper's pairs see the image resized so its short side is 450 px (the middle of
CSAIL's eval imgSizes 300-600; long side at most 1000) and rounded up to a multiple of 8 (CSAIL's padding constant),
as CSAIL's eval.py does at each scale; their scores are resized back to the label map's size. The embedded pairs
see the image at its own size (64 px). CSAIL's multi-scale test (the average over the five sizes) is left out: it
is five times the cost and the paper's JPEG comparisons hold at any one protocol.

Labels: ADE20K's, 0 = "other" (never scored, never trained on), 1..K the classes; channel c predicts label c + 1.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.tasks import reference_files, segmentation_metric
from jpegstudy.tasks import segmentation_models as zoo

NAME = "segmentation"
METRIC = ("miou", "mIoU")

TEST_SHORT_SIDE, TEST_MAX_SIDE, PADDING = 450, 1000, 8  # CSAIL's eval config (ade20k-*.yaml), one scale
PAPER_THROUGHPUT_SIZE = 512  # ADE20K's typical image side, for throughput figures


def build(encoder: str, decoder: str, num_classes: int, classifier: torch.nn.Module | None = None):
    """The untrained network of an (encoder, decoder) pair; nothing downloads. An embedded pair needs its encoder's
    classifier (from its reference file)."""
    if classifier is None:
        return zoo.paper_net(encoder, decoder, num_classes)
    return zoo.embedded_net(classifier, encoder, decoder, num_classes)


def save_reference(path, *, encoder: str, decoder: str, classes: list[str], image_size: int | None, source: str,
                   state_dict: dict, backbone: dict | None = None, transform: dict | None = None) -> None:
    """A segmenter's reference file: what build() needs again (the pair, classes, image size, the backbone
    classifier's reference fields without its weights) and the weights."""
    buf = io.BytesIO()
    torch.save({"task": NAME, "arch": f"{encoder}+{decoder}", "encoder": encoder, "decoder": decoder,
                "classes": classes, "image_size": image_size, "transform": transform or {}, "source": source,
                "backbone": backbone, "state_dict": state_dict}, buf)
    atomic.write_bytes(path, buf.getvalue())


def save_finetuned(path, meta: dict, *, source: str, state_dict: dict) -> None:
    save_reference(path, encoder=meta["encoder"], decoder=meta["decoder"], classes=meta["classes"],
                   image_size=meta["image_size"], source=source, state_dict=state_dict, backbone=meta["backbone"],
                   transform=meta["transform"])


def load_reference(path) -> tuple[torch.nn.Module, dict]:
    """The segmenter of a reference file, in eval mode, and the file's metadata."""
    ref = reference_files.read(path, NAME)
    classifier = reference_files.backbone_classifier(ref)
    model = build(ref["encoder"], ref["decoder"], len(ref["classes"]), classifier)
    return reference_files.load_weights(model, ref, path), reference_files.meta(ref)


def eval_transform(spec: dict):
    """To a [0, 1] tensor: the network normalises inside."""
    return TF.to_tensor


def tensor_transform(spec: dict):
    return lambda x: x


def check_eval_set(manifest, meta: dict, path, reference) -> None:
    if manifest.source.get("layout") != "ade20k":
        raise ValueError(f"{path}: not an ADE20K-layout set (no label maps); a segmenter needs them")
    if manifest.classes != meta["classes"]:
        raise ValueError(f"{path}: its classes differ from those {reference} was trained on")


def target_of(entry: dict) -> dict:
    """The entry itself: its label map is read when the batch is scored (score knows the manifest)."""
    return entry


def collate(items) -> tuple[torch.Tensor | list[torch.Tensor], list[dict]]:
    """Images of one size are stacked (the embedded scenes); ADE20K's differ, and stay a list."""
    images = [image for image, _ in items]
    same = len({tuple(image.shape) for image in images}) == 1
    return (torch.stack(images) if same else images), [entry for _, entry in items]


def test_size(height: int, width: int) -> tuple[int, int]:
    """The paper pairs' single-scale test size of an image (CSAIL's eval: short side 450, long side <= 1000, each
    rounded up to a multiple of 8)."""
    scale = min(TEST_SHORT_SIDE / min(height, width), TEST_MAX_SIDE / max(height, width))

    def rounded(side: int) -> int:
        return int(math.ceil(side * scale / PADDING) * PADDING)

    return rounded(height), rounded(width)


def infer(model: torch.nn.Module, x, targets=None) -> list[torch.Tensor]:
    """Each image's class scores (K, H, W) at its own size. An embedded pair takes the batch as it is; a paper pair
    each image at its CSAIL test size, its scores resized back."""
    images = list(x) if isinstance(x, list) else None
    if getattr(model, "embedded", False):
        if images is None:
            return list(model(x))
        return [model(image[None])[0] for image in images]
    out = []
    for image in (images if images is not None else list(x)):
        height, width = image.shape[-2:]
        resized = F.interpolate(image[None], size=test_size(height, width), mode="bilinear", align_corners=False)
        scores = model(resized)
        out.append(F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)[0])
    return out


def predicted_labels(scores: torch.Tensor) -> torch.Tensor:
    """ADE labels (1..K) of a (K, H, W) score map: the arg-max channel + 1."""
    return scores.argmax(0) + 1


def encode_map(label: np.ndarray) -> str:
    """A label map as a base64 PNG: the predictions file's compact, lossless form (ADE's own label map format)."""
    buf = io.BytesIO()
    Image.fromarray(label.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_map(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.array(im)


def score(model: torch.nn.Module, manifest, batches, device, confidence: dict | None = None) -> dict:
    """mIoU and pixel accuracy (%) of one eval set (segmentation_metric: sums over the set, classes absent from both
    ground truth and prediction left out), their bootstrap intervals over images, the per-image intersections and
    unions they are recomputed from, and each image's predicted label map (predictions)."""
    from jpegstudy.data import ade20k

    num_classes = len(manifest.classes)
    parts, predictions = [], []
    for x, entries in batches:
        x = [image.to(device) for image in x] if isinstance(x, list) else x.to(device)
        for scores, entry in zip(infer(model, x), entries):
            truth = ade20k.load_label(manifest, entry)
            pred = scores.argmax(0).cpu()
            if tuple(pred.shape) != truth.shape:
                raise ValueError(f"{ade20k.label_path(manifest, entry)}: label map {truth.shape[1]}x{truth.shape[0]}"
                                 f", but its image is {pred.shape[1]}x{pred.shape[0]}")
            try:
                parts.append(segmentation_metric.intersection_union(pred, torch.from_numpy(truth), num_classes))
            except ValueError as e:
                raise ValueError(f"{ade20k.label_path(manifest, entry)}: {e}") from None
            predictions.append({"annotation": entry["annotation"], "label_png": encode_map(pred.numpy() + 1)})
    arrays = [np.concatenate([p[k] for p in parts]) for k in range(4)]
    fields = segmentation_metric.summary(*arrays)
    record = segmentation_metric.record(*arrays)
    intervals = segmentation_metric.miou_interval(record, **(confidence or {}))
    out = {"miou": fields["miou"], "pixel_acc": fields["pixel_acc"], "class_iou": fields["class_iou"],
           "n_images": len(predictions)}
    for name, (low, high) in intervals.items():
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    return {**out, "per_image": record, "predictions": predictions}


def throughput_batch(meta: dict, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 images of the segmenter's image size and random label maps (its training step's targets)."""
    size = meta["image_size"] or PAPER_THROUGHPUT_SIZE
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, len(meta["classes"]) + 1, (n, size, size), generator=generator)
    return images, labels


def ttac_target(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every feature map of the encoder, as the paper's segmentation TTAC compares."""
    return model.features(x)


def finetune_loss(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CSAIL's training loss: NLL over labelled pixels (+ 0.4 x the deep-supervision branch's)."""
    return model.loss(x, labels)
