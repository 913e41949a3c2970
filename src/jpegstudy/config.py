"""Checking a study's config before any job runs: the schema (config/schema.yaml) plus what a schema cannot say
(a model name the zoo lacks, a dataset folder that does not exist). Every problem is one line naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import yaml

from jpegstudy import codec_study, paths, resources
from jpegstudy.data.imagenet import devkit_meta
from jpegstudy.errors import ModelError
from jpegstudy.tasks import TASKS
from jpegstudy.tasks.zoo import (default_transform, is_torchvision_weights, parse_arch, torchvision_weight_names,
                                 transform_spec)


class ConfigError(ValueError):
    pass


# Architectures whose downsampling needs larger inputs than the embedded images may have (torchvision's Inception
# fails below 75 px); the paper's other eight run at 16 px and up. Models outside the nine are run once on an image
# of the training size before training (classification.check_model), which refuses one that cannot take it.
MIN_TRAIN_SIZE = {"inception_v3": 75}


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def wildcard_names(mapping: dict, **where) -> str:
    """Names of config entries whose fields equal `where`, as a wildcard regex (one that never matches if none)."""
    names = [n for n, v in mapping.items() if all(v.get(k) == want for k, want in where.items())]
    return "|".join(re.escape(n) for n in names) or "(?!)"


def checkpoint_file(weights: str) -> list[str]:
    """The checkpoint file of a weight source, as a rule input (so replacing it reruns what depends on it)."""
    return [weights] if Path(weights).is_file() else []


def builder_file(arch: str) -> list[str]:
    """The file defining a user's own model function, as a rule input (so editing it rebuilds the model)."""
    builder = parse_arch(arch)
    return [builder.file] if builder.kind == "function" and builder.file else []


def ground_truth_files(dataset: dict) -> list[str]:
    """The label files of a dataset, as rule inputs: its ground truth, and the devkit's meta.mat beside it."""
    gt = dataset.get("ground_truth")
    return [gt, *devkit_meta(gt)] if gt else []


def used_model_config(model: dict) -> dict:
    """A model's config as provenance records it: its training keys only when it was trained here, and not what its
    jobs ask a cluster for (resources change no number)."""
    return {k: v for k, v in model.items() if k != "resources" and (k != "train" or model["weights"] == "train")}


def check_schema(config: dict, schema_path: str | Path) -> None:
    """The schema's verdict as one line (snakemake's own `validate`, which fills in defaults, prints a page)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(f"config {_key(error.absolute_path)}: {error.message}")


def check_semantics(config: dict) -> None:
    """What the schema cannot say; expects the defaults filled in."""
    problem = resources.check(config)
    if problem:
        raise ConfigError(problem)
    for name, ds in config["datasets"].items():
        for key in ("val", "train", "ground_truth", "val_annotations", "train_annotations", "root"):
            if ds.get(key) and not Path(ds[key]).exists():
                raise ConfigError(f"config datasets.{name}.{key}: {ds[key]} does not exist")
        if ds["kind"] == "ade20k" and not ds.get("root"):
            raise ConfigError(f"config datasets.{name}.root: an ade20k dataset needs its ADEChallengeData2016 folder")
    cls = config["classification"]
    if cls["dataset"] not in config["datasets"]:
        raise ConfigError(f"config classification.dataset: {cls['dataset']!r} is not one of datasets "
                          f"({', '.join(config['datasets']) or 'none defined'})")
    if config["datasets"][cls["dataset"]]["kind"] not in CLASSIFICATION_KINDS:
        raise ConfigError(f"config classification.dataset: {cls['dataset']!r} is a dataset of kind "
                          f"{config['datasets'][cls['dataset']]['kind']}; classifiers need one of kind "
                          f"{' or '.join(CLASSIFICATION_KINDS)}")
    for name, model in cls["models"].items():
        check_model(name, model, config["datasets"][cls["dataset"]], cls["dataset"])
    if "detection" in config:
        check_detection(config)
    if "segmentation" in config:
        check_segmentation(config)
    if "forensics" in config:
        check_forensics(config)
    check_mitigations(config)
    try:
        codec_study.check(config)
    except codec_study.CodecConfigError as e:
        raise ConfigError(str(e)) from None


CLASSIFICATION_KINDS = ("embedded", "imagenet")
DETECTION_KINDS = ("embedded_coco", "coco")


def _task_dataset_kind(config: dict, task: str, kinds: tuple[str, ...], models: str, needs: str) -> str:
    """The kind of `task`'s dataset, refused unless it is one of datasets and of one of `kinds`."""
    name = config[task]["dataset"]
    if name not in config["datasets"]:
        raise ConfigError(f"config {task}.dataset: {name!r} is not one of datasets ({', '.join(config['datasets'])})")
    kind = config["datasets"][name]["kind"]
    if kind not in kinds:
        raise ConfigError(f"config {task}.dataset: {name!r} is a dataset of kind {kind}; {models} need one of kind "
                          f"{' or '.join(kinds)} ({needs})")
    return kind


