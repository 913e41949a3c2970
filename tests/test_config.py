import copy

import pytest
import yaml
from snakemake.utils import validate

from jpegstudy.config import (
    ConfigError,
    check_schema,
    check_semantics,
    mitigation_config,
    mitigation_inputs,
    study_mitigations,
    wildcard_names,
)

from .conftest import REPO

SCHEMA = REPO / "config" / "schema.yaml"


def properties(schema, path=""):
    """Every (dotted key, subschema, required by its parent) the schema declares."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub, name in schema.get("required", [])
        yield from properties(sub, f"{path}{name}.")
    for name, sub in schema.get("$defs", {}).items():
        yield from properties(sub, f"$defs.{name}.")


def test_every_key_is_described_and_defaults_are_valid():
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = list(properties(schema))
    assert len(keys) > 30
    for key, sub, required in keys:
        description = sub.get("description", "")
        assert description, f"{key} has no description"
        assert "default" in sub or required or description.startswith(("Optional", "imagenet", "coco, ", "ade20k, ")), \
            f"{key}: neither a default nor said to be optional/required"
    # the defaults alone make a valid config: the embedded study
    config = {}
    check_schema(config, SCHEMA)
    validate(config, str(SCHEMA))  # snakemake's, which fills the defaults in
    check_semantics(config)
    assert list(config["classification"]["models"]) == ["resnet18", "mobilenet_v2"]
    assert config["datasets"]["embedded"]["image_size"] == 48


@pytest.mark.parametrize("name", ["config.yaml", "config/smoke.yaml", "config/paper.yaml"])
def test_shipped_configs_follow_the_schema(name):
    check_schema(yaml.safe_load((REPO / name).read_text()), SCHEMA)


@pytest.mark.parametrize("name", ["config.yaml", "config/smoke.yaml"])
def test_shipped_configs_pass_the_semantic_checks(name, monkeypatch):
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / name).read_text())
    validate(config, str(SCHEMA))
    check_semantics(config)


def test_unknown_arch_is_named_with_its_key():
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["classification"]["models"] = {"mine": {"arch": "torchvision:convnext_tinny"}}
    validate(config, str(SCHEMA))
    with pytest.raises(ConfigError, match=r"^config classification.models.mine.arch: torchvision:convnext_tinny: "
                                          r"torchvision has no classification model 'convnext_tinny'; close: "
                                          r"convnext_tiny"):
        check_semantics(config)


def test_paper_config_names_the_papers_nine_with_torchvision_weights():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    models = paper["classification"]["models"]
    assert len(models) == 9 and {m["weights"] for m in models.values()} == {"IMAGENET1K_V1"}


def test_semantic_errors_name_the_key(tmp_path):
    base = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config = copy.deepcopy(base)
    config["classification"]["dataset"] = "imagenet"
    with pytest.raises(ConfigError, match=r"^config classification.dataset: 'imagenet' is not one of datasets "
                                          r"\(embedded, scenes, parsing, fakes\)$"):
        check_semantics(config)
    config = copy.deepcopy(base)
    config["datasets"]["real"] = {"kind": "imagenet", "val": str(tmp_path)}
    config["classification"]["dataset"] = "real"
    with pytest.raises(ConfigError, match=r"^config classification.models.resnet18.weights: 'train' is for "
                                          r"embedded datasets only"):
        check_semantics(config)


def test_imagenet_needs_val_and_small_images_refuse_inception():
    with pytest.raises(ConfigError, match=r"^config datasets.imnet: 'val' is a required property$"):
        check_schema({"datasets": {"imnet": {"kind": "imagenet"}}}, SCHEMA)
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["classification"]["models"] = {"inc": {"arch": "inception_v3", "weights": "train"}}
    with pytest.raises(ConfigError, match=r"^config classification.models.inc: inception_v3 needs images of at least "
                                          r"75 px, datasets.embedded.image_size is 32$"):
        check_semantics(config)


def test_wildcard_names():
    models = {"a.b": {"weights": "train"}, "c": {"weights": "X"}}
    assert wildcard_names(models, weights="train") == r"a\.b"
    assert wildcard_names(models, weights="nothing") == "(?!)"


def test_provenance_keeps_training_keys_only_for_models_trained_here():
    from jpegstudy.config import used_model_config

    trained = {"weights": "train", "train": {"epochs": 5}, "transform": {}}
    resolved = {"weights": "IMAGENET1K_V1", "train": {"epochs": 5}, "transform": {"crop": 224}}
    assert used_model_config(trained) == trained
    assert used_model_config(resolved) == {"weights": "IMAGENET1K_V1", "transform": {"crop": 224}}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["segmentation"].update(dataset="scenes"),
     r"^config segmentation.dataset: 'scenes' is a dataset of kind embedded_coco; segmenters need one of kind "
     r"embedded_ade20k or ade20k \(label maps\)$"),
    (lambda c: c["segmentation"]["models"]["mobilenet_c1"].update(backbone="resnet18"),
     r"^config segmentation.models.mobilenet_c1.backbone: 'resnet18' is a resnet18; mobilenetv2dilated is made from "
     r"a mobilenet_v2$"),
    (lambda c: c["segmentation"]["models"]["resnet18_ppm"].update(encoder="hrnetv2", decoder="c1"),
     r"^config segmentation.models.resnet18_ppm.encoder: hrnetv2 is not trained here"),
    (lambda c: c["segmentation"]["models"]["resnet18_ppm"].update(
        weights={"encoder": "/no/encoder_epoch_20.pth", "decoder": "/no/decoder_epoch_20.pth"}),
     r"^config segmentation.models.resnet18_ppm.weights.encoder: /no/encoder_epoch_20.pth does not exist$"),
    (lambda c: c["datasets"].update(real={"kind": "ade20k"}),
     r"^config datasets.real.root: an ade20k dataset needs its ADEChallengeData2016 folder$"),
])
def test_segmentation_config_errors_name_the_key(change, message):
    assert_smoke_change_refused(change, message)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["forensics"].update(dataset="parsing"),
     r"^config forensics.dataset: 'parsing' is a dataset of kind embedded_ade20k; forensic detectors need one of kind "
     r"embedded_forensics or forensics \(0_real and 1_fake\)$"),
    (lambda c: c["forensics"]["models"]["wang"].update(weights="/no/blur_jpg_prob0.5.pth"),
     r"^config forensics.models.wang.weights: /no/blur_jpg_prob0.5.pth is neither 'train' nor an existing "
     r"checkpoint file$"),
    (lambda c: c["forensics"]["models"]["chai"].update(crop=224),
     r"^config forensics.models.chai.crop: chai2020 takes no crop \(wang2020 a crop, chai2020 a size\)$"),
    (lambda c: c["forensics"]["mitigate"].update(crop=32),
     r"^config forensics.mitigate.crop: a random resized crop resamples the training images"),
    (lambda c: c["datasets"].update(cnn={"kind": "forensics", "val": "/no/progan"}),
     r"^config datasets.cnn.val: /no/progan does not exist$"),
    (lambda c: (c["datasets"].update(cnn={"kind": "forensics", "val": str(REPO)}), c["forensics"].update(
        dataset="cnn")),
     r"^config forensics.models.wang.weights: 'train' is for embedded_forensics datasets only"),
])
def test_forensics_config_errors_name_the_key(change, message):
    assert_smoke_change_refused(change, message)


def assert_smoke_change_refused(change, message):
    """The smoke config with `change` made is refused by the semantic checks with `message`."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    change(config)
    validate(config, str(SCHEMA))
    with pytest.raises(ConfigError, match=message):
        check_semantics(config)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["multihead"]["groups"]["two_task"].update(detection="retinanet"),
     r"^config multihead.groups.two_task.detection: 'retinanet' is not one of detection.models "
     r"\(mask_rcnn, fast_rcnn\)$"),
    (lambda c: (c.pop("forensics"), c["multihead"]["groups"]["two_task"].update(forensics="wang")),
     r"^config multihead.groups.two_task.forensics: the study has no forensics section$"),
    (lambda c: c["detection"].update(mitigations=["ttac", "ac_comparison"], ac_comparison={"model": "faster_rcnn"}),
     r"^config detection.ac_comparison.model: 'faster_rcnn' is not one of detection.models \(mask_rcnn, fast_rcnn\)$"),
    (lambda c: c["segmentation"].update(mitigations=["ac_comparison"],
                                        ac_comparison={"model": "mobilenet_c1", "qualities": [20]}),
     r"^config segmentation.ac_comparison.qualities: 20 is not one of qualities$"),
])
def test_multihead_and_ac_comparison_errors_name_the_key(change, message):
    assert_smoke_change_refused(change, message)


