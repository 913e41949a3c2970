"""Classification: the model zoo, the eval transforms, top-k.

An architecture (a model's `arch` in config; its name when no arch is given) is spelled one of five ways
(parse_arch):

    resnet18                   the paper's nine, bare (ARCHITECTURES): torchvision builders whose classifier key and
                               pretrained layout are known
    torchvision:convnext_tiny  any torchvision classifier (torchvision.models.list_models(module=torchvision.models))
    timm:resnet18              any timm model, optionally with its pretrained tag (timm:resnet18.a1_in1k); always
                               built with pretrained=False: nothing downloads
    mypkg.models:build         a function returning a torch.nn.Module, called as build(num_classes=N); the module is
                               imported as Python imports it, else looked for in the working directory, then in the
                               jpegstudy checkout (the folder of the Snakefile)
    path/to/file.py:build      the same from a Python file, relative to the working directory, else to the checkout

A weight source is one of: "train" (trained here on the embedded data by train/reference.py), a torchvision weights
name such as "IMAGENET1K_V1" (torchvision architectures only; resolved through torchvision's weights API), or a path
to a local checkpoint (a state_dict, nested or not; .safetensors too).
Every model is stored once resolved as a "reference" file: {arch, build_kwargs, classes, transform, source,
state_dict} (+ "builder": the file that defines a user's function and its sha256, or timm's version), so evaluation
never needs the original weight source again, and rebuilds a user's model from the very file it was trained with.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.data import loader
from jpegstudy.data.imagenet import WNID
from jpegstudy.errors import ModelError
from jpegstudy.tasks.zoo import (TORCHVISION_PRETRAINED_KWARGS, Builder, _first_line, _function,
                                 default_weights, known_architecture, parse_arch, torchvision_weights)
# The zoo's names that callers use from here, beside the task's own.
from jpegstudy.tasks.zoo import (ARCHITECTURES, IMAGENET_MEAN, IMAGENET_STD, architecture,  # noqa: F401
                                 is_torchvision_weights, transform_spec)

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                  "nearest": T.InterpolationMode.NEAREST}


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



def build(arch: str, num_classes: int, build_kwargs: dict | None = None) -> torch.nn.Module:
    """The untrained network of `arch` (any spelling) with `num_classes` outputs; nothing downloads."""
    return _build(parse_arch(arch), num_classes, build_kwargs or {})


def _build(b: Builder, num_classes: int, kwargs: dict) -> torch.nn.Module:
    if b.kind == "torchvision":
        return torchvision.models.get_model(b.name, weights=None, num_classes=num_classes, **kwargs)
    if b.kind == "timm":
        import timm

        return timm.create_model(b.name, pretrained=False, num_classes=num_classes, **kwargs)
    fn = _function(b)
    call = f"{b.name}(num_classes={num_classes})"
    try:
        model = fn(num_classes=num_classes, **kwargs)
    except Exception as e:  # noqa: BLE001 - a user's function may raise anything; one line names it
        raise ModelError(f"{b.arch}: {call} failed ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{b.arch}: {call} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def head_key(model: torch.nn.Module, arch: str) -> str | None:
    """The state_dict key of the classifier's weight (its first dimension is the class count): the zoo's for the
    nine, timm's get_classifier(), else the last Linear or Conv2d layer."""
    known = known_architecture(arch)
    if known:
        return known.head
    modules = dict(model.named_modules())
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # noqa: BLE001 - a model's own method; fall back to the generic search
            head = None
        head = head[0] if isinstance(head, (tuple, list)) and head else head
        name = next((n for n, m in modules.items() if n and m is head), None)
        if name is not None and isinstance(getattr(head, "weight", None), torch.Tensor):
            return f"{name}.weight"
    last = [n for n, m in modules.items() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return f"{last[-1]}.weight" if last else None


def check_output(model: torch.nn.Module, arch: str, num_classes: int, crop: int) -> None:
    """Refuse a network that does not map a crop x crop image to `num_classes` logits (one forward pass, CPU)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, crop, crop))
    except Exception as e:  # noqa: BLE001 - any architecture's complaint, in one line
        raise ModelError(f"{arch}: fails on a {crop}x{crop} input ({type(e).__name__}: {_first_line(e)})") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        what = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{arch}: returns {what} for one image, not (images, classes) logits")
    if out.shape[1] != num_classes:
        raise ModelError(f"{arch}: outputs {out.shape[1]} logits but the dataset has {num_classes} classes "
                         f"(does it pass num_classes on to its classifier?)")


def check_model(arch: str, num_classes: int, crop: int) -> None:
    """Build `arch` and check its output (check_output); the paper's nine are known to fit and are not run."""
    b = parse_arch(arch)
    if not b.known:
        check_output(_build(b, num_classes, {}), arch, num_classes, crop)


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
    head = head_key(model, arch)
    if head in state_dict and head in expected and state_dict[head].shape[:1] != expected[head].shape[:1]:
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


def _load_checkpoint(source: str):
    if source.endswith(".safetensors"):
        from safetensors.torch import load_file  # installed with timm

        return load_file(source, device="cpu")
    return torch.load(source, map_location="cpu", weights_only=True)


def resolve(arch: str, source: str, classes: list[str], crop: int | None = None) -> tuple[dict, dict]:
    """(state_dict, build_kwargs) for a torchvision weights name or a local checkpoint path. With `crop`, a network
    outside the nine is first run once on a crop x crop image to check it outputs one logit per class."""
    b = parse_arch(arch)
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
        model = torchvision.models.get_model(b.name, weights=weights)  # downloads to TORCH_HOME unless cached
        if b.known:
            return model.state_dict(), dict(b.known.pretrained_kwargs)
        kwargs = dict(TORCHVISION_PRETRAINED_KWARGS.get(b.name, {}))
        if b.name.startswith("vit_") and weights.meta["min_size"][0] != 224:
            kwargs["image_size"] = weights.meta["min_size"][0]  # as torchvision's builder sets it for these weights
        fit_state_dict(build(arch, n, kwargs), model.state_dict(), arch, source)  # the reference will rebuild
        return model.state_dict(), kwargs
    path = Path(source)
    if not path.is_file():
        named = f"a torchvision weights name such as {default_weights(arch)}, " if b.kind == "torchvision" else ""
        raise ModelError(f"{source}: checkpoint not found (weights must be 'train', {named}or a checkpoint file)")
    try:
        obj = _load_checkpoint(source)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ModelError(f"{source}: cannot load checkpoint ({str(e).splitlines()[0]})") from None
    state_dict = extract_state_dict(obj, source)
    if b.known:
        kwargs = dict(b.known.pretrained_kwargs) if "AuxLogits.fc.weight" in state_dict else {}
    elif b.name == "googlenet" and b.kind == "torchvision" and "aux1.conv.conv.weight" not in state_dict:
        kwargs = dict(TORCHVISION_PRETRAINED_KWARGS["googlenet"])  # saved from torchvision's pretrained layout
    else:
        kwargs = {}
    model = build(arch, len(classes), kwargs)
    if crop is not None and not b.known:
        check_output(model, arch, len(classes), crop)
    fit_state_dict(model, state_dict, arch, source)
    return model.state_dict(), kwargs


def builder_record(arch: str) -> dict | None:
    """What a reference records of the code that builds its network beyond torchvision (whose version provenance
    already has): timm's version, or the file defining a user's function with its sha256."""
    b = parse_arch(arch)
    if b.kind == "timm":
        import timm

        return {"timm": timm.__version__}
    if b.kind == "function":
        return {"module": b.module, "function": b.name, "file": b.file,
                "sha256": atomic.sha256_file(b.file) if b.file else None}
    return None


def save_reference(path, *, arch: str, build_kwargs: dict, classes: list[str], transform: dict, source: str,
                   state_dict: dict) -> None:
    """Write a reference file. The checkpoint a model came from is recorded with its sha256, and so is the file
    defining a user's own model."""
    source_sha256 = atomic.sha256_file(source) if Path(source).is_file() else None
    ref = {"arch": arch, "build_kwargs": build_kwargs, "classes": classes, "transform": transform, "source": source,
           "source_sha256": source_sha256, "state_dict": state_dict}
    builder = builder_record(arch)
    if builder is not None:  # none for torchvision models: their reference files stay as they always were
        ref["builder"] = builder
    buf = io.BytesIO()
    # Saved to memory first: torch.save names the archive's folder after the file it writes to, and a temporary
    # name would make identical models differ byte for byte.
    torch.save(ref, buf)
    atomic.write_bytes(path, buf.getvalue())


def _recorded_builder(ref: dict, path) -> Builder:
    """The builder of a reference file: for a user's function, the very file recorded (wherever the job runs),
    refused if it changed since."""
    recorded = ref.get("builder") or {}
    if not recorded.get("file"):
        return parse_arch(ref["arch"])
    file = recorded["file"]
    if not Path(file).is_file():
        raise ModelError(f"{path}: its model is built by {file}, which no longer exists")
    if atomic.sha256_file(file) != recorded["sha256"]:
        raise ModelError(f"{path}: its model was built by {file}, which has changed since (sha256 "
                         f"{recorded['sha256'][:12]}...); rerun the job that wrote it")
    if recorded.get("module"):
        b = parse_arch(ref["arch"])
        if b.file != file:
            raise ModelError(f"{path}: its model was built by {file}, but {recorded['module']} is now {b.file}")
        return b
    return Builder(ref["arch"], "function", recorded["function"], file=file)


def load_reference(path) -> tuple[torch.nn.Module, dict]:
    """The model of a reference file, in eval mode, and the file's metadata."""
    ref = torch.load(path, map_location="cpu", weights_only=True)
    model = _build(_recorded_builder(ref, path), len(ref["classes"]), ref["build_kwargs"])
    fit_state_dict(model, ref["state_dict"], ref["arch"], str(path))
    return model.eval(), {k: v for k, v in ref.items() if k != "state_dict"}


def feature_blocks(model: torch.nn.Module) -> list[str]:
    """Names (as in model.named_modules()) of the model's convolutional blocks, from the input on, for tools that
    look inside a network whose layout the zoo does not know (GradCAM): timm's feature_info modules, else each
    top-level child holding a Conv2d (each item of a Sequential one)."""
    info = getattr(model, "feature_info", None)
    modules = dict(model.named_modules())
    names = [f.get("module") for f in info] if isinstance(info, list) and all(isinstance(f, dict) for f in info) \
        else []
    if names and all(n in modules for n in names):
        return names

    def has_conv(m: torch.nn.Module) -> bool:
        return any(isinstance(x, torch.nn.Conv2d) for x in m.modules())

    blocks = []
    for name, child in model.named_children():
        if isinstance(child, torch.nn.Sequential):
            blocks += [f"{name}.{n}" for n, m in child.named_children() if has_conv(m)]
        elif has_conv(child):
            blocks.append(name)
    return blocks


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image bool: is the label among the `k` highest logits?"""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


# The task interface (jpegstudy.tasks): what evaluation, TTAC and fine-tuning ask of classification.
NAME = "classification"
METRIC = ("top1", "Top-1 accuracy")


def save_finetuned(path, meta: dict, *, source: str, state_dict: dict) -> None:
    save_reference(path, arch=meta["arch"], build_kwargs=meta["build_kwargs"], classes=meta["classes"],
                   transform=meta["transform"], source=source, state_dict=state_dict)


def check_eval_set(manifest, meta: dict, path, reference) -> None:
    if manifest.classes != meta["classes"]:
        raise ValueError(f"{path}: its classes differ from those {reference} was trained on")


target_of = loader.label
collate = torch.utils.data.default_collate  # crops of one size: a batch is one tensor


def score(model: torch.nn.Module, manifest, batches, device, confidence: dict | None = None) -> dict:
    """top-1 and top-5 (%), their bootstrap intervals (`confidence`: level, resamples, seed), each image's result
    in manifest order (kept so intervals, and paired intervals of drops, can be recomputed) and its five most likely
    class indices (predictions)."""
    from jpegstudy import confidence as intervals  # here: scipy.stats takes 0.8 s to import, evaluation alone needs it

    correct = {"top1": [], "top5": []}
    top5 = []
    for x, y in batches:
        logits = model(x.to(device))
        y = y.to(device)
        for field, k in (("top1", 1), ("top5", 5)):
            correct[field].append(topk_correct(logits, y, k).cpu())
        top5 += logits.topk(min(5, logits.shape[1]), dim=1).indices.tolist()
    scores = {"n_images": 0}
    for field, parts in correct.items():
        hits = torch.cat(parts).numpy()
        scores["n_images"] = len(hits)
        scores[field] = 100.0 * int(hits.sum()) / len(hits)
        scores[f"{field}_low"], scores[f"{field}_high"] = intervals.accuracy_interval(hits, **(confidence or {}))
        correct[field] = intervals.encode(hits)
    predictions = [{"path": entry["path"], "label": entry["label"], "top5": classes}
                   for entry, classes in zip(manifest.images, top5)]
    return {**scores, "per_image": correct, "predictions": predictions}


def throughput_batch(meta: dict, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 images of the model's crop and random labels: what a throughput figure times."""
    size = meta["transform"]["crop"]
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    return images, torch.randint(0, len(meta["classes"]), (n,), generator=generator)


def infer(model: torch.nn.Module, x: torch.Tensor, targets=None) -> torch.Tensor:
    """The logits of a batch (the targets are the labels: a classifier needs nothing besides the images)."""
    return model(x)


def ttac_target(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logits: TTAC makes the classifier's output on the corrected JPEG that on the original."""
    return model(x)


def finetune_loss(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), labels)