def check_detection(config: dict) -> None:
    """The detection section's references: its dataset's kind, each detector's backbone classifier."""
    det, classifiers = config["detection"], config["classification"]["models"]
    kind = _task_dataset_kind(config, "detection", DETECTION_KINDS, "detectors", "boxes and masks")
    for name, model in det["models"].items():
        key = f"config detection.models.{name}"
        arch = model.get("arch", name)
        if arch not in EMBEDDED_DETECTORS + PAPER_DETECTORS:
            raise ConfigError(f"{key}: {arch!r} is not a detector (give arch: one of "
                              f"{', '.join(EMBEDDED_DETECTORS + PAPER_DETECTORS)})")
        _check_proposals(det["models"], name, arch)
        weights = model["weights"]
        if arch in PAPER_DETECTORS:
            if weights == "train":
                raise ConfigError(f"{key}.weights: {arch} is not trained here; give COCO_V1 or a checkpoint file")
            names = torchvision_weight_names(arch)
            if weights not in names and not Path(weights).is_file():
                raise ConfigError(f"{key}.weights: {weights} is neither one of {arch}'s torchvision weights "
                                  f"({', '.join(names)}) nor an existing checkpoint file")
            continue
        if weights != "train":
            raise ConfigError(f"{key}.weights: {arch} is an embedded detector, trained here (weights: train); for "
                              f"COCO weights use one of {', '.join(PAPER_DETECTORS)}")
        if kind != "embedded_coco":
            raise ConfigError(f"{key}.weights: 'train' is for embedded_coco datasets only")
        backbone = model["backbone"]
        if backbone not in classifiers:
            raise ConfigError(f"{key}.backbone: {backbone!r} is not one of classification.models "
                              f"({', '.join(classifiers)})")
        if parse_arch(classifiers[backbone].get("arch", backbone)).name not in RESNETS:
            raise ConfigError(f"{key}.backbone: {backbone!r} is not a ResNet (the FPN takes layer2-layer4)")


SEGMENTATION_KINDS = ("embedded_ade20k", "ade20k")
EMBEDDED_ENCODERS = {"resnet18dilated": "resnet18", "mobilenetv2dilated": "mobilenet_v2"}  # -> the classifier arch


