"""What each rule needs, worked out from the config: the input functions and parameter strings the .smk files call
(snakemake's lint wants functions out of rule files; the study's logic lives in the package anyway)."""

from __future__ import annotations

import json

from jpegstudy import codec_study, paths
from jpegstudy.report.metrics import HEADLINE
from jpegstudy.config import (
    MASK_DETECTORS,
    ac_model,
    mitigation_config,
    mitigation_inputs,
    multihead_members,
    multihead_settings,
    study_mitigations,
    train_dataset,
    used_model_config,
)


def trainer_params(config: dict, *sections: dict) -> str:
    """The training settings a job gets (and records): the sections' plain keys merged, plus the seed."""
    merged = {"seed": config["seed"]}
    for section in sections:
        merged.update({k: v for k, v in section.items() if not isinstance(v, dict)})
    return json.dumps(merged, sort_keys=True)


def images_cap(network_config: dict) -> dict:
    """The images-per-epoch cap of a corrector's training, as a section for trainer_params."""
    cap = network_config["train"].get("images_per_epoch")
    return {} if cap is None else {"images_per_epoch": cap}


def ttac_input(config: dict, w) -> dict:
    return {
        "corrector": paths.offtheshelf(w.network, getattr(w, "quality", None)),
        "reference": paths.reference(w.task, w.model),
        "train": paths.manifest(train_dataset(config, w.task), "train"),
    }


def multihead_input(config: dict, w) -> dict:
    """A multihead corrector's inputs: the off-the-shelf corrector it starts from, and each member's model and
    training manifest ({task}_reference, {task}_train)."""
    out = {"corrector": paths.offtheshelf(w.network)}
    for task, model in multihead_members(config, w.group).items():
        out[f"{task}_reference"] = paths.reference(task, model)
        out[f"{task}_train"] = paths.manifest(train_dataset(config, task), "train")
    return out


def multihead_member_args(config: dict, w) -> str:
    """The train-multihead command's --member options: TASK=REFERENCE=TRAIN_MANIFEST, one per member."""
    needs = multihead_input(config, w)
    return " ".join(f"--member {task}={needs[f'{task}_reference']}={needs[f'{task}_train']}"
                    for task in multihead_members(config, w.group))


def multihead_params(config: dict, w) -> str:
    """A multihead corrector's training settings (and what it records): the multihead section's epochs and learning
    rates, each member task's batch size and crop."""
    settings = multihead_settings(config)
    members = multihead_members(config, w.group)
    per_task = {key: {task: config[task]["mitigate"][key] for task in members if key in config[task]["mitigate"]}
                for key in ("batch_size", "crop")}
    return json.dumps({"seed": config["seed"], **settings, **{k: v for k, v in per_task.items() if v}},
                      sort_keys=True)


def finetune_input(config: dict, w) -> dict:
    return {
        "reference": paths.reference(w.task, w.model),
        "train": paths.manifest(train_dataset(config, w.task), "train"),
        **proposals_input(config, w.task, w.model, "train"),
    }


def forensic_settings(model: dict) -> dict:
    """What builds a forensic detector and its test-time transform, from its config: the detector, its network's
    settings (wang2020's layers and width, chai2020's block and width) and its crop or size."""
    keys = ("layers", "width", "crop") if model["detector"] == "wang2020" else ("block", "width", "size")
    return {"detector": model["detector"], **{k: model[k] for k in keys if model.get(k) is not None}}


def proposals_input(config: dict, task: str, model: str, split: str) -> dict:
    """{"proposals": file} of a Fast R-CNN on a split (its source's RPN output, or the user's file), else {}."""
    source = config[task]["models"][model].get("proposals")
    if source is None:
        return {}
    return {"proposals": paths.proposals(source, split) if isinstance(source, str) else source[split]}


def proposal_sources(config: dict) -> dict:
    """The detectors whose RPN makes a Fast R-CNN's proposals ({name: its config})."""
    models = config["detection"]["models"]
    return {m["proposals"]: models[m["proposals"]] for m in models.values() if isinstance(m.get("proposals"), str)}


def proposals_option(config: dict, task: str, model: str, split: str) -> str:
    """A command's --proposals option for a Fast R-CNN (empty for every other model)."""
    found = proposals_input(config, task, model, split)
    return f"--proposals {found['proposals']}" if found else ""


