"""What an embedded forensic detector costs and reaches on the CPU: the sizing experiment for the forensics study.

Trains a detector (tasks/forensics.build) on a real/fake training manifest with the study's own trainer
(train/task_model), then prints the training time and, on each eval manifest given (clean and compressed, as the
study makes them), accuracy (the paper's), image accuracy, the real and fake halves' accuracy and AP:

    .venv/bin/python benchmarks/forensics_cpu.py --detector chai2020 --settings '{"block": 2, "width": 0.25}' \
        --train results/data/fakes/train/manifest.json \
        --eval results/data/fakes/val/manifest.json results/data/fakes/val-q10/manifest.json \
        [--epochs 12] [--batch-size 32] [--lr 4e-3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from jpegstudy import evaluate
from jpegstudy.data import manifest as manifests
from jpegstudy.tasks import forensics
from jpegstudy.train import task_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", default="wang2020", choices=forensics.DETECTORS)
    p.add_argument("--settings", default="{}", help="JSON: wang2020's layers and width, chai2020's block and width")
    p.add_argument("--train", required=True)
    p.add_argument("--eval", nargs="+", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = manifests.read(a.train)
    torch.manual_seed(0)
    model = forensics.build(a.detector, json.loads(a.settings))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = task_model.train(model, "forensics", a.detector, train, out=Path(tmp) / "detector.pt",
                                 epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                                 seed=0)
        print(f"{a.detector} {a.settings}: {len(train.images)} images x {a.epochs} epochs in "
              f"{time.perf_counter() - start:.0f} s ({a.threads} thread(s))", flush=True)
    for path in a.eval:
        m = manifests.read(path)
        batches = evaluate.eval_batches(forensics, m, forensics.eval_transform({}), "cpu", 100, 0)
        with torch.no_grad():
            out = forensics.score(model, m, batches, "cpu", {"resamples": 200})
        print(f"{m.split}: accuracy {out['accuracy']:.1f} [{out['accuracy_low']:.1f}, {out['accuracy_high']:.1f}], "
              f"image {out['image_accuracy']:.1f} (real {out['real_accuracy']:.1f}, fake {out['fake_accuracy']:.1f}),"
              f" AP {out['ap']:.1f} ({out['n_images']} images)", flush=True)


if __name__ == "__main__":
    main()
