"""Classification: the model zoo (torchvision architectures + a weight source each), eval transforms, top-k.

A weight source is one of: "train" (trained here on the embedded data by train/reference.py), a torchvision weights
name such as "IMAGENET1K_V1" (resolved through torchvision's weights API), or a path to a local checkpoint.
Every model is stored once resolved as a "reference" file: {arch, build_kwargs, classes, transform, source,
state_dict}, so evaluation never needs the network or the original weight source again.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.data.imagenet import WNID
from jpegstudy.errors import ModelError


@dataclass(frozen=True)
class Architecture:
    name: str
    head: str  # the state_dict key of the classifier's weight: its first dimension is the class count
    default_weights: str
    pretrained_kwargs: dict = field(default_factory=dict)  # what torchvision's builder sets when weights are given


# The paper's nine classifiers.
ARCHITECTURES = {a.name: a for a in [
    Architecture("resnet18", "fc.weight", "IMAGENET1K_V1"),
    Architecture("resnet50", "fc.weight", "IMAGENET1K_V1"),
    Architecture("resnet101", "fc.weight", "IMAGENET1K_V1"),
    Architecture("resnext50_32x4d", "fc.weight", "IMAGENET1K_V1"),
    Architecture("resnext101_32x8d", "fc.weight", "IMAGENET1K_V1"),
    Architecture("vgg19", "classifier.6.weight", "IMAGENET1K_V1"),
    Architecture("mobilenet_v2", "classifier.1.weight", "IMAGENET1K_V1"),
    # torchvision's pretrained Inception expects its own input rescaling and keeps the auxiliary head's weights.
    Architecture("inception_v3", "fc.weight", "IMAGENET1K_V1",
                 {"transform_input": True, "aux_logits": True, "init_weights": False}),
    Architecture("efficientnet_b3", "classifier.1.weight", "IMAGENET1K_V1"),
]}

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                  "nearest": T.InterpolationMode.NEAREST}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown classification model {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def torchvision_weights(arch: str, weights: str):
    """The torchvision weights enum member `weights` of `arch` (no download happens here)."""
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[weights]
    except KeyError:
        raise ModelError(f"{arch}: no torchvision weights {weights!r}; available: "
                         f"{', '.join(m.name for m in enum)}") from None


def default_transform(arch: str, weights: str | None = None) -> dict:
    """The eval transform torchvision documents for `arch` with `weights` (its default weights if None)."""
    w = torchvision_weights(arch, weights or architecture(arch).default_weights)
    t = w.transforms()
    return {"resize": int(t.resize_size[0]), "crop": int(t.crop_size[0]), "interpolation": t.interpolation.value,
            "mean": list(t.mean), "std": list(t.std)}


def transform_spec(arch: str, source: str, override: dict | None, image_size: int | None = None) -> dict:
    """The eval transform of a model: torchvision's for its weights, or the embedded size, updated by `override`."""
    if source == "train":
        spec = {"resize": image_size, "crop": image_size, "interpolation": "bilinear",
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    else:
        spec = default_transform(arch, source if is_torchvision_weights(source) else None)
    spec.update(override or {})
    if spec["interpolation"] not in INTERPOLATIONS:
        raise ModelError(f"{arch}: interpolation {spec['interpolation']!r} not one of {', '.join(INTERPOLATIONS)}")
    return spec


def eval_transform(spec: dict) -> T.Compose:
    """Resize (shorter side), centre crop, to tensor, normalise: applied to the *decoded* JPEG."""
    return T.Compose([
        T.Resize(spec["resize"], interpolation=INTERPOLATIONS[spec["interpolation"]], antialias=True),
        T.CenterCrop(spec["crop"]),
        T.ToTensor(),
        T.Normalize(spec["mean"], spec["std"]),
    ])


def tensor_transform(spec: dict):
    """eval_transform's differentiable twin, on (N, 3, H, W) RGB tensors in [0, 1]: what TTAC and fine-tuning put
    between a corrected (or JPEG) batch and the model, so gradients reach the corrector."""
    interpolation = INTERPOLATIONS[spec["interpolation"]]
    normalize = T.Normalize(spec["mean"], spec["std"])

    def apply(x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) != spec["resize"]:
            x = TF.resize(x, spec["resize"], interpolation=interpolation, antialias=True)
        return normalize(TF.center_crop(x, spec["crop"]))

    return apply


def is_torchvision_weights(source: str) -> bool:
    """Weights enum names are upper case (IMAGENET1K_V1, DEFAULT); anything else is "train" or a file path."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*", source) is not None


def build(arch: str, num_classes: int, build_kwargs: dict | None = None) -> torch.nn.Module:
    architecture(arch)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **(build_kwargs or {}))


def extract_state_dict(obj, path: str) -> dict:
    """A plain state_dict from what users save: the dict itself, or nested under state_dict/model; no DDP prefix."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: not a state_dict (expected a dict of tensors, or one under 'state_dict'/'model')")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def fit_state_dict(model: torch.nn.Module, state_dict: dict, arch: str, source: str) -> None:
    """Load `state_dict` into `model`, or refuse it with one line saying which keys or shapes do not fit."""
    expected = model.state_dict()
    head = architecture(arch).head
    if head in state_dict and state_dict[head].shape != expected[head].shape:
        raise ModelError(f"{source}: checkpoint has {state_dict[head].shape[0]} classes ({head} "
                         f"{list(state_dict[head].shape)}) but the dataset has {expected[head].shape[0]}")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = [_first_keys(what, keys) for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ModelError(f"{source}: checkpoint does not fit {arch}: {'; '.join(parts)}")
    for k, v in expected.items():
        if state_dict[k].shape != v.shape:
            raise ModelError(f"{source}: checkpoint does not fit {arch}: {k} has shape {list(state_dict[k].shape)}, "
                             f"the architecture {list(v.shape)}")
    model.load_state_dict(state_dict)


def _first_keys(what: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
    return f"{what} keys {', '.join(keys[:3])}{more}"


def resolve(arch: str, source: str, classes: list[str]) -> tuple[dict, dict]:
    """(state_dict, build_kwargs) for a torchvision weights name or a local checkpoint path."""
    spec = architecture(arch)
    if is_torchvision_weights(source):
        weights = torchvision_weights(arch, source)
        n = len(weights.meta["categories"])
        if n != len(classes):
            raise ModelError(f"{arch} {source}: weights have {n} classes but the dataset has {len(classes)}")
        odd = next((c for c in classes if not WNID.fullmatch(c)), None)
        if odd is not None:
            # torchvision's ImageNet weights index classes in sorted WordNet-id order; other folder names sort
            # differently and would silently scramble the labels.
            raise ModelError(f"{arch} {source}: class {odd!r} is not a WordNet id (n########); ImageNet weights need "
                             f"the dataset's classes to be the 1000 WordNet ids")
        model = torchvision.models.get_model(arch, weights=weights)  # downloads to TORCH_HOME unless cached
        return model.state_dict(), dict(spec.pretrained_kwargs)
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"{source}: checkpoint not found (weights must be 'train', a torchvision weights name "
                         f"such as {spec.default_weights}, or a checkpoint file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ModelError(f"{source}: cannot load checkpoint ({str(e).splitlines()[0]})") from None
    state_dict = extract_state_dict(obj, source)
    kwargs = dict(spec.pretrained_kwargs) if "AuxLogits.fc.weight" in state_dict else {}
    model = build(arch, len(classes), kwargs)
    fit_state_dict(model, state_dict, arch, source)
    return model.state_dict(), kwargs


def save_reference(path, *, arch: str, build_kwargs: dict, classes: list[str], transform: dict, source: str,
                   state_dict: dict) -> None:
    """Write a reference file. The checkpoint a model came from is recorded with its sha256."""
    source_sha256 = atomic.sha256_file(source) if Path(source).is_file() else None
    buf = io.BytesIO()
    # Saved to memory first: torch.save names the archive's folder after the file it writes to, and a temporary
    # name would make identical models differ byte for byte.
    torch.save({"arch": arch, "build_kwargs": build_kwargs, "classes": classes, "transform": transform,
                "source": source, "source_sha256": source_sha256, "state_dict": state_dict}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_reference(path) -> tuple[torch.nn.Module, dict]:
    """The model of a reference file, in eval mode, and the file's metadata."""
    ref = torch.load(path, map_location="cpu", weights_only=True)
    model = build(ref["arch"], len(ref["classes"]), ref["build_kwargs"])
    fit_state_dict(model, ref["state_dict"], ref["arch"], str(path))
    return model.eval(), {k: v for k, v in ref.items() if k != "state_dict"}


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image bool: is the label among the `k` highest logits?"""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
