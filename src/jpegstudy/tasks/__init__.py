"""Task networks behind one interface (DESIGN.md §7): a task is one module here, registered in TASKS.

What the shared code (evaluate, train.ttac, train.finetune, the CLI, the rules) asks of a task module:

    NAME                               the task's name: its config section, the {task} level of every path
    METRIC                             (field, label): the headline field of its metric rows and how tables say it
    load_reference(path)               -> (model in eval mode, meta with at least "transform" and "classes")
    save_finetuned(path, meta, source, state_dict)
                                       writes a model trained further from a reference (its load_reference meta) as
                                       a reference file of its own
    eval_transform(spec)               the model's own preprocessing of a decoded (or corrected) RGB image
    tensor_transform(spec)             its differentiable twin on (N, 3, H, W) batches in [0, 1]
    check_eval_set(manifest, meta, path, reference)
                                       refuses, in one line naming `path`, a set the model cannot be scored on
    target_of(entry)                   what a manifest entry is scored against (a label; a COCO image id; the
                                       entry of an ADE20K label map, read when scored)
    collate(items)                     (model input, targets) of a batch of (transformed image, target) items
    score(model, manifest, batches, device, confidence)
                                       the metric fields of one eval set (values, bootstrap intervals, n_images,
                                       per_image results) from its batches
    infer(model, x, targets)           the model's outputs on a batch (x as collate or throughput_batch gives it; a
                                       detector on precomputed proposals finds them through the targets)
    ttac_target(model, x)              what TTAC's L1 compares on the original and the corrected image (logits;
                                       FPN levels; encoder feature maps)
    finetune_loss(model, x, targets)   the task's own training loss on a (JPEG) batch
    throughput_batch(meta, n, generator)
                                       (uint8 images of the model's input size, targets): what throughput times

Modules are imported when asked for, so a command that needs no task network does not load one.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS = {"classification": "jpegstudy.tasks.classification", "detection": "jpegstudy.tasks.detection",
         "segmentation": "jpegstudy.tasks.segmentation", "forensics": "jpegstudy.tasks.forensics"}


def get(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: one of {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])
