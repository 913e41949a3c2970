"""Throughput (the paper's Appendix E): images/s of training and inference, for the task model alone and with each
corrector in front of it, at each batch size; written as metric rows with provenance like any other number.

What is timed is the networks' work on batches already in memory: inference is corrector (if any) + the model's
transform + the model; training is a fine-tuning step (model alone) or a TTAC step (corrector trained, model
frozen). Decoding and JPEG reading are left out, as they are the same for every mitigation.
"""

from __future__ import annotations

import copy
import time

import torch

from jpegstudy import cpu, provenance, tasks
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.devices import device_name, pick_device
from jpegstudy.train.finetune import to_device
from jpegstudy.train.ttac import freeze, ttac_loss


def images_per_second(step, batch_size: int, seconds: float, device) -> float:
    """Run `step` once to warm up, then as often as fits in `seconds` (at least 3 times)."""
    step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    sync()
    return calls * batch_size / (time.perf_counter() - start)


def _steps(task, model, transform, corrector, images, batch, targets):
    """(inference step, training step) for the model alone (corrector None) or with the corrector. Inference runs
    in the layout evaluation uses (channels_last on the CPU), training in the one the training jobs use."""
    fast = cpu.fast_layout(copy.deepcopy(model), images.device)
    if corrector is None:
        model.requires_grad_(True)  # a TTAC step before froze it
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
        x = transform(batch.rgb)

        def infer():
            with torch.no_grad():
                task.infer(fast.eval(), x, targets)

        def train():
            loss = task.finetune_loss(model.train(), x, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        optimizer = torch.optim.Adam(corrector.parameters(), lr=1e-6)

        def infer():
            with torch.no_grad():
                task.infer(fast.eval(), transform(corrector.eval()(batch)), targets)

        def train():
            loss = ttac_loss(task.ttac_target, freeze(model), transform, corrector.train(), images, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return infer, train


def task_throughput(*, task: str = "classification", model_name: str, reference: str,
                    corrector_files: dict[str, str], batch_sizes: list[int], seconds: float, params: dict, rule: str,
                    device: str = "auto", seed: int = 0) -> dict:
    """The throughput rows of one `task` model, alone and with each corrector, at each batch size, on random
    images of the model's input size (and the task's stand-in targets for its training step: throughput_batch)."""
    dev = pick_device(device)
    t = tasks.get(task)
    model, meta = t.load_reference(reference)
    model.to(dev)
    initial = copy.deepcopy(model.state_dict())
    transform = t.tensor_transform(meta["transform"])
    loaded = {None: (None, {})}
    for name, path in corrector_files.items():
        loaded[name] = (correctors.load(path)[0].to(dev), provenance.file_inputs({"corrector": path}))
    git = provenance.git_state()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch_size in batch_sizes:
        images, targets = t.throughput_batch(meta, batch_size, generator)
        size = images.shape[-1]
        targets = to_device(targets, dev)
        batch = inputs.from_images(images, [50] * batch_size).to(dev)
        for name, (corrector, corrector_input) in loaded.items():
            # Fresh weights each time: the training steps below change them.
            model.load_state_dict(initial)
            infer, train = _steps(t, model, transform, corrector, images.to(dev), batch, targets)
            for mode, step in (("inference", infer), ("train", train)):
                start = time.perf_counter()
                try:
                    rate = images_per_second(step, batch_size, seconds, dev)
                except ValueError as e:
                    if "more than 1 value per channel" not in str(e):
                        raise
                    # Batch norm cannot train on one image whose features shrink to 1x1: no figure, not a fake one.
                    print(f"{model_name} + {name or 'no corrector'} {mode} batch {batch_size}: not measured "
                          f"({str(e).splitlines()[0]})", flush=True)
                    continue
                row = {"task": task, "model": model_name, "corrector": name, "mode": mode,
                       "batch_size": batch_size, "image_size": size, "images_per_s": rate}
                row["provenance"] = provenance.record(
                    inputs={**provenance.file_inputs({"weights": reference}), **corrector_input}, params=params,
                    rule=rule, wall_time_s=time.perf_counter() - start, device=device_name(dev), git=git)
                rows.append({"id": provenance.row_id(row), **row})
                print(f"{model_name} + {name or 'no corrector'} {mode} batch {batch_size}: {rate:.1f} images/s",
                      flush=True)
    return {"task": task, "model": model_name, "kind": "throughput", "rows": rows}
