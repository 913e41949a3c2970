"""Segmentation mIoU (tasks.segmentation_metric): hand-computed intersections, unions and accuracies, agreement
with mit-semseg's own intersectionAndUnion, classes absent from the whole set, bootstrap intervals (against a
resample-at-a-time loop over the same draws), and the per-image record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mit_semseg.utils import intersectionAndUnion

from jpegstudy.tasks import segmentation_metric as sm

# Two 2x3 images, K = 3 classes (labels 1..3; predictions are channel indices 0..2, meaning labels 1..3).
LABEL = np.array([[[1, 1, 2],
                   [0, 2, 3]],
                  [[3, 3, 3],
                   [3, 0, 0]]], np.uint8)
PRED = np.array([[[0, 1, 1],     # as labels: 1 2 2
                  [2, 1, 1]],    #            3 2 2   (the 3 at the label-0 pixel is not scored)
                 [[2, 2, 0],     # as labels: 3 3 1
                  [1, 0, 0]]])   #            2 1 1   (the two 1s at label-0 pixels are not scored)


def test_hand_made_counts():
    # image 0, the 5 labelled pixels: label 1 at (0,0) (0,1), predicted 1, 2; label 2 at (0,2) (1,1), predicted 2, 2;
    #   label 3 at (1,2), predicted 2.
    #   class 1: intersection 1, union = label 2 + pred 1 - 1 = 2
    #   class 2: intersection 2, union = label 2 + pred 4 (at (0,1) (0,2) (1,1) (1,2)) - 2 = 4
    #   class 3: intersection 0, union = label 1 + pred 0 - 0 = 1    (pred 3 at (1,0) is on label 0: ignored)
    #   correct 3 of 5 labelled
    # image 1, the 4 labelled pixels all label 3, predicted 3, 3, 1, 2:
    #   class 1: intersection 0, union 1; class 2: 0, 1; class 3: intersection 2, union 4; correct 2 of 4
    intersection, union, correct, labelled = sm.intersection_union(PRED, LABEL, 3)
    assert intersection.tolist() == [[1, 2, 0], [0, 0, 2]]
    assert union.tolist() == [[2, 4, 1], [1, 1, 4]]
    assert correct.tolist() == [3, 2] and labelled.tolist() == [5, 4]
    assert all(a.dtype == np.int64 for a in (intersection, union, correct, labelled))


def test_summary_by_hand():
    # summed over both images: class 1 1/3, class 2 2/5, class 3 2/5; pixel accuracy (3 + 2) / (5 + 4)
    s = sm.summary(*sm.intersection_union(PRED, LABEL, 3))
    assert s["class_iou"] == pytest.approx([100 / 3, 40.0, 40.0])
    assert s["miou"] == pytest.approx((100 / 3 + 40 + 40) / 3)
    assert s["pixel_acc"] == pytest.approx(100 * 5 / 9)


def test_one_image_map_and_tensors_and_batches_agree():
    # an (H, W) pair is one image; torch tensors (uint8 labels, long predictions) count as arrays do
    one = sm.intersection_union(PRED[1], LABEL[1], 3)
    assert one[0].shape == (1, 3) and one[0].tolist() == [[0, 0, 2]]
    batch = sm.intersection_union(torch.from_numpy(PRED), torch.from_numpy(LABEL), 3)
    for a, b in zip(batch, sm.intersection_union(PRED, LABEL, 3)):
        np.testing.assert_array_equal(a, b)


def test_tensor_counting_equals_numpy_counting():
    # tensors on an accelerator are counted with torch there; the same code path on CPU tensors here
    rng = np.random.default_rng(5)
    labels, preds = rng.integers(0, 9, (3, 17, 23)), rng.integers(0, 8, (3, 17, 23))
    with_torch = sm._count(torch.from_numpy(preds), torch.from_numpy(labels), 8)
    for a, b in zip(with_torch, sm.intersection_union(preds, labels, 8)):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, b)


def test_absent_class_is_left_out_of_the_mean():
    # K = 4: class 4 is in neither the labels nor the predictions of either image, so its union is 0.
    # mean over the 3 present classes: (33.3 + 40 + 40) / 3 = 37.8; CSAIL's union + 1e-10 over all 4 would be 28.3
    counts = sm.intersection_union(PRED, LABEL, 4)
    s = sm.summary(*counts)
    assert s["class_iou"][3] is None
    assert s["miou"] == pytest.approx((100 / 3 + 80) / 3)
    csail = 100 * np.mean(counts[0].sum(0) / (counts[1].sum(0) + 1e-10))
    assert csail == pytest.approx((100 / 3 + 80) / 4) and abs(s["miou"] - csail) > 9


def test_class_predicted_but_never_labelled_counts_as_zero():
    # label all 1; prediction 1 on 3 pixels, 2 on 1: class 1 IoU 3/4, class 2 IoU 0/1 (union 1, it is predicted)
    label = np.ones((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 1]])
    s = sm.summary(*sm.intersection_union(pred, label, 2))
    assert s["class_iou"] == pytest.approx([75.0, 0.0]) and s["miou"] == pytest.approx(37.5)
    assert s["pixel_acc"] == pytest.approx(75.0)


def _csail(pred, label, k):
    """mit_semseg's intersectionAndUnion of one image, in its conventions: it takes 0-based class maps with the
    unlabelled pixels at -1 (mit_semseg's dataset loads ADE's labels as segm - 1), so ADE labels 0..K become -1..K-1
    and predictions 0..K-1 are already its classes; it adds 1 to both, zeroes predictions where the label is 0 and
    histograms values 1..K into K bins."""
    return intersectionAndUnion(np.asarray(pred, np.int64), np.asarray(label, np.int64) - 1, k)


@pytest.mark.parametrize("k, shape, seed", [(3, (7, 5), 0), (5, (64, 64), 1), (150, (51, 68), 2), (2, (1, 9), 3)])
def test_counts_equal_mit_semseg(k, shape, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k + 1, (4, *shape)).astype(np.uint8)
    preds = rng.integers(0, k, (4, *shape))
    preds[0] = np.maximum(labels[0].astype(np.int64) - 1, 0)  # mostly right: large intersections
    labels[1] = 0  # nothing labelled: every count 0
    intersection, union, correct, labelled = sm.intersection_union(preds, labels, k)
    for n in range(len(labels)):
        i, u = _csail(preds[n], labels[n], k)
        np.testing.assert_array_equal(intersection[n], i)
        np.testing.assert_array_equal(union[n], u)
        assert labelled[n] == (labels[n] > 0).sum()
        assert correct[n] == ((preds[n] + 1 == labels[n]) & (labels[n] > 0)).sum()
    assert union[1].sum() == labelled[1] == 0


def test_hand_made_counts_equal_mit_semseg():
    for n in range(len(LABEL)):
        i, u = _csail(PRED[n], LABEL[n], 3)
        counts = sm.intersection_union(PRED[n], LABEL[n], 3)
        assert counts[0][0].tolist() == i.tolist() and counts[1][0].tolist() == u.tolist()


def test_label_above_k_raises_naming_it():
    label = LABEL.copy()
    label[1, 0, 2] = 7
    with pytest.raises(ValueError, match=r"label 7 outside 0\.\.3"):
        sm.intersection_union(PRED, label, 3)
    with pytest.raises(ValueError, match=r"predicted class index 3 outside 0\.\.2"):
        sm.intersection_union(PRED + 1, LABEL, 3)
    with pytest.raises(ValueError, match="shape"):
        sm.intersection_union(PRED[0], LABEL, 3)
    with pytest.raises(ValueError, match="integer"):
        sm.intersection_union(PRED.astype(np.float32), LABEL, 3)


def random_record(n=30, k=6, size=12, seed=0, accuracy=0.6):
    """A record of n random images, predictions right on about `accuracy` of the pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k + 1, (n, size, size))
    right = rng.random((n, size, size)) < accuracy
    preds = np.where(right, np.maximum(labels - 1, 0), rng.integers(0, k, (n, size, size)))
    return sm.record(*sm.intersection_union(preds, labels, k))


