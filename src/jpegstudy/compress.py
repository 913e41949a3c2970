"""The `compress` stage: every image of an eval split, at its full resolution, JPEG-compressed at one quality.

The result is a folder of .jpg files mirroring the split's relative paths, with its own manifest (per-file sha256,
and the source manifest's sha256 and the quality as provenance). It is cached on disk, as ImageNet-C does, so that
every evaluation of every model reads the very same bytes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from jpegstudy import atomic, jpeg
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb


def jpeg_name(rel: str) -> str:
    return str(Path(rel).with_suffix(".jpg"))


def _compress_one(args: tuple[Path, str | None, Path, int]) -> str:
    src, src_sha256, dst, quality = args
    data = jpeg.compress(load_rgb(src, src_sha256), quality)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)  # inside a temporary folder: the folder as a whole is renamed into place at the end
    return hashlib.sha256(data).hexdigest()


def _annotations(src: manifests.Manifest, out_dir: Path) -> dict:
    """A COCO or ADE20K split's annotation reference (data/coco.py, data/ade20k.py), or a real/fake set's layout
    (data/forensics.py), carried to its compressed copies, whose ground truth is the original's. Relative paths are
    rebased onto the copy's folder, so results/ stays movable."""
    if src.source.get("layout") == "forensics":  # labels are in the entries; the copies' sources are JPEGs
        return {"layout": "forensics", "groups": src.source.get("groups", []), "counts": src.source.get("counts"),
                "encodings": ["jpeg"], "source_encodings": src.source.get("encodings")}
    if "annotations" not in src.source:
        return {}
    out = {k: src.source[k] for k in ("layout", "annotations", "annotations_sha256", "category_ids",
                                      "degenerate_ann_ids", "class_file") if k in src.source}
    manifest_dir = src.location.parent if src.location is not None else Path(".")
    for key in ("annotations", "class_file"):
        if key in out and not Path(out[key]).is_absolute():
            out[key] = os.path.relpath(manifest_dir / out[key], out_dir)
    return out


def compress_split(manifest_path: str | Path, quality, out_dir: str | Path, manifest_name: str = "manifest.json",
                   workers: int = 1) -> manifests.Manifest:
    q = jpeg.check_quality(quality)
    src = manifests.read(manifest_path)
    names = [jpeg_name(im["path"]) for im in src.images]
    if len(set(names)) != len(names):
        raise ValueError(f"{manifest_path}: two images would both be written as the same .jpg (e.g. a.png and a.jpg)")
    with atomic.output_dir(out_dir) as tmp:
        jobs = [(src.path_of(i), im.get("sha256"), tmp / names[i], q) for i, im in enumerate(src.images)]
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                digests = list(pool.map(_compress_one, jobs, chunksize=64))
        else:
            digests = [_compress_one(job) for job in jobs]
        # Every field of an entry is kept (a label, or a COCO image's id and size): only the file changes.
        images = [{**im, "path": name, "sha256": digest, **({"encoding": "jpeg"} if "encoding" in im else {})}
                  for name, im, digest in zip(names, src.images, digests)]
        out = manifests.Manifest(
            dataset=src.dataset, split=f"{src.split}-q{q}", root=".", classes=src.classes, images=images,
            source={"manifest": str(manifest_path), "manifest_sha256": atomic.sha256_file(manifest_path),
                    "quality": q, "codec": f"{jpeg.libjpeg_version()}, IJG quality {q}, 4:2:0, baseline tables",
                    **_annotations(src, Path(out_dir))})
        out.write(tmp / manifest_name)
    return out
