"""Is a multihead TTAC step as cheap as the single-task steps it replaces? Time, per step, on one thread:

  classification = one TTAC step in front of the classifier alone (train.ttac.ttac_loss, backward, Adam step)
  detection      = one TTAC step in front of the detector alone (its FPN levels)
  multihead      = one multihead step: both batches, both losses summed, one backward, one Adam step

and print multihead / (classification + detection); the target is at most 1.2 (the step shares only the optimiser's
update, so it should cost about what the two single-task steps cost). Defaults: the embedded-size ResNet-18 at 48 px,
batch 64, and the embedded Faster R-CNN (that ResNet-18's stages under the small FPN) at 64 px, batch 16, untrained
(weights do not change the cost). The JPEG batches are made once beforehand: the on-the-fly compression is the same
for every trainer and is timed by ttac_step.py. The three steps are timed in turn, best of --repeats each, so a load
that drifts hits them alike.

Run:  .venv/bin/python benchmarks/multihead_step.py [--size 48] [--batch 64] [--det-size 64] [--det-batch 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from jpegstudy import jpeg
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.tasks import classification, detection
from jpegstudy.train.ttac import freeze, ttac_loss


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def best_in_turn(steps: dict, repeats: int) -> dict:
    """Each step once to warm up, then `repeats` rounds of all of them in turn; the fastest time of each."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step))
    return {name: min(t) for name, t in times.items()}


def member(task, model, transform, size: int, batch: int):
    """(loss of the corrector on one fixed batch of random images at mixed qualities) for one frozen network."""
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    jpegs = inputs.from_images(images, inputs.draw_qualities(batch, torch.Generator().manual_seed(size)))
    return images, lambda corrector: ttac_loss(task.ttac_target, model, transform, corrector, images, jpegs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=48, help="the classifier's image size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--det-size", type=int, default=64, help="the detector's scene size")
    p.add_argument("--det-batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--widths", default="32,16,1", help="QGAC luma,chroma,blocks")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    classifier = classification.build("resnet18", 10)
    detector = freeze(detection.build("faster_rcnn", 10, a.det_size, classification.build("resnet18", 10)))
    spec = classification.transform_spec("resnet18", "train", None, a.size)
    images, cls_loss = member(classification, freeze(classifier), classification.tensor_transform(spec), a.size,
                              a.batch)
    _, det_loss = member(detection, detector, detection.tensor_transform({}), a.det_size, a.det_batch)
    luma, chroma, blocks = (int(v) for v in a.widths.split(","))
    corrector = correctors.Corrector("qgac", {"luma_channels": luma, "chroma_channels": chroma,
                                              "luma_blocks": blocks}, jpeg.FrequencyStats.compute(iter(images)))
    corrector.train()
    optimizer = torch.optim.Adam(corrector.parameters(), lr=1e-5)  # small: the weights stay near their start

    def step(*losses):
        def run():
            optimizer.zero_grad(set_to_none=True)
            sum(loss(corrector) for loss in losses).backward()
            optimizer.step()
        return run

    t = best_in_turn({"classification": step(cls_loss), "detection": step(det_loss),
                      "multihead": step(cls_loss, det_loss)}, a.repeats)
    parts = t["classification"] + t["detection"]
    print(f"QGAC {a.widths}; resnet18 batch {a.batch} of {a.size}px + faster_rcnn batch {a.det_batch} of "
          f"{a.det_size}px; one thread, best of {a.repeats}")
    print(f"  classification TTAC step {t['classification'] * 1000:8.1f} ms")
    print(f"  detection TTAC step      {t['detection'] * 1000:8.1f} ms")
    print(f"  the two together         {parts * 1000:8.1f} ms")
    print(f"  multihead step           {t['multihead'] * 1000:8.1f} ms   ratio {t['multihead'] / parts:.2f} "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()
