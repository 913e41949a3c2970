"""GAN-image forensics: Wang et al.'s and Chai et al.'s real/fake detectors behind the task interface
(jpegstudy.tasks), scored on CNNDetection-layout sets (data/forensics: label 0 real, 1 fake).

Detectors (a model's `detector`; networks in tasks/forensics_models):
- wang2020 (Wang et al., CVPR 2020): a ResNet-50 with one output, sigmoid = P(fake), decided at 0.5. Test time:
  optionally a centre crop (`crop`, their demo's 224; none by default, as their eval), ImageNet normalisation.
- chai2020 (Chai et al., ECCV 2020): an Xception truncated after block `block` (theirs: 2) with a 1x1 convolution to
  two channels, a map of patch logits (channel 1 = fake). Test time: resized to `size` x `size` (Lanczos, as their
  PIL loader; none keeps the size), normalised to [-1, 1]. A patch is decided by its arg-max; the image by the
  majority of its patches (a tie by the mean patch P(fake)); the image's P(fake), for AP, is the patches' mean.

Both networks normalise inside (Detector), so the eval transform only crops or resizes a decoded image to a [0, 1]
tensor, and its differentiable twin does the same on batches (antialiased bicubic standing in for Lanczos, which
torch lacks: the embedded detectors are not resized at all). Embedded detectors are trained here
(train-forensic) on the embedded real/fake scenes with their own binary losses; the paper's load the authors'
checkpoints (resolve-forensic).
"""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.tasks import forensics_metric, reference_files
from jpegstudy.tasks import forensics_models as zoo

NAME = "forensics"
METRIC = ("accuracy", "Accuracy")
CLASSES = ["real", "fake"]
DETECTORS = ("wang2020", "chai2020")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PAPER_THROUGHPUT_SIZE = 256  # CNNDetection's ProGAN test images are 256 px


class Detector(torch.nn.Module):
    """A forensic network on [0, 1] RGB: its input normalisation inside (non-persistent buffers, so the state_dict
    is the network's own under `net.`)."""

    def __init__(self, net: torch.nn.Module, detector: str):
        super().__init__()
        self.net, self.detector = net, detector
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if detector == "wang2020" else ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def build(detector: str, settings: dict | None = None) -> Detector:
    """The untrained detector; `settings`: wang2020's layers and width, chai2020's block and width (defaults: the
    published networks). Nothing downloads."""
    settings = settings or {}
    if detector == "wang2020":
        net = zoo.wang_net(tuple(settings.get("layers", (3, 4, 6, 3))), settings.get("width", 64))
    elif detector == "chai2020":
        net = zoo.chai_net(settings.get("block", 2), settings.get("width", 1.0))
    else:
        raise ValueError(f"unknown forensic detector {detector!r}: one of {', '.join(DETECTORS)}")
    return Detector(net, detector)


def transform_of(detector: str, crop: int | None = None, size: int | None = None) -> dict:
    return {"detector": detector, "crop": crop if detector == "wang2020" else None,
            "size": size if detector == "chai2020" else None}


def save_reference(path, *, detector: str, settings: dict, transform: dict, image_size: int | None, source: str,
                   state_dict: dict, source_sha256: str | None = None) -> None:
    buf = io.BytesIO()
    torch.save({"task": NAME, "arch": detector, "detector": detector, "settings": settings, "classes": CLASSES,
                "transform": transform, "image_size": image_size, "source": source, "source_sha256": source_sha256,
                "state_dict": state_dict}, buf)
    atomic.write_bytes(path, buf.getvalue())


def save_finetuned(path, meta: dict, *, source: str, state_dict: dict) -> None:
    save_reference(path, detector=meta["detector"], settings=meta["settings"], transform=meta["transform"],
                   image_size=meta["image_size"], source=source, state_dict=state_dict)


def load_reference(path) -> tuple[torch.nn.Module, dict]:
    ref = reference_files.read(path, NAME)
    model = build(ref["detector"], ref["settings"])
    return reference_files.load_weights(model, ref, path), reference_files.meta(ref)


def resolve(detector: str, settings: dict, checkpoint: str) -> dict:
    """The state_dict of a Detector from the authors' checkpoint file (Wang's weights under "model", Chai's under
    "state_dict"), checked against the network `settings` builds."""
    model = build(detector, settings)
    loaded = (zoo.load_wang if detector == "wang2020" else zoo.load_chai)(checkpoint, model.net)
    model.net.load_state_dict(loaded)
    return model.state_dict()


