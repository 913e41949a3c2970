"""Seconds of the COCO mAP bootstrap (tasks/detection_metric): 1000 resamples one at a time (_Tables.stats in a
loop, as map_interval did) against all at once (_Tables.batch_stats, as it does now), on a random record built by
evaluate_map (pycocotools); checks that both give the same numbers and prints the batch's peak traced memory.

Scenes: up to 15 objects an image of random categories and boxes; each object found by a few detections of
jittered boxes (some of the wrong category), the rest of an image's detections stray boxes, scores to 1e-5 as
coco_results writes them.

    .venv/bin/python benchmarks/detection_bootstrap.py [--images 60] [--categories 10] [--detections 100] \
        [--resamples 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import tracemalloc

import numpy as np
from pycocotools.coco import COCO

from jpegstudy.tasks import detection_metric

WIDTH, HEIGHT = 640, 480


def random_box(rng) -> list[float]:
    w, h = rng.uniform(10, 200), rng.uniform(10, 200)
    return [float(rng.uniform(0, WIDTH - w)), float(rng.uniform(0, HEIGHT - h)), float(w), float(h)]


def scenes(n_images: int, n_categories: int, detections: int, seed: int) -> tuple[COCO, list[dict]]:
    """(ground truth, COCO results) of random scenes, as in the module docstring."""
    rng = np.random.default_rng(seed)
    categories = list(range(1, n_categories + 1))
    annotations, results = [], []
    for image in range(1, n_images + 1):
        objects = [(int(rng.choice(categories)), random_box(rng)) for _ in range(rng.integers(0, 16))]
        for category, (x, y, w, h) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.05)})
        found = [(c if rng.random() < 0.9 else int(rng.choice(categories)), [v + rng.normal(0, 0.04 * max(w, h))
                  for v in (x, y, w, h)]) for c, (x, y, w, h) in objects for _ in range(rng.integers(1, 4))]
        stray = [(int(rng.choice(categories)), random_box(rng)) for _ in range(max(0, detections - len(found)))]
        for category, (x, y, w, h) in (found + stray)[:detections]:
            results.append({"image_id": image, "category_id": category, "score": round(float(rng.random()), 5),
                            "bbox": [round(x, 2), round(y, 2), round(max(w, 1.0), 2), round(max(h, 1.0), 2)]})
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "width": WIDTH, "height": HEIGHT} for i in range(1, n_images + 1)],
                  "annotations": annotations, "categories": [{"id": c, "name": f"c{c}"} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, results


def one_at_a_time(tables, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap as map_interval ran it before: one draw and one stats call a resample."""
    rng = np.random.default_rng(seed)
    n = tables.n_images
    return np.array([tables.stats(np.bincount(rng.integers(0, n, n), minlength=n)) for _ in range(resamples)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--detections", type=int, default=100, help="at most this many an image")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt, results = scenes(args.images, args.categories, args.detections, args.seed)
    stats, record = detection_metric.evaluate_map(gt, results)
    tables = detection_metric._Tables(record)
    with_runs = sum(c["runs"] is not None for c in tables.categories)
    print(f"{args.images} images, {len(results)} detections, {args.categories} categories ({with_runs} with equal "
          f"scores in one image), AP {stats['AP']:.2f}")

    start = time.perf_counter()
    before = one_at_a_time(tables, args.resamples, args.seed)
    looped = time.perf_counter() - start
    start = time.perf_counter()
    now = detection_metric._resampled(tables.n_images, args.resamples, args.seed, tables.batch_stats)
    batched = time.perf_counter() - start
    tracemalloc.start()  # again, untimed: tracing slows allocations
    detection_metric._resampled(tables.n_images, args.resamples, args.seed, tables.batch_stats)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    print(f"{args.resamples} resamples: one at a time {looped:.2f} s, batched {batched:.2f} s "
          f"({looped / batched:.1f}x), batched peak traced memory {peak / 2 ** 20:.0f} MiB")
    print(f"same numbers: {np.array_equal(before, now, equal_nan=True)} (largest difference "
          f"{np.nanmax(np.abs(before - now)):.1e})")


if __name__ == "__main__":
    main()
