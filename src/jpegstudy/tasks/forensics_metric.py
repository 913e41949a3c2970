"""Real/fake metrics of a forensic detector from its per-image results: accuracy, patch accuracy (Chai et al.'s),
average precision (beyond the paper), and their bootstrap intervals over images.

Per image a detector gives P(fake) (its score) and a decision; a patch detector also the fraction of its patches
decided right. Rows keep those lists (per_image), so every interval, and the paired interval of a drop, can be
recomputed from the rows alone, as classification's hit strings allow.

Average precision is sklearn's (average_precision_score: the sum over distinct thresholds of the recall step times
the precision there; tied scores make one threshold), written vectorised here so that a thousand bootstrap
resamples cost one array operation, not a thousand calls; tests compare it with sklearn's on tied scores.
"""

from __future__ import annotations

import numpy as np

from jpegstudy import confidence


def average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of fakes (label 1) ranked by `scores`, one per row of (R, n) arrays ((1,) for one (n,) pair): as
    sklearn's average_precision_score; NaN for a row without a fake."""
    labels, scores = np.atleast_2d(labels).astype(np.float64), np.atleast_2d(scores).astype(np.float64)
    n = labels.shape[1]
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, 1)
    tp = np.cumsum(np.take_along_axis(labels, order, 1), axis=1)
    positives = tp[:, -1:]
    precision = tp / np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / positives
    # Each position takes the precision at the end of its run of tied scores (one threshold for the whole run).
    is_end = np.ones_like(s, dtype=bool)
    is_end[:, :-1] = s[:, 1:] != s[:, :-1]
    end_index = np.where(is_end, np.arange(n), n)
    end_index = np.minimum.accumulate(end_index[:, ::-1], axis=1)[:, ::-1]
    precision_at_end = np.take_along_axis(precision, end_index, 1)
    steps = np.diff(np.concatenate([np.zeros((len(s), 1)), recall], axis=1), axis=1)
    ap = np.sum(steps * precision_at_end, axis=1)
    ap[positives[:, 0] == 0] = np.nan
    return ap


def ap_interval(labels, scores, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of AP (%), resampling images."""
    labels, scores = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
    draws = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    values = 100 * average_precision(labels[draws], scores[draws])
    low, high = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def summary(labels, scores, decisions, patch_right=None, confidence_params: dict | None = None) -> dict:
    """The metric fields (%) of one eval set: image accuracy and its real and fake halves, patch accuracy (when
    given: each image's fraction of patches right), AP, and the bootstrap intervals of accuracy, patch accuracy and
    AP. `accuracy` is the paper's figure: patch accuracy for a patch detector, image accuracy otherwise."""
    c = confidence_params or {}
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    right = (np.asarray(decisions) == labels).astype(np.float64)
    out = {"image_accuracy": 100 * right.mean(),
           "real_accuracy": 100 * right[labels == 0].mean() if (labels == 0).any() else None,
           "fake_accuracy": 100 * right[labels == 1].mean() if (labels == 1).any() else None,
           "ap": 100 * float(average_precision(labels, scores)[0])}
    out["image_accuracy_low"], out["image_accuracy_high"] = confidence.accuracy_interval(right, **c)
    out["ap_low"], out["ap_high"] = ap_interval(labels, scores, **c)
    per_image = {"label": [int(v) for v in labels], "score": [round(float(v), 6) for v in scores],
                 "image_accuracy": confidence.encode(right)}
    headline = "image_accuracy"
    if patch_right is not None:
        patch = np.asarray(patch_right, np.float64)
        out["patch_accuracy"] = 100 * patch.mean()
        out["patch_accuracy_low"], out["patch_accuracy_high"] = confidence.accuracy_interval(patch, **c)
        per_image["patch_accuracy"] = [round(float(v), 6) for v in patch]
        headline = "patch_accuracy"
    out["accuracy"], out["accuracy_low"], out["accuracy_high"] = (out[headline], out[f"{headline}_low"],
                                                                  out[f"{headline}_high"])
    per_image["accuracy"] = headline
    return {**out, "per_image": per_image}


def per_image_values(per_image: dict, field: str) -> np.ndarray:
    """Each image's value (0..1) of `field` ("accuracy" is the one the row's headline names)."""
    if field == "accuracy":
        field = per_image["accuracy"]
    values = per_image[field]
    return confidence.decode(values) if isinstance(values, str) else np.asarray(values, np.float64)


def drop_interval(clean: dict, compressed: dict, field: str, **params) -> tuple[float, float]:
    """Paired bootstrap interval of clean minus compressed `field` (points) from two rows' per_image results."""
    return confidence.drop_interval(per_image_values(clean, field), per_image_values(compressed, field), **params)
