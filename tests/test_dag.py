"""What the study's cross-task rules are given (jpegstudy.dag), worked out from the shipped default config."""

import json
from types import SimpleNamespace

import yaml
from snakemake.utils import validate

from jpegstudy import dag

from .conftest import REPO


def default_config():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def m(task, model, mitigation):
    return f"results/metrics/{task}/{model}/{mitigation}.json"


def test_table_1_has_each_tasks_comparison_model_and_every_corrector():
    files = dag.ac_comparison_metrics(default_config())
    correctors = ["none", "offtheshelf", "ttac", "arcnn-offtheshelf", "arcnn-ttac", "idcn-offtheshelf", "idcn-ttac"]
    assert files == [m("classification", "mobilenet_v2", c) for c in correctors] + [
        m("detection", "faster_rcnn", c) for c in correctors] + [m("segmentation", "mobilenet_c1", c)
                                                                  for c in correctors]


def test_table_5_and_figures_7_and_8_read_the_borrowed_correctors():
    config = default_config()
    borrowed = dag.borrowed_metrics(config)
    assert borrowed[:4] == [m("classification", "resnet18", x) for x in ("none", "ttac", "transfer-mobilenet_v2")] + [
        m("classification", "mobilenet_v2", "none")]
    assert m("classification", "mobilenet_v2", "multihead-three_task") in borrowed
    assert [f for f in borrowed if "/detection/" in f] == [m("detection", "faster_rcnn", x) for x in (
        "none", "ttac", "transfer-resnet18", "transfer-mobilenet_v2", "multihead-two_task", "multihead-three_task")]
    figures = dag.task_figures(config)
    # Figure 7b: the detector's own TTAC beside the classifiers' correctors, no multihead file
    assert figures["transfer_detection"] == ("transfer", "map", [m("detection", "faster_rcnn", x) for x in (
        "none", "ttac", "transfer-resnet18", "transfer-mobilenet_v2")])
    assert figures["transfer_segmentation"][0:2] == ("transfer", "miou") and "transfer_forensics" not in figures
    across = dag.across_figures(config)
    assert list(across) == ["drop_tasks", "mitigation_tasks", "summary_tasks", "multihead"]
    # Figure 8: each member model's none, own TTAC and multihead files; no other model, no transfer file
    assert across["multihead"] == ("multihead", [
        m("classification", "mobilenet_v2", x) for x in ("none", "ttac", "multihead-two_task", "multihead-three_task")
    ] + [m("detection", "faster_rcnn", x) for x in ("none", "ttac", "multihead-two_task", "multihead-three_task")] + [
        m("segmentation", "mobilenet_c1", x) for x in ("none", "ttac", "multihead-three_task")])
    assert len(across["drop_tasks"][1]) == 2 + 2 + 2 + 2  # every model of the four tasks, without mitigation
    assert all(f.endswith(("/none.json", "/finetune.json", "/ttac.json")) for f in across["summary_tasks"][1])


def test_a_multihead_job_gets_each_members_model_data_and_batch_size():
    config = default_config()
    w = SimpleNamespace(network="qgac", group="three_task")
    needs = dag.multihead_input(config, w)
    assert needs == {"corrector": "results/models/correction/qgac/offtheshelf.pt",
                     "classification_reference": "results/models/classification/mobilenet_v2/reference.pt",
                     "classification_train": "results/data/embedded/train/manifest.json",
                     "detection_reference": "results/models/detection/faster_rcnn/reference.pt",
                     "detection_train": "results/data/scenes/train/manifest.json",
                     "segmentation_reference": "results/models/segmentation/mobilenet_c1/reference.pt",
                     "segmentation_train": "results/data/parsing/train/manifest.json"}
    assert dag.multihead_member_args(config, w).split(" --member ")[1] == (
        "detection=results/models/detection/faster_rcnn/reference.pt=results/data/scenes/train/manifest.json")
    assert json.loads(dag.multihead_params(config, w)) == {
        "seed": 0, "epochs": 2, "lr": 0.002, "lr_min": 1.0e-6, "images_per_epoch": 100,
        "batch_size": {"classification": 64, "detection": 16, "segmentation": 16}}


def test_figure_5_shows_a_detector_with_masks_and_the_first_segmenter():
    config = default_config()
    detection = {name: f"q_{name}.pdf" for name in ("faster_rcnn", "mask_rcnn")}
    assert dag.example_pieces(config, detection, {"mobilenet_c1": "s1.pdf", "resnet18_ppm": "s2.pdf"}) == {
        "detection": "q_mask_rcnn.pdf", "segmentation": "s1.pdf"}
    assert dag.example_pieces(config, {"faster_rcnn": "f.pdf"}, {}) == {"detection": "f.pdf"}
