"""GAN-image forensics sets in the CNNDetection layout (Wang et al. 2020), referenced in place through a manifest.

The layout, as CNNDetection's training and test sets are distributed:

    <set>/0_real/*.png ...                  real images (label 0)
    <set>/1_fake/*.png ...                  generated images (label 1)

or, with one level of group folders (the object classes of ProGAN's sets, e.g. progan/airplane/0_real):

    <set>/<group>/0_real/*, <set>/<group>/1_fake/*    for every group folder

The label is the number in the folder's name. Only files with an image suffix are listed (.DS_Store, READMEs and
hidden files such as macOS's ._ copies are ignored). The manifest lists {"path": relative to <set>, "label", "group"
(None without groups)[, "width", "height", "sha256"], "encoding"} sorted by (group, label, file name), and records
in `source` ("layout": "forensics") the groups, the counts of each class and the encodings present: a source that
is already JPEG has lost the traces the study asks about, so "jpeg" vs "lossless" is read from the file's bytes
(with `check`) rather than trusted from its suffix. The embedded study writes its generated set with write_set.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from PIL import Image

from jpegstudy.data.ade20k import _where
from jpegstudy.data.images import decode_rgb, map_checked, verified_bytes
from jpegstudy.data.manifest import Manifest

CLASSES = ["real", "fake"]
FOLDERS = ("0_real", "1_fake")  # label i is FOLDERS[i]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
JPEG_FORMATS = {"JPEG", "MPO"}  # Pillow opens some cameras' JPEGs (with a second preview image) as MPO


class ForensicsLayoutError(ValueError):
    """A set folder that is not in the CNNDetection layout; the message is one line naming the folder or file."""


def manifest(root: str | os.PathLike, split: str, dataset: str = "forensics", check: bool = True, workers: int = 1,
             relative_to: str | os.PathLike | None = None) -> Manifest:
    """List a set in place. With `check`, every image is decoded (in `workers` processes) and its size, sha256 and
    actual encoding recorded; without, nothing is opened and the encoding is taken from the suffix.
    The root is absolute, or relative to `relative_to` (the manifest's folder) for files we wrote."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ForensicsLayoutError(f"{root}: not a folder (a forensics set holds 0_real/ and 1_fake/)")
    groups = _groups(root)
    entries = []
    for folder in [root] + [root / g for g in groups]:
        _refuse_stray_images(folder)
    for group in groups or [None]:
        folder = root if group is None else root / group
        for label, name in enumerate(FOLDERS):
            images = _images(folder, name)
            prefix = name if group is None else f"{group}/{name}"
            entries += [{"path": f"{prefix}/{p.name}", "label": label, "group": group} for p in images]
    entries.sort(key=lambda e: (e["group"] or "", e["label"], e["path"].rsplit("/", 1)[1]))
    if check:
        paths = [root / e["path"] for e in entries]
        checked = map_checked(_check, paths, workers)
        for entry, (width, height, digest, encoding) in zip(entries, checked):
            entry.update(width=width, height=height, sha256=digest, encoding=encoding)
    else:
        for entry in entries:
            entry["encoding"] = "jpeg" if Path(entry["path"]).suffix.lower() in (".jpg", ".jpeg") else "lossless"
    source = {"layout": "forensics", "groups": groups, "encodings": sorted({e["encoding"] for e in entries}),
              "counts": {c: sum(e["label"] == i for e in entries) for i, c in enumerate(CLASSES)}}
    return Manifest(dataset=dataset, split=split, root=_where(root, relative_to), classes=list(CLASSES),
                    images=entries, source=source)


def _groups(root: Path) -> list[str]:
    """The sorted group folders of a set, [] for a set without groups; refuses a set that is neither or both."""
    flat = [name for name in FOLDERS if (root / name).is_dir()]
    others = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in FOLDERS and not p.name.startswith("."))
    # a group must hold 0_real or 1_fake directly: anything nested deeper is not one
    groups = [p for p in others if any((p / name).is_dir() for name in FOLDERS)]
    if flat and groups:
        raise ForensicsLayoutError(f"{root}: mixes both layouts ({'/'.join(flat)} beside group folders such as "
                                   f"{groups[0].name}/)")
    if not groups:
        return []  # a set without groups; _images names a missing 0_real or 1_fake
    for p in others:
        if p not in groups:
            raise ForensicsLayoutError(f"{p}: a group folder without 0_real or 1_fake (other groups, such as "
                                       f"{groups[0].name}/, have them)")
    return [p.name for p in groups]


def _images(folder: Path, name: str) -> list[Path]:
    where = folder / name
    if not where.is_dir():
        raise ForensicsLayoutError(f"{folder}: no {name} folder ({where} not found)")
    images = sorted(p for p in where.iterdir() if _is_image(p))
    if not images:
        raise ForensicsLayoutError(f"{where}: no images")
    return images


def _refuse_stray_images(folder: Path) -> None:
    # an image beside 0_real/1_fake has no label; guessing one would mislabel it silently
    for p in sorted(folder.iterdir()):
        if _is_image(p):
            raise ForensicsLayoutError(f"{p}: an image outside 0_real/1_fake")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _check(path: Path) -> tuple[int, int, str, str]:
    """(width, height, sha256, encoding) of one image, decoded completely (a bad file raises BadImageError)."""
    data = verified_bytes(path)
    image = decode_rgb(data, path)
    with Image.open(io.BytesIO(data)) as im:  # decode_rgb succeeded, so this opens; only the format is read
        encoding = "jpeg" if im.format in JPEG_FORMATS else "lossless"
    return image.width, image.height, hashlib.sha256(data).hexdigest(), encoding


def write_set(out_dir: str | os.PathLike, reals, fakes) -> Path:
    """Write PIL images as lossless PNG: out_dir/0_real/000000.png ..., out_dir/1_fake/000000.png ..."""
    out_dir = Path(out_dir)
    for name, images in zip(FOLDERS, (reals, fakes)):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for n, im in enumerate(images):
            im.save(out_dir / name / f"{n:06d}.png", format="PNG")
    return out_dir


def is_forensics(m: Manifest) -> bool:
    return m.source.get("layout") == "forensics"
