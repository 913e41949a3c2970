"""torch Datasets over manifests: decode each file to RGB, then apply the model's own transform."""

from __future__ import annotations

import torch

from jpegstudy.data.images import load_rgb
from jpegstudy.data.manifest import Manifest


class ManifestDataset(torch.utils.data.Dataset):
    def __init__(self, manifest: Manifest, transform):
        self.manifest = manifest
        self.transform = transform

    def __len__(self) -> int:
        return len(self.manifest.images)

    def __getitem__(self, i: int):
        entry = self.manifest.images[i]
        # Where the manifest recorded the file's sha256, the image is only used if its bytes are still those: a
        # number is then measured on exactly the bytes its provenance names.
        return self.transform(load_rgb(self.manifest.path_of(i), entry.get("sha256"))), entry["label"]


def loader(manifest: Manifest, transform, batch_size: int, workers: int = 0) -> torch.utils.data.DataLoader:
    """In manifest order (evaluation is deterministic); `workers` decode in parallel on big datasets."""
    return torch.utils.data.DataLoader(ManifestDataset(manifest, transform), batch_size=batch_size, shuffle=False,
                                       num_workers=workers)
