"""COCO mAP (tasks.detection_metric): evaluate_map against pycocotools' COCOeval run here directly, hand-computed
cases (IoU at a threshold, crowd regions, images and categories without ground truth), the per-image record's
re-accumulation against COCOeval on the same images (each once, and with images duplicated as distinct copies),
bootstrap intervals, and the results list of torchvision-style outputs."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jpegstudy.tasks import detection_metric as dm

SIZE = 64


def ground_truth(images, annotations, category_ids=(1, 5, 90)):
    """A COCO object of hand-made annotations: images are ids, annotations dicts with image_id, category_id, bbox
    and optionally iscrowd and mask (a SIZE x SIZE bool array, stored as RLE)."""
    anns = []
    for n, a in enumerate(annotations, start=1):
        x, y, w, h = a["bbox"]
        mask = a.get("mask")
        if mask is None:
            mask = np.zeros((SIZE, SIZE), bool)
            mask[int(y):int(y + h), int(x):int(x + w)] = True
        rle = _rle(mask)
        anns.append({"id": n, "image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
                     "area": float(w * h), "iscrowd": a.get("iscrowd", 0), "segmentation": rle})
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "file_name": f"{i}.png", "width": SIZE, "height": SIZE} for i in images],
                    "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in category_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detection(image_id, category_id, bbox, score, mask=None):
    d = {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}
    if mask is not None:
        d["segmentation"] = _rle(mask)
    return d


def cocoeval(gt, results, iou_type="bbox", image_ids=None):
    """COCOeval's 12 stats, the way everyone runs it (mask results without their box: see evaluate_map)."""
    results = copy.deepcopy(results)
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        e = COCOeval(gt, gt.loadRes(results), iou_type)
        if image_ids is not None:
            e.params.imgIds = image_ids
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def random_case(seed, n_images=12, ties=False, noise=3.0):
    """Random scenes: 0-4 objects an image over categories 1, 5, 90 (category 7 has none, but detections), some
    crowd regions, image 1 has no objects; detections near objects (some well placed, some not) and stray ones.
    Masks are ellipses in the boxes; box corners move by `noise` px (sd). With `ties`, scores take few values, so
    equal scores meet in one image."""
    rng = np.random.default_rng(seed)
    images = list(range(1, n_images + 1))
    annotations, results = [], []
    for image in images:
        for _ in range(0 if image == 1 else rng.integers(0, 5)):
            w, h = rng.integers(6, 40, 2)
            x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            annotations.append({"image_id": image, "category_id": int(rng.choice([1, 5, 90])),
                                "bbox": [int(x), int(y), int(w), int(h)], "iscrowd": int(rng.random() < 0.1),
                                "mask": ellipse(x, y, w, h)})
        objects = [a for a in annotations if a["image_id"] == image]
        for a in objects + [None] * int(rng.integers(0, 3)):
            if a is None:
                w, h = rng.integers(4, 30, 2)
                x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
                category = int(rng.choice([1, 5, 7, 90]))
            else:
                x, y, w, h = (v + rng.normal(0, noise) for v in a["bbox"])
                w, h = max(w, 2), max(h, 2)
                category = a["category_id"] if rng.random() < 0.9 else 7
            score = float(rng.integers(1, 5) / 4 if ties else round(rng.random(), 5))
            box = [round(float(v), 2) for v in (x, y, w, h)]
            results.append(detection(image, category, box, score, ellipse(*box)))
    return ground_truth(images, annotations, (1, 5, 7, 90)), results


def ellipse(x, y, w, h):
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    return ((xx - x - w / 2) / (w / 2)) ** 2 + ((yy - y - h / 2) / (h / 2)) ** 2 <= 1


def hand_case():
    """Image 1: an object of category 1 and a crowd region; image 2: nothing. Category 5 has no objects."""
    gt = ground_truth([1, 2], [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                               {"image_id": 1, "category_id": 1, "bbox": [20, 20, 20, 20], "iscrowd": 1}])
    hit = detection(1, 1, [0, 0, 10, 10], 0.8)
    on_crowd = detection(1, 1, [20, 20, 20, 20], 0.9)
    return gt, hit, on_crowd


# (a) evaluate_map is COCOeval