def test_a_multihead_group_needs_two_tasks_with_known_names():
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["multihead"]["groups"]["one"] = {"classification": "resnet18"}
    with pytest.raises(ConfigError, match=r"^config multihead.groups.one: \{'classification': 'resnet18'\} does not "
                                          r"have enough properties$"):
        check_schema(config, SCHEMA)
    config["multihead"]["groups"]["one"] = {"classification": "resnet18", "depth": "x"}
    with pytest.raises(ConfigError, match=r"^config multihead.groups.one: Additional properties are not allowed "
                                          r"\('depth' was unexpected\)$"):
        check_schema(config, SCHEMA)
    config["multihead"]["groups"] = {"two-task": {"classification": "resnet18", "detection": "mask_rcnn"}}
    with pytest.raises(ConfigError, match=r"^config multihead.groups: 'two-task' does not match"):
        check_schema(config, SCHEMA)


def test_multihead_mitigations_and_inputs_follow_the_groups():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(SCHEMA))
    cls = study_mitigations(config)
    assert [m for m in cls["mobilenet_v2"] if m.startswith("multihead-")] == ["multihead-two_task",
                                                                           "multihead-three_task"]
    assert not any(m.startswith("multihead-") for m in cls["resnet18"])
    assert study_mitigations(config, "segmentation")["mobilenet_c1"][-1] == "multihead-three_task"
    assert study_mitigations(config, "detection")["faster_rcnn"][-6:-2] == [
        "arcnn-offtheshelf", "arcnn-ttac", "idcn-offtheshelf", "idcn-ttac"]
    needs = mitigation_inputs(config, "faster_rcnn", "multihead-three_task", "detection")
    assert needs == {"reference": "results/models/detection/faster_rcnn/reference.pt",
                     "correctors": {None: "results/models/correction/qgac/multihead/three_task.pt"}}
    recorded = mitigation_config(config, "multihead-two_task", "detection")
    assert recorded["multihead.groups.two_task"] == {"classification": "mobilenet_v2", "detection": "faster_rcnn"}
    assert recorded["multihead"] == {"epochs": 2, "lr": 0.002, "lr_min": 1.0e-6, "images_per_epoch": 100}
    assert recorded["classification.mitigate"]["batch_size"] == 64 and recorded["detection.mitigate"]["batch_size"] == 16
    assert "segmentation.mitigate" not in recorded