def mitigation_params(config: dict, w, what: str, *sections: dict) -> str:
    """trainer_params of `w.task`'s mitigate section (its shared keys, then its `what` section), and `sections`."""
    mitigate = config[w.task]["mitigate"]
    shared = {k: mitigate[k] for k in ("epochs", "batch_size", "workers", "crop") if k in mitigate}
    return trainer_params(config, shared, mitigate[what], *sections)


def evaluation_input(config: dict, w) -> dict:
    needs = mitigation_inputs(config, w.model, w.mitigation, w.task)
    dataset = config[w.task]["dataset"]
    return {
        "reference": needs["reference"],
        "correctors": list(needs["correctors"].values()),
        "clean": paths.manifest(dataset, "val"),
        "compressed": [paths.manifest(dataset, f"val-q{q}") for q in config["qualities"]],
        **proposals_input(config, w.task, w.model, "val"),
    }


def _evaluated_model(config: dict, w) -> dict:
    """The config keys every evaluation of one task model depends on, whatever it is evaluated on."""
    section, dataset = config[w.task], config[w.task]["dataset"]
    return {
        f"{w.task}.dataset": dataset,
        f"{w.task}.models.{w.model}": used_model_config(section["models"][w.model]),
        f"{w.task}.eval_batch_size": section["eval_batch_size"],
        f"datasets.{dataset}": config["datasets"][dataset],
        "seed": config["seed"],
        "confidence": config["confidence"],
        "device": config["device"],
        "precision": config["precision"],
    }


def evaluation_config(config: dict, w) -> str:
    """The config keys one evaluation's numbers depend on, as its provenance records them (JSON)."""
    return json.dumps({**_evaluated_model(config, w), "qualities": config["qualities"],
                       **mitigation_config(config, w.mitigation, w.task)}, sort_keys=True)


def codec_evaluation_config(config: dict, w) -> str:
    """evaluation_config of the codec study: the codec's section (JPEG's: the qualities) and the mitigation's."""
    used = _evaluated_model(config, w)
    if w.codec == "jpeg":
        used["qualities"] = config["qualities"]
    else:
        used[f"codecs.formats.{w.codec}"] = codec_study.formats(config)[w.codec]
    if w.mitigation == "finetune":
        used[f"{w.task}.mitigate"] = config[w.task]["mitigate"]
        used.update({f"codecs.finetune_{k}": v for k, v in codec_study.finetune_epochs(config).items()})
    elif w.mitigation != "none":
        used["codecs.corrector"] = config["codecs"]["corrector"]
    return json.dumps(used, sort_keys=True)


def codec_trainer_params(config: dict, w, what: str) -> str:
    """A codec-study trainer's settings: fine-tuning's are the task's (mitigation_params) with the codec study's
    epochs; the pixel corrector's its section (its widths, its training, and for TTAC its learning rates)."""
    if what == "finetune":
        return mitigation_params(config, w, "finetune", codec_study.finetune_epochs(config))
    corrector = config["codecs"]["corrector"]
    return trainer_params(config, corrector, corrector["train"], *([corrector["ttac"]] if what == "ttac" else []))


def corrector_args(config: dict, w) -> str:
    """The evaluate command's --corrector option: FILE, or Q=FILE for each quality of a quality-aware one."""
    correctors = mitigation_inputs(config, w.model, w.mitigation, w.task)["correctors"]
    if not correctors:
        return ""
    return "--corrector " + " ".join(path if q is None else f"{q}={path}" for q, path in correctors.items())


def throughput_correctors(config: dict) -> dict:
    """One corrector file per network in the study: what is timed is the network, not its weights."""
    cls = config["classification"]
    wanted = set(cls["mitigations"])
    out = {}
    if wanted & {"offtheshelf", "ttac", "transfer"}:
        out["qgac"] = paths.offtheshelf("qgac")
    if "ac_comparison" in wanted:
        quality = cls["ac_comparison"]["qualities"][0]
        out.update({net: paths.offtheshelf(net, quality) for net in cls["ac_comparison"]["networks"]})
    return out


def task_metrics(config: dict, task: str, models=None, mitigations=None) -> list[str]:
    """The metric files of `task` the study evaluates, models in config order: of `models` and `mitigations` only,
    when given; none when the study has no such task."""
    if task not in config:
        return []
    return [paths.metrics(task, model, m) for model, ms in study_mitigations(config, task).items()
            if models is None or model in models for m in ms if mitigations is None or m in mitigations]


