"""What an embedded detector costs and reaches on the CPU: the sizing experiment for the detection study.

Writes embedded COCO scenes (data/embedded.write_coco_split) to a scratch folder, builds an embedded detector
(tasks/detection.build) on the weights of an embedded classifier's reference file (the study's
results/models/classification/resnet18/reference.pt), trains it with AdamW and a one-cycle schedule (random flips),
and prints the training time and COCO box mAP (tasks/detection_metric) on the clean val images and on their JPEGs at
Q=50 and Q=10.

    .venv/bin/python benchmarks/detection_cpu.py --backbone results/models/classification/resnet18/reference.pt \
        [--arch faster_rcnn] [--size 64] [--train 400] [--val 150] [--epochs 12] [--lr 2e-3] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jpegstudy import jpeg
from jpegstudy.data import coco, embedded
from jpegstudy.tasks import classification, detection, detection_metric


def split(root: Path, name: str, n: int, size: int):
    """(images as [0, 1] tensors, torchvision targets, manifest, ground truth) of a freshly written split."""
    m = embedded.write_coco_split(root, name, n, size, seed=0)
    m.location = root / "manifest.json"
    gt = coco.load_annotations(m)
    images = [torch.from_numpy(np.array(Image.open(m.path_of(i)).convert("RGB"))).permute(2, 0, 1).float() / 255
              for i in range(len(m.images))]
    targets = [coco.to_targets(gt, e["id"], m.source["category_ids"]) for e in m.images]
    return images, targets, m, gt


def flipped(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = image.shape[-1] - target["boxes"][:, [2, 0]]
    out = {**target, "boxes": boxes}
    if "masks" in target:
        out["masks"] = target["masks"].flip(-1)
    return image.flip(-1), out


def jpeg_copy(image: torch.Tensor, quality: int) -> torch.Tensor:
    pil = Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy())
    decoded = Image.open(io.BytesIO(jpeg.compress(pil, quality))).convert("RGB")
    return torch.from_numpy(np.array(decoded)).permute(2, 0, 1).float() / 255


@torch.no_grad()
def box_map(model, images, m, gt) -> float:
    model.eval()
    predictions = {}
    for start in range(0, len(images), 25):
        outputs = model(images[start:start + 25])
        predictions.update({e["id"]: o for e, o in zip(m.images[start:start + 25], outputs)})
    stats, _ = detection_metric.evaluate_map(gt, detection_metric.coco_results(predictions, m.source["category_ids"]))
    return stats["AP"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="an embedded ResNet classifier's reference file")
    p.add_argument("--arch", default="faster_rcnn", choices=list(detection.EMBEDDED))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--val", type=int, default=150)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="detection-cpu-") as tmp:
        train_images, train_targets, _, _ = split(Path(tmp) / "train", "train", a.train, a.size)
        val_images, _, val_manifest, val_gt = split(Path(tmp) / "val", "val", a.val, a.size)
    classifier, _ = classification.load_reference(a.backbone)
    model = detection.build(a.arch, len(embedded.CATEGORIES), a.size, classifier)
    keys = ("boxes", "labels", "masks") if detection.has_masks(a.arch) else ("boxes", "labels")
    steps_per_epoch = len(train_images) // a.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=a.lr, total_steps=a.epochs * steps_per_epoch,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(a.epochs):
        model.train()
        order, total = torch.randperm(len(train_images), generator=generator).tolist(), 0.0
        flips = (torch.rand(len(train_images), generator=generator) < 0.5).tolist()
        for step in range(steps_per_epoch):
            picked = order[step * a.batch_size:(step + 1) * a.batch_size]
            batch = [(train_images[i], {k: train_targets[i][k] for k in keys}) for i in picked]
            batch = [flipped(x, t) if flips[i] else (x, t) for (x, t), i in zip(batch, picked)]
            loss = detection.finetune_loss(model, [x for x, _ in batch], [t for _, t in batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{a.epochs}: loss {total / steps_per_epoch:.3f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    train_s = time.perf_counter() - start
    clean = box_map(model, val_images, val_manifest, val_gt)
    by_quality = {q: box_map(model, [jpeg_copy(x, q) for x in val_images], val_manifest, val_gt) for q in (50, 10)}
    print(f"{a.arch}, {a.size} px, {a.train} train images, {a.epochs} epochs, {a.threads} thread(s): training "
          f"{train_s:.0f} s ({train_s / (a.epochs * steps_per_epoch):.2f} s a step of {a.batch_size}); box mAP on "
          f"{a.val} val images: clean {clean:.1f}, Q=50 {by_quality[50]:.1f}, Q=10 {by_quality[10]:.1f} "
          f"({100 * (1 - by_quality[10] / clean) if clean else 0:.0f} % lower)")


if __name__ == "__main__":
    main()
