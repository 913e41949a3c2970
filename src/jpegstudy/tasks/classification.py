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

import ast
import difflib
import hashlib
import importlib
import importlib.util
import io
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.data import loader
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

# torchvision builders outside the nine that change the layout when given weights (what a rebuild must repeat).
# GoogLeNet's pretrained weights rescale their input and drop the auxiliary heads after loading.
TORCHVISION_PRETRAINED_KWARGS = {"googlenet": {"transform_input": True, "aux_logits": False, "init_weights": False}}

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                  "nearest": T.InterpolationMode.NEAREST}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TRANSFORM_KEYS = ("resize", "crop", "interpolation", "mean", "std")

SPELLINGS = "torchvision:NAME, timm:NAME, package.module:function or path/to/file.py:function"
_FUNCTION = re.compile(r"(?P<where>.+):(?P<function>[A-Za-z_]\w*)")
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Builder:
    """How to build an architecture, parsed from its spelling (parse_arch)."""
    arch: str  # as spelled in config
    kind: str  # "torchvision", "timm" or "function"
    name: str  # torchvision's or timm's model name, or the function's name
    module: str | None = None  # function: the module's import name (None when given as a file)
    file: str | None = None  # function: the absolute path of the file that defines it (None if not a .py source)

    @property
    def known(self) -> Architecture | None:
        """The zoo's entry (head, pretrained layout) for the paper's nine, however spelled."""
        return ARCHITECTURES.get(self.name) if self.kind == "torchvision" else None


