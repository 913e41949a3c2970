"""The forensics task module (tasks/forensics, tasks/forensics_metric): AP as sklearn's on tied scores, the metric
fields on a hand-made case, Wang's and Chai's decisions, scoring a generated real/fake set end to end, their binary
losses, the eval-set check, reference files, resolving the authors' checkpoint layouts, the transforms, TTAC's
label-free target and the throughput batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jpegstudy.correction import inputs
from jpegstudy.data import forensics as forensics_data
from jpegstudy.data.loader import loader
from jpegstudy.data.manifest import Manifest
from jpegstudy.tasks import forensics, forensics_metric
from jpegstudy.tasks import forensics_models as zoo
from jpegstudy.train.ttac import ttac_loss

WANG = {"layers": (1, 1, 1, 1), "width": 8}
CHAI = {"block": 2, "width": 0.25}
SETTINGS = {"wang2020": WANG, "chai2020": CHAI}
QUICK = {"resamples": 50}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets run faster on one thread


def _trained_like(net: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Random weights and batch-norm statistics, so a round trip that dropped any would change the outputs."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def _detector(name: str, seed: int = 3) -> forensics.Detector:
    torch.manual_seed(seed)
    return _trained_like(forensics.build(name, SETTINGS[name]), seed)


def _rand(n=2, size=32, seed=0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# forensics_metric


def test_average_precision_is_sklearns_on_tied_scores():
    metrics = pytest.importorskip("sklearn.metrics")
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 30))
        labels = rng.integers(0, 2, n)
        if labels.sum() == 0:
            labels[rng.integers(n)] = 1
        # few distinct values: many ties, inside and across the classes
        scores = rng.integers(0, int(rng.integers(1, 6)), n) / 4.0
        ours = forensics_metric.average_precision(labels, scores)
        assert ours.shape == (1,)
        assert ours[0] == pytest.approx(metrics.average_precision_score(labels, scores), abs=1e-12), seed


def test_average_precision_by_hand_nan_without_a_fake_and_rows_alike():
    # ranked 0.9 (fake), 0.6 (real), 0.4 (fake), 0.1 (real): recall 0.5 at precision 1, recall 1 at precision 2/3
    assert forensics_metric.average_precision([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])[0] == pytest.approx(5 / 6)
    # all tied: one threshold, precision = the fraction of fakes
    assert forensics_metric.average_precision([0, 1, 1, 0, 0], [0.3] * 5)[0] == pytest.approx(2 / 5)
    assert np.isnan(forensics_metric.average_precision([0, 0, 0], [0.1, 0.5, 0.9])[0])
    rng = np.random.default_rng(7)
    labels, scores = rng.integers(0, 2, (40, 12)), rng.integers(0, 4, (40, 12)) / 3
    labels[0] = 0  # one row without a fake
    rows = forensics_metric.average_precision(labels, scores)
    one_by_one = np.array([forensics_metric.average_precision(lab, s)[0] for lab, s in zip(labels, scores)])
    assert rows.shape == (40,) and np.isnan(rows[0])
    np.testing.assert_array_equal(rows, one_by_one)


def test_summary_on_a_hand_made_case():
    labels, scores, decisions = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], [0, 1, 0, 1]
    out = forensics_metric.summary(labels, scores, decisions, None, QUICK)
    assert out["image_accuracy"] == 50 and out["real_accuracy"] == 50 and out["fake_accuracy"] == 50
    assert out["ap"] == pytest.approx(100 * 5 / 6)
    metrics = pytest.importorskip("sklearn.metrics")
    assert out["ap"] == pytest.approx(100 * metrics.average_precision_score(labels, scores))
    assert "patch_accuracy" not in out
    assert out["accuracy"] == out["image_accuracy"]
    assert (out["accuracy_low"], out["accuracy_high"]) == (out["image_accuracy_low"], out["image_accuracy_high"])
    assert out["per_image"]["accuracy"] == "image_accuracy"
    for field in ("image_accuracy", "ap", "accuracy"):
        assert out[f"{field}_low"] <= out[field] <= out[f"{field}_high"], field
    p = out["per_image"]
    assert p["label"] == labels and p["score"] == scores and p["image_accuracy"] == "1001"
    np.testing.assert_array_equal(forensics_metric.per_image_values(p, "accuracy"), [1, 0, 0, 1])
    np.testing.assert_array_equal(forensics_metric.per_image_values(p, "image_accuracy"), [1, 0, 0, 1])

    out = forensics_metric.summary(labels, scores, decisions, [1, 0.5, 0.25, 1], QUICK)
    assert out["patch_accuracy"] == out["accuracy"] == 68.75
    assert out["image_accuracy"] == 50
    assert out["per_image"]["accuracy"] == "patch_accuracy"
    for field in ("image_accuracy", "patch_accuracy", "ap", "accuracy"):
        assert out[f"{field}_low"] <= out[field] <= out[f"{field}_high"], field
    assert (out["accuracy_low"], out["accuracy_high"]) == (out["patch_accuracy_low"], out["patch_accuracy_high"])
    p = out["per_image"]
    np.testing.assert_array_equal(forensics_metric.per_image_values(p, "accuracy"), [1, 0.5, 0.25, 1])
    np.testing.assert_array_equal(forensics_metric.per_image_values(p, "patch_accuracy"), [1, 0.5, 0.25, 1])
    np.testing.assert_array_equal(forensics_metric.per_image_values(p, "image_accuracy"), [1, 0, 0, 1])
    for field in ("accuracy", "image_accuracy", "patch_accuracy"):
        assert forensics_metric.drop_interval(p, p, field, resamples=50) == (0, 0)


def test_summary_of_one_class_only_leaves_the_other_half_out():
    out = forensics_metric.summary([1, 1, 1], [0.2, 0.7, 0.9], [0, 1, 1], None, QUICK)
    assert out["real_accuracy"] is None and out["fake_accuracy"] == pytest.approx(200 / 3)
    assert out["ap"] == 100  # only fakes: every threshold's precision is 1


# decide


def test_wang_decides_on_the_sigmoid_at_one_half():
    model = forensics.build("wang2020", WANG)
    logits = torch.tensor([[-2.0], [0.0], [0.3], [5.0]])
    p, decision, patches = forensics.decide(model, logits)
    torch.testing.assert_close(p, 1 / (1 + torch.exp(-logits[:, 0])))
    assert decision.tolist() == [0, 0, 1, 1]  # exactly 0.5 is real
    assert patches is None


def _patch_map(diffs) -> torch.Tensor:
    """(N, 2, 2, 2) patch logits: channel 0 zero, channel 1 the given logit difference (P(fake) = sigmoid)."""
    d = torch.tensor(diffs, dtype=torch.float32).view(-1, 2, 2)
    return torch.stack([torch.zeros_like(d), d], 1)


def test_chai_decides_by_the_majority_of_patches_a_tie_by_the_mean_patch_probability():
    model = forensics.build("chai2020", CHAI)
    diffs = [[1.0, 2.0, 3.0, -1.0],      # 3 of 4 fake: fake
             [4.0, 4.0, -0.1, -0.1],     # 2-2, mean P(fake) > 0.5: fake
             [0.1, 0.1, -4.0, -4.0],     # 2-2, mean P(fake) < 0.5: real
             [10.0, -0.01, -0.01, -0.01],  # 1 of 4 fake though mean P(fake) > 0.5: real (the majority wins)
             [-1.0, -2.0, -3.0, -0.5]]   # none fake: real
    out = _patch_map(diffs)
    p, decision, patches = forensics.decide(model, out)
    sig = [[1 / (1 + math.exp(-v)) for v in row] for row in diffs]
    expected_p = torch.tensor([sum(row) / 4 for row in sig])
    torch.testing.assert_close(p, expected_p)
    torch.testing.assert_close(p, out.softmax(1)[:, 1].mean((1, 2)))
    assert expected_p[1] > 0.5 and expected_p[2] < 0.5 and expected_p[3] > 0.5
    assert decision.tolist() == [1, 1, 0, 0, 0]
    assert patches.shape == (5, 2, 2)
    assert patches.view(5, 4).tolist() == [[int(v > 0) for v in row] for row in diffs]


# score end to end


@pytest.fixture(scope="module")
def fake_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("forensics") / "val"
    rng = np.random.default_rng(0)
    reals = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    fakes = [Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(4)]
    forensics_data.write_set(root, reals, fakes)
    return forensics_data.manifest(root, "val")


@pytest.mark.parametrize("name", forensics.DETECTORS)
def test_score_on_a_generated_set_recomputes_from_its_predictions(fake_set, name):
    model = _detector(name)
    spec = forensics.transform_of(name, crop=24, size=24)
    forensics.check_eval_set(fake_set, {}, "val.json", None)  # the generated set passes

    def batches():
        return loader(fake_set, forensics.eval_transform(spec), 3, 0, target=forensics.target_of,
                      collate=forensics.collate)

    with torch.no_grad():
        out = forensics.score(model, fake_set, batches(), "cpu", QUICK)
        x = torch.cat([b for b, _ in batches()])
        p, decision, patches = forensics.decide(model, model(x))
    assert x.shape == (8, 3, 24, 24)
    assert out["n_images"] == 8 and len(out["predictions"]) == 8
    preds = out["predictions"]
    assert [r["path"] for r in preds] == [e["path"] for e in fake_set.images]
    assert [r["label"] for r in preds] == [e["label"] for e in fake_set.images] == [0] * 4 + [1] * 4
    assert [r["fake"] for r in preds] == decision.tolist()
    assert [r["p_fake"] for r in preds] == pytest.approx(p.tolist(), abs=1e-6)
    labels = np.array([r["label"] for r in preds])
    decided = np.array([r["fake"] for r in preds])
    assert out["image_accuracy"] == pytest.approx(100 * np.mean(decided == labels))
    assert out["real_accuracy"] == pytest.approx(100 * np.mean(decided[:4] == 0))
    assert out["fake_accuracy"] == pytest.approx(100 * np.mean(decided[4:] == 1))
    assert out["per_image"]["label"] == labels.tolist()
    if name == "chai2020":
        right = (patches == torch.tensor(labels).view(-1, 1, 1)).float().mean((1, 2))
        assert [r["patches_right"] for r in preds] == pytest.approx(right.tolist())
        assert out["patch_accuracy"] == pytest.approx(100 * right.mean().item())
        assert out["accuracy"] == out["patch_accuracy"]
    else:
        assert all("patches_right" not in r for r in preds) and "patch_accuracy" not in out
        assert out["accuracy"] == out["image_accuracy"]
    # the batch size changes nothing
    with torch.no_grad():  # as evaluate.task_scores calls it
        one = forensics.score(model, fake_set, loader(fake_set, forensics.eval_transform(spec), 1, 0,
                                                      target=forensics.target_of, collate=forensics.collate), "cpu",
                              QUICK)
    assert [{k: v for k, v in r.items() if k != "p_fake"} for r in one["predictions"]] == \
        [{k: v for k, v in r.items() if k != "p_fake"} for r in preds]
    assert [r["p_fake"] for r in one["predictions"]] == pytest.approx([r["p_fake"] for r in preds], abs=1e-5)
    assert one["accuracy"] == out["accuracy"]


def test_collate_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match="different sizes.*give the detector a crop"):
        forensics.collate([(torch.zeros(3, 8, 8), 0), (torch.zeros(3, 8, 9), 1)])
    x, y = forensics.collate([(torch.zeros(3, 8, 8), 0), (torch.ones(3, 8, 8), 1)])
    assert x.shape == (2, 3, 8, 8) and y.tolist() == [0, 1]


# finetune_loss


def test_wang_finetune_loss_is_bce_with_logits():
    model = _detector("wang2020")
    x, labels = _rand(4), torch.tensor([0, 1, 1, 0])
    loss = forensics.finetune_loss(model, x, labels)
    with torch.no_grad():
        z = model(x)[:, 0]
    y = labels.float()
    by_hand = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    torch.testing.assert_close(loss.detach(), by_hand)
    loss.backward()
    assert model.net.fc.weight.grad.abs().sum() > 0 and model.net.conv1.weight.grad.abs().sum() > 0


def test_chai_finetune_loss_is_every_patchs_cross_entropy_with_the_image_label():
    model = _detector("chai2020")
    x, labels = _rand(3, 40), torch.tensor([1, 0, 1])
    loss = forensics.finetune_loss(model, x, labels)
    with torch.no_grad():
        out = model(x)
    log_p = out.log_softmax(1)  # (N, 2, h, w)
    by_hand = -torch.stack([log_p[i, int(y)] for i, y in enumerate(labels)]).mean()
    assert out.shape[-2:] != (1, 1)
    torch.testing.assert_close(loss.detach(), by_hand)
    loss.backward()
    assert model.net.convout.weight.grad.abs().sum() > 0 and model.net.conv1.weight.grad.abs().sum() > 0


# check_eval_set


def test_a_set_not_in_the_forensics_layout_is_refused_in_one_line_naming_it():
    m = Manifest(dataset="imagenet", split="val", root="/x", classes=["real", "fake"], images=[],
                 source={"layout": "imagenet"})
    with pytest.raises(ValueError, match=r"^eval/imagenet\.json: not a real/fake set") as e:
        forensics.check_eval_set(m, {}, "eval/imagenet.json", "ref.pt")
    assert "\n" not in str(e.value)
    m = Manifest(dataset="x", split="val", root="/x", classes=["a", "b"], images=[], source={"layout": "forensics"})
    with pytest.raises(ValueError, match=r"^other\.json: classes \['a', 'b'\], not \['real', 'fake'\]$"):
        forensics.check_eval_set(m, {}, "other.json", "ref.pt")


# reference files and the authors' checkpoints


@pytest.mark.parametrize("name", forensics.DETECTORS)
def test_a_reference_round_trips_and_a_finetuned_one_keeps_its_meta(tmp_path, name):
    model = _detector(name)
    spec = forensics.transform_of(name, crop=24, size=24)
    forensics.save_reference(tmp_path / "ref.pt", detector=name, settings=SETTINGS[name], transform=spec,
                             image_size=32, source="train", state_dict=model.state_dict(), source_sha256="ab")
    loaded, meta = forensics.load_reference(tmp_path / "ref.pt")
    x = _rand(2, 32, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert not torch.equal(_detector(name, seed=9)(x), model(x))  # a fresh net differs: weights were loaded
    assert not loaded.training and loaded.detector == name
    assert meta["task"] == "forensics" and meta["detector"] == meta["arch"] == name
    assert meta["classes"] == ["real", "fake"] and meta["transform"] == spec and meta["image_size"] == 32
    assert meta["source_sha256"] == "ab" and "state_dict" not in meta

    tuned = _detector(name, seed=11)
    forensics.save_finetuned(tmp_path / "tuned.pt", meta, source="finetune", state_dict=tuned.state_dict())
    again, meta2 = forensics.load_reference(tmp_path / "tuned.pt")
    for key in ("detector", "settings", "transform", "image_size", "classes"):
        assert meta2[key] == meta[key], key
    assert meta2["source"] == "finetune"
    with torch.no_grad():
        assert torch.equal(again(x), tuned(x))


def test_an_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown forensic detector 'nope'"):
        forensics.build("nope")


@pytest.mark.parametrize("name, key, prefix", [("wang2020", "model", ""), ("chai2020", "state_dict", "module.")])
def test_resolve_reads_the_authors_layout_into_a_detector_that_normalises_inside(tmp_path, name, key, prefix):
    torch.manual_seed(4)
    net = _trained_like(zoo.wang_net(**WANG) if name == "wang2020" else zoo.chai_net(**CHAI))
    # theirs: the weights under one key beside the optimiser's state; Chai's saved from DataParallel
    torch.save({key: {prefix + k: v for k, v in net.state_dict().items()}, "optimizer": {}, "epoch": 3},
               tmp_path / "theirs.pth")
    state = forensics.resolve(name, SETTINGS[name], str(tmp_path / "theirs.pth"))
    assert all(k.startswith("net.") for k in state)
    detector = forensics.build(name, SETTINGS[name])
    detector.load_state_dict(state)
    detector.eval()
    if name == "wang2020":
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    else:
        mean = std = torch.full((1, 3, 1, 1), 0.5)
    x = _rand(2, 32, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(detector(x), net((x - mean) / std), rtol=0, atol=1e-6)
        if name == "chai2020":
            torch.testing.assert_close(detector(x), net(2 * x - 1), rtol=1e-5, atol=1e-5)


# transforms


def test_eval_and_tensor_transforms_crop_or_resize():
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    full = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255

    chai = forensics.eval_transform({"detector": "chai2020", "size": 16})(image)
    assert chai.shape == (3, 16, 16) and chai.dtype == torch.float32 and 0 <= chai.min() and chai.max() <= 1
    wang = forensics.eval_transform({"detector": "wang2020", "crop": 24})(image)
    torch.testing.assert_close(wang, full[:, 4:28, 4:28])
    torch.testing.assert_close(forensics.eval_transform({"detector": "wang2020"})(image), full)

    batch = torch.stack([full, full.flip(-1)])
    resized = forensics.tensor_transform({"detector": "chai2020", "size": 16})(batch)
    assert resized.shape == (2, 3, 16, 16)
    assert (resized - chai).abs().mean(dim=(1, 2, 3))[0] < 0.05  # bicubic stands in for Lanczos
    torch.testing.assert_close(forensics.tensor_transform({"detector": "wang2020", "crop": 24})(batch),
                               batch[..., 4:28, 4:28])
    assert torch.equal(forensics.tensor_transform({"detector": "wang2020"})(batch), batch)
    assert torch.equal(forensics.tensor_transform({"detector": "chai2020", "size": 32})(batch), batch)
    # differentiable: a corrector's gradient passes the resize
    x = batch.clone().requires_grad_(True)
    forensics.tensor_transform({"size": 16})(x).sum().backward()
    assert x.grad.abs().sum() > 0

    assert forensics.transform_of("wang2020", crop=24, size=16) == {"detector": "wang2020", "crop": 24, "size": None}
    assert forensics.transform_of("chai2020", crop=24, size=16) == {"detector": "chai2020", "crop": None, "size": 16}


# TTAC


@pytest.mark.parametrize("name", forensics.DETECTORS)
def test_ttac_compares_the_raw_logits_and_reads_no_label(name):
    model = _detector(name).requires_grad_(False)
    spec = forensics.transform_of(name, crop=24, size=24)
    transform = forensics.tensor_transform(spec)
    x = _rand(2, 32, seed=2)
    with torch.no_grad():
        target = forensics.ttac_target(model, x)
        assert torch.equal(target, model(x))
    assert target.shape == ((2, 1) if name == "wang2020" else (2, 2, *target.shape[-2:]))
    if name == "chai2020":
        assert target.shape[-1] > 1  # the map of patch logits, not one pooled logit

    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    batch = inputs.from_images(images, [30, 70])  # pixels and DCT coefficients: there is no label in it at all
    gain = torch.nn.Parameter(torch.tensor(0.9))

    def corrector(b):
        return (b.rgb * gain).clamp(0, 1)

    loss = ttac_loss(forensics.ttac_target, model, transform, corrector, images, batch)
    with torch.no_grad():
        by_hand = (model(transform(corrector(batch))) - model(transform(images.float() / 255))).abs().mean()
    torch.testing.assert_close(loss.detach(), by_hand)
    loss.backward()
    assert loss.item() > 0 and gain.grad is not None and gain.grad.abs() > 0
    exact = ttac_loss(forensics.ttac_target, model, transform, lambda b: images.float() / 255, images, batch)
    assert exact.item() == 0


# throughput


def test_throughput_batch_size_follows_the_transform_then_the_image_size():
    g = torch.Generator().manual_seed(0)
    cases = [({"transform": forensics.transform_of("chai2020", size=40), "image_size": 64}, 40),
             ({"transform": forensics.transform_of("wang2020", crop=24), "image_size": 64}, 24),
             ({"transform": forensics.transform_of("wang2020"), "image_size": 48}, 48),
             ({"transform": forensics.transform_of("chai2020"), "image_size": None}, 256)]
    for meta, size in cases:
        images, labels = forensics.throughput_batch(meta, 3, g)
        assert images.shape == (3, 3, size, size) and images.dtype == torch.uint8, meta
        assert labels.shape == (3,) and set(labels.tolist()) <= {0, 1}
    _, labels = forensics.throughput_batch(cases[0][0], 64, g)
    assert set(labels.tolist()) == {0, 1}
