"""Batches over manifests: decode each file to RGB, then apply the model's own transform."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from jpegstudy.data.images import load_rgb
from jpegstudy.data.manifest import Manifest


def label(entry: dict):
    """A classification entry's target."""
    return entry["label"]


class ManifestDataset(torch.utils.data.Dataset):
    """(transformed image, target) of each entry; `target(entry)` is the task's (a label, a COCO image id)."""

    def __init__(self, manifest: Manifest, transform, target=label):
        self.manifest = manifest
        self.transform = transform
        self.target = target

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        entry = self.manifest.images[i]
        # Where the manifest recorded the file's sha256, the image is only used if its bytes are still those: a
        # number is then measured on exactly the bytes its provenance names.
        return self.transform(load_rgb(self.manifest.path_of(i), entry.get("sha256"))), self.target(entry)


def loader(manifest: Manifest, transform, batch_size: int, workers: int = 0, threads: int | None = None,
           target=label, collate=torch.utils.data.default_collate, pin_memory: bool = False):
    """(images, targets) batches in manifest order (evaluation is deterministic). `workers` > 0: DataLoader
    processes decode (pays where cores are spare; `pin_memory` for a GPU's asynchronous copies); 0: `threads`
    threads of this process do (prefetched_batches). `collate` makes a batch of (image, target) items: stacked by
    default; a list where image sizes differ."""
    dataset = ManifestDataset(manifest, transform, target)
    if workers > 0:
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                           collate_fn=collate, pin_memory=pin_memory)
    return prefetched_batches(dataset, batch_size, threads or torch.get_num_threads(), collate=collate)


def prefetched_batches(dataset, batch_size: int, threads: int, ahead: int = 2,
                       collate=torch.utils.data.default_collate):
    """The batches DataLoader(dataset, batch_size) gives with no workers, the same tensors, but the items of the
    next `ahead` batches are made by a pool of threads while the caller runs the model on this one.

    Why threads: Pillow's decode and resize release the GIL, so they overlap with the model's own threads, with no
    process start, pickling or copy of each batch that DataLoader's workers cost (a worker process was slower on
    2 cores). An item's error is raised when its batch is reached, as DataLoader raises it."""
    starts = deque(range(0, len(dataset), batch_size))
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode") as pool:
        def submit(start: int) -> list:
            return [pool.submit(dataset.__getitem__, i) for i in range(start, min(start + batch_size, len(dataset)))]

        pending = deque(submit(starts.popleft()) for _ in range(min(ahead, len(starts))))
        try:
            while pending:
                items = [f.result() for f in pending.popleft()]
                if starts:
                    pending.append(submit(starts.popleft()))
                yield collate(items)
        finally:  # the caller stopped early or an item failed: drop the work not started yet
            for futures in pending:
                for f in futures:
                    f.cancel()
