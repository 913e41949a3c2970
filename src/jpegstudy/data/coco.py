"""COCO detection / instance segmentation data, referenced in place through a manifest; read with pycocotools.

The layout, as COCO 2017 is distributed:

    <coco>/train2017/000000000009.jpg ...          images, named by their image id
    <coco>/val2017/000000000139.jpg ...
    <coco>/annotations/instances_train2017.json    images, annotations (bbox, area, segmentation, iscrowd), categories
    <coco>/annotations/instances_val2017.json

A split is an images folder and its instances json, both referenced where they lie, never copied. The manifest lists
the images ({"path": file name relative to the folder, "id", "width", "height"[, "sha256"]}, ascending image id) and
records the json's path and sha256 in `source`; boxes and masks are read from the json itself whenever they are
needed (load_annotations), which refuses a json changed since the manifest was made.

Class ids: COCO's category ids have gaps (1..90, 80 of them used). Class index i is the i-th category in ascending
id order: manifest.classes[i] is its name, source["category_ids"][i] its id. Training targets (to_targets) label it
i + 1, since torchvision's detectors reserve label 0 for the background. (torchvision's COCO-pretrained weights
instead predict the category id itself, over 91 labels with "N/A" in the gaps.)

Documented handling, COCO's own:
- iscrowd=1 annotations stay in the json and in load_annotations' COCO object: COCOeval treats them as "ignore"
  regions (a detection on one is neither a true nor a false positive); they are never training targets.
- degenerate boxes (width or height <= 0) are skipped: counted and named once when the manifest is made, recorded
  in source["degenerate_ann_ids"], and left out of load_annotations' COCO object and of the training targets.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from jpegstudy.data.images import map_checked, read_rgb
from jpegstudy.data.manifest import Manifest

REQUIRED = {  # what COCOeval and the loaders read of each entry
    "images": ("id", "file_name", "width", "height"),
    "categories": ("id", "name"),
    "annotations": ("id", "image_id", "category_id", "bbox", "area", "iscrowd"),
}
NOUN = {"images": "image", "categories": "category", "annotations": "annotation"}


class CocoLayoutError(ValueError):
    """An annotation file or images folder that cannot be used; the message is one line naming the file."""


def manifest(images_dir: str | os.PathLike, annotations_json: str | os.PathLike, split: str, dataset: str = "coco",
             check: bool = True, workers: int = 1, relative_to: str | os.PathLike | None = None) -> Manifest:
    """List a COCO split in place. Paths are absolute, or relative to `relative_to` (the folder the manifest will be
    written in) for files we wrote. With `check`, every image is decoded (in `workers` processes), its size checked
    against the json and its sha256 recorded."""
    images_dir = Path(images_dir).expanduser().absolute()
    json_path = Path(annotations_json).expanduser().absolute()
    obj, digest = _read(json_path)
    images, categories, degenerate = _validate(json_path, obj)
    if not images_dir.is_dir():
        raise CocoLayoutError(f"{images_dir}: {'not a folder' if images_dir.exists() else 'no such folder'}")
    if degenerate:
        named = ", ".join(map(str, degenerate[:10])) + (", ..." if len(degenerate) > 10 else "")
        print(f"{json_path}: {len(degenerate)} annotation(s) with a degenerate box (width or height <= 0) skipped: "
              f"ids {named}", file=sys.stderr)
    entries = [{"path": im["file_name"], "id": im["id"], "width": im["width"], "height": im["height"]}
               for im in sorted(images.values(), key=lambda im: im["id"])]
    if check:
        jobs = [(images_dir / e["path"], e["id"], e["width"], e["height"], json_path) for e in entries]
        digests = map_checked(_check_image, jobs, workers, chunksize=64)
        for e, d in zip(entries, digests):
            e["sha256"] = d
    ordered = sorted(categories)
    source = {"layout": "coco", "annotations": _where(json_path, relative_to), "annotations_sha256": digest,
              "category_ids": ordered, "degenerate_ann_ids": degenerate}
    return Manifest(dataset=dataset, split=split, root=_where(images_dir, relative_to),
                    classes=[categories[c]["name"] for c in ordered], images=entries, source=source)


def load_annotations(m: Manifest):
    """The pycocotools COCO object of a manifest's json, refused if the file changed since the manifest was made."""
    if "annotations" not in m.source:
        raise CocoLayoutError(f"{m.location or f'{m.dataset}/{m.split}'}: not a COCO manifest (no annotations file)")
    path = Path(m.source["annotations"])
    if not path.is_absolute() and m.location is not None:
        path = m.location.parent / path
    obj, digest = _read(path)
    if digest != m.source["annotations_sha256"]:
        raise CocoLayoutError(f"{path}: its sha256 differs from the manifest's; the file changed after it was listed "
                              "(rerun the rule that wrote the manifest)")
    skip = set(m.source.get("degenerate_ann_ids", []))
    obj["annotations"] = [a for a in obj["annotations"] if a["id"] not in skip]
    return _index(obj)


