"""Image codecs as plug-ins: JPEG (the study's), WebP, JPEG 2000, AVIF, HEIF, JPEG XL and a learned codec.

A codec is a name, its quality parameter and range, encode (RGB image -> the file's bytes) and decode, the suffix of
the file it writes and the settings it records (library versions, speed/effort, chroma subsampling). A quality number
means nothing across codecs; bits per pixel (file bytes x 8 / pixels) does, so every compressed set records it.

Pillow's codecs are asked for by their libraries only when used: a missing library is one line naming it
(`available`), checked with the config before any job runs.
"""

from __future__ import annotations

import importlib.util

from jpegstudy.codecs.base import Codec, CodecError, bits_per_pixel
from jpegstudy.codecs.pillow_codecs import PILLOW_CODECS

# Nothing here imports torch (the config check runs before any job); codecs/learned.py does, when asked for.
LEARNED = "learned"
LEARNED_RANGE = (1, 8)  # CompressAI's quality index (its zoo's eight rate-distortion trade-offs)
NAMES = (*PILLOW_CODECS, LEARNED)


def known(name: str) -> None:
    if name not in NAMES:
        raise CodecError(f"unknown codec {name!r}; known: {', '.join(NAMES)}")


def get(name: str, weights: dict | None = None) -> Codec:
    """The codec `name`; the learned one needs `weights`: {quality: model file} (codecs/learned.py)."""
    known(name)
    if name == LEARNED:
        from jpegstudy.codecs.learned import LearnedCodec

        return LearnedCodec(weights or {})
    return PILLOW_CODECS[name]()


def quality_range(name: str) -> tuple[int, int]:
    known(name)
    return LEARNED_RANGE if name == LEARNED else PILLOW_CODECS[name].quality_range


def missing_library(name: str) -> str | None:
    """Why codec `name` cannot run here (its library is not installed, or Pillow was built without it), or None."""
    known(name)
    if name == LEARNED:
        if importlib.util.find_spec("compressai") is None:
            return "codec learned: the package compressai is not installed (pip install compressai)"
        return None
    return PILLOW_CODECS[name].missing_library()


def split_name(codec: str, quality: int, base: str = "val") -> str:
    """The split a codec's quality of `base` is written to: JPEG's keeps its name of before (val-q{q})."""
    return f"{base}-q{quality}" if codec == "jpeg" else f"{base}-{codec}-q{quality}"


__all__ = ["Codec", "CodecError", "NAMES", "LEARNED", "LEARNED_RANGE", "bits_per_pixel", "get", "known",
           "missing_library", "quality_range", "split_name"]
