"""Evaluate one (task model, mitigation) on the clean set and every compressed set: one job, the model loaded once.

Writes one metric file: {"task", "model", "mitigation", "dataset", "rows": [...]}, one row per quality (None for the
clean reference), each with top-1, top-5, n_images, its provenance record and a row id.
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from jpegstudy import provenance
from jpegstudy.data import manifest as manifests
from jpegstudy.data.loader import loader
from jpegstudy.devices import device_name, pick_device
from jpegstudy.tasks import classification


@torch.no_grad()
def classification_scores(model, manifest, transform, device, batch_size: int, workers: int, desc: str) -> dict:
    top1 = top5 = n = 0
    for x, y in tqdm(loader(manifest, transform, batch_size, workers), desc=desc, mininterval=10):
        logits = model(x.to(device))
        y = y.to(device)
        top1 += classification.topk_correct(logits, y, 1).sum().item()
        top5 += classification.topk_correct(logits, y, 5).sum().item()
        n += len(y)
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "n_images": n}


MITIGATION = "none"  # the only one so far: the model as it is, in front of the decoded JPEG


def evaluate_classification(*, model_name: str, reference: str, clean: str,
                            compressed: dict[int, str], params: dict, rule: str, batch_size: int, workers: int,
                            device: str = "auto") -> dict:
    dev = pick_device(device)
    model, meta = classification.load_reference(reference)
    model.to(dev)
    transform = classification.eval_transform(meta["transform"])
    git = provenance.git_state()
    weights = provenance.file_inputs({"weights": reference})
    if meta.get("source_sha256"):  # the user's checkpoint the reference was resolved from
        weights["checkpoint"] = {"path": meta["source"], "sha256": meta["source_sha256"]}
    rows = []
    sets = [(None, clean)] + sorted(compressed.items())
    for quality, path in sets:
        m = manifests.read(path)
        if m.classes != meta["classes"]:
            raise ValueError(f"{path}: its classes differ from those {reference} was trained on")
        start = time.perf_counter()
        label = "clean" if quality is None else f"Q={quality}"
        scores = classification_scores(model, m, transform, dev, batch_size, workers, f"{model_name} {label}")
        row = {"task": "classification", "model": model_name, "mitigation": MITIGATION, "dataset": m.dataset,
               "quality": quality, **scores}
        row["provenance"] = provenance.record(
            inputs={**weights, **provenance.file_inputs({"manifest": path})}, params=params, rule=rule,
            wall_time_s=time.perf_counter() - start, device=device_name(dev), git=git)
        row = {"id": provenance.row_id(row), **row}
        rows.append(row)
        print(f"{model_name} {MITIGATION} {label}: top-1 {scores['top1']:.2f} top-5 {scores['top5']:.2f} "
              f"({scores['n_images']} images)", flush=True)
    return {"task": "classification", "model": model_name, "mitigation": MITIGATION, "rows": rows}
