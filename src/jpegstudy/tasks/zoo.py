"""The classifier zoo: how an architecture is spelled, where its weights come from, and its eval transform's numbers.

Split from tasks/classification.py so that planning a study (config.py, at every snakemake start, and again in every
cluster job) does not import torch and torchvision (~6 s on 2 cores): torchvision is imported only where a
torchvision model's name or weights are looked up. The spellings and weight sources are documented in
tasks/classification.py.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

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

INTERPOLATION_NAMES = ("bilinear", "bicubic", "nearest")
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


# What torchvision says of its models is looked up once per torchvision version and kept beside snakemake's own
# state in the working directory: planning the paper study would otherwise import torchvision (~6 s of a ~10 s
# `snakemake -n`), and so would every cluster job, which plans its one job again.
LOOKUPS = Path(".snakemake") / "jpegstudy"


_KNOWN: dict[Path, dict] = {}  # each record file, read once per process


def _lookup(key: str, compute):
    """compute() (a JSON value, or a ModelError whose message is kept), through the on-disk record of lookups."""
    import importlib.metadata
    import json

    from jpegstudy import atomic

    path = (LOOKUPS / f"torchvision-{importlib.metadata.version('torchvision')}.json").resolve()
    if path not in _KNOWN:
        try:
            _KNOWN[path] = json.loads(path.read_text())
        except (OSError, ValueError):
            _KNOWN[path] = {}
    known = _KNOWN[path]
    if key not in known:
        try:
            known[key] = {"value": compute()}
        except ModelError as e:
            known[key] = {"error": str(e)}
        try:
            atomic.write_json(path, known)
        except OSError:
            pass  # a read-only working directory: looked up again by the next process
    if "error" in known[key]:
        raise ModelError(known[key]["error"])
    return known[key]["value"]


def torchvision_classifiers() -> list[str]:
    def compute():
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)

    return _lookup("classifiers", compute)


def torchvision_weight_names(name: str) -> list[str]:
    """The weights names torchvision has for its model `name` (any task's: COCO_V1, DEFAULT); nothing downloads."""
    def compute():
        import torchvision

        return list(torchvision.models.get_model_weights(name).__members__)

    return _lookup(f"weights {name}", compute)


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
    import torchvision

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
    if b.known:
        return b.known.default_weights
    import torchvision

    return torchvision.models.get_model_weights(b.name).DEFAULT.name


def default_transform(arch: str, weights: str | None = None) -> dict:
    """The eval transform torchvision documents for `arch` with `weights` (its default weights if None); a weights
    name `arch` does not have is a ModelError."""
    def compute():
        t = torchvision_weights(arch, weights or default_weights(arch)).transforms()
        return {"resize": int(t.resize_size[0]), "crop": int(t.crop_size[0]),
                "interpolation": t.interpolation.value, "mean": list(t.mean), "std": list(t.std)}

    return dict(_lookup(f"transform {arch} {weights}", compute))


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
    if spec["interpolation"] not in INTERPOLATION_NAMES:
        raise ModelError(f"{arch}: interpolation {spec['interpolation']!r} not one of {', '.join(INTERPOLATION_NAMES)}")
    return spec



def is_torchvision_weights(source: str) -> bool:
    """Weights enum names are upper case (IMAGENET1K_V1, DEFAULT); anything else is "train" or a file path."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*", source) is not None