@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stats_are_cocoeval_s(seed, iou_type):
    gt, results = random_case(seed)
    before = copy.deepcopy(results)
    stats, _ = dm.evaluate_map(gt, results, iou_type)
    expected = cocoeval(gt, results, iou_type)
    assert list(stats) == list(dm.STATS)
    for name, value in zip(dm.STATS, expected):
        assert (stats[name] is None) if value < 0 else stats[name] == pytest.approx(100 * value, abs=1e-4), name
    assert results == before  # loadRes writes into the dicts it gets: evaluate_map gives it copies


def test_a_subset_of_images_is_cocoeval_on_those_images():
    gt, results = random_case(3)
    stats, record = dm.evaluate_map(gt, results, "bbox", image_ids=[8, 2, 5, 2])
    assert record["image_ids"] == [2, 5, 8]
    assert stats["AP"] == pytest.approx(100 * cocoeval(gt, results, "bbox", [2, 5, 8])[0], abs=1e-4)


# (b) by hand

def test_a_detection_at_iou_0_6_counts_at_thresholds_up_to_0_6():
    """IoU 60/100: a true positive at 0.5, 0.55 and 0.6 (COCOeval matches at IoU >= threshold), at none above."""
    gt = ground_truth([1], [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}])
    stats, record = dm.evaluate_map(gt, [detection(1, 1, [0, 0, 10, 6], 0.9)])
    assert stats["AP"] == pytest.approx(30.0) and stats["AR100"] == pytest.approx(30.0)
    assert stats["AP50"] == pytest.approx(100.0) and stats["AP75"] == pytest.approx(0.0)
    assert stats["APs"] == pytest.approx(30.0) and stats["APm"] is None and stats["APl"] is None  # area 100 < 32^2
    assert record["dt"] == [[[0, 0.9, 0b111]]] and record["gt"] == [[0, 1]]
    assert dm.map_from_per_image(record) == pytest.approx({"AP": 30.0, "AP50": 100.0, "AP75": 0.0})


def test_crowd_regions_and_categories_without_objects_are_left_out():
    """A detection on a crowd region is neither right nor wrong; a category with no objects is not averaged in."""
    gt, hit, on_crowd = hand_case()
    stats, record = dm.evaluate_map(gt, [hit, on_crowd, detection(1, 5, [30, 0, 10, 10], 0.95)])
    assert stats["AP"] == pytest.approx(100.0)
    ignored_everywhere = (2 ** 10 - 1) << 10
    assert record["dt"][0] == [[0, 0.9, ignored_everywhere], [0, 0.8, 2 ** 10 - 1], [1, 0.95, 0]]
    assert record["gt"] == [[0, 1], []]  # the crowd region is not an object to find


def test_a_detection_on_an_image_without_objects_is_a_false_positive():
    """Ranked first, it halves precision at every recall: sorted scores 0.95 (wrong), 0.9 (ignored), 0.8 (right)
    give precision 1/2 at recall 1, and the monotone envelope carries 1/2 down to recall 0: AP 50."""
    gt, hit, on_crowd = hand_case()
    stats, record = dm.evaluate_map(gt, [hit, on_crowd, detection(2, 1, [0, 0, 10, 10], 0.95)])
    assert stats["AP"] == pytest.approx(50.0)
    assert dm.map_from_per_image(record)["AP"] == pytest.approx(50.0)
    assert dm.map_from_per_image(record, [0])["AP"] == pytest.approx(100.0)  # image 1 alone
    assert dm.map_from_per_image(record, [1]) == {"AP": None, "AP50": None, "AP75": None}  # nothing to find


# (c) the record re-accumulated is COCOeval

@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed,ties", [(0, False), (4, False), (5, True), (6, True)])
def test_record_on_every_image_once_is_cocoeval(seed, ties, iou_type):
    gt, results = random_case(seed, ties=ties)
    stats, record = dm.evaluate_map(gt, results, iou_type)
    again = dm.map_from_per_image(json.loads(json.dumps(record)))  # from a metric row, as JSON
    expected = cocoeval(gt, results, iou_type)
    for n, name in enumerate(dm.RESAMPLED):
        assert again[name] == pytest.approx(100 * expected[n], abs=1e-4), name


