"""Bootstrap intervals of accuracies and of paired drops."""

import numpy as np
import pytest

from jpegstudy import confidence


def test_per_image_results_round_trip():
    bits = [True, False, False, True, True]
    assert confidence.encode(bits) == "10011"
    assert confidence.decode("10011").tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="other than 0 and 1"):
        confidence.decode("1021")


def test_accuracy_interval_matches_a_hand_bootstrap():
    """The percentile interval of the mean over resampled images, computed here with numpy alone."""
    rng = np.random.default_rng(1)
    correct = (rng.random(400) < 0.7).astype(float)
    low, high = confidence.accuracy_interval(correct, level=0.9, resamples=4000, seed=3)
    draws = np.random.default_rng(5).integers(0, 400, (4000, 400))
    means = 100 * correct[draws].mean(axis=1)
    assert low == pytest.approx(np.percentile(means, 5), abs=0.6)
    assert high == pytest.approx(np.percentile(means, 95), abs=0.6)
    # and the normal approximation of a binomial proportion agrees roughly: 70 % of 400 -> +-1.645 * 2.29
    p = correct.mean()
    half = 1.645 * 100 * np.sqrt(p * (1 - p) / 400)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert confidence.accuracy_interval(correct, level=0.9, resamples=4000, seed=3) == (low, high)  # seeded


def test_all_right_or_all_wrong_has_no_spread():
    assert confidence.accuracy_interval(np.ones(30)) == (100.0, 100.0)
    assert confidence.accuracy_interval(np.zeros(30)) == (0.0, 0.0)


def test_paired_drop_interval_is_narrower_than_unpaired():
    """The same images measured twice: resampling them jointly keeps what the two share, so a drop caused by a
    few images flipping is tighter than the two accuracies' own intervals suggest."""
    rng = np.random.default_rng(0)
    clean = (rng.random(500) < 0.8).astype(float)
    jpeg = clean.copy()
    jpeg[np.flatnonzero(clean)[:40]] = 0  # 40 images wrong after compression, the rest unchanged
    low, high = confidence.drop_interval(clean, jpeg, resamples=2000)
    assert low <= 8.0 <= high and low > 5.0 and high < 11.0
    a, b = confidence.accuracy_interval(clean, resamples=2000), confidence.accuracy_interval(jpeg, resamples=2000)
    assert high - low < (a[1] - a[0]) + (b[1] - b[0])
    with pytest.raises(ValueError, match="not the same images"):
        confidence.drop_interval(clean, jpeg[:-1])
