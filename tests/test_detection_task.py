"""The detection task module: embedded detectors on an embedded classifier's weights, their reference files, and
COCO mAP through the shared evaluation path."""

import pytest
import torch

from jpegstudy import evaluate, tasks
from jpegstudy.data import embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.errors import ModelError
from jpegstudy.tasks import classification, detection
from jpegstudy.train.ttac import ttac_loss

ARCHS = ("faster_rcnn", "retinanet", "mask_rcnn")


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return classification.build("resnet18", 10).eval()


@pytest.fixture(scope="module")
def coco_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    m = embedded.write_coco_split(root, "val", 4, 64, seed=0, manifest_dir=root / "val")
    m.write(root / "val" / "manifest.json")
    return manifests.read(root / "val" / "manifest.json")


def test_the_interface_is_complete_and_registered():
    assert tasks.get("detection") is detection
    assert detection.anchor_sizes(64, 4, 1) == ((12.0,), (24.0,), (48.0,), (96.0,))


@pytest.mark.parametrize("arch", ARCHS)
def test_an_embedded_detector_starts_from_the_classifier_and_trains(arch, classifier):
    torch.manual_seed(0)
    model = detection.build(arch, 10, 64, classifier)
    assert torch.equal(model.backbone.body.layer3[1].conv2.weight, classifier.layer3[1].conv2.weight)
    assert model.transform.min_size == (64,) and model.transform.max_size == 64  # no upsampling to 800 px
    x = [torch.rand(3, 64, 64) for _ in range(2)]
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 5:40, 5:30] = 1
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([3]), "masks": masks}] * 2
    loss = detection.finetune_loss(model.train(), x, targets)
    loss.backward()
    assert loss.item() > 0 and model.backbone.fpn.layer_blocks[0][0].weight.grad.abs().sum() > 0
    levels = detection.ttac_target(model.eval(), torch.stack(x))
    assert [tuple(v.shape) for v in levels.values()] == [(2, 64, 8, 8), (2, 64, 4, 4), (2, 64, 2, 2), (2, 64, 1, 1)]


def test_ttac_on_the_backbone_is_zero_for_an_exact_correction(classifier):
    model = detection.build("faster_rcnn", 10, 64, classifier).eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    exact = ttac_loss(detection.ttac_target, model, detection.tensor_transform({}), lambda b: images / 255, images,
                      None)
    off = ttac_loss(detection.ttac_target, model, detection.tensor_transform({}), lambda b: images / 255 * 0.5,
                    images, None)
    assert exact.item() == 0 and off.item() > 0


def test_a_reference_file_round_trips_and_a_classifier_file_is_refused(tmp_path, classifier):
    torch.manual_seed(1)
    model = detection.build("mask_rcnn", 10, 64, classifier).eval()
    backbone = {"arch": "resnet18", "classes": [f"c{i}" for i in range(10)], "build_kwargs": {}}
    detection.save_reference(tmp_path / "det.pt", arch="mask_rcnn", classes=embedded.CATEGORIES, image_size=64,
                             transform={}, source="train", state_dict=model.state_dict(), backbone=backbone)
    loaded, meta = detection.load_reference(tmp_path / "det.pt")
    x = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        a, b = model(x)[0], loaded(x)[0]
    assert meta["arch"] == "mask_rcnn" and meta["image_size"] == 64
    assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels", "masks"))
    detection.save_finetuned(tmp_path / "tuned.pt", meta, source=str(tmp_path / "det.pt"),
                             state_dict=loaded.state_dict())  # what fine-tuning writes, from the meta alone
    tuned, tuned_meta = detection.load_reference(tmp_path / "tuned.pt")
    with torch.no_grad():
        assert torch.equal(tuned(x)[0]["masks"], a["masks"])
    assert tuned_meta["source"] == str(tmp_path / "det.pt") and tuned_meta["backbone"] == backbone
    classification.save_reference(tmp_path / "cls.pt", arch="resnet18", build_kwargs={}, classes=backbone["classes"],
                                  transform={}, source="train", state_dict=classifier.state_dict())
    with pytest.raises(ModelError, match=r"cls.pt: not a detection reference file$"):
        detection.load_reference(tmp_path / "cls.pt")


class Oracle(torch.nn.Module):
    """Returns each image's ground truth as detections (score 0.9; masks for Mask R-CNN's shape of output)."""

    def __init__(self, manifest, with_masks):
        super().__init__()
        from jpegstudy.data import coco

        gt = coco.load_annotations(manifest)
        self.targets = [coco.to_targets(gt, e["id"], manifest.source["category_ids"]) for e in manifest.images]
        self.with_masks, self.calls = with_masks, 0

    def forward(self, images):
        out = []
        for _ in images:
            t = self.targets[self.calls % len(self.targets)]
            self.calls += 1
            o = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.full((len(t["labels"]),), 0.9)}
            if self.with_masks:
                o["masks"] = t["masks"][:, None].float()
            out.append(o)
        return out


@pytest.mark.parametrize("with_masks", [False, True])
def test_perfect_detections_score_100_through_the_evaluation_path(coco_val, with_masks):
    transform = detection.eval_transform({})
    batches = evaluate.eval_batches(detection, coco_val, transform, "cpu", batch_size=3, workers=0)
    scores = detection.score(Oracle(coco_val, with_masks), coco_val, batches, "cpu", {"resamples": 50, "seed": 0})
    assert scores["n_images"] == 4
    assert scores["map"] == pytest.approx(100.0) and (scores["map_low"], scores["map_high"]) == (100.0, 100.0)
    assert scores["ap50"] == pytest.approx(100.0) and scores["ar100"] == pytest.approx(100.0)
    assert ("mask_ap" in scores) == with_masks and sorted(scores["per_image"]) == (
        ["bbox", "segm"] if with_masks else ["bbox"])
    if with_masks:
        assert scores["mask_ap"] == pytest.approx(100.0)


def test_a_classification_set_is_refused_for_a_detector(tmp_path):
    m = manifests.Manifest("embedded", "val", ".", ["a"], [{"path": "x.png", "label": 0}])
    with pytest.raises(ValueError, match=r"^val.json: not a COCO-layout set \(no annotations file\)"):
        detection.check_eval_set(m, {"classes": ["a"]}, "val.json", "det.pt")


@pytest.mark.parametrize("arch", list(detection.PAPER))
def test_the_papers_detectors_build_without_downloading(arch):
    model = detection.build(arch, 80)
    head = model.head.classification_head.num_classes if arch.startswith("retinanet") else \
        model.roi_heads.box_predictor.cls_score.out_features
    assert head == 81 and model.transform.min_size == (800,)
    with pytest.raises(ModelError, match=r"^unknown detector 'yolo': one of faster_rcnn, fast_rcnn, retinanet, "
                                         r"mask_rcnn, "):
        detection.build("yolo", 80)
