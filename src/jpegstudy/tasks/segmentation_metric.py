"""Semantic segmentation mIoU and pixel accuracy (ADE20K's, as CSAIL's mit-semseg scores it), and bootstrap
intervals over images.

Label maps are ADE20K's: 0 is "other" (never scored), 1..K the K classes. A model predicts K channels; its
prediction for a pixel is a channel index c in 0..K-1, meaning label c + 1. Pixels labelled 0 are left out of
everything, predictions there included (mit_semseg.utils.intersectionAndUnion does the same).

Each image's result is kept as integer pixel counts, so that any multiset of images (a bootstrap resample) can be
scored from a metric row alone, as for classification (jpegstudy.confidence) and detection
(tasks.detection_metric, whose resampling this module uses: the same seed draws the same images). The per-image
record (record / from_record), JSON-able:

    {"num_classes": K,
     "labelled": [n, ...],                   per image: pixels with label > 0
     "correct": [n, ...],                    per image: of those, pixels predicted right
     "classes": [[k, i, u, k, i, u, ...], ...]}
                                             per image: for each class index k (0..K-1, label k + 1) whose union
                                             is not 0, its intersection i and union u in pixels, k ascending;
                                             classes left out have intersection and union 0
"""

from __future__ import annotations

import numpy as np
import torch

from jpegstudy.tasks.detection_metric import _percentiles, _resampled

STATS = ("miou", "pixel_acc")