def to_targets(coco, image_id: int, category_ids: list[int]) -> dict:
    """torchvision's detection target for one image: boxes (N, 4) float32 x1 y1 x2 y2, labels int64 (class index
    + 1), masks (N, H, W) uint8 (polygons and RLE alike; only when every annotation has a segmentation), area,
    iscrowd. Crowd regions and degenerate boxes are not targets."""
    import torch  # here, so that listing a dataset does not import torch

    if image_id not in coco.imgs:
        raise CocoLayoutError(f"image id {image_id} is not in the annotations")
    index = {c: i for i, c in enumerate(category_ids)}
    anns = [a for a in coco.imgToAnns[image_id]
            if not a["iscrowd"] and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    for a in anns:
        if a["category_id"] not in index:
            raise CocoLayoutError(f"annotation {a['id']}: category_id {a['category_id']} is not among the classes")
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([index[a["category_id"]] + 1 for a in anns], dtype=torch.int64),
        "image_id": image_id,
        "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
        "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
    }
    if all("segmentation" in a for a in anns):
        info = coco.imgs[image_id]
        masks = [coco.annToMask(a) for a in anns]
        target["masks"] = torch.from_numpy(np.stack(masks) if masks else
                                           np.zeros((0, info["height"], info["width"]), np.uint8))
    return target


def _read(path: Path) -> tuple[dict, str]:
    """The parsed json and the sha256 of the very bytes parsed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CocoLayoutError(f"{path}: annotation file not found") from None
    except IsADirectoryError:
        raise CocoLayoutError(f"{path}: a folder, not an annotation file") from None
    try:
        obj = json.loads(data)
    except UnicodeDecodeError:
        raise CocoLayoutError(f"{path}: not a text file; expected a COCO annotation json") from None
    except json.JSONDecodeError as e:
        raise CocoLayoutError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict):
        raise CocoLayoutError(f"{path}: not a COCO annotation file (a JSON object with 'images', 'annotations', "
                              "'categories' expected)")
    missing = [key for key in REQUIRED if not isinstance(obj.get(key), list)]
    if missing:
        raise CocoLayoutError(f"{path}: not a COCO annotation file (no {' or '.join(map(repr, missing))} list)")
    return obj, hashlib.sha256(data).hexdigest()


def _validate(path: Path, obj: dict) -> tuple[dict, dict, list[int]]:
    """images and categories by id, and the ids of annotations with degenerate boxes; any inconsistency raises."""
    images, categories, annotations = (_entries(path, obj, key) for key in ("images", "categories", "annotations"))
    degenerate = []
    for ann_id, a in annotations.items():
        if a["image_id"] not in images:
            raise CocoLayoutError(f"{path}: annotation {ann_id} names image_id {a['image_id']}, which is not in "
                                  "'images'")
        if a["category_id"] not in categories:
            raise CocoLayoutError(f"{path}: annotation {ann_id} names category_id {a['category_id']}, which is not in "
                                  "'categories'")
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise CocoLayoutError(f"{path}: annotation {ann_id} has bbox {str(box)[:60]}, not [x, y, width, height]")
        if box[2] <= 0 or box[3] <= 0:
            degenerate.append(ann_id)
    return images, categories, degenerate


def _entries(path: Path, obj: dict, key: str) -> dict:
    """The entries of obj[key] by id, each with the keys REQUIRED of it and an id of its own."""
    by_id = {}
    for n, entry in enumerate(obj[key]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise CocoLayoutError(f"{path}: {key}[{n}] has no 'id'")
        missing = [k for k in REQUIRED[key] if k not in entry]
        if missing:
            raise CocoLayoutError(f"{path}: {NOUN[key]} {entry['id']} has no {missing[0]!r}")
        if entry["id"] in by_id:
            raise CocoLayoutError(f"{path}: {NOUN[key]} id {entry['id']} appears twice in {key!r}")
        by_id[entry["id"]] = entry
    return by_id


def _check_image(job: tuple[Path, int, int, int, Path]) -> str:
    """Decode one listed image (a bad one raises, naming it) and return its sha256; its size must be the json's."""
    path, image_id, width, height, json_path = job
    if not path.is_file():
        raise CocoLayoutError(f"{path}: no such file (image {image_id} of {json_path})")
    image, digest = read_rgb(path)
    if image.size != (width, height):
        raise CocoLayoutError(f"{path}: {image.size[0]}x{image.size[1]} pixels, but image {image_id} of {json_path} "
                              f"is {width}x{height}")
    return digest


def _index(obj: dict):
    """A pycocotools COCO object of an already parsed json, without its progress prints."""
    coco = COCO()
    coco.dataset = obj
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _where(path: Path, relative_to: str | os.PathLike | None) -> str:
    path = path.resolve()
    return str(path) if relative_to is None else os.path.relpath(path, Path(relative_to).expanduser().resolve())