def test_interval_contains_the_estimate_and_is_deterministic():
    rec = random_record()
    point = sm.summary(*sm.from_record(rec))
    interval = sm.miou_interval(rec, resamples=300, seed=4)
    for name in ("miou", "pixel_acc"):
        low, high = interval[name]
        assert low < point[name] < high
    assert sm.miou_interval(rec, resamples=300, seed=4) == interval
    assert sm.miou_interval(rec, resamples=300, seed=5) != interval
    wider = sm.miou_interval(rec, level=0.99, resamples=300, seed=4)["miou"]
    assert wider[0] <= interval["miou"][0] and wider[1] >= interval["miou"][1]


def test_interval_equals_one_resample_at_a_time():
    # detection_metric's draws: default_rng(seed).integers(0, n, (resamples, n)), row b resample b
    rec = random_record(n=9, k=4, seed=2)
    arrays = sm.from_record(rec)
    draws = np.random.default_rng(7).integers(0, 9, (50, 9))
    values = [sm.summary(*(a[d] for a in arrays)) for d in draws]
    interval = sm.miou_interval(rec, level=0.9, resamples=50, seed=7)
    for name in ("miou", "pixel_acc"):
        expected = np.percentile([v[name] for v in values], [5, 95])
        assert interval[name] == pytest.approx(tuple(expected), rel=1e-12)


