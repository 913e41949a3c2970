"""A manifest names the images of one split of one dataset, in place, with their labels.

It is a JSON file: {"format", "dataset", "split", "root", "classes", "images": [{"path", "label"[, "sha256"]}],
"source": {...}}. `root` is absolute (user datasets are referenced where they lie, never copied) or relative to the
manifest's own folder (files we wrote ourselves, so a results/ folder can be moved). sha256 is recorded for the
files we write (generated and compressed images); a user's dataset is identified by the manifest's own hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from jpegstudy import atomic

FORMAT = "jpegstudy-manifest/1"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file."""


@dataclass
class Manifest:
    dataset: str
    split: str
    root: str
    classes: list[str]
    images: list[dict]
    source: dict = field(default_factory=dict)
    location: Path | None = None  # where it was read from; resolves a relative root

    @property
    def root_dir(self) -> Path:
        root = Path(self.root)
        if not root.is_absolute() and self.location is not None:
            root = self.location.parent / root
        return root

    def path_of(self, i: int) -> Path:
        return self.root_dir / self.images[i]["path"]

    @property
    def labels(self) -> list[int]:
        return [im["label"] for im in self.images]

    def to_json(self) -> dict:
        return {"format": FORMAT, "dataset": self.dataset, "split": self.split, "root": self.root,
                "classes": self.classes, "source": self.source, "images": self.images}

    def write(self, path: str | os.PathLike) -> None:
        atomic.write_json(path, self.to_json())


def read(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a {FORMAT} manifest")
    for key in ("dataset", "split", "root", "classes", "images"):
        if key not in obj:
            raise ManifestError(f"{path}: missing key {key!r}")
    return Manifest(obj["dataset"], obj["split"], obj["root"], obj["classes"], obj["images"],
                    obj.get("source", {}), location=path)