def ac_comparison_metrics(config: dict) -> list[str]:
    """Table 1's metric files: of every task comparing correctors, its AC-comparison model without correction, with
    QGAC (off the shelf, task-targeted) and with each quality-aware baseline."""
    files = []
    for task in (t for t in ("classification", "detection", "segmentation") if t in config):
        section = config[task]
        if "ac_comparison" not in section["mitigations"]:
            continue
        ac = section["ac_comparison"]
        files += task_metrics(config, task, models=(ac_model(config, task),), mitigations=(
            "none", "offtheshelf", "ttac", *(f"{n}-{how}" for n in ac["networks"] for how in ("offtheshelf", "ttac"))))
    return files


def borrowed_metrics(config: dict, task: str | None = None) -> list[str]:
    """Table 5's (and Figures 7 and 8's) metric files: each model with a corrector trained for other models
    (transfer-*, multihead-*), without correction, with its own TTAC and with each such corrector; of `task` only
    when given."""
    files = []
    for t in (task,) if task else (t for t in ("classification", "detection", "segmentation", "forensics")):
        if t not in config:
            continue
        for model, ms in study_mitigations(config, t).items():
            if any(m.startswith(("transfer-", "multihead-")) for m in ms):
                files += [paths.metrics(t, model, m) for m in ms
                          if m in ("none", "ttac") or m.startswith(("transfer-", "multihead-"))]
    return files


# The headline field of each task beside classification, in the tables and figures of every model (Appendix D.2-3)
TASK_FIELDS = {task: field for task, field in HEADLINE.items() if task != "classification"}


def task_tables(config: dict) -> dict[str, tuple[str, list[str]]]:
    """The tables of the tasks beside classification (appendix D.2): {name: (field, metric files)}: box mAP of every
    detector and mask mAP of those with a mask head; mIoU of every segmenter; real/fake accuracy of every forensic
    detector (appendix Table 4)."""
    tables = {task: (field, task_metrics(config, task)) for task, field in TASK_FIELDS.items() if task in config}
    if "detection" in config:
        models = config["detection"]["models"]
        with_masks = [name for name, m in models.items() if m.get("arch", name) in MASK_DETECTORS]
        if with_masks:
            tables["detection_mask"] = ("mask_ap", task_metrics(config, "detection", models=with_masks))
    return tables


def task_figures(config: dict) -> dict[str, tuple[str, str, list[str]]]:
    """The detection, segmentation and forensics panels of Figures 3 and 4 (forensics': Figure 6a and 6b), and the
    inter-task transfer of Figure 7 (b, c): {name: (figure kind, field, metric files)}."""
    figures = {}
    for task, field in TASK_FIELDS.items():
        if task not in config:
            continue
        figures[f"drop_{task}"] = ("drop", field, task_metrics(config, task, mitigations=("none",)))
        if set(config[task]["mitigations"]) & {"finetune", "offtheshelf", "ttac"}:
            figures[f"mitigation_{task}"] = ("mitigation", field, task_metrics(
                config, task, mitigations=("none", "finetune", "offtheshelf", "ttac")))
        transferred = [f for f in borrowed_metrics(config, task) if "/multihead-" not in f]
        if any("/transfer-" in f for f in transferred):  # Figure 7b (detection), 7c (segmentation)
            figures[f"transfer_{task}"] = ("transfer", field, transferred)
    return figures


def across_figures(config: dict) -> dict[str, tuple[str, list[str]]]:
    """The main-body figures across every task (those with the rows they need): {name: (figure kind, metric
    files)}: Figure 1 (summary_tasks: fine-tuning against TTAC, every model), 3 (drop_tasks), 4 (mitigation_tasks)
    and 8 (multihead: each member model's own and multihead correctors)."""
    tasks = [t for t in HEADLINE if t in config]
    figures = {"drop_tasks": ("drop-tasks", [f for t in tasks for f in task_metrics(config, t, mitigations=("none",))])}
    mitigated = [t for t in tasks if set(config[t]["mitigations"]) & {"finetune", "offtheshelf", "ttac"}]
    if mitigated:
        figures["mitigation_tasks"] = ("mitigation-tasks", [f for t in mitigated for f in task_metrics(
            config, t, mitigations=("none", "finetune", "offtheshelf", "ttac"))])
    both = [t for t in tasks if {"finetune", "ttac"} <= set(config[t]["mitigations"])]
    if both:
        figures["summary_tasks"] = ("summary-tasks", [f for t in both for f in task_metrics(
            config, t, mitigations=("none", "finetune", "ttac"))])
    multihead = [f for f in borrowed_metrics(config) if "/transfer-" not in f]
    if any("/multihead-" in f for f in multihead):
        members = {f.rsplit("/", 1)[0] for f in multihead if "/multihead-" in f}  # a member model's folder
        figures["multihead"] = ("multihead", [f for f in multihead if f.rsplit("/", 1)[0] in members])
    return figures


