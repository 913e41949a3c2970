"""Is a TTAC step as cheap as its parts? Time, per batch, on one thread:

  parts  = corrector forward+backward (pixel loss)  +  task forward+backward through the frozen network (input grads)
  ttac   = one real TTAC step (train.ttac.ttac_loss: Task(x) once without a graph, Task(AC(JPEG)) with one, backward)

and print ttac / parts; the target is at most 2 (no hidden recomputation). The JPEG batch is made once beforehand:
the on-the-fly compression is the same for every trainer and is timed separately.

Run:  .venv/bin/python benchmarks/ttac_step.py [--model resnet18] [--size 48] [--batch 64] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from jpegstudy import jpeg
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.tasks import classification
from jpegstudy.train.ttac import freeze, ttac_loss


def best_of(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--widths", default="32,16,1", help="QGAC luma,chroma,blocks")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8)
    luma, chroma, blocks = (int(v) for v in a.widths.split(","))
    corrector = correctors.Corrector("qgac", {"luma_channels": luma, "chroma_channels": chroma,
                                              "luma_blocks": blocks}, jpeg.FrequencyStats.compute(iter(images)))
    task = freeze(classification.build(a.model, 10))
    transform = classification.tensor_transform(classification.transform_spec(a.model, "train", None, a.size))
    start = time.perf_counter()
    batch = inputs.from_images(images, [50] * a.batch)
    jpeg_ms = (time.perf_counter() - start) * 1000

    def corrector_part():
        corrector.zero_grad()
        (corrector(batch) - images.float() / 255).abs().mean().backward()

    x = batch.rgb.clone().requires_grad_(True)

    def task_part():
        task(transform(x)).abs().mean().backward()

    def ttac_step():
        corrector.zero_grad()
        ttac_loss(classification.ttac_target, task, transform, corrector, images, batch).backward()

    c, t, s = (best_of(f, a.repeats) for f in (corrector_part, task_part, ttac_step))
    print(f"{a.model}, QGAC {a.widths}, batch {a.batch} of {a.size}px, one thread, best of {a.repeats}")
    print(f"  corrector fwd+bwd      {c * 1000:8.1f} ms")
    print(f"  frozen task fwd+bwd    {t * 1000:8.1f} ms")
    print(f"  parts together         {(c + t) * 1000:8.1f} ms")
    print(f"  TTAC step              {s * 1000:8.1f} ms   ratio {s / (c + t):.2f} (target <= 2)")
    print(f"  (JPEG on the fly       {jpeg_ms:8.1f} ms for the batch, compress + read coefficients + decode)")


if __name__ == "__main__":
    main()
