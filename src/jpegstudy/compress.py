"""The `compress` stage: every image of an eval split, at its full resolution, compressed by one codec (JPEG, the
study's, or another of codecs/) at one quality.

The result is a folder of the codec's files mirroring the split's relative paths, with its own manifest: per file its
sha256, bytes and bits per pixel (bytes x 8 / pixels), and the set's mean rate, the source manifest's sha256, the
quality and the encoder's settings and library versions as provenance. It is cached on disk, as ImageNet-C does, so
that every evaluation of every model reads the very same bytes. A codec Pillow cannot read (the learned one) has each
file's decode written beside it as PNG, and that is what the models read.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from jpegstudy import atomic, codecs, jpeg
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb


def compressed_name(rel: str, suffix: str = ".jpg") -> str:
    """Where a source file's compressed copy goes: its relative path with the codec's suffix."""
    return str(Path(rel).with_suffix(suffix))


def _compress_one(args: tuple[codecs.Codec, Path, str | None, Path, int]) -> dict:
    """The entry fields of one compressed file: its sha256, bytes and bits per pixel (and, for a codec Pillow cannot
    read, the PNG of its decode as the entry's path, the codec's own file as its bitstream)."""
    codec, src, src_sha256, dst, quality = args
    image = load_rgb(src, src_sha256)
    data = codec.encode(image, quality)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)  # inside a temporary folder: the folder as a whole is renamed into place at the end
    digest = hashlib.sha256(data).hexdigest()
    rate = {"bytes": len(data), "bits_per_pixel": codecs.bits_per_pixel(len(data), *image.size)}
    if codec.pillow_decodes:
        return {"sha256": digest, **rate}
    decoded = dst.with_suffix(".png")
    codec.decode_at(data, quality).save(decoded, format="PNG")
    return {"path_suffix": ".png", "sha256": atomic.sha256_file(decoded), "bitstream_sha256": digest, **rate}


def _annotations(src: manifests.Manifest, out_dir: Path, codec: str) -> dict:
    """A COCO or ADE20K split's annotation reference (data/coco.py, data/ade20k.py), or a real/fake set's layout
    (data/forensics.py), carried to its compressed copies, whose ground truth is the original's. Relative paths are
    rebased onto the copy's folder, so results/ stays movable."""
    if src.source.get("layout") == "forensics":  # labels are in the entries; the copies' sources are JPEGs
        return {"layout": "forensics", "groups": src.source.get("groups", []), "counts": src.source.get("counts"),
                "encodings": [codec], "source_encodings": src.source.get("encodings")}
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
                   workers: int = 1, codec: str = "jpeg", codec_weights: dict | None = None) -> manifests.Manifest:
    """`codec_weights`: the learned codec's {quality: network file}."""
    coder = codecs.get(codec, codec_weights)
    q = coder.check_quality(quality)
    src = manifests.read(manifest_path)
    names = [compressed_name(im["path"], coder.suffix) for im in src.images]
    if len(set(names)) != len(names):
        raise ValueError(f"{manifest_path}: two images would both be written as the same {coder.suffix} (e.g. a.png"
                         f" and a.jpg)")
    with atomic.output_dir(out_dir) as tmp:
        jobs = [(coder, src.path_of(i), im.get("sha256"), tmp / names[i], q) for i, im in enumerate(src.images)]
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                files = list(pool.map(_compress_one, jobs, chunksize=64))
        else:
            files = [_compress_one(job) for job in jobs]
        # Every field of an entry is kept (a label, or a COCO image's id and size): only the file changes.
        images = [{**im, **_file_fields(name, f), **({"encoding": codec} if "encoding" in im else {})}
                  for name, im, f in zip(names, src.images, files)]
        rates = [f["bits_per_pixel"] for f in files]
        out = manifests.Manifest(
            dataset=src.dataset, split=codecs.split_name(codec, q, src.split), root=".", classes=src.classes,
            images=images,
            source={"manifest": str(manifest_path), "manifest_sha256": atomic.sha256_file(manifest_path),
                    "quality": q, "codec": _description(coder, q), "codec_name": codec, "encoder": coder.settings(),
                    "bits_per_pixel": sum(rates) / len(rates) if rates else None,
                    **_annotations(src, Path(out_dir), codec)})
        out.write(tmp / manifest_name)
    return out


def _file_fields(name: str, fields: dict) -> dict:
    out = {k: v for k, v in fields.items() if k != "path_suffix"}
    if "path_suffix" not in fields:
        return {"path": name, **out}
    return {"path": str(Path(name).with_suffix(fields["path_suffix"])), "bitstream": name, **out}


def _description(codec: codecs.Codec, quality: int) -> str:
    if codec.name == "jpeg":  # as every JPEG set has said
        return f"{jpeg.libjpeg_version()}, IJG quality {quality}, 4:2:0, baseline tables"
    return f"{codec.settings()['library']}, {codec.describe(quality)}"
