"""The codec study: every task model of `codecs.tasks` on every codec of `codecs.formats`, each at its qualities, on a
bits-per-pixel axis beside JPEG's (the study's own sets and metric files, unchanged).

Mitigations (`codecs.tasks.<task>.mitigations`), each trained on the codec itself unless it says otherwise:
  finetune     the task model fine-tuned on training images compressed by the codec (quality ~ its train_range)
  offtheshelf  a pixel-domain corrector (ARCNN, one network over the codec's qualities) trained with MSE
  ttac         that corrector task-targeted on the task model through the codec (no labels)
  transfer     the same corrector task-targeted through JPEG, in front of the other codec (transfer across codecs)
QGAC reads a JPEG's DCT coefficients and quantization tables; another codec's file has neither, and a JPEG
re-encode of its decode would hand QGAC tables that describe the re-encode, not the damage. So QGAC gets nothing
here, and the codec study's correctors are ARCNN's, in the pixel domain.

What rules need (inputs, options) is worked out here, their settings and provenance strings in dag.py (with the JPEG
study's helpers); rules/codecs.smk stays a list of rules. Nothing here imports
torch: the config check runs before any job.
"""

from __future__ import annotations

from jpegstudy import codecs, paths

MITIGATIONS = ("finetune", "offtheshelf", "ttac", "transfer")


class CodecConfigError(ValueError):
    pass


def formats(config: dict) -> dict[str, dict]:
    """{codec: its section} of the codecs beside JPEG, in config order; {} when there is no codec study."""
    return config.get("codecs", {}).get("formats", {})


def study_tasks(config: dict) -> dict[str, dict]:
    """{task: {"models": [...], "mitigations": [...]}} of the tasks the codec study covers (those in the study)."""
    if not formats(config):
        return {}
    wanted = config.get("codecs", {}).get("tasks", {})
    return {task: {"models": _models(config, task, spec.get("models")),
                   "mitigations": list(spec.get("mitigations", []))}
            for task, spec in wanted.items() if task in config}


def _models(config: dict, task: str, models) -> list[str]:
    """A codec task's models: those listed, every one (all), or the task's first (none given)."""
    if models == "all":
        return list(config[task]["models"])
    return list(models) if models else list(config[task]["models"])[:1]


def mitigations(config: dict, task: str) -> list[str]:
    return ["none", *study_tasks(config)[task]["mitigations"]]


def qualities(config: dict, codec: str) -> list[int]:
    return list(config["qualities"]) if codec == "jpeg" else list(formats(config)[codec]["qualities"])


def train_range(config: dict, codec: str) -> tuple[int, int]:
    if codec == "jpeg":
        return (10, 90)  # the paper's, as every JPEG mitigation (correction/inputs.QUALITY_RANGE)
    low, high = formats(config)[codec]["train_range"]
    return low, high


def check(config: dict) -> None:
    """Unknown codecs, qualities outside a codec's range, a codec library missing here, tasks or models not in the
    study: one line naming the key, before any job runs."""
    for name, section in formats(config).items():
        key = f"config codecs.formats.{name}"
        if name == "jpeg":
            raise CodecConfigError(f"{key}: JPEG is the study's own codec; its qualities are the top-level qualities")
        if name not in codecs.NAMES:
            others = ", ".join(n for n in codecs.NAMES if n != "jpeg")
            raise CodecConfigError(f"{key}: unknown codec {name!r}; known: {others}")
        low, high = codecs.quality_range(name)
        for what, values in (("qualities", section["qualities"]), ("train_range", section["train_range"])):
            bad = [q for q in values if not low <= q <= high]
            if bad:
                raise CodecConfigError(f"{key}.{what}: {bad[0]} is outside {name}'s quality range [{low}, {high}]")
        if section["train_range"][0] > section["train_range"][1]:
            raise CodecConfigError(f"{key}.train_range: {section['train_range']} is not [low, high]")
        missing = codecs.missing_library(name)
        if missing:
            raise CodecConfigError(f"{key}: {missing}")
        if name == codecs.LEARNED:
            _check_learned(key, section)
    for task, spec in config.get("codecs", {}).get("tasks", {}).items():
        if task not in config:
            continue  # a task not in this study is simply not in its codec study either
        listed = spec.get("models")
        for model in listed if isinstance(listed, list) else []:
            if model not in config[task]["models"]:
                raise CodecConfigError(f"config codecs.tasks.{task}.models: {model!r} is not one of {task}.models "
                                       f"({', '.join(config[task]['models'])})")


def _check_learned(key: str, section: dict) -> None:
    weights = section.get("weights", "train")
    if weights == "train":
        if "train" not in section:
            raise CodecConfigError(f"{key}.train: weights train needs the networks' training settings (N, M, ...)")
        return
    # (a file that is not there is a missing input of resolve_codec, as every checkpoint's)
    for q in section["qualities"]:
        if q not in weights and str(q) not in weights:
            raise CodecConfigError(f"{key}.weights: no published network for quality {q}")


def learned_networks(config: dict) -> dict[int, str]:
    """{quality: network file} of the learned codec, every quality of its own (empty if not in the study)."""
    if codecs.LEARNED not in formats(config):
        return {}
    return {q: paths.codec_network(q) for q in formats(config)[codecs.LEARNED]["qualities"]}


