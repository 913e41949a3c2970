"""COCO mAP of detections and instance masks (pycocotools' COCOeval), and its bootstrap intervals over images.

evaluate_map runs COCOeval as everyone does and also keeps each image's evaluation as a compact, JSON-able record;
map_from_per_image re-accumulates AP, AP50 and AP75 from that record for any multiset of images (an image drawn
twice counts twice), so intervals, and paired intervals of drops, come from a metric row alone, as they do for
classification (jpegstudy.confidence). On the sample of every image once it equals COCOeval's stats.

The per-image record (area range "all", at most 100 detections an image, as COCOeval's AP):

    {"iou_type": "bbox" | "segm",
     "iou_thresholds": [0.5, 0.55, ..., 0.95],   COCOeval's T thresholds; bit t below refers to the t-th
     "category_ids": [1, 5, 90, ...],            the evaluated categories; "k" below is an index into this
     "image_ids": [139, 285, ...],               the evaluated images, ascending (COCOeval's order)
     "gt": [[k, n, k, n, ...], ...],             per image: n ground-truth objects of category k that count
                                                 (crowd regions excluded), for the categories it has any of
     "dt": [[[k, score, state], ...], ...]}      per image: its detections, each category's in COCOeval's order
                                                 (score, highest first); state's bit t is set when the detection
                                                 is a true positive at threshold t, bit T + t when it is ignored
                                                 there (it matched a crowd region); neither: a false positive

Resampling follows COCOeval on a set in which every drawn copy of an image is a distinct image placed right after
the original: the same score sort (stable mergesort over images in order), cumulative true and false positives,
precision made monotone, read at 101 recall points; a category without ground truth in the sample is left out.
Intervals compute many resamples at once (_Tables.batch_stats); the numbers are, to the bit, those of one resample
at a time (_Tables.stats).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
RESAMPLED = ("AP", "AP50", "AP75")  # what the per-image record can recompute (area "all", 100 detections)
IOU_TYPES = ("bbox", "segm")
MASK_THRESHOLD = 0.5  # torchvision's mask heads give probabilities; its reference evaluation binarises at 0.5
RECALL_POINTS = Params(iouType="bbox").recThrs  # COCOeval's 101 recall thresholds
_ELEMENTS = 2 ** 20  # values in one working array of a batch (8 MB): the few alive at once stay under 100 MB


def coco_results(predictions, category_ids: Sequence[int]) -> list[dict]:
    """COCO's results list of torchvision detector outputs: `predictions` maps image id -> output (or is a sequence
    of (image id, output) pairs); an output has "boxes" (N, 4) x1 y1 x2 y2, "labels" (class index + 1), "scores",
    and optionally "masks" (N, 1, H, W) probabilities. Labels become category_ids[label - 1]; boxes [x, y, w, h]
    to 0.01 px, scores to 1e-5 (what the file holds is what is evaluated); masks become RLE of mask > 0.5 with
    str counts (JSON-able)."""
    pairs = predictions.items() if isinstance(predictions, Mapping) else predictions
    results = []
    for image_id, output in pairs:
        image_id = int(image_id)
        boxes = _numpy(output["boxes"]).astype(np.float64).reshape(-1, 4)
        labels = _numpy(output["labels"]).astype(np.int64).reshape(-1)
        scores = _numpy(output["scores"]).astype(np.float64).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores")
        bad = labels[(labels < 1) | (labels > len(category_ids))]
        if bad.size:
            raise ValueError(f"image {image_id}: label {bad[0]} is not a class index + 1 in 1..{len(category_ids)} "
                             "(torchvision's COCO weights predict category ids: map those to class indices first)")
        segmentations = _rles(output["masks"], image_id, len(boxes)) if "masks" in output else None
        for n, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            entry = {"image_id": image_id, "category_id": int(category_ids[labels[n] - 1]),
                     "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                     "score": round(float(scores[n]), 5)}
            if segmentations is not None:
                entry["segmentation"] = segmentations[n]
            results.append(entry)
    return results


def evaluate_map(coco_gt: COCO, results: list[dict], iou_type: str = "bbox",
                 image_ids: Sequence[int] | None = None) -> tuple[dict, dict]:
    """COCOeval of `results` against `coco_gt` on `image_ids` (default: all of its images) -> (the 12 summary stats
    in percent, named as STATS, None where COCO reports -1: no ground truth in that area range; the per-image record
    of the module docstring). Neither `results` nor its dicts are modified; COCOeval itself, as always, writes its
    ignore flags into coco_gt's annotations and, for "segm", turns their polygons into RLE."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type {iou_type!r}: one of {', '.join(IOU_TYPES)}")
    known = set(coco_gt.getImgIds())
    image_ids = sorted(known) if image_ids is None else sorted(set(int(i) for i in image_ids))
    missing = [i for i in image_ids if i not in known]
    if missing:
        raise ValueError(f"image id {missing[0]} is not in the ground truth")
    _check_ground_truth(coco_gt, iou_type)
    detections = _checked_results(coco_gt, results, iou_type, known)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print their progress
        # loadRes reads results[0] and fails on an empty list; no detections at all is a results set without
        # annotations, which COCOeval scores as it should: AP 0 where there is ground truth, -1 where there is none
        dt = coco_gt.loadRes(detections) if detections else _without_annotations(coco_gt)
        evaluator = COCOeval(coco_gt, dt, iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: None if value < 0 else 100.0 * float(value) for name, value in zip(STATS, evaluator.stats)}
    return stats, _record(evaluator)


