"""What each job asks a cluster for: the config's `resources` sections (top level, task, model) merged per job.

A rule unpacks `rule_resources(config, kind)` into its `resources:`; snakemake calls each value with the job's
wildcards, so an evaluation of resnext101_32x8d can ask for more than one of resnet18 (its model's section), and a
cluster executor (profiles/slurm) turns them into sbatch options. The local executor limits only what --resources
names, so on one machine these are records, not limits.
"""

from __future__ import annotations

from functools import partial

from jpegstudy.tasks import TASKS

KINDS = ("data", "reference", "finetune", "ttac", "correction", "multihead", "evaluate", "throughput", "appendix",
         "report")
# Snakemake converts these units, so a job must get a number (None fails); the others may be left out per job.
SIZED = ("mem_mb", "runtime")


def _levels(config: dict, task: str | None, model: str | None) -> list[dict]:
    levels = [config.get("resources", {})]
    section = config.get(task, {}) if task else {}
    if section:
        levels.append(section.get("resources", {}))
        levels.append(section.get("models", {}).get(model, {}).get("resources", {}) if model else {})
    return levels


def job_resources(config: dict, kind: str, task: str | None = None, model: str | None = None) -> dict:
    """The resources of one job: each level's default, then its `kind`, the later levels winning."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of job {kind!r}: one of {', '.join(KINDS)}")
    out: dict = {}
    for level in _levels(config, task, model):
        out.update(level.get("default", {}))
        out.update(level.get(kind, {}))
    return out


def _all_levels(config: dict, task: str | None = None):
    """(where in config, resources section) of the top level and of every task (or `task` alone) and model."""
    yield "", config.get("resources", {})
    for t in [task] if task else TASKS:
        if t in config:
            yield f"{t}.", config[t].get("resources", {})
            for name, model in config[t].get("models", {}).items():
                yield f"{t}.models.{name}.", model.get("resources", {})


def _keys(config: dict, kind: str, task: str | None) -> set[str]:
    """Every resource any job of this kind (of `task`, or of any task) may set."""
    return {key for _, level in _all_levels(config, task)
            for key in {**level.get("default", {}), **level.get(kind, {})}}


def _value(config: dict, kind: str, task: str | None, key: str, wildcards):
    model = wildcards.get("model") or wildcards.get("source")  # propose's wildcard names its detector `source`
    return job_resources(config, kind, wildcards.get("task", task), model).get(key)


def rule_resources(config: dict, kind: str, task: str | None = None) -> dict:
    """A rule's `resources:` (`**`-unpacked): for each key any of its jobs sets, a function of the job's wildcards
    (a job whose levels leave the key out gets None, which snakemake drops). `task` for rules without a {task}
    wildcard whose jobs belong to one task."""
    return {key: partial(_value, config, kind, task, key) for key in sorted(_keys(config, kind, task))}


def check(config: dict) -> str | None:
    """What is wrong with the resources sections, as a ConfigError's message, or None: a unit-converted key (mem_mb,
    runtime) set at some level must be in the top-level default too, or the jobs of the other levels get none."""
    default = config.get("resources", {}).get("default", {})
    for where, level in _all_levels(config):
        for kind, values in level.items():
            for key in SIZED:
                if key in values and key not in default:
                    return (f"config {where}resources.{kind}.{key}: set here but not in resources.default (once any "
                            f"job asks for {key}, every job must)")
    return None
