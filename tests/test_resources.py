"""What each job asks a cluster for: the resources sections merged per job (jpegstudy.resources), as rules get them."""

import pytest
import yaml
from snakemake.iocontainers import Wildcards

from jpegstudy import resources
from jpegstudy.config import ConfigError, check_schema, check_semantics

from .conftest import REPO

SCHEMA = REPO / "config" / "schema.yaml"


def wildcards(**values):
    return Wildcards(fromdict=values)


CONFIG = {
    "resources": {"default": {"mem_mb": 2000, "runtime": 30, "gpu": 0}, "evaluate": {"gpu": 1, "cpus_per_task": 9}},
    "classification": {
        "resources": {"finetune": {"mem_mb": 16000}},
        "models": {"resnet18": {}, "resnext101_32x8d": {"resources": {"default": {"gpu_model": "a100"},
                                                                      "finetune": {"mem_mb": 64000}}}},
    },
    "detection": {"models": {"faster_rcnn": {}}},
}


def test_a_job_takes_default_then_kind_at_each_level_the_model_last():
    assert resources.job_resources(CONFIG, "data") == {"mem_mb": 2000, "runtime": 30, "gpu": 0}
    assert resources.job_resources(CONFIG, "evaluate", "detection", "faster_rcnn") == {
        "mem_mb": 2000, "runtime": 30, "gpu": 1, "cpus_per_task": 9}
    assert resources.job_resources(CONFIG, "finetune", "classification", "resnet18")["mem_mb"] == 16000
    assert resources.job_resources(CONFIG, "finetune", "classification", "resnext101_32x8d") == {
        "mem_mb": 64000, "runtime": 30, "gpu": 0, "gpu_model": "a100"}
    # the model's default wins over its task's kind: it is the more specific level
    assert resources.job_resources(CONFIG, "evaluate", "classification", "resnext101_32x8d")["gpu_model"] == "a100"
    with pytest.raises(ValueError, match="unknown kind of job 'train'"):
        resources.job_resources(CONFIG, "train")


def test_a_rule_gets_one_function_of_the_wildcards_per_key_any_job_sets():
    finetune = resources.rule_resources(CONFIG, "finetune")
    assert sorted(finetune) == ["gpu", "gpu_model", "mem_mb", "runtime"]
    big, small = wildcards(task="classification", model="resnext101_32x8d"), wildcards(task="classification",
                                                                                        model="resnet18")
    assert finetune["mem_mb"](big) == 64000 and finetune["mem_mb"](small) == 16000
    assert finetune["gpu_model"](big) == "a100" and finetune["gpu_model"](small) is None  # snakemake drops None
    # a rule of one task without a {task} wildcard names it; propose's detector is its {source}
    reference = resources.rule_resources(CONFIG, "reference", "classification")
    assert reference["gpu_model"](wildcards(model="resnext101_32x8d")) == "a100"
    assert resources.rule_resources(CONFIG, "evaluate", "detection")["gpu"](wildcards(source="faster_rcnn")) == 1
    assert sorted(resources.rule_resources(CONFIG, "report")) == ["gpu", "gpu_model", "mem_mb", "runtime"]


def test_a_unit_converted_resource_outside_the_default_is_refused_in_one_line():
    config = {**CONFIG, "resources": {"default": {"gpu": 0}}}
    assert resources.check(config) == ("config classification.resources.finetune.mem_mb: set here but not in "
                                       "resources.default (once any job asks for mem_mb, every job must)")
    assert resources.check(CONFIG) is None


def test_the_schema_refuses_an_unknown_kind_or_resource_naming_the_key():
    base = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    with pytest.raises(ConfigError, match=r"^config resources: Additional properties are not allowed \('train' "):
        check_schema({**base, "resources": {"train": {"gpu": 1}}}, SCHEMA)
    with pytest.raises(ConfigError, match=r"^config resources.evaluate: Additional properties are not allowed "
                                          r"\('gpus' "):
        check_schema({**base, "resources": {"evaluate": {"gpus": 1}}}, SCHEMA)
    with pytest.raises(ConfigError, match=r"^config detection.models.mask_rcnn.resources.ttac.gpu: -1 is less than"):
        bad = {**base["detection"], "models": {**base["detection"]["models"],
                                               "mask_rcnn": {**base["detection"]["models"]["mask_rcnn"],
                                                             "resources": {"ttac": {"gpu": -1}}}}}
        check_schema({**base, "detection": bad}, SCHEMA)


def test_check_semantics_reports_the_resources_problem(tmp_path):
    config = {"resources": {"default": {}, "ttac": {"runtime": 600}}, "datasets": {}}
    with pytest.raises(ConfigError, match=r"^config resources.ttac.runtime: set here but not in resources.default"):
        check_semantics(config)


def test_the_paper_config_asks_a_gpu_for_every_network_job_and_none_for_the_report():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for kind in ("finetune", "ttac", "correction", "multihead", "evaluate", "throughput", "appendix"):
        assert resources.job_resources(paper, kind, "classification", "resnet50")["gpu"] == 1, kind
    for kind in ("data", "report"):
        assert resources.job_resources(paper, kind)["gpu"] == 0, kind
    # a ResNeXt-101 fine-tune is not a ResNet-18 one
    big = resources.job_resources(paper, "finetune", "classification", "resnext101_32x8d")
    small = resources.job_resources(paper, "finetune", "classification", "resnet18")
    assert big["mem_mb"] > small["mem_mb"] and big["runtime"] > small["runtime"]
    assert resources.check(paper) is None


def test_resources_are_not_part_of_the_config_a_number_records():
    """A job asking for more memory is the same computation: evaluation's params (provenance, rerun trigger) are the
    same whatever a model's resources say."""
    from jpegstudy import dag

    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    smoke.update(precision="fp32", device="cpu", confidence={}, datasets={"embedded": {"kind": "embedded"}})
    w = wildcards(task="classification", model="resnet18", mitigation="none")
    plain = dag.evaluation_config(smoke, w)
    smoke["classification"]["models"]["resnet18"]["resources"] = {"evaluate": {"gpu": 1, "mem_mb": 64000}}
    assert dag.evaluation_config(smoke, w) == plain and '"resources"' not in plain