def duplicated(gt, results, indices):
    """The ground truth and results of the images gt-image-list[i] for i in `indices`, each drawn copy a distinct
    image (id * 100 + copy), copies following their original: what a resample stands for."""
    ids = sorted(gt.getImgIds())
    drawn = [ids[i] for i in sorted(indices)]
    new_ids, annotations, copies = [], [], []
    for n, image in enumerate(drawn):
        new = image * 100 + drawn[:n].count(image)
        new_ids.append(new)
        for a in gt.imgToAnns[image]:
            annotations.append({"image_id": new, "category_id": a["category_id"], "bbox": a["bbox"],
                                "iscrowd": a["iscrowd"], "mask": mask_utils.decode(gt.annToRLE(a)).astype(bool)})
        copies += [dict(r, image_id=new) for r in results if r["image_id"] == image]
    return ground_truth(new_ids, annotations, gt.getCatIds()), copies


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed,ties", [(7, False), (5, True)])
def test_a_resample_is_cocoeval_on_the_images_drawn(seed, ties, iou_type):
    """Drawn twice counts twice: the record on a multiset of images is COCOeval on a set holding that many
    copies of each (ties inside an image included, which COCOeval reads copy after copy: on seed 5, repeating
    each detection in place instead gives AP 12.78, not COCOeval's 12.16)."""
    gt, results = random_case(seed, ties=ties)
    _, record = dm.evaluate_map(gt, results, iou_type)
    indices = np.random.default_rng(seed).integers(0, 12, 12)
    assert len(set(indices.tolist())) < 12  # some drawn twice, some not at all
    expected = cocoeval(*duplicated(gt, results, indices), iou_type)
    again = dm.map_from_per_image(record, indices)
    for n, name in enumerate(dm.RESAMPLED):
        assert again[name] == pytest.approx(100 * expected[n], abs=1e-4), name


def bootstrap_counts(n_images, seed):
    """Counts of images in samples a bootstrap meets and some it rarely does: resamples, an image drawn many times
    (alone and among others), the image without objects alone, nothing at all."""
    rng = np.random.default_rng(seed)
    resamples = [np.bincount(rng.integers(0, n_images, n_images), minlength=n_images) for _ in range(40)]
    many = np.zeros(n_images, np.int64)
    many[rng.integers(0, n_images)] = 9
    crowded = rng.integers(0, 8, n_images)
    return np.stack(resamples + [many, crowded, np.eye(n_images, dtype=np.int64)[0], np.zeros(n_images, np.int64)])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed,ties", [(0, False), (5, True), (6, True), (11, True)])
def test_batched_stats_are_stats_to_the_bit(seed, ties, iou_type):
    """All resamples at once give each resample's numbers: equal scores in one image (runs), crowd regions,
    category 7 without objects, images drawn many times, samples with nothing to find (nan)."""
    gt, results = random_case(seed, n_images=20, ties=ties)
    _, record = dm.evaluate_map(gt, results, iou_type)
    tables = dm._Tables(record)
    assert any(c["runs"] is not None for c in tables.categories) == ties
    counts = bootstrap_counts(20, seed)
    one_at_a_time = np.array([tables.stats(row) for row in counts])
    assert np.isnan(one_at_a_time[-1]).all() and np.isnan(one_at_a_time[-2]).all()  # image 1 has no objects
    np.testing.assert_array_equal(tables.batch_stats(counts), one_at_a_time)


def test_batched_stats_in_chunks_of_one_resample_are_the_same(monkeypatch):
    gt, results = random_case(5, n_images=20, ties=True)
    tables = dm._Tables(dm.evaluate_map(gt, results)[1])
    counts = bootstrap_counts(20, 1)
    expected = tables.batch_stats(counts)
    monkeypatch.setattr(dm, "_ELEMENTS", 1)
    np.testing.assert_array_equal(tables.batch_stats(counts), expected)


