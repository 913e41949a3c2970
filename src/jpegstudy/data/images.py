"""Reading images from disk into RGB, the one place where odd files are handled.

Documented handling: grayscale (16-bit ones scaled to 8 bits), palette and CMYK images (ImageNet has a few of each)
are converted to RGB; images with transparency are composited onto white, as a viewer would show them. Anything that
does not decode completely (a truncated or zero-byte file, a file that is not an image) raises BadImageError naming
the file.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class BadImageError(ValueError):
    """An image file that cannot be decoded; the message is one line and names the file."""


def load_rgb(path: str | os.PathLike, sha256: str | None = None) -> Image.Image:
    """The image as RGB. With `sha256` (a manifest's record of the file), the bytes must still be those."""
    return decode_rgb(verified_bytes(path, sha256), path)


def read_rgb(path: str | os.PathLike) -> tuple[Image.Image, str]:
    """The image as RGB and the sha256 of the file's bytes, which are read once."""
    data = verified_bytes(path)
    return decode_rgb(data, path), hashlib.sha256(data).hexdigest()


def verified_bytes(path: str | os.PathLike, sha256: str | None = None) -> bytes:
    """The file's bytes; with `sha256`, only if they are still the ones a manifest recorded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(f"{path}: no such file") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise BadImageError(f"{path}: its sha256 differs from the manifest's; the file changed after it was "
                            "listed (rerun the rule that wrote the manifest)")
    return data


def decode_rgb(data: bytes, path: str | os.PathLike) -> Image.Image:
    """Decode a file's bytes to RGB; `path` names it in errors."""
    try:
        try:
            return _decode(data)
        except UnidentifiedImageError:
            from jpegstudy.codecs.pillow_codecs import register_openers

            # HEIF and JPEG XL files (codecs/): Pillow knows them once their plug-ins are registered, on first need.
            if not register_openers():
                raise
            return _decode(data)
    except UnidentifiedImageError:
        what = "empty file (0 bytes)" if not data else "not an image Pillow can read"
        raise BadImageError(f"{path}: {what}") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadImageError(f"{path}: cannot decode image ({reason})") from None


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decode now, so a truncated file fails here and not inside a model's transform
        return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode.startswith("I;16"):
        # Pillow would clip 16-bit values to 255 (a white image); keep the 8 most significant bits instead.
        eight = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(eight, "L").convert("RGB")
    return im.convert("RGB")  # L, P, CMYK (Pillow undoes Adobe's inverted CMYK), ...


def map_checked(check, jobs: list, workers: int = 1, chunksize: int = 32) -> list:
    """`check` of every job, in order: in `workers` processes when more than one (the first error raises)."""
    if workers <= 1:
        return [check(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(check, jobs, chunksize=chunksize))