def check_segmentation(config: dict) -> None:
    """The segmentation section's references: its dataset's kind, each segmenter's backbone classifier or CSAIL
    files."""
    seg, classifiers = config["segmentation"], config["classification"]["models"]
    kind = _task_dataset_kind(config, "segmentation", SEGMENTATION_KINDS, "segmenters", "label maps")
    for name, model in seg["models"].items():
        key = f"config segmentation.models.{name}"
        weights = model["weights"]
        if weights != "train":
            for part in ("encoder", "decoder"):
                if not Path(weights[part]).is_file():
                    raise ConfigError(f"{key}.weights.{part}: {weights[part]} does not exist")
            continue
        if kind != "embedded_ade20k":
            raise ConfigError(f"{key}.weights: 'train' is for embedded_ade20k datasets only; give CSAIL's "
                              "{encoder: FILE, decoder: FILE}")
        if model["encoder"] not in EMBEDDED_ENCODERS:
            raise ConfigError(f"{key}.encoder: {model['encoder']} is not trained here (weights train: one of "
                              f"{', '.join(EMBEDDED_ENCODERS)}); give CSAIL's files as weights")
        backbone = model["backbone"]
        if backbone not in classifiers:
            raise ConfigError(f"{key}.backbone: {backbone!r} is not one of classification.models "
                              f"({', '.join(classifiers)})")
        arch = parse_arch(classifiers[backbone].get("arch", backbone)).name
        if arch != EMBEDDED_ENCODERS[model["encoder"]]:
            raise ConfigError(f"{key}.backbone: {backbone!r} is a {arch}; {model['encoder']} is made from a "
                              f"{EMBEDDED_ENCODERS[model['encoder']]}")


FORENSICS_KINDS = ("embedded_forensics", "forensics")


def check_forensics(config: dict) -> None:
    """The forensics section's references: its dataset's kind, each detector's weights and test-time settings."""
    kind = _task_dataset_kind(config, "forensics", FORENSICS_KINDS, "forensic detectors", "0_real and 1_fake")
    if config["forensics"]["mitigate"].get("crop"):
        raise ConfigError("config forensics.mitigate.crop: a random resized crop resamples the training images and "
                          "erases the traces a forensic detector reads; leave it out (images keep their size)")
    for name, model in config["forensics"]["models"].items():
        key = f"config forensics.models.{name}"
        detector, weights = model["detector"], model["weights"]
        if weights == "train" and kind != "embedded_forensics":
            raise ConfigError(f"{key}.weights: 'train' is for embedded_forensics datasets only; give the authors' "
                              "checkpoint file")
        if weights != "train" and not Path(weights).is_file():
            raise ConfigError(f"{key}.weights: {weights} is neither 'train' nor an existing checkpoint file")
        misplaced = {"wang2020": "size", "chai2020": "crop"}[detector]
        if model.get(misplaced) is not None:
            raise ConfigError(f"{key}.{misplaced}: {detector} takes no {misplaced} (wang2020 a crop, chai2020 a size)")


# The dataset kinds each task trains and evaluates on.
TASK_KINDS = {"classification": CLASSIFICATION_KINDS, "detection": DETECTION_KINDS,
              "segmentation": SEGMENTATION_KINDS, "forensics": FORENSICS_KINDS}


def _check_proposals(models: dict, name: str, arch: str) -> None:
    """A Fast R-CNN names its proposals' source (a Faster/Mask R-CNN of the study, or existing files); no other
    detector takes proposals."""
    key, source = f"config detection.models.{name}.proposals", models[name].get("proposals")
    if arch != "fast_rcnn":
        if source is not None:
            raise ConfigError(f"{key}: only a fast_rcnn takes proposals; {arch} makes its own")
        return
    if source is None:
        raise ConfigError(f"{key}: a fast_rcnn needs proposals: a Faster or Mask R-CNN of the study, or "
                          "{train: FILE, val: FILE}")
    if isinstance(source, str):
        rpn = models.get(source, {}).get("arch", source) if source in models else None
        if rpn not in RPN_DETECTORS:
            raise ConfigError(f"{key}: {source!r} is not a Faster or Mask R-CNN among detection.models "
                              f"({', '.join(models)})")
        return
    for split, path in source.items():
        if not Path(path).is_file():
            raise ConfigError(f"{key}.{split}: {path} does not exist")


