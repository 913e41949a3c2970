"""Evaluation throughput on the CPU: the pipeline's evaluation path against the best bare forward loop.

On the same images (synthetic scenes at ImageNet's typical 500x375, JPEG Q=50 files written once to a scratch
folder, so the page cache holds them), for each model at 224 px, one run prints images/s of:
  defaults   a bare `model(x)` loop written the obvious way: glibc malloc, NCHW, batch 50 (a subprocess)
  bare       the best bare loop found: tcmalloc, channels_last, the best of several batch sizes, on tensors already
             decoded and transformed
  pipeline   jpegstudy's evaluation path (evaluate.task_scores): read + verify the file, decode, the
             model's transform, the model; without and with a corrector (QGAC, embedded widths) in front
and the ratio pipeline / bare. The bare loop at its best batch size and the pipeline are measured in alternating
rounds (this machine's speed drifts), and medians are printed, beside the bound the decode's CPU time sets when it
shares the cores with the model. Weights are random: speed does not depend on them.

    .venv/bin/python benchmarks/eval_throughput.py [--models mobilenet_v2 resnet18] [--images 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the evaluation loop's progress bar, before tqdm is imported

from jpegstudy import cpu  # noqa: E402 (after the environment it reads)

DEFAULT_BATCH = 50


def scenes(n: int, folder: Path):
    """n JPEG files (Q=50) of 500x375 embedded scenes, in a manifest of 1000 classes (all labelled 0)."""
    import numpy as np
    from PIL import Image

    from jpegstudy import jpeg
    from jpegstudy.data import embedded
    from jpegstudy.data.manifest import Manifest

    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        scene = embedded.make_scene(rng, i % len(embedded.CATEGORIES), 500)
        image = Image.fromarray(scene.image).crop((0, 0, 500, 375))
        name = f"{i:05d}.jpg"
        (folder / name).write_bytes(jpeg.compress(image, 50))
        images.append({"path": name, "label": 0})
    manifest = Manifest(dataset="bench", split="val-q50", root=str(folder), classes=[f"c{i:04d}" for i in range(1000)],
                        images=images)
    manifest.location = folder / "manifest.json"
    return manifest


def rate(step, n_per_step: int, seconds: float) -> float:
    step()  # warm-up: first-call allocations and kernel selection
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * n_per_step / (time.perf_counter() - start)


def bare(model, x, batch_size: int, seconds: float) -> float:
    import torch

    batches = [x[i:i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]

    def step():
        with torch.inference_mode():
            for b in batches:
                model(b)

    return rate(step, batch_size * len(batches), seconds)


def decode_cost(manifest, transform) -> float:
    """Milliseconds of one core per image to read, verify, decode and transform (the pipeline's work besides the
    model), measured on one thread."""
    import torch

    from jpegstudy.data.loader import ManifestDataset

    data, threads = ManifestDataset(manifest, transform), torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.process_time()
    for i in range(len(data)):
        data[i]
    torch.set_num_threads(threads)
    return 1000 * (time.process_time() - start) / len(data)


def defaults_subprocess(arch: str, images: int, threads: int, seconds: float) -> float:
    """The obvious loop in a fresh process on glibc's defaults (the allocator is fixed when a process starts)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # this process runs on tcmalloc
    env[cpu.ALLOCATOR_ENV] = "system"
    out = subprocess.run([sys.executable, __file__, "--defaults-only", arch, "--images", str(images),
                          "--threads", str(threads), "--seconds", str(seconds)],
                         capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def defaults_only(arch: str, images: int, seconds: float) -> float:
    import torch
    import torchvision

    model = torchvision.models.get_model(arch, weights=None).eval()
    x = torch.rand(max(images, DEFAULT_BATCH), 3, 224, 224)
    return bare(model, x, DEFAULT_BATCH, seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet18"])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--pipeline-batch", type=int, default=None, help="default: the best bare batch size")
    p.add_argument("--workers", type=int, default=0, help="the pipeline's decode worker processes (0: threads)")
    p.add_argument("--seconds", type=float, default=3.0, help="least time per measurement")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of bare and pipeline")
    p.add_argument("--defaults-only", metavar="ARCH", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.images < max(a.batch_sizes + [DEFAULT_BATCH]):
        p.error(f"--images {a.images}: fewer than the largest batch size")
    if a.defaults_only:
        import torch

        torch.set_num_threads(a.threads)
        print(defaults_only(a.defaults_only, a.images, a.seconds))
        return
    cpu.preload_allocator()  # re-executes once with tcmalloc

    import torch

    from jpegstudy.correction import corrector as correctors
    from jpegstudy.evaluate import task_scores
    from jpegstudy.tasks import classification

    torch.set_num_threads(a.threads)
    dev = torch.device("cpu")
    spec = {"resize": 256, "crop": 224, "interpolation": "bilinear", "mean": classification.IMAGENET_MEAN,
            "std": classification.IMAGENET_STD}
    transform = classification.eval_transform(spec)
    results = {}
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        manifest = scenes(a.images, Path(tmp))
        from jpegstudy.data.loader import ManifestDataset

        preloaded = torch.stack([ManifestDataset(manifest, transform)[i][0] for i in range(len(manifest.images))])
        from jpegstudy.jpeg import FrequencyStats

        stats = FrequencyStats.compute(preloaded[:16].mul(torch.tensor(spec["std"])[:, None, None])
                                       .add(torch.tensor(spec["mean"])[:, None, None]).clamp(0, 1))
        qgac = correctors.Corrector("qgac", {"luma_channels": 32, "chroma_channels": 16, "luma_blocks": 1},
                                    stats).eval()
        decode_ms = decode_cost(manifest, transform)
        print(f"{a.images} JPEGs of 500x375 at Q=50, {a.threads} threads, allocator {cpu.allocator()}, "
              f"pipeline workers {a.workers}; read + decode + transform: {decode_ms:.2f} ms of one core per image",
              flush=True)
        for arch in a.models:
            model = cpu.fast_layout(classification.build(arch, 1000).eval(), dev)
            by_batch = {b: bare(model, preloaded, b, a.seconds) for b in a.batch_sizes}
            best_batch = max(by_batch, key=by_batch.get)
            batch = a.pipeline_batch or best_batch
            row = {"defaults (glibc, NCHW, batch 50)": defaults_subprocess(arch, a.images, a.threads, a.seconds),
                   **{f"bare batch {b}": r for b, r in by_batch.items()}}
            # This machine's speed drifts by +-10 % within minutes (shared host): bare and pipeline are measured
            # in alternation, round by round, and each round gives one ratio; the medians are printed.
            rounds = {"bare": [], "pipeline": [], "ratio": []}

            def step(corrector=None):
                task_scores(classification, model, manifest, transform, dev, batch, a.workers, "", corrector)

            for _ in range(a.rounds):
                rounds["bare"].append(bare(model, preloaded, best_batch, a.seconds))
                rounds["pipeline"].append(rate(step, a.images, a.seconds))
                rounds["ratio"].append(rounds["pipeline"][-1] / rounds["bare"][-1])
            bare_rate, ratio = statistics.median(rounds["bare"]), statistics.median(rounds["ratio"])
            row.update({f"bare batch {best_batch}, median of {a.rounds} rounds": bare_rate,
                        f"pipeline batch {batch}, median": statistics.median(rounds["pipeline"]),
                        f"pipeline + QGAC batch {batch}": rate(lambda: step(qgac), a.images, a.seconds)})
            # The decode must share the cores with the model: the best the pipeline can do is the model's core
            # time plus the decode's, spread over `threads` cores.
            bound = 1 / (1 + decode_ms * bare_rate / (1000 * a.threads))
            results[arch] = {**row, "ratio": ratio, "bound": bound, "decode_ms": decode_ms, "rounds": rounds}
            for what, value in row.items():
                print(f"{arch:14s} {what:40s} {value:7.1f} images/s", flush=True)
            print(f"{arch:14s} ratio pipeline / best bare = {ratio:.2f} (median of {a.rounds} rounds: "
                  f"{' '.join(f'{r:.2f}' for r in rounds['ratio'])}; best bare: batch {best_batch}); "
                  f"bound with the decode on the same cores: {bound:.2f}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
