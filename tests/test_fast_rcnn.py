"""Fast R-CNN on precomputed proposals: the proposals file (written from an RPN, read back, refused when wrong),
the proposals moving with a flipped training image, the model finding an image's proposals by its id, and the
config's and commands' refusals."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from jpegstudy import cli
from jpegstudy.config import ConfigError, check_semantics
from jpegstudy.data import embedded, training
from jpegstudy.data import manifest as manifests
from jpegstudy.errors import ModelError
from jpegstudy.tasks import classification, detection, proposals

from .test_detection_training import SIZE, smoke_config

BACKBONE = {"arch": "resnet18", "build_kwargs": {}, "classes": embedded.CATEGORIES}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    embedded.write_coco_split(out, "train", 4, SIZE, seed=3).write(out / "manifest.json")
    return manifests.read(out / "manifest.json")


def detector(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return detection.build(arch, len(embedded.CATEGORIES), SIZE, classification.build("resnet18", 10))


def write(path, rows) -> str:
    path.write_text(json.dumps(rows))
    return str(path)


def test_a_proposals_file_reads_back_best_first(tmp_path):
    boxes = torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.5, 0.25, 4.0, 8.0]])
    rows = proposals.entries(7, boxes, torch.tensor([0.25, 0.75])) + proposals.entries(9, boxes[:1], torch.ones(1))
    assert rows[0] == {"image_id": 7, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.25}
    table = proposals.read(write(tmp_path / "p.json", rows), [7])
    assert list(table) == [7]  # image 9 is not asked for
    assert torch.equal(table[7], boxes.flip(0))  # the 0.75 proposal first


@pytest.mark.parametrize("rows, message", [
    ("not json", r"cannot read proposals \(JSONDecodeError"),
    ({"image_id": 7}, r"a proposals file is a JSON list of \{image_id, bbox, score\}$"),
    ([{"image_id": 7, "bbox": [0, 0, 4, 4]}], r"entry 0 is not \{image_id, bbox: \[x, y, w, h\], score\}"),
    ([{"image_id": 7, "bbox": [0, 0, 4, None], "score": 1}], r"entry 0 is not \{image_id, bbox"),
    ([{"image_id": 7, "bbox": [0, 0, 4, float("nan")], "score": 1}],
     r"entry 0 \(image 7\) is not finite: bbox \[0.0, 0.0, 4.0, nan\], score 1.0$"),
    ([{"image_id": 8, "bbox": [0, 0, 4, 4], "score": 1}],
     r"no proposals for image 7 \(1 of 1 images have none\): proposals of another split\?$"),
])
def test_a_bad_proposals_file_is_refused_naming_it(tmp_path, rows, message):
    path = tmp_path / "p.json"
    path.write_text(rows if isinstance(rows, str) else json.dumps(rows))
    with pytest.raises(ModelError, match=f"^{path}: {message}"):
        proposals.read(path, [7])


def test_proposals_without_area_are_skipped_and_counted(tmp_path, capsys):
    thin = torch.tensor([[1.0, 2.0, 11.0, 2.004], [1.0, 2.0, 11.0, 12.0]])  # the first is 0.004 px high
    rows = proposals.entries(7, thin, torch.tensor([0.9, 0.5]))
    assert [r["bbox"] for r in rows] == [[1.0, 2.0, 10.0, 10.0]]  # not written
    rows.insert(0, {"image_id": 7, "bbox": [3, 3, 0, 5], "score": 0.99})  # a user's file may hold one
    path = write(tmp_path / "p.json", rows)
    assert torch.equal(proposals.read(path, [7])[7], thin[1:])
    assert capsys.readouterr().err.strip() == f"{path}: skipped 1 proposals without area (entry 0 first)"


def test_an_rpn_writes_at_most_its_quota_of_proposals_inside_the_image(scenes):
    model = detector("faster_rcnn").eval()
    images = [torch.rand(3, SIZE, SIZE) for _ in range(2)]
    out = proposals.rpn_proposals(model, images)
    assert len(out) == 2
    for boxes, scores in out:
        assert 0 < len(boxes) <= proposals.PER_IMAGE and len(scores) == len(boxes)
        assert (boxes >= 0).all() and (boxes <= SIZE).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert ((scores >= 0) & (scores <= 1)).all() and torch.equal(scores, scores.sort(descending=True).values)
    assert model.rpn._post_nms_top_n["testing"] == 100  # the RPN's own count is restored
    with pytest.raises(ModelError, match="RetinaNet has no RPN"):
        proposals.rpn_proposals(detector("retinanet"), images)


def test_proposals_flip_with_the_training_image(scenes):
    ids = [e["id"] for e in scenes.images]
    table = {i: torch.tensor([[1.0, 2.0, 9.0, 12.0], [20.0, 4.0, 30.0, 31.0]]) for i in ids}
    items = training.DetectionTrainingImages(scenes, proposals=table)
    unflipped = training.DetectionTrainingImages(scenes, proposals=table)
    unflipped.transform = lambda *xs: xs
    original, _ = unflipped[0]
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, target = items[0]
        flipped = torch.equal(image, original.flip(-1))
        expected = table[ids[0]].clone()
        if flipped:
            expected[:, [0, 2]] = SIZE - table[ids[0]][:, [2, 0]]
        assert torch.allclose(target["proposals"], expected)
        seen.add(flipped)
    assert seen == {True, False}


def test_fast_rcnn_trains_on_the_proposals_and_scores_an_image_by_its_id(scenes):
    model = detector("fast_rcnn")
    ids = [e["id"] for e in scenes.images]
    model.proposals = {i: torch.tensor([[2.0, 2.0, 20.0, 20.0], [8.0, 4.0, 30.0, 24.0]]) for i in ids}
    images, targets = next(iter(training.batches(scenes, batch_size=2, generator=torch.Generator().manual_seed(0),
                                                 proposals=model.proposals)))
    model.train()
    losses = model(list(images.float() / 255), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"} and all(v > 0 for v in losses.values())
    model.eval()
    x = [torch.rand(3, SIZE, SIZE)]
    with torch.no_grad():
        by_id = detection.infer(model, x, [ids[0]])[0]
        given = detection.infer(model, x, [{"proposals": model.proposals[ids[0]]}])[0]
    assert by_id.keys() == {"boxes", "labels", "scores"} and torch.equal(by_id["boxes"], given["boxes"])
    with pytest.raises(ModelError, match=r"^Fast R-CNN: no proposals for image 999 \(give the set's proposals file"):
        detection.infer(model, x, [999])
    model.train()  # a training target without proposals (none were given) names no image
    with pytest.raises(ModelError, match=r"^Fast R-CNN: no proposals for image None"):
        model(list(images.float() / 255), [{k: v for k, v in t.items() if k != "proposals"} for t in targets])
    model.eval()
    with pytest.raises(ModelError, match="give each image's target"):
        model(x)
    assert set(detection.ttac_target(model, torch.rand(1, 3, SIZE, SIZE))) == {"0", "1", "2", "pool"}


def test_a_fast_rcnn_reference_loads_its_proposals_and_others_refuse_them(tmp_path, scenes):
    ids = [e["id"] for e in scenes.images]
    rows = [r for i in ids for r in proposals.entries(i, torch.tensor([[1.0, 1.0, 9.0, 9.0]]), torch.ones(1))]
    path = write(tmp_path / "p.json", rows)
    for arch in ("fast_rcnn", "faster_rcnn"):
        detection.save_reference(tmp_path / f"{arch}.pt", arch=arch, classes=embedded.CATEGORIES, image_size=SIZE,
                                 transform={}, source="test", state_dict=detector(arch).state_dict(),
                                 backbone=BACKBONE)
    model, _ = detection.load_reference(tmp_path / "fast_rcnn.pt", path, ids)
    assert sorted(model.proposals) == sorted(ids)
    with pytest.raises(ModelError, match=rf"faster_rcnn makes its own proposals; {path} is for a Fast R-CNN$"):
        detection.load_reference(tmp_path / "faster_rcnn.pt", path, ids)


def test_fast_rcnn_throughput_times_it_on_random_proposals(tmp_path):
    from jpegstudy import throughput

    detection.save_reference(tmp_path / "det.pt", arch="fast_rcnn", classes=embedded.CATEGORIES, image_size=SIZE,
                             transform={}, source="test", state_dict=detector("fast_rcnn").state_dict(),
                             backbone=BACKBONE)
    result = throughput.task_throughput(task="detection", model_name="fast_rcnn", reference=str(tmp_path / "det.pt"),
                                        corrector_files={}, batch_sizes=[2], seconds=0.01, params={}, rule="t",
                                        device="cpu")
    assert [(r["mode"], r["images_per_s"] > 0) for r in result["rows"]] == [("inference", True), ("train", True)]


@pytest.mark.parametrize("change, message", [
    (lambda m: m["fast_rcnn"].pop("proposals"),
     r"^config detection.models.fast_rcnn.proposals: a fast_rcnn needs proposals"),
    (lambda m: m["fast_rcnn"].update(proposals="fast_rcnn"),
     r"^config detection.models.fast_rcnn.proposals: 'fast_rcnn' is not a Faster or Mask R-CNN among "
     r"detection.models \(mask_rcnn, fast_rcnn\)$"),
    (lambda m: m["fast_rcnn"].update(proposals={"train": "nowhere.json", "val": "nowhere.json"}),
     r"^config detection.models.fast_rcnn.proposals.train: nowhere.json does not exist$"),
    (lambda m: m["mask_rcnn"].update(proposals="fast_rcnn"),
     r"^config detection.models.mask_rcnn.proposals: only a fast_rcnn takes proposals; mask_rcnn makes its own$"),
])
def test_fast_rcnn_config_errors_name_the_key(change, message):
    config = copy.deepcopy(smoke_config())
    assert config["detection"]["models"]["fast_rcnn"]["proposals"] == "mask_rcnn"
    change(config["detection"]["models"])
    with pytest.raises(ConfigError, match=message):
        check_semantics(config)


def test_train_detector_wants_proposals_for_fast_rcnn_alone(tmp_path, scenes, capsys):
    classifier = classification.build("resnet18", 10)
    classification.save_reference(tmp_path / "backbone.pt", arch="resnet18", build_kwargs={},
                                  classes=embedded.CATEGORIES, transform={"crop": SIZE}, source="test",
                                  state_dict=classifier.state_dict())
    for arch, extra in (("fast_rcnn", []), ("faster_rcnn", ["--proposals", "p.json"])):
        with pytest.raises(SystemExit) as e:
            cli.main(["train-detector", "--arch", arch, "--backbone", str(tmp_path / "backbone.pt"), "--train",
                      str(scenes.location), *extra, "--params", json.dumps({"image_size": SIZE, "seed": 0}),
                      "--out", str(tmp_path / "out.pt")])
        assert e.value.code == 2
        assert "--proposals: a Fast R-CNN trains on the training split's proposals" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