EMBEDDED_DETECTORS = ("faster_rcnn", "fast_rcnn", "retinanet", "mask_rcnn")
RPN_DETECTORS = ("faster_rcnn", "mask_rcnn", "fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")
PAPER_DETECTORS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn")
MASK_DETECTORS = ("mask_rcnn", "maskrcnn_resnet50_fpn")
RESNETS = ("resnet18", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x8d")


def check_model(name: str, model: dict, dataset: dict, dataset_name: str) -> None:
    """A classification model's arch, weights and transform (no user code runs: a user's function is found by
    reading its file)."""
    key = f"config classification.models.{name}"
    arch = model.get("arch", name)
    try:
        builder = parse_arch(arch)
    except ModelError as e:
        raise ConfigError(f"{key}{'.arch' if 'arch' in model else ''}: {e}") from None
    torchvision_model = builder.kind == "torchvision"
    weights = model["weights"]
    size = dataset.get("image_size", 0)
    min_size = MIN_TRAIN_SIZE.get(builder.name, 0) if torchvision_model else 0
    if weights == "train" and size < min_size:
        raise ConfigError(f"{key}: {arch} needs images of at least {min_size} px, datasets.{dataset_name}.image_size "
                          f"is {size}")
    if weights == "train" and dataset["kind"] != "embedded":
        raise ConfigError(f"{key}.weights: 'train' is for embedded datasets only; give "
                          f"{'torchvision weights (e.g. IMAGENET1K_V1) or ' if torchvision_model else ''}"
                          f"a checkpoint path")
    if weights == "train":
        return
    if is_torchvision_weights(weights):
        if not torchvision_model:
            raise ConfigError(f"{key}.weights: {weights} is a torchvision weights name, and {arch} is not a "
                              f"torchvision model (nothing downloads its weights): give a checkpoint file")
        try:
            default_transform(arch, weights)  # a weights name the architecture lacks is refused here
        except ModelError as e:
            raise ConfigError(f"{key}.weights: {e}") from None
    elif not Path(weights).is_file():
        raise ConfigError(f"{key}.weights: {weights} is neither 'train', a torchvision weights name nor an existing "
                          f"checkpoint file")
    try:
        transform_spec(arch, weights, model.get("transform"))
    except ModelError as e:
        raise ConfigError(f"{key}.transform: {e}") from None


def study_tasks(config: dict) -> list[str]:
    """The tasks in the study: those registered (jpegstudy.tasks) whose config section is present."""
    return [task for task in TASKS if task in config]


def study_mitigations(config: dict, task: str = "classification") -> dict[str, list[str]]:
    """Every (model -> mitigations) the study evaluates for `task`, from the config with defaults filled in.

    none, finetune, offtheshelf and ttac for every model; transfer-{source} in front of every model other than the
    source; {arcnn,idcn}-{offtheshelf,ttac} (quality-aware baselines, Table 1) for the AC-comparison model only;
    multihead-{group} in front of each member of a multihead group.
    """
    cls = config[task]
    wanted = set(cls["mitigations"])
    out = {}
    for model in cls["models"]:
        mitigations = ["none"] + [m for m in ("finetune", "offtheshelf", "ttac") if m in wanted]
        if "transfer" in wanted and model in cls.get("transfer_to", cls["models"]):
            mitigations += [f"transfer-{src}" for src in cls["transfer_from"] if src != model]
        if "ac_comparison" in wanted and model == ac_model(config, task):
            mitigations += [f"{net}-{how}" for net in cls["ac_comparison"]["networks"]
                            for how in ("offtheshelf", "ttac")]
        mitigations += [f"multihead-{group}" for group in multihead_groups(config, task, model)]
        out[model] = mitigations
    return out


def multihead_groups(config: dict, task: str, model: str) -> list[str]:
    """The multihead groups `task`'s `model` is a member of, in config order."""
    groups = config.get("multihead", {}).get("groups", {})
    return [name for name, members in groups.items() if members.get(task) == model]


def mitigation_inputs(config: dict, model: str, mitigation: str, task: str = "classification") -> dict:
    """What evaluating `task`'s `model` with `mitigation` needs: the task model's file and the correctors, as
    {"reference": path, "correctors": {None: path} (one for every quality) or {quality: path}}."""
    reference = paths.finetuned(task, model) if mitigation == "finetune" else paths.reference(task, model)
    correctors: dict = {}
    if mitigation == "offtheshelf":
        correctors = {None: paths.offtheshelf("qgac")}
    elif mitigation == "ttac":
        correctors = {None: paths.ttac("qgac", task, model)}
    elif mitigation.startswith("transfer-"):  # always a classifier's corrector: across models, or across tasks
        correctors = {None: paths.ttac("qgac", "classification", mitigation.removeprefix("transfer-"))}
    elif mitigation.startswith("multihead-"):
        correctors = {None: paths.multihead("qgac", mitigation.removeprefix("multihead-"))}
    elif mitigation.endswith(("-offtheshelf", "-ttac")):
        network, how = mitigation.rsplit("-", 1)
        qualities = config[task]["ac_comparison"]["qualities"]
        correctors = {q: paths.offtheshelf(network, q) if how == "offtheshelf" else paths.ttac(network, task, model, q)
                      for q in qualities}
    elif mitigation not in ("none", "finetune"):
        raise ConfigError(f"unknown mitigation {mitigation!r}")
    return {"reference": reference, "correctors": correctors}


def train_dataset(config: dict, task: str = "classification") -> str:
    """The dataset `task`'s fine-tuning and TTAC train on."""
    cls = config[task]
    return cls.get("train_dataset") or cls["dataset"]


def _check_train_split(config: dict, key: str, name: str, kinds: tuple[str, ...], task: str) -> None:
    if name not in config["datasets"]:
        raise ConfigError(f"config {key}: {name!r} is not one of datasets ({', '.join(config['datasets'])})")
    ds = config["datasets"][name]
    if ds["kind"] not in kinds:
        raise ConfigError(f"config {key}: {name!r} is a dataset of kind {ds['kind']}; {task} trains on "
                          f"{' or '.join(kinds)} data")
    if ds["kind"] in ("imagenet", "coco", "forensics") and not ds.get("train"):
        raise ConfigError(f"config datasets.{name}.train: the mitigations train on {name}'s train split; give "
                          f"its folder, or leave {task}.mitigations empty")
    if ds["kind"] == "coco" and not ds.get("train_annotations"):
        raise ConfigError(f"config datasets.{name}.train_annotations: the mitigations train on {name}'s train "
                          f"split; give its instances json, or leave {task}.mitigations empty")


def check_mitigations(config: dict) -> None:
    """The mitigation keys that refer to other keys: models, datasets with a train split, files."""
    cls, correction = config["classification"], config["correction"]
    for task in study_tasks(config):
        section = config[task]
        if not section["mitigations"]:
            continue
        if set(section["mitigations"]) & {"finetune", "ttac", "ac_comparison"}:  # they train on the task's data
            _check_train_split(config, f"{task}.train_dataset", train_dataset(config, task), TASK_KINDS[task], task)
        _check_train_split(config, "correction.dataset", correction["dataset"], CLASSIFICATION_KINDS, "correction")
        if "transfer" in section["mitigations"]:
            for src in section["transfer_from"]:
                if src not in cls["models"]:
                    raise ConfigError(f"config {task}.transfer_from: {src!r} is not one of classification.models")
            for target in section.get("transfer_to", []):
                if target not in section["models"]:
                    raise ConfigError(f"config {task}.transfer_to: {target!r} is not one of {task}.models")
        if "ac_comparison" in section["mitigations"]:
            _check_ac_comparison(config, task)
    check_multihead(config)
    qgac = correction["qgac"]
    groups = config["multihead"]["groups"]
    if qgac["weights"] != "train" and (groups or any(config[task]["mitigations"] for task in study_tasks(config))):
        for key in ("weights", "stats"):
            if qgac.get(key) and not Path(qgac[key]).is_file():
                raise ConfigError(f"config correction.qgac.{key}: {qgac[key]} does not exist")


def ac_model(config: dict, task: str) -> str:
    """The model `task`'s AC comparison (Table 1) is task-targeted on: its ac_comparison.model, else its first."""
    return config[task]["ac_comparison"].get("model") or next(iter(config[task]["models"]))


def _check_ac_comparison(config: dict, task: str) -> None:
    ac = config[task]["ac_comparison"]
    if ac_model(config, task) not in config[task]["models"]:
        raise ConfigError(f"config {task}.ac_comparison.model: {ac['model']!r} is not one of {task}.models "
                          f"({', '.join(config[task]['models'])})")
    for q in ac["qualities"]:
        if q not in config["qualities"]:
            raise ConfigError(f"config {task}.ac_comparison.qualities: {q} is not one of qualities")


def check_multihead(config: dict) -> None:
    """Each multihead group's members: a task of the study and one of its models, trained on a train split (as
    is the off-the-shelf corrector it starts from)."""
    groups = config.get("multihead", {}).get("groups", {})
    if groups:
        _check_train_split(config, "correction.dataset", config["correction"]["dataset"], CLASSIFICATION_KINDS,
                           "correction")
    for name, members in groups.items():
        for task, model in members.items():
            key = f"config multihead.groups.{name}.{task}"
            if task not in config:
                raise ConfigError(f"{key}: the study has no {task} section")
            if model not in config[task]["models"]:
                raise ConfigError(f"{key}: {model!r} is not one of {task}.models ({', '.join(config[task]['models'])})")
            _check_train_split(config, f"{task}.train_dataset", train_dataset(config, task), TASK_KINDS[task], task)


def multihead_settings(config: dict) -> dict:
    """The multihead section's training settings (all but its groups)."""
    return {k: v for k, v in config["multihead"].items() if k != "groups"}


def multihead_members(config: dict, group: str) -> dict[str, str]:
    """{task: model} of a multihead group, in the study's task order."""
    members = config["multihead"]["groups"][group]
    return {task: members[task] for task in study_tasks(config) if task in members}


def mitigation_config(config: dict, mitigation: str, task: str = "classification") -> dict:
    """The config keys a mitigation's weights depend on, as provenance records them."""
    cls, correction = config[task], config["correction"]
    shared = {k: v for k, v in cls["mitigate"].items() if not isinstance(v, dict)}
    out: dict = {}
    if mitigation.startswith("multihead-"):
        return multihead_config(config, mitigation.removeprefix("multihead-"))
    if mitigation == "finetune":
        out = {f"{task}.mitigate": {**shared, "finetune": cls["mitigate"]["finetune"]}}
    elif mitigation != "none":
        network = mitigation.split("-")[0] if mitigation.endswith(("-offtheshelf", "-ttac")) else "qgac"
        out = {f"correction.{network}": correction[network], "correction.dataset": correction["dataset"]}
        if mitigation.endswith("ttac"):
            out[f"{task}.mitigate"] = {**shared, "ttac": cls["mitigate"]["ttac"]}
        elif mitigation.startswith("transfer-"):  # the corrector was task-targeted on a classifier
            source = config["classification"]["mitigate"]
            out["classification.mitigate"] = {**{k: v for k, v in source.items() if not isinstance(v, dict)},
                                              "ttac": source["ttac"]}
        if network != "qgac":
            out[f"{task}.ac_comparison"] = cls["ac_comparison"]
    if mitigation.startswith("transfer-"):
        out["classification.train_dataset"] = train_dataset(config, "classification")
    elif mitigation != "none" and not mitigation.endswith("offtheshelf"):  # trained on the task's train split
        out[f"{task}.train_dataset"] = train_dataset(config, task)
    return out


def multihead_config(config: dict, group: str) -> dict:
    """The config keys a multihead corrector depends on: QGAC's, the multihead settings and group, and each
    member's model, batch settings and training split."""
    out = {"correction.qgac": config["correction"]["qgac"], "correction.dataset": config["correction"]["dataset"],
           "multihead": multihead_settings(config), f"multihead.groups.{group}": config["multihead"]["groups"][group]}
    for task, model in multihead_members(config, group).items():
        mitigate = config[task]["mitigate"]
        out[f"{task}.mitigate"] = {k: v for k, v in mitigate.items() if not isinstance(v, dict)}
        out[f"{task}.train_dataset"] = train_dataset(config, task)
        out[f"{task}.models.{model}"] = used_model_config(config[task]["models"][model])
    return out