def looped_intervals(statistic, n_images, resamples, seed, level=0.95):
    """Intervals as map_interval computed them before it batched: one draw and one stats call a resample."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(np.bincount(rng.integers(0, n_images, n_images), minlength=n_images))
                       for _ in range(resamples)])
    return {name: tuple(float(v) for v in np.percentile(column[~np.isnan(column)], [50 * (1 - level),
                                                                                    50 * (1 + level)]))
            for name, column in zip(dm.RESAMPLED, values.T)}


@pytest.mark.parametrize("seed,ties", [(9, False), (6, True)])
def test_intervals_are_those_of_one_resample_at_a_time(seed, ties):
    gt, results = random_case(seed, n_images=30, ties=ties)
    worse = [dict(r, bbox=[r["bbox"][0] + r["bbox"][2] / 3, *r["bbox"][1:]]) if r["image_id"] % 3 else r
             for r in results]
    a, b = dm.evaluate_map(gt, results)[1], dm.evaluate_map(gt, worse)[1]
    clean, jpeg = dm._Tables(a), dm._Tables(b)
    assert dm.map_interval(a, resamples=200, seed=seed) == looped_intervals(clean.stats, 30, 200, seed)
    assert dm.map_drop_interval(a, b, level=0.9, resamples=200, seed=seed) == looped_intervals(
        lambda counts: clean.stats(counts) - jpeg.stats(counts), 30, 200, seed, level=0.9)


# (d) intervals

def test_intervals_are_seeded_and_bracket_the_value():
    gt, results = random_case(9, n_images=40, noise=1.0)
    stats, record = dm.evaluate_map(gt, results)
    intervals = dm.map_interval(record, resamples=300, seed=1)
    assert intervals == dm.map_interval(record, resamples=300, seed=1)
    assert intervals != dm.map_interval(record, resamples=300, seed=2)
    for name in dm.RESAMPLED:
        low, high = intervals[name]
        assert low < stats[name] < high, name
    wider = dm.map_interval(record, level=0.99, resamples=300, seed=1)["AP"]
    assert wider[0] <= intervals["AP"][0] and wider[1] >= intervals["AP"][1]


def test_an_interval_over_identical_images_is_the_value():
    """Every resample of n identical images is those n images again."""
    objects, results = [], []
    for image in range(1, 6):
        objects += [{"image_id": image, "category_id": 1, "bbox": [0, 0, 10, 10]},
                    {"image_id": image, "category_id": 5, "bbox": [20, 20, 30, 30]}]
        results += [detection(image, 1, [0, 0, 10, 7], 0.9), detection(image, 1, [1, 1, 10, 10], 0.9),
                    detection(image, 5, [40, 40, 10, 10], 0.7), detection(image, 5, [22, 20, 30, 30], 0.6)]
    stats, record = dm.evaluate_map(ground_truth(range(1, 6), objects), results)
    for name, (low, high) in dm.map_interval(record, resamples=200).items():
        assert low == pytest.approx(stats[name], abs=1e-9) and high == pytest.approx(stats[name], abs=1e-9)


def test_paired_drop_interval():
    """The same images, detections worse on some: the drop's interval holds the drop and is no wider than the
    two values' own intervals together."""
    gt, results = random_case(10, n_images=40, noise=1.0)
    worse = [dict(r, bbox=[r["bbox"][0] + r["bbox"][2] / 2, *r["bbox"][1:]]) if r["image_id"] % 2 else r
             for r in results]  # half a box off on every other image
    (clean, a), (jpeg, b) = dm.evaluate_map(gt, results), dm.evaluate_map(gt, worse)
    drop = dm.map_drop_interval(a, b, resamples=300)["AP"]
    assert drop[0] < clean["AP"] - jpeg["AP"] < drop[1] and drop[0] > 0
    own = dm.map_interval(a, resamples=300)["AP"], dm.map_interval(b, resamples=300)["AP"]
    assert drop[1] - drop[0] < (own[0][1] - own[0][0]) + (own[1][1] - own[1][0])
    with pytest.raises(ValueError, match="not the same eval set"):
        dm.map_drop_interval(a, dm.evaluate_map(gt, results, image_ids=[1, 2, 3])[1])


# (e) no detections

@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_no_detections_score_zero(iou_type):
    gt, _, _ = hand_case()
    stats, record = dm.evaluate_map(gt, [], iou_type)
    assert stats["AP"] == 0.0 and stats["AP50"] == 0.0 and stats["AR100"] == 0.0 and stats["APs"] == 0.0
    assert stats["APm"] is None and stats["ARl"] is None  # no object of those sizes
    assert record["dt"] == [[], []]
    assert dm.map_from_per_image(record) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    assert dm.map_interval(record, resamples=50)["AP"] == (0.0, 0.0)