def test_interval_of_identical_images_is_degenerate():
    one = sm.intersection_union(PRED[0], LABEL[0], 3)
    rec = sm.record(*(np.repeat(a, 12, axis=0) for a in one))
    point = sm.summary(*sm.from_record(rec))
    interval = sm.miou_interval(rec, resamples=200, seed=1)
    assert interval["miou"] == (point["miou"], point["miou"])
    assert interval["pixel_acc"] == (point["pixel_acc"], point["pixel_acc"]) == (60.0, 60.0)


def test_drop_interval():
    rec = random_record(seed=3)
    assert sm.miou_drop_interval(rec, rec, resamples=200) == {"miou": (0.0, 0.0), "pixel_acc": (0.0, 0.0)}
    # the same labels (seed), fewer right pixels: a positive drop, and paired resampling gives an interval of
    # the difference, not the difference of the intervals
    worse = random_record(seed=3, accuracy=0.3)
    drop = sm.miou_drop_interval(rec, worse, resamples=200, seed=2)
    clean, compressed = sm.summary(*sm.from_record(rec)), sm.summary(*sm.from_record(worse))
    for name in ("miou", "pixel_acc"):
        low, high = drop[name]
        assert 0 < low < clean[name] - compressed[name] < high


def test_drop_interval_refuses_other_images():
    with pytest.raises(ValueError, match="labelled pixels at image"):
        sm.miou_drop_interval(random_record(seed=3), random_record(seed=4), resamples=10)
    with pytest.raises(ValueError, match="not the same eval set"):
        sm.miou_drop_interval(random_record(n=30), random_record(n=29), resamples=10)


def test_record_round_trip():
    counts = sm.intersection_union(PRED, LABEL, 4)
    rec = sm.record(*counts)
    assert rec == {"num_classes": 4, "labelled": [5, 4], "correct": [3, 2],
                   "classes": [[0, 1, 2, 1, 2, 4, 2, 0, 1], [0, 0, 1, 1, 0, 1, 2, 2, 4]]}
    back = sm.from_record(json.loads(json.dumps(rec)))
    for a, b in zip(back, counts):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int64
    big = random_record(k=150, size=20)
    assert sm.record(*sm.from_record(big)) == big


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("classes"), "KeyError"),
    (lambda r: r.update(num_classes=0), "num_classes"),
    (lambda r: r["labelled"].append(3), "labelled"),
    (lambda r: r["classes"][0].append(1), "triples"),
    (lambda r: r["classes"][0].__setitem__(6, 4), "not ascending"),
    (lambda r: r["classes"][1].__setitem__(7, 5), "intersection > union"),
    (lambda r: r["correct"].__setitem__(0, 2), "sum of the image's intersections"),
    (lambda r: r["labelled"].__setitem__(0, 2.5), "lists of ints"),
])
def test_malformed_record_is_refused_in_one_line(change, message):
    rec = sm.record(*sm.intersection_union(PRED, LABEL, 4))
    change(rec)
    with pytest.raises(ValueError, match=message) as e:
        sm.from_record(rec)
    assert str(e.value).startswith("not a per-image segmentation record") and "\n" not in str(e.value)