def known_architecture(arch: str) -> Architecture | None:
    """The zoo's entry of one of the paper's nine, bare or as torchvision:NAME (nothing is looked up)."""
    return ARCHITECTURES.get(arch.removeprefix("torchvision:"))


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown classification model {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def checkout() -> Path | None:
    """The jpegstudy checkout this package runs from (the folder of the Snakefile), if it runs from one."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "Snakefile").is_file() else None


def search_dirs() -> list[Path]:
    """Where a user's model file or module is looked for: the working directory, then the checkout."""
    dirs = [Path.cwd()]
    if checkout() is not None and checkout() != dirs[0]:
        dirs.append(checkout())
    return dirs


def _close(name: str, names, what: str) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"{what}{'; close: ' + ', '.join(close) if close else ''}"


def torchvision_classifiers() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def parse_arch(arch: str) -> Builder:
    """The builder an architecture's spelling names, checked to exist without running any user code (a user's
    function is found by reading its file); a bad spelling is refused in one line naming it."""
    if arch in ARCHITECTURES:
        return Builder(arch, "torchvision", arch)
    prefix, sep, name = arch.partition(":")
    if sep and prefix == "torchvision":
        if name not in torchvision_classifiers():
            what = f"torchvision has no classification model {name!r}"
            raise ModelError(f"{arch}: {_close(name, torchvision_classifiers(), what)} "
                             f"(torchvision.models.list_models(module=torchvision.models))")
        return Builder(arch, "torchvision", name)
    if sep and prefix == "timm":
        return Builder(arch, "timm", _timm_name(arch, name))
    m = _FUNCTION.fullmatch(arch)
    if m and m["where"].endswith(".py"):
        path = _find_file(arch, m["where"])
        _check_defines(arch, path, m["function"])
        return Builder(arch, "function", m["function"], file=str(path))
    if m and _MODULE.fullmatch(m["where"]):
        origin = _find_module(arch, m["where"])
        if origin is not None:
            _check_defines(arch, origin, m["function"])
        return Builder(arch, "function", m["function"], module=m["where"],
                       file=None if origin is None else str(origin))
    hint = f" (did you mean torchvision:{arch}?)" if arch in torchvision_classifiers() else ""
    raise ModelError(f"unknown model {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}, or {SPELLINGS}{hint}")


def _timm_name(arch: str, name: str) -> str:
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError:
        raise ModelError(f"{arch}: timm is not installed (pip install timm, the version pyproject.toml pins)") from None

    model, _, tag = name.partition(".")
    if not timm.is_model(model):
        raise ModelError(f"{arch}: {_close(model, timm.list_models(), f'timm has no model {model!r}')} "
                         f"(timm.list_models(), timm {timm.__version__})")
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{model}.*")]
            raise ModelError(f"{arch}: timm's {model} has no pretrained tag {tag!r} "
                             f"(tags: {', '.join(tags) or 'none'})") from None
    return name


def _find_file(arch: str, where: str) -> Path:
    path = Path(where)
    candidates = [path] if path.is_absolute() else [d / path for d in search_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = "" if path.is_absolute() else f" (looked in {', '.join(str(d) for d in search_dirs())})"
    raise ModelError(f"{arch}: {where}: no such file{looked}")


def _on_path(directory: Path) -> None:
    """Append (never prepend: installed packages win) a folder to sys.path, once."""
    if str(directory) not in sys.path:
        sys.path.append(str(directory))


def _find_module(arch: str, module: str) -> Path | None:
    """The source file of an importable module (None if it has none, e.g. compiled), without running it (its
    parent packages are imported)."""
    for directory in search_dirs():
        _on_path(directory)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelError(f"{arch}: cannot import {module} (not installed, nor found in "
                         f"{', '.join(str(d) for d in search_dirs())})")
    origin = spec.origin
    return Path(origin).resolve() if origin and origin.endswith(".py") and Path(origin).is_file() else None


def _check_defines(arch: str, path: Path, name: str) -> None:
    """Refuse a file that binds no `name` at its top level (def, class, assignment or import)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as e:
        raise ModelError(f"{arch}: cannot read {path} ({type(e).__name__}: {e})") from None

    def binds(statements) -> bool:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                return True
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                    return True
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if any((a.asname or a.name.split(".")[0]) == name or a.name == "*" for a in node.names):
                    return True
            if isinstance(node, (ast.If, ast.Try, ast.With)) and any(
                    binds(getattr(node, part, [])) for part in ("body", "orelse", "finalbody")):
                return True
            if isinstance(node, ast.Try) and any(binds(h.body) for h in node.handlers):
                return True
        return False

    if not binds(tree.body):
        raise ModelError(f"{arch}: {path} defines no {name!r}")


def _import_file(arch: str, path: str):
    """The module of a Python file, imported once per process under a name of its own (its folder on sys.path, so
    it may import files beside it)."""
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", Path(path).stem)
    name = f"jpegstudy_user_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    _on_path(Path(path).parent)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - a user's file may raise anything; one line names it
        del sys.modules[name]
        raise ModelError(f"{arch}: importing {path} failed ({type(e).__name__}: {_first_line(e)})") from None
    return module


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _function(b: Builder):
    if b.module is not None:
        try:
            module = importlib.import_module(b.module)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"{b.arch}: importing {b.module} failed ({type(e).__name__}: {_first_line(e)})") from None
    else:
        module = _import_file(b.arch, b.file)
    fn = getattr(module, b.name, None)
    if not callable(fn):
        raise ModelError(f"{b.arch}: {module.__name__}.{b.name} is not a function")
    return fn


def torchvision_weights(arch: str, weights: str):
    """The torchvision weights enum member `weights` of `arch` (no download happens here)."""
    b = parse_arch(arch)
    if b.kind != "torchvision":
        raise ModelError(f"{arch}: {weights} is a torchvision weights name, and {arch} is not a torchvision model; "
                         f"give 'train' or a checkpoint file")
    enum = torchvision.models.get_model_weights(b.name)
    try:
        return enum[weights]
    except KeyError:
        raise ModelError(f"{arch}: no torchvision weights {weights!r}; available: "
                         f"{', '.join(m.name for m in enum)}") from None


def default_weights(arch: str) -> str:
    """The weights whose transform a checkpoint of a torchvision architecture is given: IMAGENET1K_V1 for the
    paper's nine, torchvision's DEFAULT for the others."""
    b = parse_arch(arch)
    return b.known.default_weights if b.known else torchvision.models.get_model_weights(b.name).DEFAULT.name


def default_transform(arch: str, weights: str | None = None) -> dict:
    """The eval transform torchvision documents for `arch` with `weights` (its default weights if None)."""
    w = torchvision_weights(arch, weights or default_weights(arch))
    t = w.transforms()
    return {"resize": int(t.resize_size[0]), "crop": int(t.crop_size[0]), "interpolation": t.interpolation.value,
            "mean": list(t.mean), "std": list(t.std)}


def timm_transform(arch: str, override: dict) -> dict:
    """timm's eval transform for a timm model, from its pretrained_cfg (the tag's, or timm's default tag's) through
    timm.data.resolve_data_config: crop input_size, resize floor(crop / crop_pct), as timm's own eval transform."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(parse_arch(arch).name)
    if cfg is None:
        return _required_transform(arch, override, "timm has no pretrained_cfg for it")
    data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    _, height, width = data["input_size"]
    if (data.get("crop_mode", "center") != "center" or height != width) and not {"resize", "crop"} <= set(override):
        why = f"crops in mode {data['crop_mode']!r}" if height == width else f"takes {height}x{width} inputs"
        raise ModelError(f"{arch}: its timm pretrained_cfg {why}, which a shorter-side resize and square centre crop "
                         f"do not reproduce; give transform.resize and transform.crop")
    return {"resize": math.floor(height / data["crop_pct"]), "crop": int(height),
            "interpolation": data["interpolation"], "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]]}


def _required_transform(arch: str, override: dict, why: str) -> dict:
    missing = [k for k in TRANSFORM_KEYS if k not in override]
    if missing:
        raise ModelError(f"{arch}: {why}, so its transform must be given: {', '.join(missing)} missing")
    return {}


def transform_spec(arch: str, source: str, override: dict | None, image_size: int | None = None) -> dict:
    """The eval transform of a model, updated by `override`: the embedded size when trained here; else
    torchvision's for its weights, timm's pretrained_cfg, or (a user's function, which documents none) the
    override alone, which must then give every key."""
    override = override or {}
    if source == "train":
        spec = {"resize": image_size, "crop": image_size, "interpolation": "bilinear",
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    else:
        kind = parse_arch(arch).kind
        if kind == "torchvision":
            spec = default_transform(arch, source if is_torchvision_weights(source) else None)
        elif kind == "timm":
            spec = timm_transform(arch, override)
        else:
            spec = _required_transform(arch, override, "a model of your own documents no preprocessing")
    spec.update(override)
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
