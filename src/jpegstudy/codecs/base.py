"""What every codec is: the interface the compress stage, the training loops and evaluation call."""

from __future__ import annotations

import io

from PIL import Image


class CodecError(ValueError):
    """An unknown codec, a quality outside its range or its library missing: one line naming it."""


def as_integer(value) -> int | None:
    """A quality as written in a config or on a command line (an int, or a string of digits), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def bits_per_pixel(n_bytes: int, width: int, height: int) -> float:
    """The rate of a file: its bytes x 8 over the image's pixels (every byte counted: headers are paid for too)."""
    return n_bytes * 8 / (width * height)


class Codec:
    name = ""
    label = ""
    suffix = ""
    quality_range = (1, 100)
    quality_meaning = "quality"
    # A codec whose files Pillow cannot open (the learned one) has its decode written beside each file, as PNG.
    pillow_decodes = True

    def check_quality(self, quality) -> int:
        low, high = self.quality_range
        q = as_integer(quality)
        if q is None or not low <= q <= high:
            raise CodecError(f"{self.name} quality must be an integer in [{low}, {high}] ({self.quality_meaning}),"
                             f" got {quality!r}")
        return q

    def encode(self, image: Image.Image, quality: int) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    def roundtrip(self, image: Image.Image, quality: int) -> Image.Image:
        """What a model sees of `image` stored at `quality`: its decode (training compresses on the fly)."""
        return self.decode(self.encode(image, quality))

    def settings(self) -> dict:
        """The encoder's settings and library versions, recorded in each compressed set's manifest."""
        raise NotImplementedError

    def describe(self, quality: int) -> str:
        return f"{self.label} {self.quality_meaning} {quality}"
