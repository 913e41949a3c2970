"""ADE20K scene parsing data (MIT's SceneParsing benchmark), referenced in place through a manifest.

The layout, as ADEChallengeData2016.zip is distributed:

    <ade>/images/training/ADE_train_00000001.jpg ...        RGB images
    <ade>/images/validation/ADE_val_00000001.jpg ...
    <ade>/annotations/training/ADE_train_00000001.png ...   label maps: uint8, 0 = "other" (ignored), 1..150 classes
    <ade>/annotations/validation/ADE_val_00000001.png ...
    <ade>/objectInfo150.txt                                  Idx, Ratio, Train, Val, Name: the class of label Idx

An image and its label map share a file stem. The manifest lists {"path": the image relative to the images folder,
"annotation": the label map relative to the annotations folder, "width", "height"[, "sha256", "annotation_sha256"]}
in file-name order, and records both folders in `source` ("layout": "ade20k"); the compressed copies keep each
entry's annotation, whose label map is never compressed. The embedded generator writes the same layout.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from jpegstudy.data.images import map_checked, read_rgb
from jpegstudy.data.manifest import Manifest

SPLITS = {"train": "training", "val": "validation"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}  # ADE's are .jpg; the embedded originals are lossless .png
CLASS_FILE = "objectInfo150.txt"


class AdeLayoutError(ValueError):
    """A folder, class list or label map that cannot be used; the message is one line naming the file."""


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names by label (1..K) from an objectInfo150.txt: a header line, then `Idx Ratio Train Val Name` rows
    (tab-separated; a name may hold spaces and commas: "building, edifice"). Only the first synonym is kept."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise AdeLayoutError(f"{path}: class list not found (ADEChallengeData2016 ships objectInfo150.txt)") from None
    names = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split(maxsplit=4)
        if len(fields) < 5 or not fields[0].strip().isdigit():
            raise AdeLayoutError(f"{path}: line {n} is not 'Idx Ratio Train Val Name': {line[:60]!r}")
        names[int(fields[0])] = fields[4].split(",")[0].strip()
    if sorted(names) != list(range(1, len(names) + 1)):
        raise AdeLayoutError(f"{path}: class indices are not 1..{len(names)}")
    return [names[i] for i in range(1, len(names) + 1)]


def write_classes(path: str | os.PathLike, classes: list[str]) -> None:
    """An objectInfo150.txt of `classes` (label i + 1 is classes[i]), in ADE's own columns."""
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i + 1}\t0\t0\t0\t{name}" for i, name in enumerate(classes)]
    Path(path).write_text("\n".join(rows) + "\n")


def manifest(root: str | os.PathLike, split: str, dataset: str = "ade20k", check: bool = True, workers: int = 1,
             relative_to: str | os.PathLike | None = None) -> Manifest:
    """List an ADE20K split in place. With `check`, every image and label map is decoded (in `workers` processes):
    a label map must be a one-channel map of the image's size with values 0..K, and both sha256 are recorded.
    Paths are absolute, or relative to `relative_to` (the manifest's folder) for files we wrote."""
    if split not in SPLITS:
        raise AdeLayoutError(f"split {split!r}: ADE20K has {', '.join(SPLITS)}")
    root = Path(root).expanduser().absolute()
    classes = read_classes(root / CLASS_FILE)
    images_dir, labels_dir = root / "images" / SPLITS[split], root / "annotations" / SPLITS[split]
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise AdeLayoutError(f"{folder}: no such folder (ADEChallengeData2016 layout: images/ and annotations/ "
                                 "with training/ and validation/)")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() == ".png"}
    for stem in sorted(images.keys() - labels.keys())[:1]:
        raise AdeLayoutError(f"{images[stem]}: no label map {labels_dir / (stem + '.png')}")
    for stem in sorted(labels.keys() - images.keys())[:1]:
        raise AdeLayoutError(f"{labels[stem]}: a label map without an image in {images_dir}")
    if not images:
        raise AdeLayoutError(f"{images_dir}: no images")
    entries = [{"path": images[s].name, "annotation": labels[s].name} for s in sorted(images)]
    jobs = [(images[s], labels[s], len(classes)) for s in sorted(images)]
    if check:
        checked = map_checked(_check_pair, jobs, workers)
        for entry, (width, height, digest, label_digest) in zip(entries, checked):
            entry.update(width=width, height=height, sha256=digest, annotation_sha256=label_digest)
    source = {"layout": "ade20k", "annotations": _where(labels_dir, relative_to),
              "class_file": _where(root / CLASS_FILE, relative_to)}
    return Manifest(dataset=dataset, split=split, root=_where(images_dir, relative_to), classes=classes,
                    images=entries, source=source)


def _check_pair(job: tuple[Path, Path, int]) -> tuple[int, int, str, str]:
    """(width, height, image sha256, label map sha256) of one pair, each decoded and checked against the other."""
    image_path, label_path, num_classes = job
    image, digest = read_rgb(image_path)
    label, label_digest = _decode_label(label_path, num_classes)
    if label.shape != (image.height, image.width):
        raise AdeLayoutError(f"{label_path}: {label.shape[1]}x{label.shape[0]} pixels, but its image {image_path.name} "
                             f"is {image.width}x{image.height}")
    return image.width, image.height, digest, label_digest


def _decode_label(path: Path, num_classes: int) -> tuple[np.ndarray, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdeLayoutError(f"{path}: no such label map") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "P"):
                raise AdeLayoutError(f"{path}: a {im.mode} image; a label map has one 8-bit channel (mode L)")
            label = np.array(im)
    except (OSError, SyntaxError) as e:
        raise AdeLayoutError(f"{path}: cannot decode label map ({str(e).splitlines()[0] if str(e) else 'bad file'})"
                             ) from None
    top = int(label.max()) if label.size else 0
    if top > num_classes:
        raise AdeLayoutError(f"{path}: label {top} above the {num_classes} classes of the class list")
    return label, hashlib.sha256(data).hexdigest()


def label_path(m: Manifest, entry: dict) -> Path:
    """The label map file of a manifest entry (the annotations folder is relative to the manifest's own folder)."""
    if "annotations" not in m.source or "annotation" not in entry:
        raise AdeLayoutError(f"{m.location or f'{m.dataset}/{m.split}'}: not an ADE20K-layout set (no label maps)")
    folder = Path(m.source["annotations"])
    if not folder.is_absolute() and m.location is not None:
        folder = m.location.parent / folder
    return folder / entry["annotation"]


def load_label(m: Manifest, entry: dict) -> np.ndarray:
    """An entry's label map (H, W) uint8, refused if the file changed since the manifest was made."""
    path = label_path(m, entry)
    label, digest = _decode_label(path, len(m.classes))
    expected = entry.get("annotation_sha256")
    if expected is not None and digest != expected:
        raise AdeLayoutError(f"{path}: its sha256 differs from the manifest's; the file changed after it was listed")
    width, height = entry.get("width"), entry.get("height")
    if width is not None and label.shape != (height, width):
        raise AdeLayoutError(f"{path}: {label.shape[1]}x{label.shape[0]} pixels, but its image is {width}x{height}")
    return label


def is_ade(m: Manifest) -> bool:
    return m.source.get("layout") == "ade20k"


def _where(path: Path, relative_to: str | os.PathLike | None) -> str:
    path = path.resolve()
    return str(path) if relative_to is None else os.path.relpath(path, Path(relative_to).expanduser().resolve())