def findings_metrics(config: dict) -> list[str]:
    """What the findings page weighs: every model of every task without mitigation, fine-tuned and with TTAC."""
    return [f for t in HEADLINE if t in config for f in task_metrics(config, t, mitigations=("none", "finetune", "ttac"))]


def example_pieces(config: dict, detection: dict[str, str], segmentation: dict[str, str]) -> dict[str, str]:
    """Figure 5's panels (the body's qualitative figure at the lowest quality), from the appendix's qualitative
    figures: {"detection": a detector with masks (detection and instance segmentation in one), else the first,
    "segmentation": the first segmenter}."""
    out = {}
    if detection:
        models = config["detection"]["models"]
        masked = [m for m in detection if models[m].get("arch", m) in MASK_DETECTORS]
        out["detection"] = detection[(masked or list(detection))[0]]
    if segmentation:
        out["segmentation"] = next(iter(segmentation.values()))
    return out


def tide_models(config: dict) -> dict[str, str]:
    """The detectors TIDE analyses (appendix B), with what: {model: "segm" for Mask R-CNN (its masks, as the paper),
    "bbox" for the others}."""
    if "detection" not in config:
        return {}
    return {name: "segm" if m.get("arch", name) in MASK_DETECTORS else "bbox"
            for name, m in config["detection"]["models"].items()}


def tide_plots(config: dict, model: str) -> list[str]:
    """The TIDE summary plots of one detector: clean, then each quality."""
    return [paths.appendix(f"tide_{model}_{label}", "png")
            for label in ["clean", *(f"q{q}" for q in config["qualities"])]]


# The mitigations an appendix figure shows beside the JPEG, in the figures' column order.
APPENDIX_MITIGATIONS = ("finetune", "offtheshelf", "ttac")


def appendix_input(config: dict, w, task: str = "classification") -> dict:
    """What an appendix figure of one `task` model (GradCAM, qualitative) needs: the model, the clean and
    lowest-quality validation manifests, and the file of each mitigation the config asks for."""
    dataset = config[task]["dataset"]
    wanted = study_mitigations(config, task)[w.model]
    files = {
        "finetune": paths.finetuned(task, w.model),
        "offtheshelf": paths.offtheshelf("qgac"),
        "ttac": paths.ttac("qgac", task, w.model),
    }
    return {
        "reference": paths.reference(task, w.model),
        "clean": paths.manifest(dataset, "val"),
        "compressed": paths.manifest(dataset, f"val-q{min(config['qualities'])}"),
        **{m: files[m] for m in APPENDIX_MITIGATIONS if m in wanted},
        **(proposals_input(config, task, w.model, "val") if task == "detection" else {}),
    }


def appendix_mitigation_args(config: dict, w, task: str = "classification") -> str:
    """The appendix commands' --mitigation option: NAME=FILE for each mitigation shown (empty when none is)."""
    needs = appendix_input(config, w, task)
    shown = [f"{m}={needs[m]}" for m in APPENDIX_MITIGATIONS if m in needs]
    return "--mitigation " + " ".join(shown) if shown else ""


def figure_png(name: str, caption: str, category: str, subcategory: str | None = None):
    """A figure's PNG, flagged for snakemake's own report with its caption (rules/captions/, relative to the rule
    file) and category."""
    from snakemake.io import report

    return report(paths.figure(name, "png"), caption=f"captions/{caption}.rst", category=category,
                  subcategory=subcategory)


def table_page(name: str, caption: str):
    """A table's HTML page, flagged for snakemake's own report (which shows HTML, not LaTeX) under "Tables"."""
    from snakemake.io import report

    return report(paths.table_html(name), caption=f"captions/{caption}.rst", category="Tables")
