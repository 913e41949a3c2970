"""Bootstrap confidence intervals of accuracies, from per-image results (scipy.stats.bootstrap, percentile method).

Metric rows keep each image's result as a string of '0'/'1' in manifest order (compact in JSON: 50,000 ImageNet
images are 50 kB a row), so any interval, and the paired interval of a drop, can be recomputed from the rows alone.
Percentile intervals: BCa is undefined when every image is right (or wrong), which small validation sets hit.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def encode(correct) -> str:
    return "".join("1" if c else "0" for c in correct)


def decode(text: str) -> np.ndarray:
    bits = np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")
    if bits.size and bits.max() > 1:
        raise ValueError("per-image results hold characters other than 0 and 1")
    return bits.astype(np.float64)


def _interval(data: tuple, statistic, level: float, resamples: int, seed: int, paired: bool) -> tuple[float, float]:
    if min(len(d) for d in data) == 0:
        raise ValueError("no per-image results to bootstrap")
    if all(np.ptp(d) == 0 for d in data):  # every resample is the sample itself
        value = float(statistic(*data, axis=-1))
        return value, value
    result = stats.bootstrap(data, statistic, n_resamples=resamples, confidence_level=level, method="percentile",
                             paired=paired, vectorized=True, batch=max(1, 20_000_000 // len(data[0])),
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def accuracy_interval(correct: np.ndarray, level: float = 0.95, resamples: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """(low, high) of the percentage of images right, at `level`."""
    return _interval((100.0 * np.asarray(correct, dtype=np.float64),), np.mean, level, resamples, seed, False)


def _mean_difference(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def drop_interval(clean: np.ndarray, compressed: np.ndarray, level: float = 0.95, resamples: int = 1000,
                  seed: int = 0) -> tuple[float, float]:
    """(low, high) of clean accuracy minus compressed accuracy (points), resampling images jointly: both were
    measured on the same images, in the same order."""
    if len(clean) != len(compressed):
        raise ValueError(f"paired results of {len(clean)} and {len(compressed)} images: not the same images")
    return _interval((100.0 * np.asarray(clean, np.float64), 100.0 * np.asarray(compressed, np.float64)),
                     _mean_difference, level, resamples, seed, True)
