"""What an embedded segmenter costs and reaches on the CPU: the sizing experiment for the segmentation study.

Trains an embedded pair (tasks/segmentation.build on an embedded classifier's reference file) on an ADE20K-layout
training manifest with the study's own trainer (train/task_model), then prints the training time, the time of one
scoring pass and mIoU / pixel accuracy on each eval manifest given (clean and compressed, as the study makes them):

    .venv/bin/python benchmarks/segmentation_cpu.py --backbone results/models/classification/resnet18/reference.pt \
        --encoder resnet18dilated --decoder ppm_deepsup --train results/data/parsing/train/manifest.json \
        --eval results/data/parsing/val/manifest.json results/data/parsing/val-q10/manifest.json \
        [--epochs 8] [--batch-size 16] [--lr 2e-3] [--threads 1] [--out scratch.pt]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from jpegstudy import evaluate
from jpegstudy.data import manifest as manifests
from jpegstudy.tasks import classification, segmentation
from jpegstudy.train import task_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", required=True)
    p.add_argument("--encoder", default="resnet18dilated")
    p.add_argument("--decoder", default="ppm_deepsup")
    p.add_argument("--train", required=True)
    p.add_argument("--eval", nargs="+", required=True)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="keep the trained weights here (default: a scratch file)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = manifests.read(a.train)
    classifier, _ = classification.load_reference(a.backbone)
    torch.manual_seed(0)
    model = segmentation.build(a.encoder, a.decoder, len(train.classes), classifier)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or Path(tmp) / "segmenter.pt")
        start = time.perf_counter()
        model = task_model.train(model, "segmentation", f"{a.encoder}+{a.decoder}", train, out=out,
                                 epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                                 seed=0)
        print(f"{a.encoder} + {a.decoder}: {len(train.images)} images x {a.epochs} epochs in "
              f"{time.perf_counter() - start:.0f} s ({a.threads} thread(s))", flush=True)
    for path in a.eval:
        m = manifests.read(path)
        start = time.perf_counter()
        batches = evaluate.eval_batches(segmentation, m, segmentation.eval_transform({}), "cpu", 20, 0)
        with torch.no_grad():
            out = segmentation.score(model, m, batches, "cpu", {"resamples": 200})
        print(f"{m.split}: mIoU {out['miou']:.1f} [{out['miou_low']:.1f}, {out['miou_high']:.1f}], pixel accuracy "
              f"{out['pixel_acc']:.1f} ({out['n_images']} images, {time.perf_counter() - start:.1f} s)", flush=True)
        print("  IoU per class: " + ", ".join(f"{name} {'--' if iou is None else f'{iou:.0f}'}"
                                             for name, iou in zip(m.classes, out["class_iou"])), flush=True)


if __name__ == "__main__":
    main()
