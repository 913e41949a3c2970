"""What a corrector sees of a batch of JPEGs: the decoded pixels and the file's own DCT coefficients and tables.

Training compresses on the fly (from_images); evaluation reads the compressed files written by the compress rule
(from_files). Either way the pixels are libjpeg's decode of the very file the coefficients come from.

Another codec (codecs/) has no coefficients to give: its batches carry the decoded pixels only, for the
pixel-domain corrector (ARCNN) the codec study trains (Degradation says which codec training compresses with).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from jpegstudy import jpeg

# The paper's training range: every training image is compressed at a quality drawn uniformly from [10, 90].
QUALITY_RANGE = (10, 90)


@dataclass
class JpegBatch:
    rgb: torch.Tensor  # (N, 3, h, w) float in [0, 1]: the decoded JPEGs
    coefficients: jpeg.CoefficientBatch | None  # None: another codec's decode, pixels only

    def to(self, device) -> JpegBatch:
        return JpegBatch(self.rgb.to(device), None if self.coefficients is None else self.coefficients.to(device))


def _pixels(data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 (3, h, w) decode of a JPEG, cropped to `size` (dropping the padding compress_coefficients added)."""
    rgb = np.asarray(jpeg.decode(data))
    if size is not None:
        rgb = rgb[: size[0], : size[1]]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def from_images(images: torch.Tensor, qualities: list[int]) -> JpegBatch:
    """Compress each uint8 (3, h, w) image at its quality (libjpeg, as the compress rule does) and read it back."""
    rgb, coefs = [], []
    for image, q in zip(images, qualities):
        data, c = jpeg.compress_coefficients(Image.fromarray(image.permute(1, 2, 0).numpy()), q)
        rgb.append(_pixels(data, c.size))
        coefs.append(c)
    return JpegBatch(torch.stack(rgb).float() / 255, jpeg.stack_coefficients(coefs))


def from_files(files: list[bytes]) -> list[tuple[list[int], JpegBatch]]:
    """The JPEG files' own decode and coefficients, as batches of equal-sized images: (indices into files, batch)."""
    coefs = [jpeg.read_coefficients(data) for data in files]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(coefs):
        groups.setdefault((c.size, tuple(c.y.shape)), []).append(i)
    out = []
    for idx in groups.values():
        rgb = torch.stack([_pixels(files[i], coefs[i].size) for i in idx]).float() / 255
        out.append((idx, JpegBatch(rgb, jpeg.stack_coefficients([coefs[i] for i in idx]))))
    return out


def decoded(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """Only the decoded JPEGs, (N, 3, h, w) in [0, 1] (fine-tuning needs no coefficients)."""
    return torch.stack([_pixels(jpeg.compress(Image.fromarray(im.permute(1, 2, 0).numpy()), q))
                        for im, q in zip(images, qualities)]).float() / 255


def from_pixels(images: list[Image.Image]) -> list[tuple[list[int], JpegBatch]]:
    """Decoded images of another codec as batches of equal-sized ones, pixels only: (indices, batch)."""
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.size, []).append(i)
    return [(idx, JpegBatch(torch.stack([_tensor(images[i]) for i in idx]).float() / 255, None))
            for idx in groups.values()]


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


@dataclass(frozen=True)
class Degradation:
    """How a training loop compresses its images on the fly: JPEG (the study's; a corrector gets the coefficients
    too) or another codec (its decode only), at a quality drawn uniformly from `quality_range` per image."""
    codec: object = None  # a codecs.Codec; None: JPEG through libjpeg's coefficients (from_images)
    quality_range: tuple[int, int] = QUALITY_RANGE
    name: str = field(default="jpeg")
    # The learned codec has networks at some qualities only: it draws among those.
    choices: tuple[int, ...] | None = None

    def qualities(self, n: int, generator: torch.Generator) -> list[int]:
        if self.choices:
            return [self.choices[i] for i in torch.randint(0, len(self.choices), (n,), generator=generator).tolist()]
        low, high = self.quality_range
        return torch.randint(low, high + 1, (n,), generator=generator).tolist()

    def batch(self, images: torch.Tensor, qualities: list[int]) -> JpegBatch:
        if self.codec is None:
            return from_images(images, qualities)
        return JpegBatch(self.decoded(images, qualities), None)

    def decoded(self, images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
        if self.codec is None:
            return decoded(images, qualities)
        return torch.stack([_tensor(self.codec.roundtrip(Image.fromarray(im.permute(1, 2, 0).numpy()), q))
                            for im, q in zip(images, qualities)]).float() / 255

    def settings(self) -> dict:
        """What a trainer records of it (nothing for the paper's JPEG range, which every recipe states)."""
        if self.codec is None and self.quality_range == QUALITY_RANGE:
            return {}
        return {"codec": self.name, "quality_range": list(self.quality_range),
                **({"qualities": list(self.choices)} if self.choices else {}),
                **({"encoder": self.codec.settings()} if self.codec is not None else {})}


JPEG = Degradation()
