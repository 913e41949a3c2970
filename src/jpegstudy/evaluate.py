"""Evaluate one (task model, mitigation) on the clean set and every compressed set: one job, the model loaded once.

Writes one metric file: {"task", "model", "mitigation", "rows": [...]}, one row per quality (None for the clean
reference), each with the task's metric fields (tasks/: classification's top-1, top-5 and their bootstrap intervals
top1_low, top1_high, ...), n_images, each image's result (per_image), its provenance record and a row id; and beside
it the predictions on each set (classification: each image's top-5 classes; detection: a COCO results file). The
code here is task-blind: the task module loads the model, transforms the images and scores the batches.

Mitigations reach evaluation in two ways: a fine-tuned model is just another reference file; a corrector runs on
each decoded JPEG before the model's own transform (the order is the paper's). The clean reference never goes
through a corrector: an uncompressed input is detectable, so a deployed corrector would leave it alone.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from jpegstudy import cpu, provenance, tasks
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import decode_rgb, verified_bytes
from jpegstudy.data.loader import loader
from jpegstudy.devices import autocast, device_name, pick_device, pin_memory


class _Files(torch.utils.data.Dataset):
    """(file bytes, target): correctors need the JPEG file itself (its coefficients), not only its decode."""

    def __init__(self, manifest, target):
        self.manifest = manifest
        self.target = target

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        entry = self.manifest.images[i]
        return verified_bytes(self.manifest.path_of(i), entry.get("sha256")), self.target(entry)


def corrected_images(corrector, files: list[bytes], device, codec: str = "jpeg") -> list[Image.Image]:
    """The corrector's output for each JPEG file (or another codec's decode: pixels only), rounded to an 8-bit RGB
    image (what a corrector hands on is an image), in the order of `files`."""
    out = [None] * len(files)
    if codec == "jpeg":
        batches = inputs.from_files(list(files))
    else:
        batches = inputs.from_pixels([decode_rgb(data, f"{codec} file {i}") for i, data in enumerate(files)])
    for idx, batch in batches:
        # (float: under half-precision autocast its output is half, and 8-bit rounding wants the full value)
        rgb = corrector(batch.to(device)).float().mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for i, image in zip(idx, rgb):
            out[i] = Image.fromarray(np.ascontiguousarray(image))
    return out


def _corrected_batches(task, manifest, corrector, transform, device, batch_size: int, workers: int):
    """Batches of (model input, targets): each JPEG (or other codec's file) corrected (corrected_images), then put
    through the model's own transform."""
    files = torch.utils.data.DataLoader(_Files(manifest, task.target_of), batch_size=batch_size,
                                        num_workers=workers, collate_fn=lambda items: list(zip(*items)))
    codec = manifest.source.get("codec_name", "jpeg")
    for data, targets in files:
        images = corrected_images(corrector, list(data), device, codec)
        yield task.collate([(transform(image), target) for image, target in zip(images, targets)])


def eval_batches(task, manifest, transform, device, batch_size: int, workers: int, corrector=None):
    """(model input, targets) batches of one eval set in manifest order: each file decoded, or corrected first;
    `task` (a tasks module) says what an entry's target is and how items make a batch."""
    if corrector is None:
        return loader(manifest, transform, batch_size, workers, target=task.target_of, collate=task.collate,
                      pin_memory=pin_memory(device))
    return _corrected_batches(task, manifest, corrector, transform, device, batch_size, workers)


@torch.no_grad()
def task_scores(task, model, manifest, transform, device, batch_size: int, workers: int, desc: str,
                corrector=None, confidence: dict | None = None, precision: str = "fp32") -> dict:
    """The metric fields `task` (a tasks module) computes on one eval set, the corrector (if any) in front, every
    network run at `precision` (devices.autocast)."""
    batches = eval_batches(task, manifest, transform, device, batch_size, workers, corrector)
    with autocast(device, precision):
        return task.score(model, manifest, tqdm(batches, desc=desc, mininterval=10), device, confidence)


def _load_correctors(files: dict, dev) -> dict:
    """{quality, or None for every quality: (corrector, its provenance input)}."""
    out = {}
    for quality, path in files.items():
        corrector, _ = correctors.load(path)
        out[quality] = (corrector.to(dev), provenance.file_inputs({"corrector": path}))
    return out


def evaluate(*, task: str = "classification", model_name: str, reference: str, clean: str,
             compressed: dict[int, str], params: dict, rule: str, batch_size: int, workers: int, device: str = "auto",
             mitigation: str = "none", corrector_files: dict | None = None, confidence: dict | None = None,
             proposals: str | None = None, codec: str = "jpeg", clean_set: bool = True) -> dict:
    """One metric file's content: `task`'s fields on the clean set and on each compressed one, for one model and
    mitigation. `corrector_files`: {None: file} for one corrector in front of every quality, or {quality: file} for
    quality-aware ones (then only those qualities are evaluated). `confidence`: level, resamples and seed of the
    bootstrap intervals. `proposals`: a Fast R-CNN's proposals file of the clean set's images, used at every
    quality (as Detectron2's shipped proposals, made on the original images). `params` is the config the rows
    record; its precision (fp32 when absent) is what the networks run at. `codec`: the codec of the compressed sets
    (each row records it, and each compressed set's mean bits per pixel); `clean_set`: False scores only the
    compressed sets (the codec study: the clean reference is the JPEG study's)."""
    dev = pick_device(device)
    precision = params.get("precision", "fp32")
    t = tasks.get(task)
    if proposals is None:
        model, meta = t.load_reference(reference)
    else:
        model, meta = t.load_reference(reference, proposals, [e["id"] for e in manifests.read(clean).images])
    model = cpu.fast_layout(model.to(dev), dev)
    transform = t.eval_transform(meta["transform"])
    git = provenance.git_state()
    weights = provenance.file_inputs({"weights": reference, **({"proposals": proposals} if proposals else {})})
    if meta.get("source_sha256"):  # the user's checkpoint the reference was resolved from
        weights["checkpoint"] = {"path": meta["source"], "sha256": meta["source_sha256"]}
    corrector_by_quality = _load_correctors(corrector_files or {}, dev)
    if corrector_by_quality and None not in corrector_by_quality:
        missing = sorted(set(corrector_by_quality) - set(compressed))
        if missing:
            raise ValueError(f"{mitigation}: correctors for Q={missing} but no compressed set at that quality")
        compressed = {q: p for q, p in compressed.items() if q in corrector_by_quality}
    rows, predictions = [], {}
    for quality, path in [(None, clean)] * clean_set + sorted(compressed.items()):
        m = manifests.read(path)
        t.check_eval_set(m, meta, path, reference)
        if quality is not None and m.source.get("codec_name", "jpeg") != codec:
            raise ValueError(f"{path}: a {m.source.get('codec_name', 'jpeg')} set, not {codec}")
        corrector, corrector_input = (None, {}) if quality is None else corrector_by_quality.get(
            quality, corrector_by_quality.get(None, (None, {})))
        start = time.perf_counter()
        label = "clean" if quality is None else f"Q={quality}" if codec == "jpeg" else f"{codec} q={quality}"
        scores = task_scores(t, model, m, transform, dev, batch_size, workers, f"{model_name} {label}", corrector,
                             confidence, precision)
        predictions["clean" if quality is None else f"q{quality}"] = scores.pop("predictions")
        row = {"task": task, "model": model_name, "mitigation": mitigation, "dataset": m.dataset,
               "codec": codec, "quality": quality,
               "bits_per_pixel": None if quality is None else m.source.get("bits_per_pixel"), **scores}
        used = {**weights, **provenance.file_inputs({"manifest": path}), **corrector_input}
        # another codec's encoder settings and library versions (its set's manifest has them too)
        encoder = m.source.get("encoder") if quality is not None and codec != "jpeg" else None
        row["provenance"] = provenance.record(inputs=used, params={**params, "encoder": encoder} if encoder else params,
                                              rule=rule, wall_time_s=time.perf_counter() - start,
                                              device=device_name(dev), git=git)
        row = {"id": provenance.row_id(row), **row}
        rows.append(row)
        field, what = t.METRIC
        print(f"{model_name} {mitigation} {label}: {what} {scores[field]:.2f} "
              f"[{scores[f'{field}_low']:.2f}, {scores[f'{field}_high']:.2f}] ({scores['n_images']} images)",
              flush=True)
    out = {"task": task, "model": model_name, "mitigation": mitigation}
    return {**out, **({"codec": codec} if codec != "jpeg" else {}), "rows": rows, "predictions": predictions}