def eval_transform(spec: dict):
    """The decoded (or corrected) image to a [0, 1] tensor: Wang's optional centre crop, Chai's Lanczos resize."""
    steps = []
    if spec.get("crop"):
        steps.append(T.CenterCrop(spec["crop"]))
    if spec.get("size"):
        steps.append(T.Resize((spec["size"], spec["size"]), interpolation=T.InterpolationMode.LANCZOS))
    return T.Compose([*steps, T.ToTensor()])


def tensor_transform(spec: dict):
    def apply(x: torch.Tensor) -> torch.Tensor:
        if spec.get("crop"):
            x = TF.center_crop(x, spec["crop"])
        if spec.get("size") and tuple(x.shape[-2:]) != (spec["size"],) * 2:
            x = F.interpolate(x, size=(spec["size"],) * 2, mode="bicubic", antialias=True, align_corners=False)
        return x

    return apply


def check_eval_set(manifest, meta: dict, path, reference) -> None:
    if manifest.source.get("layout") != "forensics":
        raise ValueError(f"{path}: not a real/fake set (CNNDetection layout: 0_real and 1_fake folders); a forensic "
                         "detector needs one")
    if manifest.classes != CLASSES:
        raise ValueError(f"{path}: classes {manifest.classes}, not {CLASSES}")


def target_of(entry: dict) -> int:
    return entry["label"]


def collate(items) -> tuple[torch.Tensor, torch.Tensor]:
    images = [image for image, _ in items]
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise ValueError(f"images of different sizes {sorted(sizes)[:2]} in one batch; give the detector a crop "
                         "(wang2020) or a size (chai2020)")
    return torch.stack(images), torch.tensor([label for _, label in items])


def infer(model: torch.nn.Module, x: torch.Tensor, targets=None) -> torch.Tensor:
    """Wang's (N, 1) logits; Chai's (N, 2, h, w) patch logits."""
    return model(x)


def decide(model: torch.nn.Module, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(P(fake), decision, patch decisions or None) of each image from the detector's output."""
    if model.detector == "wang2020":
        p = torch.sigmoid(out[:, 0])
        return p, (p > 0.5).long(), None
    patch_p = out.softmax(1)[:, 1]
    patches = out.argmax(1)
    votes = patches.float().mean((1, 2))
    p = patch_p.mean((1, 2))
    decision = torch.where(votes == 0.5, (p > 0.5).long(), (votes > 0.5).long())
    return p, decision, patches


def score(model: torch.nn.Module, manifest, batches, device, confidence: dict | None = None) -> dict:
    """Accuracy (the paper's: patch accuracy for chai2020, image accuracy for wang2020), image and patch accuracy,
    the real and fake halves' accuracy, AP (%), their bootstrap intervals, and per-image results (P(fake), decision,
    the fraction of patches right) as predictions."""
    labels, scores, decisions, patch_right = [], [], [], []
    for x, y in batches:
        p, decision, patches = decide(model, infer(model, x.to(device)).detach())
        labels.append(y)
        scores.append(p.cpu())
        decisions.append(decision.cpu())
        if patches is not None:
            patch_right.append((patches.cpu() == y.view(-1, 1, 1)).float().mean((1, 2)))
    labels, scores, decisions = (torch.cat(v).numpy() for v in (labels, scores, decisions))
    patch = torch.cat(patch_right).numpy() if patch_right else None
    fields = forensics_metric.summary(labels, scores, decisions, patch, confidence)
    predictions = [{"path": entry["path"], "label": int(label), "p_fake": round(float(s), 6), "fake": int(d),
                    **({} if patch is None else {"patches_right": round(float(r), 6)})}
                   for entry, label, s, d, r in zip(manifest.images, labels, scores, decisions,
                                                    patch if patch is not None else [None] * len(labels))]
    return {**fields, "n_images": len(labels), "predictions": predictions}


def throughput_batch(meta: dict, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 images of the detector's input size and random real/fake labels."""
    t = meta["transform"]
    size = t.get("size") or t.get("crop") or meta["image_size"] or PAPER_THROUGHPUT_SIZE
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    return images, torch.randint(0, 2, (n,), generator=generator)


def ttac_target(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The detector's logits (Chai's: the map of patch logits), as the paper's forensics TTAC compares."""
    return model(x)


def finetune_loss(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Their binary losses: Wang's BCE on the logit; Chai's cross-entropy of every patch with the image's label."""
    out = model(x)
    if model.detector == "wang2020":
        return F.binary_cross_entropy_with_logits(out[:, 0], labels.float())
    return F.cross_entropy(out, labels.view(-1, 1, 1).expand(-1, *out.shape[-2:]))

