"""The segmentation task module through the shared code: scoring an ADE20K-layout set, reference files, fine-tuning
and TTAC's targets, and TTAC never reading a label map."""

import numpy as np
import pytest
import torch

from jpegstudy import evaluate
from jpegstudy.data import ade20k, embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.errors import ModelError
from jpegstudy.tasks import classification, segmentation


class Constant(torch.nn.Module):
    """Predicts channel `c` everywhere (log-probabilities), at the input's size."""

    embedded = True

    def __init__(self, num_classes: int, c: int):
        super().__init__()
        self.num_classes, self.c = num_classes, c

    def forward(self, x):
        out = torch.full((len(x), self.num_classes, *x.shape[-2:]), -10.0)
        out[:, self.c] = 0
        return out


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("parsing")
    m = embedded.write_ade_split(root, "val", 5, 32, seed=1)
    m.write(root / "manifest.json")
    return manifests.read(root / "manifest.json")


def _score(model, m, batch_size=2):
    batches = evaluate.eval_batches(segmentation, m, segmentation.eval_transform({}), "cpu", batch_size, 0)
    return segmentation.score(model, m, batches, "cpu", {"resamples": 50})


def test_a_constant_prediction_scores_what_counting_pixels_gives(split):
    c = 1  # "striped-stuff", label 2
    labels = np.stack([ade20k.load_label(split, e) for e in split.images])
    labelled = labels > 0
    present = set(np.unique(labels[labelled]).tolist())
    # channel c is predicted on every labelled pixel: its IoU is its pixels over all labelled ones; every other
    # class present in the ground truth scores 0; classes absent from both are left out of the mean
    iou_c = (labels == c + 1).sum() / labelled.sum()
    expected = 100 * iou_c / len(present | {c + 1})
    out = _score(Constant(len(split.classes), c), split)
    assert out["miou"] == pytest.approx(expected)
    assert out["pixel_acc"] == pytest.approx(100 * (labels == c + 1).sum() / labelled.sum())
    assert out["n_images"] == 5 and out["miou_low"] <= out["miou"] <= out["miou_high"]
    assert [p["annotation"] for p in out["predictions"]] == [e["annotation"] for e in split.images]
    assert np.array_equal(segmentation.decode_map(out["predictions"][0]["label_png"]), np.full((32, 32), c + 1))


def test_the_batch_size_does_not_change_the_scores(split):
    model = Constant(len(split.classes), 4)
    one, three = _score(model, split, 1), _score(model, split, 3)
    assert one["miou"] == three["miou"] and one["per_image"] == three["per_image"]


def test_a_label_above_the_classes_is_refused_naming_its_file(split, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "copy"
    shutil.copytree(split.location.parent, root)
    m = manifests.read(root / "manifest.json")
    entry = dict(m.images[0], annotation_sha256=None)
    m.images[0] = entry
    Image.fromarray(np.full((32, 32), 20, np.uint8)).save(ade20k.label_path(m, entry))
    with pytest.raises(ValueError, match=r"ADE_val_00000001.png: label 20 above the 14 classes"):
        _score(Constant(len(m.classes), 0), m)


def test_the_paper_test_size_is_csails_single_scale():
    assert segmentation.test_size(512, 683) == (456, 608)  # short side 450, each side rounded up to a multiple of 8
    assert segmentation.test_size(256, 2000) == (128, 1000)  # the long side is capped at 1000


@pytest.fixture(scope="module")
def reference(tmp_path_factory, split):
    torch.manual_seed(0)
    classifier = classification.build("resnet18", 10)
    net = segmentation.build("resnet18dilated", "ppm_deepsup", len(split.classes), classifier)
    path = tmp_path_factory.mktemp("ref") / "reference.pt"
    segmentation.save_reference(path, encoder="resnet18dilated", decoder="ppm_deepsup", classes=split.classes,
                                image_size=32, source="test", state_dict=net.state_dict(),
                                backbone={"arch": "resnet18", "classes": [str(i) for i in range(10)]})
    return path, net


def test_a_reference_file_gives_back_the_same_network(reference, split):
    path, net = reference
    model, meta = segmentation.load_reference(path)
    assert meta["encoder"] == "resnet18dilated" and meta["classes"] == split.classes and not model.training
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), net.eval()(x))
    segmentation.check_eval_set(split, meta, "val", path)
    with pytest.raises(ValueError, match="its classes differ"):
        segmentation.check_eval_set(manifests.Manifest("d", "val", ".", ["a"], [], {"layout": "ade20k"}), meta,
                                    "val", path)


def test_a_reference_of_another_task_is_refused(tmp_path):
    torch.save({"task": "detection", "state_dict": {}}, tmp_path / "det.pt")
    with pytest.raises(ModelError, match="det.pt: not a segmentation reference file"):
        segmentation.load_reference(tmp_path / "det.pt")


def test_ttac_compares_every_encoder_feature_map_and_finetuning_uses_the_labels(reference):
    _, net = reference
    x = torch.rand(2, 3, 32, 32)
    features = segmentation.ttac_target(net.eval(), x)
    assert [f.shape[1] for f in features] == [64, 128, 256, 512] and features[-1].shape[-1] == 4  # stride 8
    labels = torch.randint(0, 15, (2, 32, 32))
    loss = segmentation.finetune_loss(net.train(), x, labels)
    assert loss.item() > 0 and segmentation.finetune_loss(net, x, torch.zeros_like(labels)).item() == 0


def test_ttac_never_reads_a_label_map(reference, split, tmp_path):
    """TTAC on the set as it is and on a copy whose label maps are all "other": the same corrector, bit for bit."""
    import dataclasses
    import shutil

    from PIL import Image

    from jpegstudy.correction import corrector as correctors
    from jpegstudy.train import ttac

    blank = tmp_path / "blank"
    shutil.copytree(split.location.parent, blank)
    m = manifests.read(blank / "manifest.json")
    for entry in m.images:
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(ade20k.label_path(m, entry))
    m = dataclasses.replace(m, images=[{k: v for k, v in e.items() if k != "annotation_sha256"} for e in m.images])
    model, meta = segmentation.load_reference(reference[0])
    weights = []
    for i, manifest in enumerate([split, m]):
        torch.manual_seed(0)
        c = correctors.Corrector("arcnn", {"channels": (4, 4, 4)}, quality=10)
        c = ttac.train(c, model, meta["transform"], manifest, task="segmentation", out=tmp_path / f"{i}.pt",
                       epochs=1, batch_size=2, lr=1e-3, lr_min=1e-5, seed=0)
        weights.append([v.clone() for v in c.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