def test_refusals_name_what_is_wrong():
    gt, hit, _ = hand_case()
    with pytest.raises(ValueError, match="image id 3, which is not in the ground truth"):
        dm.evaluate_map(gt, [dict(hit, image_id=3)])
    with pytest.raises(ValueError, match="category_id 2, which is not"):
        dm.evaluate_map(gt, [dict(hit, category_id=2)])
    with pytest.raises(ValueError, match="has no segmentation: mask AP needs masks"):
        dm.evaluate_map(gt, [hit], "segm")
    with pytest.raises(ValueError, match="iou_type 'keypoints'"):
        dm.evaluate_map(gt, [hit], "keypoints")
    with pytest.raises(ValueError, match="image index 5 outside the record's 2 images"):
        dm.map_from_per_image(dm.evaluate_map(gt, [hit])[1], [0, 5])
    with pytest.raises(ValueError, match="not a per-image detection record"):
        dm.map_from_per_image({"image_ids": [1]})


# (f) the results list

def test_results_map_labels_to_gapped_category_ids_and_keep_masks():
    masks = np.zeros((3, 1, 20, 30), np.float32)
    masks[0, 0, 2:8, 3:9] = 0.9     # 36 pixels over 0.5
    masks[1, 0, 10:20, 0:30] = 0.51  # 300
    masks[1, 0, 0, 0] = 0.5          # not over 0.5
    output = {"boxes": np.array([[10.0, 20.0, 30.5, 60.25], [0, 0, 1, 1], [5.123456, 6, 7, 8]]),
              "labels": np.array([1, 2, 3]), "scores": np.array([0.9, 0.123456789, 0.5], np.float32),
              "masks": masks}
    results = dm.coco_results({7: output}, [1, 5, 90])
    assert [r["category_id"] for r in results] == [1, 5, 90]
    assert results[0]["bbox"] == [10.0, 20.0, 20.5, 40.25] and results[2]["bbox"] == [5.12, 6.0, 1.88, 2.0]
    assert results[1]["score"] == 0.12346 and all(r["image_id"] == 7 for r in results)
    assert [mask_utils.area(r["segmentation"]) for r in results] == [36, 300, 0]
    for r, m in zip(results, masks):
        assert isinstance(r["segmentation"]["counts"], str) and r["segmentation"]["size"] == [20, 30]
        assert (mask_utils.decode(r["segmentation"]) == (m[0] > 0.5)).all()
    assert json.loads(json.dumps(results)) == results
    no_masks = dm.coco_results([(7, {k: v for k, v in output.items() if k != "masks"})], [1, 5, 90])
    assert no_masks == [{k: v for k, v in r.items() if k != "segmentation"} for r in results]


def test_results_refuse_labels_that_are_not_class_indices():
    output = {"boxes": np.zeros((1, 4)), "labels": np.array([4]), "scores": np.array([0.5])}
    with pytest.raises(ValueError, match="image 3: label 4 is not a class index"):
        dm.coco_results({3: output}, [1, 5, 90])
    with pytest.raises(ValueError, match="image 3: 1 boxes, 2 labels"):
        dm.coco_results({3: dict(output, labels=np.array([1, 1]))}, [1, 5, 90])


def test_results_of_a_detector_round_trip_through_evaluation():
    """Outputs written as results and evaluated: a perfect detection of every object is AP 100 (box and mask)."""
    masks = np.zeros((1, 1, SIZE, SIZE), np.float32)
    masks[0, 0, 0:10, 0:10] = 1
    output = {"boxes": np.array([[0.0, 0.0, 10.0, 10.0]]), "labels": np.array([1]), "scores": np.array([0.7]),
              "masks": masks}
    gt = ground_truth([1], [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}])
    results = dm.coco_results({1: output}, [1, 5, 90])
    assert dm.evaluate_map(gt, results, "bbox")[0]["AP"] == pytest.approx(100.0)
    assert dm.evaluate_map(gt, results, "segm")[0]["AP"] == pytest.approx(100.0)