def learned_weights(config: dict, quality: int) -> str:
    weights = formats(config)[codecs.LEARNED].get("weights", "train")
    return weights.get(quality, weights.get(str(quality)))


def codec_options(config: dict, codec: str, with_range: bool = False) -> str:
    """A command's --codec options: the codec, the learned codec's networks, and for a trainer its quality range."""
    if codec == "jpeg":
        return ""
    out = f"--codec {codec}"
    if codec == codecs.LEARNED:
        out += " --codec-weights " + " ".join(f"{q}={p}" for q, p in learned_networks(config).items())
    if with_range:
        low, high = train_range(config, codec)
        out += f" --codec-range {low} {high}"
    return out


def compress_input(config: dict, w) -> dict:
    return {"manifest": paths.manifest(w.dataset, "val"),
            "networks": list(learned_networks(config).values()) if w.codec == codecs.LEARNED else []}


def task_dataset(config: dict, task: str) -> str:
    return config[task]["dataset"]


def sets(config: dict, task: str, codec: str) -> dict[int, str]:
    """{quality: manifest} of a task's eval sets by `codec`."""
    dataset = task_dataset(config, task)
    return {q: paths.manifest(dataset, codecs.split_name(codec, q)) for q in qualities(config, codec)}


def reference_for(task: str, model: str, codec: str, mitigation: str) -> str:
    return paths.codec_finetuned(task, model, codec) if mitigation == "finetune" else paths.reference(task, model)


def corrector_for(task: str, model: str, codec: str, mitigation: str) -> str | None:
    if mitigation == "offtheshelf":
        return paths.pixel_corrector(codec)
    if mitigation == "ttac":
        return paths.pixel_corrector(codec, task, model)
    if mitigation == "transfer":
        return paths.pixel_corrector("jpeg", task, model)
    return None


def evaluation_input(config: dict, w) -> dict:
    corrector = corrector_for(w.task, w.model, w.codec, w.mitigation)
    return {"reference": reference_for(w.task, w.model, w.codec, w.mitigation),
            "correctors": [corrector] if corrector else [],
            "clean": paths.manifest(task_dataset(config, w.task), "val"),
            "compressed": list(sets(config, w.task, w.codec).values())}


def compressed_args(config: dict, w) -> str:
    return " ".join(f"{q}={m}" for q, m in sets(config, w.task, w.codec).items())


def metric_files(config: dict, task: str | None = None) -> list[str]:
    """Every metric file of the codec study (of `task` only, when given): each codec's and JPEG's own (the JPEG
    study's none.json; the pixel corrector on JPEG when transfer is asked for)."""
    files = []
    for t, spec in study_tasks(config).items():
        if task is not None and t != task:
            continue
        for model in spec["models"]:
            files.append(paths.metrics(t, model, "none"))
            if "transfer" in spec["mitigations"] or "ttac" in spec["mitigations"]:
                files.append(paths.codec_metrics("jpeg", t, model, "ttac"))
            files += [paths.codec_metrics(codec, t, model, m) for codec in formats(config)
                      for m in mitigations(config, t)]
    return files


def wanted(config: dict) -> list[str]:
    """The codec study's metric files beyond the JPEG study's: what `rule all` asks for through the report."""
    return [f for f in metric_files(config) if "/codecs/" in f]


def wildcard(config: dict, what: str) -> str:
    """The regex of a codec-study rule's wildcard: codecs (JPEG's pixel corrector included), tasks or models."""
    tasks = study_tasks(config)
    if what == "codec":
        names = [*formats(config), "jpeg"]
    elif what == "task":
        names = list(tasks)
    elif what == "model":
        names = sorted({m for spec in tasks.values() for m in spec["models"]})
    else:
        names = [*MITIGATIONS, "none"]
    return "|".join(names) or "(?!)"


def finetune_epochs(config: dict) -> dict:
    """The codec study's own fine-tuning epochs, as a settings section ({} when the task's apply)."""
    epochs = config["codecs"].get("finetune_epochs")
    return {} if epochs is None else {"epochs": epochs}


def figure_name(task: str, mitigations: bool = False) -> str:
    """bpp_{task}, bpp_mitigations_{task} (the study PDF drops _classification, as for every figure)."""
    return f"bpp_mitigations_{task}" if mitigations else f"bpp_{task}"


def report_figures(config: dict) -> dict[str, tuple[str, str, list[str]]]:
    """{figure name: (kind, task, metric files)}: each task's curves without mitigation, and its first model's
    mitigations on each codec where it has any."""
    out = {}
    for task, spec in study_tasks(config).items():
        files = [f for f in metric_files(config, task) if f.endswith("/none.json")]
        out[figure_name(task)] = ("rate", task, files)
        if spec["mitigations"]:
            model = spec["models"][0]
            mine = [f for f in metric_files(config, task) if f"/{task}/{model}/" in f]
            out[figure_name(task, True)] = ("rate-mitigation", task, mine)
    return out


def table_files(config: dict) -> list[str]:
    """The bitrate table's metric files: every curve without mitigation, and the clean rows (JPEG's none.json)."""
    return [f for f in metric_files(config) if f.endswith("/none.json")]