def intersection_union(pred, label, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image pixel counts of predicted channel indices `pred` (0..K-1) against ADE labels `label` (0..K), both
    (H, W) or (N, H, W) integer tensors or arrays (on any device) -> int64 arrays intersection (N, K), union (N, K),
    correct (N,), labelled (N,); an (H, W) pair is one image (N = 1)."""
    pred, label = _maps(pred, "pred"), _maps(label, "label")
    if pred.shape != label.shape:
        raise ValueError(f"pred of shape {tuple(pred.shape)} and label of shape {tuple(label.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes {num_classes}: at least 1")
    _check_range(label, 0, num_classes, "label", f"ADE labels are 0 (other) and 1..{num_classes}")
    _check_range(pred, 0, num_classes - 1, "predicted class index", f"a model of {num_classes} classes predicts "
                 f"0..{num_classes - 1}")
    if isinstance(pred, torch.Tensor) or isinstance(label, torch.Tensor):  # one on an accelerator: both there
        device = (pred if isinstance(pred, torch.Tensor) else label).device
        pred, label = (torch.as_tensor(x, device=device) for x in (pred, label))
    return _count(pred, label, num_classes)


def _count(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor,
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """intersection_union of checked int64 (N, H, W) maps, both numpy arrays or both tensors on one device."""
    n, on_device = pred.shape[0], isinstance(pred, torch.Tensor)
    bincount = torch.bincount if on_device else np.bincount
    # one bincount for all images: image b's class c is bin b * K + c
    offset = (torch.arange(n, device=pred.device) if on_device else np.arange(n)).reshape(n, 1, 1) * k
    scored = label > 0
    truth = (label - 1 + offset)[scored]
    guess = (pred + offset)[scored]
    area_label = bincount(truth, minlength=n * k)
    area_pred = bincount(guess, minlength=n * k)
    intersection = bincount(truth[guess == truth], minlength=n * k)
    union = area_pred + area_label - intersection
    intersection, union, area_label = (_numpy(x).reshape(n, k) for x in (intersection, union, area_label))
    return intersection, union, intersection.sum(axis=1), area_label.sum(axis=1)


def summary(intersection, union, correct, labelled) -> dict:
    """{"miou", "pixel_acc", "class_iou"} (percent) of the whole set: each class's intersections and unions summed
    over the images, IoU = summed intersection / summed union, averaged over the classes.

    A class whose summed union is 0 (in neither the ground truth nor the predictions of any image) is left out of
    the mean, and is None in class_iou. CSAIL's eval.py instead divides by union + 1e-10, so such a class counts
    as IoU 0 among all K: on a set lacking some classes its mIoU is lower than this one (on ADE20K's full
    validation set every class is present and the two agree). pixel_acc is summed correct / summed labelled (eval.py's
    pixel-weighted mean of per-image accuracies is the same)."""
    intersection, union, correct, labelled = _arrays(intersection, union, correct, labelled)
    if labelled.sum() == 0:
        raise ValueError("no labelled pixels (label > 0) to score")
    ones = np.ones((1, len(labelled)))
    miou, pixel_acc = _stats(ones, intersection, union, correct, labelled)[0]
    summed_i, summed_u = intersection.sum(axis=0), union.sum(axis=0)
    class_iou = [100.0 * float(i) / float(u) if u else None for i, u in zip(summed_i, summed_u)]
    return {"miou": float(miou), "pixel_acc": float(pixel_acc), "class_iou": class_iou}


def miou_interval(record: dict, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict:
    """Percentile bootstrap intervals {"miou": (low, high), "pixel_acc": (low, high)} (percent), resampling the
    record's images with replacement and scoring each resample as summary scores a set."""
    arrays = _scorable(record)
    values = _resampled(len(arrays[3]), resamples, seed, lambda counts: _stats(counts, *arrays))
    return _named(_percentiles(values, level))


def miou_drop_interval(clean_record: dict, compressed_record: dict, level: float = 0.95, resamples: int = 1000,
                       seed: int = 0) -> dict:
    """Intervals of clean minus compressed mIoU and pixel accuracy (points), {"miou": (low, high), "pixel_acc":
    ...}, resampling the images jointly: both records scored the same images, in the same order."""
    a, b = _scorable(clean_record), _scorable(compressed_record)
    if a[0].shape != b[0].shape:
        raise ValueError(f"paired segmentation records of {a[0].shape[0]} images x {a[0].shape[1]} classes and "
                         f"{b[0].shape[0]} x {b[0].shape[1]}: not the same eval set")
    differ = np.flatnonzero(a[3] != b[3])
    if differ.size:  # the ground truth alone sets labelled: the same images have the same counts
        raise ValueError(f"paired segmentation records differ in labelled pixels at image {differ[0]}: not the same "
                         "images in the same order")
    values = _resampled(len(a[3]), resamples, seed, lambda counts: _stats(counts, *a) - _stats(counts, *b))
    return _named(_percentiles(values, level))


def record(intersection, union, correct, labelled) -> dict:
    """The per-image record of the module docstring (JSON-able: ints and lists of ints)."""
    intersection, union, correct, labelled = _arrays(intersection, union, correct, labelled)
    classes = []
    for i_row, u_row in zip(intersection, union):
        present = np.flatnonzero(u_row)
        classes.append(np.stack([present, i_row[present], u_row[present]], axis=1).reshape(-1).tolist())
    return {"num_classes": int(intersection.shape[1]), "labelled": labelled.tolist(), "correct": correct.tolist(),
            "classes": classes}


def from_record(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(intersection (N, K), union (N, K), correct (N,), labelled (N,)) int64 arrays of a per-image record."""
    try:
        k = record["num_classes"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"num_classes {k!r}")
        labelled, correct = _int_list(record["labelled"]), _int_list(record["correct"])
        classes = record["classes"]
        if not len(labelled) == len(correct) == len(classes):
            raise ValueError(f"{len(labelled)} labelled, {len(correct)} correct and {len(classes)} classes lists")
        intersection, union = np.zeros((len(classes), k), np.int64), np.zeros((len(classes), k), np.int64)
        for n, triples in enumerate(classes):
            _fill(n, _int_list(triples), k, intersection, union)
        return _arrays(intersection, union, correct, labelled)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a per-image segmentation record ({type(e).__name__}: {e})") from None


def _maps(x, name: str) -> np.ndarray | torch.Tensor:
    """x as int64 maps of shape (N, H, W): a tensor on an accelerator stays there (torch's bincount is fast
    there), anything else becomes a numpy array (numpy's bincount is ten times torch's on CPUs)."""
    if isinstance(x, torch.Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex:
            raise ValueError(f"{name} of dtype {x.dtype}: integer maps expected")
        x = x.detach().long() if x.device.type != "cpu" else x.detach().numpy()
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            raise ValueError(f"{name} of dtype {x.dtype}: integer maps expected")
        x = x.astype(np.int64, copy=False)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} of shape {tuple(x.shape)}: (H, W) or (N, H, W) expected")
    return x[None] if x.ndim == 2 else x


def _check_range(t: np.ndarray | torch.Tensor, low: int, high: int, name: str, why: str) -> None:
    if t.shape[0] * t.shape[1] * t.shape[2] == 0:
        return
    smallest, largest = int(t.min()), int(t.max())
    if smallest < low or largest > high:
        raise ValueError(f"{name} {largest if largest > high else smallest} outside {low}..{high}: {why}")


def _numpy(t: np.ndarray | torch.Tensor) -> np.ndarray:
    return (t.cpu().numpy() if isinstance(t, torch.Tensor) else t).astype(np.int64, copy=False)


def _arrays(intersection, union, correct, labelled) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four as int64 arrays, checked to be one set of per-image counts."""
    intersection, union = np.asarray(intersection, np.int64), np.asarray(union, np.int64)
    correct, labelled = np.asarray(correct, np.int64).reshape(-1), np.asarray(labelled, np.int64).reshape(-1)
    if intersection.ndim != 2 or intersection.shape != union.shape or intersection.shape[1] == 0:
        raise ValueError(f"intersection of shape {intersection.shape} and union of shape {union.shape}: (N, K) each")
    if not len(intersection) == len(correct) == len(labelled):
        raise ValueError(f"{len(intersection)} images of intersections but {len(correct)} of correct and "
                         f"{len(labelled)} of labelled")
    if (intersection < 0).any() or (intersection > union).any() or (correct > labelled).any() or (correct < 0).any():
        raise ValueError("counts with intersection > union, correct > labelled or a negative count")
    if (intersection.sum(axis=1) != correct).any():  # each right pixel is in exactly one class's intersection
        raise ValueError("correct is not the sum of the image's intersections")
    return intersection, union, correct, labelled


def _int_list(values) -> list[int]:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError("counts must be lists of ints")
    return values


def _fill(n: int, triples: list[int], k: int, intersection: np.ndarray, union: np.ndarray) -> None:
    """Image n's row of intersection and union from its [k, i, u, ...] list."""
    if len(triples) % 3:
        raise ValueError(f"image {n}: {len(triples)} numbers, not (class, intersection, union) triples")
    table = np.asarray(triples, np.int64).reshape(-1, 3)
    index = table[:, 0]
    if index.size and (index.min() < 0 or index.max() >= k or (np.diff(index) <= 0).any()):
        raise ValueError(f"image {n}: class indices {index.tolist()} not ascending in 0..{k - 1}")
    intersection[n, index], union[n, index] = table[:, 1], table[:, 2]


def _scorable(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = from_record(record)
    if arrays[3].sum() == 0:
        raise ValueError("no labelled pixels (label > 0) to score")
    return arrays


def _stats(counts: np.ndarray, intersection: np.ndarray, union: np.ndarray, correct: np.ndarray,
           labelled: np.ndarray) -> np.ndarray:
    """(mIoU, pixel accuracy) in percent of each sample, counts (samples x images) holding image i counts[b, i]
    times -> (samples, 2); nan for a sample without labelled pixels. summary is the sample of every image once, so
    the point estimate and the resamples are computed alike (all images identical: every resample is, to the bit,
    the point estimate)."""
    counts = np.asarray(counts, np.float64)
    # float64 sums of integer pixel counts are exact (far below 2 ** 53), so BLAS's summation order does not matter
    summed_i, summed_u = counts @ intersection.astype(np.float64), counts @ union.astype(np.float64)
    present = summed_u > 0
    iou = np.divide(summed_i, summed_u, out=np.zeros_like(summed_i), where=present)
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = 100.0 * iou.sum(axis=1) / present.sum(axis=1)  # classes with union 0 left out of the mean
        pixel_acc = 100.0 * (counts @ correct.astype(np.float64)) / (counts @ labelled.astype(np.float64))
    return np.stack([miou, pixel_acc], axis=1)


def _named(intervals: dict) -> dict:
    """detection_metric's _percentiles names its columns as AP, AP50, ...: name ours, in column order."""
    return {name: interval for name, interval in zip(STATS, intervals.values())}