def map_from_per_image(record: dict, image_indices=None) -> dict:
    """AP, AP50 and AP75 (percent; None without ground truth) of the images record["image_ids"][i] for i in
    `image_indices`, repeats counting as that many images (default: each image once, which is COCOeval's)."""
    tables = _Tables(record)
    counts = np.ones(tables.n_images, np.int64) if image_indices is None else tables.counts(image_indices)
    return dict(zip(RESAMPLED, (None if np.isnan(v) else float(v) for v in tables.stats(counts))))


def map_interval(record: dict, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict:
    """Percentile bootstrap intervals, {"AP": (low, high), "AP50": ..., "AP75": ...}, resampling images with
    replacement. Resamples without any ground truth (possible only on tiny sets) are left out."""
    tables = _Tables(record)
    values = _resampled(tables.n_images, resamples, seed, tables.batch_stats)
    return _percentiles(values, level)


def field_stat(field: str) -> tuple[str, str]:
    """(COCOeval iou type, stat) of a detection metric field: map/ap -> (bbox, AP), mask_ap50 -> (segm, AP50)."""
    iou_type, name = ("segm", field.removeprefix("mask_")) if field.startswith("mask_") else ("bbox", field)
    stat = {"map": "AP", "ap": "AP", "ap50": "AP50", "ap75": "AP75"}.get(name)
    if stat is None:
        raise ValueError(f"field {field!r}: detection drops have intervals for map, ap50, ap75 (mask_ for masks)")
    return iou_type, stat


def field_drop_interval(field: str, clean: dict, compressed: dict, **confidence) -> tuple[float, float]:
    """map_drop_interval of one metric field (map, ap50, mask_ap, ...) from two rows' per_image records."""
    iou_type, stat = field_stat(field)
    return map_drop_interval(clean[iou_type], compressed[iou_type], **confidence)[stat]


def map_drop_interval(clean: dict, compressed: dict, level: float = 0.95, resamples: int = 1000,
                      seed: int = 0) -> dict:
    """Intervals of clean minus compressed AP, AP50, AP75 (points), resampling the images jointly: both records
    measured the same images."""
    a, b = _Tables(clean), _Tables(compressed)
    if clean["image_ids"] != compressed["image_ids"] or clean["category_ids"] != compressed["category_ids"]:
        raise ValueError("paired detection records of different images or categories: not the same eval set")
    values = _resampled(a.n_images, resamples, seed, lambda counts: a.batch_stats(counts) - b.batch_stats(counts))
    return _percentiles(values, level)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _rles(masks, image_id: int, n: int) -> list[dict]:
    masks = _numpy(masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.ndim != 3 or len(masks) != n:
        raise ValueError(f"image {image_id}: masks of shape {masks.shape}, expected ({n}, 1, H, W)")
    if n == 0:
        return []
    binary = np.asfortranarray((masks > MASK_THRESHOLD).transpose(1, 2, 0).astype(np.uint8))
    rles = mask_utils.encode(binary)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # bytes are not JSON; pycocotools reads str counts too
    return rles


def _check_ground_truth(coco_gt: COCO, iou_type: str) -> None:
    for ann in coco_gt.dataset["annotations"]:
        if ann["id"] == 0:  # COCOeval records a match as the matched id, so id 0 would read as "unmatched"
            raise ValueError(f"annotation id 0 (image {ann['image_id']}): COCOeval needs ground-truth ids >= 1")
        if iou_type == "segm" and "segmentation" not in ann:
            raise ValueError(f"annotation {ann['id']} (image {ann['image_id']}) has no segmentation: mask AP needs "
                             "every object's mask")


def check_result(r: dict, known: set, categories: set, iou_type: str) -> None:
    """One line naming the image where a COCO result cannot be scored: an image or category the ground truth does
    not have, or no mask for mask AP."""
    if r["image_id"] not in known:
        raise ValueError(f"a detection on image id {r['image_id']}, which is not in the ground truth")
    if r["category_id"] not in categories:
        raise ValueError(f"a detection on image {r['image_id']} has category_id {r['category_id']}, which is not "
                         "among the ground truth's categories")
    key = "segmentation" if iou_type == "segm" else "bbox"
    if key not in r:
        raise ValueError(f"a detection on image {r['image_id']} has no {key}: "
                         f"{'mask AP needs masks' if iou_type == 'segm' else 'box AP needs boxes'}")


def _checked_results(coco_gt: COCO, results: list[dict], iou_type: str, known: set) -> list[dict]:
    categories = set(coco_gt.getCatIds())
    detections = []
    for r in results:
        check_result(r, known, categories, iou_type)
        entry = dict(r)  # loadRes writes id, area, iscrowd (and a box polygon) into each dict
        if iou_type == "segm":
            # with a bbox present, loadRes takes the box's area for the mask's, which misplaces small/medium/large
            entry.pop("bbox", None)
        detections.append(entry)
    return detections


def _without_annotations(coco_gt: COCO) -> COCO:
    dt = COCO()
    dt.dataset = {"images": list(coco_gt.dataset["images"]),
                  "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []}
    dt.createIndex()
    return dt


def _record(evaluator: COCOeval) -> dict:
    """The per-image record of an evaluated COCOeval: its evalImgs at area "all" (index layout of evaluate())."""
    p = evaluator.params
    n_images, n_areas, n_thresholds = len(p.imgIds), len(p.areaRng), len(p.iouThrs)
    area = p.areaRngLbl.index("all")
    bits = np.left_shift(1, np.arange(n_thresholds, dtype=np.int64))[:, None]
    gt = [[] for _ in p.imgIds]
    dt = [[] for _ in p.imgIds]
    for k in range(len(p.catIds)):
        for i in range(n_images):
            e = evaluator.evalImgs[(k * n_areas + area) * n_images + i]
            if e is None:  # neither ground truth nor detections of this category here
                continue
            counted = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            if counted:
                gt[i] += [k, counted]
            ignored = np.asarray(e["dtIgnore"], bool)
            positive = np.logical_and(np.asarray(e["dtMatches"]) != 0, ~ignored)
            states = (bits * positive).sum(0) + ((bits << n_thresholds) * ignored).sum(0)
            dt[i] += [[k, float(s), int(state)] for s, state in zip(e["dtScores"], states)]
    return {"iou_type": p.iouType, "iou_thresholds": [float(t) for t in p.iouThrs],
            "category_ids": [int(c) for c in p.catIds], "image_ids": [int(i) for i in p.imgIds], "gt": gt, "dt": dt}


class _Tables:
    """A record as arrays, one set per category, its detections sorted as COCOeval sorts every image once."""

    def __init__(self, record: dict):
        try:
            thresholds = np.asarray(record["iou_thresholds"], np.float64)
            n_images, n_categories = len(record["image_ids"]), len(record["category_ids"])
            if len(record["gt"]) != n_images or len(record["dt"]) != n_images:
                raise ValueError(f"{len(record['image_ids'])} images but gt of {len(record['gt'])} and dt of "
                                 f"{len(record['dt'])}")
            gt = np.zeros((n_categories, n_images), np.int64)
            for i, pairs in enumerate(record["gt"]):
                np.add.at(gt[:, i], np.asarray(pairs[0::2], np.int64), np.asarray(pairs[1::2], np.int64))
            rows = [(k, score, state, i) for i, dets in enumerate(record["dt"]) for k, score, state in dets]
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise ValueError(f"not a per-image detection record ({type(e).__name__}: {e})") from None
        self.n_images, self.gt, self.n_thresholds = n_images, gt, len(thresholds)
        self.at = {"AP50": int(np.argmin(abs(thresholds - 0.5))), "AP75": int(np.argmin(abs(thresholds - 0.75)))}
        table = np.array(rows, np.float64).reshape(-1, 4)
        category = table[:, 0].astype(np.int64)
        if category.size and (category.min() < 0 or category.max() >= n_categories):
            raise ValueError(f"not a per-image detection record: category index {category.max()} of "
                             f"{n_categories} categories")
        bits = np.left_shift(1, np.arange(len(thresholds), dtype=np.int64))[:, None]
        self.categories = []
        for k in range(n_categories):
            rows_k = table[category == k]  # images in order, each image's detections in COCOeval's order
            order = np.argsort(-rows_k[:, 1], kind="mergesort")
            score, state, image = rows_k[order, 1], rows_k[order, 2].astype(np.int64), rows_k[order, 3].astype(int)
            positive = (state & bits) != 0
            false = ~positive & ((state & (bits << len(thresholds))) == 0)
            # detections of one image with equal scores (a run): copies of the image must be kept apart (_units)
            run_start = np.r_[True, (score[1:] != score[:-1]) | (image[1:] != image[:-1])]
            run = np.cumsum(run_start)
            in_run = np.bincount(run)[run] > 1
            self.categories.append({"image": image, "positive": positive.astype(np.int8),
                                    "false": false.astype(np.int8), "always_false": state == 0,
                                    "runs": (run, in_run) if in_run.any() else None})

    def counts(self, image_indices) -> np.ndarray:
        indices = np.asarray(image_indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_images):
            raise ValueError(f"image index {indices.max() if indices.max() >= self.n_images else indices.min()} "
                             f"outside the record's {self.n_images} images")
        return np.bincount(indices, minlength=self.n_images)

    def stats(self, counts: np.ndarray) -> np.ndarray:
        """AP, AP50, AP75 (percent, nan without ground truth) of the sample holding image i counts[i] times."""
        # COCOeval leaves a category without ground truth in the sample at -1, out of every mean
        precision = [_precision(c, counts[c["image"]], int(n_gt)) for c, n_gt in zip(self.categories, self.gt @ counts)
                     if n_gt]
        return self._summary(np.stack(precision, axis=-1)) if precision else np.full(3, np.nan)

    def batch_stats(self, counts: np.ndarray) -> np.ndarray:
        """stats of every row of `counts` (resamples x images) -> (resamples, 3), the same numbers, computed for
        many resamples at once."""
        out = np.empty((len(counts), 3))
        for rows in _chunks(len(counts), self.n_thresholds * RECALL_POINTS.size * len(self.categories)):
            out[rows] = self._batch_chunk(counts[rows])
        return out

    def _batch_chunk(self, counts: np.ndarray) -> np.ndarray:
        n_gt = counts @ self.gt.T  # (resamples, K)
        precision = np.zeros((len(self.categories), len(counts), self.n_thresholds, RECALL_POINTS.size))
        for k, c in enumerate(self.categories):
            present = np.flatnonzero(n_gt[:, k])
            if present.size:
                precision[k, present] = _batch_precision(c, counts[present], n_gt[present, k])
        # each resample's categories with ground truth laid out as stats stacks them, (T, R, K) in C order, so that
        # numpy sums them in the same order: the same means, bit for bit
        return np.array([self._summary(np.ascontiguousarray(np.moveaxis(precision[has_gt, b], 0, -1)))
                         if has_gt.any() else np.full(3, np.nan) for b, has_gt in enumerate(n_gt > 0)])

    def _summary(self, precision: np.ndarray) -> np.ndarray:
        """AP, AP50, AP75 of COCOeval's (T, R, K) precision, averaged as COCOeval averages it."""
        return 100.0 * np.array([np.mean(precision), np.mean(precision[self.at["AP50"]]),
                                 np.mean(precision[self.at["AP75"]])])


def _precision(c: dict, weights: np.ndarray, n_gt: int) -> np.ndarray:
    """COCOeval's (T, R) precision of one category in the sample drawing its sorted detection j weights[j] times.

    The drawn copies of a detection follow one another (a unit): their precision rises along the unit, so the
    monotone precision at any of them is that at the unit's end, and only units' ends are computed. Units false at
    every threshold only add to the false positives before the others, so they are summed once, not once per
    threshold."""
    units, weight = _units(weights, c["runs"])
    false_before = np.cumsum(weight * c["always_false"][units])
    keep = np.flatnonzero(~c["always_false"][units])
    kept, weight = units[keep], weight[keep]
    tp = np.cumsum(weight * c["positive"][:, kept], axis=1).astype(np.float64)
    fp = (false_before[keep] + np.cumsum(weight * c["false"][:, kept], axis=1)).astype(np.float64)
    q = np.zeros((len(tp), RECALL_POINTS.size))
    if kept.size:
        recall = tp / n_gt
        pr = tp / (fp + tp + np.spacing(1))  # COCOeval's expressions, so its roundings
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made monotone
        for t in range(len(q)):
            where = np.searchsorted(recall[t], RECALL_POINTS, side="left")
            reached = where < kept.size  # recall points never reached keep precision 0
            q[t, reached] = pr[t, where[reached]]
    return q


def _batch_precision(c: dict, counts: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """_precision of one category in each resample, counts (resamples x images) -> (resamples, T, R)."""
    detections, copy, one_copy = _columns(c, counts)
    per_resample = c["positive"].shape[0] * (detections.size + int(n_gt.max()) + 1)  # the largest arrays' size
    return np.concatenate([_columns_precision(c, detections, _column_weights(c, counts[rows], detections, copy,
                                                                             one_copy), n_gt[rows])
                           for rows in _chunks(len(counts), per_resample)])


def _columns(c: dict, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layout of a category's detections for all these resamples: (detection, copy, whether the column holds
    one copy) a column. A detection is a column holding all its copies (a unit of _units), but in a run, each copy
    up to the most any resample draws is a column of its own, in _units' order; copies not drawn weigh 0."""
    if c["runs"] is None:
        return np.arange(c["image"].size), np.zeros(c["image"].size, np.int64), np.zeros(c["image"].size, bool)
    run, in_run = c["runs"]
    most = int(counts[:, c["image"][in_run]].max())
    detections, copy = _copies(np.where(in_run, most, 1), run)
    return detections, copy, in_run[detections]


def _column_weights(c: dict, counts: np.ndarray, detections: np.ndarray, copy: np.ndarray,
                    one_copy: np.ndarray) -> np.ndarray:
    """(resamples, columns): the copies each column of _columns holds in each resample."""
    drawn = counts[:, c["image"][detections]]
    if one_copy.any():  # a run's column of copy k: drawn when its image is drawn more than k times
        drawn = np.where(one_copy, np.clip(drawn - copy, 0, 1), drawn)
    return drawn.astype(np.float64)


def _columns_precision(c: dict, detections: np.ndarray, weights: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """_precision over all columns at once, undrawn ones (weight 0) included: they repeat the true positives of
    the column before them with no fewer false positives, so their precision is no higher and the monotone
    precision read where the true positives first reach a recall point is _precision's. Columns false at every
    threshold only count as false positives before the others. Float sums of integer weights are exact."""
    always_false = c["always_false"][detections]
    kept = np.flatnonzero(~always_false)
    if kept.size == 0:  # nothing but false positives: precision 0 everywhere, as in _precision
        return np.zeros((len(weights), c["positive"].shape[0], RECALL_POINTS.size))
    false_before = np.cumsum(weights * always_false, axis=1)[:, kept]
    drawn, kept_detections = weights[:, None, kept], detections[kept]  # (resamples, 1, kept columns)
    tp = np.cumsum(drawn * c["positive"][:, kept_detections], axis=2)
    fp = false_before[:, None, :] + np.cumsum(drawn * c["false"][:, kept_detections], axis=2)
    pr = tp / (fp + tp + np.spacing(1))  # COCOeval's expression, so its roundings
    pr = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]  # precision made monotone
    first = _first_reaching(tp, np.stack([_tp_needed(int(g)) for g in n_gt]))
    read = _take_along_last(pr, np.minimum(first, kept.size - 1))
    return np.where(first < kept.size, read, 0.0)  # recall points never reached keep precision 0


def _first_reaching(tp: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """(resamples, T, R): the first index along tp's last axis (non-decreasing integer counts) where tp reaches
    `needed` (resamples, R), tp's length where it never does. That is the number of entries below `needed`, read
    from each row's histogram of counts (one bincount for all rows, a faster search than searchsorted's)."""
    n_resamples, n_thresholds, _ = tp.shape
    width = int(max(tp[..., -1].max(), needed.max())) + 1
    row = np.arange(n_resamples * n_thresholds).reshape(n_resamples, n_thresholds, 1)
    histogram = np.bincount((tp.astype(np.int64) + row * width).reshape(-1), minlength=row.size * width)
    histogram = histogram.reshape(n_resamples, n_thresholds, width)
    below = np.cumsum(histogram, axis=2) - histogram
    return _take_along_last(below, np.broadcast_to(needed[:, None, :], (n_resamples, n_thresholds, needed.shape[1])))


def _take_along_last(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[b, t, index[b, t, r]] (np.take_along_axis on the last axis, with one flat index: faster)."""
    rows = np.arange(values.shape[0] * values.shape[1]).reshape(values.shape[0], values.shape[1], 1)
    return values.reshape(-1)[rows * values.shape[2] + index]


@functools.lru_cache(maxsize=4096)
def _tp_needed(n_gt: int) -> np.ndarray:
    """The fewest true positives whose recall tp / n_gt (COCOeval's float division) reaches each recall point."""
    return np.searchsorted(np.arange(n_gt + 1) / n_gt, RECALL_POINTS, side="left")


def _chunks(total: int, per_row: int):
    """Slices of range(total) holding about _ELEMENTS values of per_row each (one row at least)."""
    size = max(1, _ELEMENTS // max(per_row, 1))
    return (slice(start, start + size) for start in range(0, total, size))


def _units(weights: np.ndarray, runs) -> tuple[np.ndarray, np.ndarray]:
    """The sample's detections in COCOeval's order, as (index into the sorted detections, copies): detection j is
    drawn weights[j] times, its copies one unit. Where one image has several detections of equal score (a run),
    COCOeval reads the whole run copy after copy, so each copy of those is a unit of its own, in that order."""
    if runs is None:
        units = np.flatnonzero(weights)
        return units, weights[units]
    run, in_run = runs
    units, _ = _copies(np.where(in_run, weights, weights > 0), run)
    return units, np.where(in_run[units], 1, weights[units])


def _copies(repeats: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(detection, copy) of the sorted detections, detection j repeated repeats[j] times, in COCOeval's order of
    copies: by run, then copy, then detection."""
    units = np.repeat(np.arange(repeats.size), repeats)
    copy = np.arange(units.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    order = np.lexsort((units, copy, run[units]))
    return units[order], copy[order]


def _resampled(n_images: int, resamples: int, seed: int, statistic) -> np.ndarray:
    """statistic (of a resamples x images array of counts) of `resamples` draws of n_images images with
    replacement; one call for all draws gives the numbers of one call a draw (the same stream of the generator)."""
    if n_images == 0:
        raise ValueError("no per-image results to bootstrap")
    drawn = np.random.default_rng(seed).integers(0, n_images, (resamples, n_images))
    flat = (drawn + n_images * np.arange(resamples)[:, None]).reshape(-1)  # resample b's images as b * n + i
    return statistic(np.bincount(flat, minlength=drawn.size).reshape(drawn.shape))


def _percentiles(values: np.ndarray, level: float) -> dict:
    out = {}
    for name, column in zip(RESAMPLED, values.T):
        column = column[~np.isnan(column)]
        if column.size == 0:
            raise ValueError(f"{name}: no resample has ground truth to score")
        low, high = np.percentile(column, [50 * (1 - level), 50 * (1 + level)])
        out[name] = (float(low), float(high))
    return out
