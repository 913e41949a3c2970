"""The JPEG codec of the study.

compress(): libjpeg-turbo (through Pillow) with IJG quality scaling, 4:2:0 chroma subsampling, the accurate integer
DCT and standard Huffman tables, with *baseline* quantization tables: every entry is clamped to 255 so the file is
baseline-compatible (8-bit tables). This is what Pillow, torchvision.io, cv2 and `cjpeg -baseline -quality q` write,
byte for byte (tests/test_jpeg.py checks against cjpeg). Below quality 25 plain `cjpeg` (without -baseline) would
write 16-bit tables with entries above 255, i.e. even stronger quantization; we follow the common tools instead.
"""

from __future__ import annotations

import io

from PIL import Image, features

MIN_QUALITY, MAX_QUALITY = 1, 100


def check_quality(quality) -> int:
    """Return `quality` as an int, or raise a one-line ValueError naming it."""
    q = None
    if isinstance(quality, int) and not isinstance(quality, bool):
        q = quality
    elif isinstance(quality, str) and quality.strip().isdigit():
        q = int(quality)
    if q is None or not MIN_QUALITY <= q <= MAX_QUALITY:
        raise ValueError(f"JPEG quality must be an integer in [{MIN_QUALITY}, {MAX_QUALITY}], got {quality!r}")
    return q


def compress(image: Image.Image, quality: int) -> bytes:
    """Encode an RGB image as a baseline JPEG at IJG `quality` with 4:2:0 subsampling; return the file's bytes."""
    q = check_quality(quality)
    if image.mode != "RGB":
        raise ValueError(f"compress() expects an RGB image, got mode {image.mode!r}")
    buf = io.BytesIO()
    # subsampling=2 is 4:2:0; Pillow calls jpeg_set_quality(..., force_baseline=TRUE), i.e. tables clamped to 255.
    image.save(buf, format="JPEG", quality=q, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """Decode JPEG bytes to an RGB image (libjpeg-turbo's default, accurate IDCT and fancy upsampling)."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def libjpeg_version() -> str:
    """The libjpeg(-turbo) version Pillow was built with; part of every provenance record."""
    turbo = features.version("libjpeg_turbo")
    return f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
