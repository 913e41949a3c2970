"""Detection in the study's config and training: the detection: section's checks, the training items (boxes and
masks moved with the pixels), and the train-detector command's refusals."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from jpegstudy import cli
from jpegstudy.config import ConfigError, check_semantics
from jpegstudy.data import embedded, training

from .conftest import REPO

SIZE = 32


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    m = embedded.write_coco_split(out, "train", 4, SIZE, seed=3)
    m.write(out / "manifest.json")
    from jpegstudy.data import manifest as manifests

    return manifests.read(out / "manifest.json")


def test_training_items_flip_boxes_and_masks_with_the_image(scenes):
    items, collate = training.training_set(scenes)
    # The unflipped truth: the same item with flipping switched off.
    items_no_flip = training.DetectionTrainingImages(scenes)
    items_no_flip.transform = lambda *xs: xs
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, target = items[1]
        original, truth = items_no_flip[1]
        flipped = torch.equal(image, original.flip(-1))
        assert flipped or torch.equal(image, original)
        seen.add(flipped)
        if flipped:
            expected = truth["boxes"].clone()
            expected[:, [0, 2]] = SIZE - truth["boxes"][:, [2, 0]]
            assert torch.allclose(target["boxes"], expected)
            assert torch.equal(target["masks"], truth["masks"].flip(-1))
        else:
            assert torch.equal(target["boxes"], truth["boxes"]) and torch.equal(target["masks"], truth["masks"])
        assert torch.equal(target["labels"], truth["labels"]) and target["labels"].min() >= 1
    assert seen == {True, False}
    batch_images, batch_targets = collate([items[0], items[1]])
    assert batch_images.shape == (2, 3, SIZE, SIZE) and batch_images.dtype == torch.uint8
    assert len(batch_targets) == 2


def test_training_items_resized_to_crop_scale_their_boxes(scenes):
    items = training.DetectionTrainingImages(scenes, crop=16)
    items.transform.transforms.pop()  # no flip: compare with the unscaled boxes
    truth = training.DetectionTrainingImages(scenes)
    truth.transform = lambda *xs: xs
    image, target = items[0]
    assert image.shape == (3, 16, 16) and target["masks"].shape[-2:] == (16, 16)
    assert torch.allclose(target["boxes"], truth[0][1]["boxes"] / 2)


def test_batches_of_detection_images_of_different_sizes_are_refused(scenes):
    small = (torch.zeros(3, 8, 8, dtype=torch.uint8), {})
    large = (torch.zeros(3, 9, 8, dtype=torch.uint8), {})
    with pytest.raises(ValueError, match=r"detection training images of different sizes .* set the task's "
                                         r"mitigate.crop"):
        training.training_set(scenes)[1]([small, large])


def smoke_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    from snakemake.utils import validate

    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


@pytest.mark.parametrize("change, message", [
    (lambda c: c["detection"].update(dataset="embedded"),
     r"^config detection.dataset: 'embedded' is a dataset of kind embedded; detectors need one of kind embedded_coco or "
     r"coco \(boxes and masks\)$"),
    (lambda c: c["detection"].update(dataset="nowhere"), r"^config detection.dataset: 'nowhere' is not one of datasets"),
    (lambda c: c["detection"]["models"]["mask_rcnn"].update(backbone="vgg"),
     r"^config detection.models.mask_rcnn.backbone: 'vgg' is not one of classification.models \(resnet18, "
     r"mobilenet_v2\)$"),
    (lambda c: c["detection"]["models"]["mask_rcnn"].update(backbone="mobilenet_v2"),
     r"^config detection.models.mask_rcnn.backbone: 'mobilenet_v2' is not a ResNet"),
    (lambda c: c["detection"].update(transfer_from=["faster_rcnn"]),
     r"^config detection.transfer_from: 'faster_rcnn' is not one of classification.models$"),
    (lambda c: c["classification"].update(dataset="scenes"),
     r"^config classification.dataset: 'scenes' is a dataset of kind embedded_coco; classifiers need one of kind embedded "
     r"or imagenet$"),
])
def test_detection_config_errors_name_the_key(change, message):
    config = copy.deepcopy(smoke_config())
    check_semantics(copy.deepcopy(config))  # as shipped: fine
    change(config)
    with pytest.raises(ConfigError, match=message):
        check_semantics(config)


def test_train_detector_refuses_a_classification_split(tmp_path, capsys):
    m = embedded.write_split(tmp_path, "train", 1, 16, seed=0)
    m.write(tmp_path / "manifest.json")
    with pytest.raises(SystemExit) as e:
        cli.main(["train-detector", "--arch", "faster_rcnn", "--backbone", str(tmp_path / "none.pt"), "--train",
                  str(tmp_path / "manifest.json"), "--params", "{}", "--out", str(tmp_path / "out.pt")])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"jpegstudy train-detector: error: {tmp_path / 'manifest.json'}: not a COCO-layout split (no annotations "
        "file); a detector trains on boxes")
    assert not (tmp_path / "out.pt").exists()


def test_qualitative_panels_draw_each_detection_where_it_is():
    from jpegstudy.report import qualitative_detection as q

    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 3.0, 10.0, 12.0]])
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 4:8, 4:8] = True
    out = q.drawn(image, boxes, torch.tensor([2]), [0.9], masks, ["a", "b"])
    assert out.shape == (3, 16 * q.SCALE, 16 * q.SCALE) and out.dtype == torch.uint8
    color = torch.tensor([int(255 * c) for c in q.plt.get_cmap("tab10")(1)[:3]], dtype=torch.uint8)
    # the box's left edge at x = 2 * SCALE, in its class's colour (label 2: tab10's second colour)
    assert torch.equal(out[:, 12 * q.SCALE - 2, 2 * q.SCALE], color)
    # the mask tinted (35 % of the colour over black), the background left black
    inside = out[:, 6 * q.SCALE, 6 * q.SCALE]
    assert torch.allclose(inside.float(), 0.35 * color.float(), atol=1.5)
    assert out[:, 14 * q.SCALE, 14 * q.SCALE].sum() == 0
    assert q.select(60, 4) == [0, 15, 30, 45] and q.select(2, 4) == [0, 1]


def test_prepare_coco_lists_a_coco_folder_in_place(tmp_path, capsys):
    from jpegstudy.data import coco
    from jpegstudy.data import manifest as manifests

    expected = embedded.write_coco_split(tmp_path / "coco", "val", 3, SIZE, seed=1)
    json_path = tmp_path / "coco/annotations/instances_val.json"
    out = tmp_path / "listed/manifest.json"
    cli.main(["prepare-coco", "--images", str(tmp_path / "coco/val"), "--annotations", str(json_path),
              "--split", "val", "--out", str(out)])
    listed = manifests.read(out)
    assert [(e["id"], e["sha256"]) for e in listed.images] == [(e["id"], e["sha256"]) for e in expected.images]
    assert listed.source["annotations"] == str(json_path) and listed.root == str(tmp_path / "coco/val")
    written = json.loads(json_path.read_text())["annotations"]
    assert sorted(coco.load_annotations(listed).getAnnIds()) == [a["id"] for a in written]
    with pytest.raises(SystemExit):
        cli.main(["prepare-coco", "--images", str(tmp_path / "coco/val"), "--annotations",
                  str(tmp_path / "missing.json"), "--split", "val", "--out", str(tmp_path / "x.json")])
    assert str(tmp_path / "missing.json") in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_coco_dataset_is_checked_before_any_job(tmp_path):
    config = copy.deepcopy(smoke_config())
    config["datasets"]["mine"] = {"kind": "coco", "val": str(tmp_path), "val_annotations": str(tmp_path / "no.json"),
                                  "check_images": True, "workers": 1}
    config["detection"]["dataset"] = "mine"
    with pytest.raises(ConfigError, match=r"^config datasets.mine.val_annotations: .*no.json does not exist$"):
        check_semantics(config)
    (tmp_path / "no.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"^config detection.models.mask_rcnn.weights: 'train' is for embedded_coco "
                                          r"datasets only$"):
        check_semantics(config)


def test_paper_config_names_torchvisions_coco_detectors(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    from snakemake.utils import validate

    validate(config, str(REPO / "config" / "schema.yaml"))
    for ds in config["datasets"].values():  # the folders a user has; here stand-ins
        for key in ("val", "train", "ground_truth", "val_annotations", "train_annotations", "root"):
            if key in ds:
                ds[key] = str(tmp_path)
    for name, segmenter in config["segmentation"]["models"].items():  # and CSAIL's files
        for part in ("encoder", "decoder"):
            (tmp_path / f"{name}-{part}.pth").write_bytes(b"")
            segmenter["weights"][part] = str(tmp_path / f"{name}-{part}.pth")
    for name, detector in config["forensics"]["models"].items():  # and the forensic detectors' checkpoints
        (tmp_path / f"{name}.pth").write_bytes(b"")
        detector["weights"] = str(tmp_path / f"{name}.pth")
    for key in ("weights", "stats"):  # and the official QGAC checkpoint with its statistics
        (tmp_path / f"qgac-{key}.pt").write_bytes(b"")
        config["correction"]["qgac"][key] = str(tmp_path / f"qgac-{key}.pt")
    models = config["detection"]["models"]
    assert {m["arch"]: m["weights"] for m in models.values()} == {
        "fasterrcnn_resnet50_fpn": "COCO_V1", "maskrcnn_resnet50_fpn": "COCO_V1", "retinanet_resnet50_fpn": "COCO_V1"}
    check_semantics(copy.deepcopy(config))
    models["faster_rcnn"]["weights"] = "COCO_V9"
    with pytest.raises(ConfigError, match=r"^config detection.models.faster_rcnn.weights: COCO_V9 is neither one of "
                                          r"fasterrcnn_resnet50_fpn's torchvision weights \(COCO_V1, DEFAULT\) nor an "
                                          r"existing checkpoint file$"):
        check_semantics(copy.deepcopy(config))
    models["faster_rcnn"]["weights"] = "train"
    with pytest.raises(ConfigError, match=r"fasterrcnn_resnet50_fpn is not trained here"):
        check_semantics(config)


def test_coco_weights_keep_the_datasets_classes_by_name(tmp_path):
    """A COCO-layout checkpoint (91 outputs, torchvision's category order) reduced to two of its classes: the
    background row and the rows of "car" (3) and "person" (1), in the dataset's order, are what is kept."""
    from jpegstudy.errors import ModelError
    from jpegstudy.tasks import detection

    torch.manual_seed(0)
    full = detection.build("fasterrcnn_resnet50_fpn", 90)
    torch.save({"model": full.state_dict()}, tmp_path / "coco.pth")
    reduced = detection.resolve("fasterrcnn_resnet50_fpn", str(tmp_path / "coco.pth"), ["car", "person"])
    cls = full.state_dict()["roi_heads.box_predictor.cls_score.weight"]
    box = full.state_dict()["roi_heads.box_predictor.bbox_pred.weight"].reshape(91, 4, -1)
    assert torch.equal(reduced["roi_heads.box_predictor.cls_score.weight"], cls[[0, 3, 1]])
    assert torch.equal(reduced["roi_heads.box_predictor.bbox_pred.weight"], box[[0, 3, 1]].reshape(12, -1))
    assert torch.equal(reduced["backbone.body.conv1.weight"], full.state_dict()["backbone.body.conv1.weight"])
    small = detection.build("fasterrcnn_resnet50_fpn", 2)
    small.load_state_dict(reduced)  # strict: the reduced weights are exactly the 2-class detector's
    with pytest.raises(ModelError, match=r"class 'ring-grainy' of the dataset is not among the detector's categories"):
        detection.resolve("fasterrcnn_resnet50_fpn", str(tmp_path / "coco.pth"), ["car", "ring-grainy"])
    # RetinaNet's class channels are anchor-major (9 anchors x 91 classes): each anchor keeps rows 0, 3, 1
    retina = detection.build("retinanet_resnet50_fpn", 90)
    torch.save(retina.state_dict(), tmp_path / "retina.pth")
    kept = detection.resolve("retinanet_resnet50_fpn", str(tmp_path / "retina.pth"), ["car", "person"])
    logits = retina.state_dict()["head.classification_head.cls_logits.bias"].reshape(9, 91)
    assert torch.equal(kept["head.classification_head.cls_logits.bias"], logits[:, [0, 3, 1]].reshape(-1))
    state = full.state_dict()
    state.pop("rpn.head.conv.0.0.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ModelError, match=r"broken.pth: checkpoint does not fit fasterrcnn_resnet50_fpn: missing keys "
                                         r"rpn.head.conv.0.0.weight"):
        detection.resolve("fasterrcnn_resnet50_fpn", str(tmp_path / "broken.pth"), ["car"])


def test_detector_throughput_times_inference_and_a_training_step(tmp_path):
    from jpegstudy import throughput
    from jpegstudy.tasks import classification, detection

    classifier = classification.build("resnet18", 10)
    model = detection.build("mask_rcnn", 10, SIZE, classifier)
    detection.save_reference(tmp_path / "det.pt", arch="mask_rcnn", classes=embedded.CATEGORIES, image_size=SIZE,
                             transform={}, source="test", state_dict=model.state_dict(),
                             backbone={"arch": "resnet18", "build_kwargs": {}, "classes": embedded.CATEGORIES})
    result = throughput.task_throughput(task="detection", model_name="mask_rcnn", reference=str(tmp_path / "det.pt"),
                                        corrector_files={}, batch_sizes=[2], seconds=0.01, params={}, rule="t",
                                        device="cpu")
    assert result["task"] == "detection"
    assert [(r["mode"], r["batch_size"], r["image_size"]) for r in result["rows"]] == [
        ("inference", 2, SIZE), ("train", 2, SIZE)]
    assert all(r["images_per_s"] > 0 and r["task"] == "detection" for r in result["rows"])
    images, targets = detection.throughput_batch({"image_size": SIZE, "classes": ["a", "b"], "arch": "mask_rcnn"}, 2,
                                                 torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, SIZE, SIZE) and targets[0]["masks"].shape == (3, SIZE, SIZE)
    boxes = targets[0]["boxes"]
    assert (boxes[:, 2:] > boxes[:, :2]).all() and targets[0]["labels"].max() <= 2


def test_detection_reference_table_sits_beside_torchvisions_documented_map(tmp_path, capsys):
    from jpegstudy import audit
    from jpegstudy.provenance import row_id
    from jpegstudy.report import tables

    files = []
    for model, arch, mask in (("frcnn", "fasterrcnn_resnet50_fpn", None), ("mrcnn", "maskrcnn_resnet50_fpn", 33.25)):
        row = {"task": "detection", "model": model, "mitigation": "none", "dataset": "coco", "quality": None,
               "n_images": 5000, "map": 36.5, "map_low": 35.5, "map_high": 37.5,
               "provenance": {"config": {f"detection.models.{model}": {"arch": arch, "weights": "COCO_V1"}},
                              "inputs": {}, "rule": "evaluate", "git": {"commit": None}}}
        if mask is not None:
            row["mask_ap"] = mask
        path = tmp_path / "metrics" / f"{model}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"rows": [{"id": row_id(row), **row}]}))
        files.append(path)
    tex = tables.reference_table(files)
    assert "Box mAP & & Mask mAP & Box mAP & Mask mAP" in tex and "COCO-val2017 mAP" in tex
    assert r"\jsdoc{torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1:box_map}{37.00} & --\\" in tex
    assert (r"\jsdoc{torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1:box_map}{37.90} & "
            r"\jsdoc{torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1:mask_map}{34.60}") in tex
    (tmp_path / "reference.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "reference.tex"), str(tmp_path / "metrics"))
    assert "numbers traced" in capsys.readouterr().out
