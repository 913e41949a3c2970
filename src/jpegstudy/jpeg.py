"""The JPEG codec of the study.

compress(): libjpeg-turbo (through Pillow) with IJG quality scaling, 4:2:0 chroma subsampling, the accurate integer
DCT and standard Huffman tables, with *baseline* quantization tables: every entry is clamped to 255 so the file is
baseline-compatible (8-bit tables). This is what Pillow, torchvision.io, cv2 and `cjpeg -baseline -quality q` write,
byte for byte (tests/test_jpeg.py checks against cjpeg). Below quality 25 plain `cjpeg` (without -baseline) would
write 16-bit tables with entries above 255, i.e. even stronger quantization; we follow the common tools instead.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from dataclasses import dataclass

import jpeglib
import numpy as np
import torch
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


# --- JPEG internals in torch, differentiable (QGAC works on DCT coefficients; TTAC backpropagates through them) ---
# torchjpeg does this but pins torch 2.4.1 exactly, so it cannot be installed beside torch 2.14: our own ~100 lines.

BLOCK = 8


@functools.cache
def _dct_matrix(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix D (row k = frequency k): coefficients = D @ block @ D.T.

    JPEG's forward DCT, F(u,v) = 1/4 C(u) C(v) sum f(x,y) cos(.) cos(.), is exactly this orthonormal transform,
    so libjpeg's dequantized coefficients are the orthonormal DCT of (pixel - 128).
    """
    k = torch.arange(BLOCK, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * torch.pi / (2 * BLOCK)) * (2 / BLOCK) ** 0.5
    d[0] /= 2 ** 0.5
    return d.to(dtype)


def _blockwise(x: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"block transforms need sides that are multiples of {BLOCK}, got {h}x{w}")
    blocks = x.reshape(n, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    out = torch.einsum("ij,ncajbk,kl->ncaibl", left, blocks, right)
    return out.reshape(n, c, h, w)


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 8x8 DCT of every block of (N, C, H, W); each block's 64 coefficients stay an 8x8 tile in
    natural (row-major, not zigzag) order."""
    d = _dct_matrix().to(x.device, x.dtype)
    return _blockwise(x, d, d.T)


def block_idct(x: torch.Tensor) -> torch.Tensor:
    """Inverse of block_dct."""
    d = _dct_matrix().to(x.device, x.dtype)
    return _blockwise(x, d.T, d)


def upsample_chroma_dct(cbcr: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) chroma coefficients of a 4:2:0 image -> (N, C, 2h, 2w) coefficients at full resolution, by
    nearest-neighbour doubling in the pixel domain (QGAC's chroma residual is added to this)."""
    pixels = block_idct(cbcr)
    return block_dct(torch.nn.functional.interpolate(pixels, scale_factor=2, mode="nearest"))


# --- reading a file's own coefficients (jpeglib: libjpeg's jpeg_read_coefficients) ---

@dataclass(frozen=True)
class Coefficients:
    """One JPEG's dequantized DCT coefficients (coef * table), each 8x8 block's 64 laid out as an 8x8 tile in
    natural order: y (1, H, W) and cbcr (2, H/2, W/2), H and W multiples of 16; the tables (8, 8); the image's own
    (height, width) before any padding."""
    y: torch.Tensor
    cbcr: torch.Tensor
    qy: torch.Tensor
    qc: torch.Tensor
    size: tuple[int, int]


def _tiles(blocks: np.ndarray) -> torch.Tensor:
    """jpeglib's (rows, cols, 8, 8) blocks as one (rows*8, cols*8) plane."""
    rows, cols = blocks.shape[:2]
    return torch.from_numpy(blocks.astype(np.float32).transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK))


def read_coefficients(source: bytes | str | os.PathLike) -> Coefficients:
    """The coefficients and tables of a baseline 4:2:0 colour JPEG (the study's codec writes nothing else)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        # jpeglib reads paths only; /dev/shm keeps the round trip in memory where there is one.
        tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.NamedTemporaryFile(suffix=".jpg", dir=tmpdir) as f:
            f.write(source)
            f.flush()
            return _read_coefficients(f.name, name)
    return _read_coefficients(str(source), name)


def _read_coefficients(path: str, name: str) -> Coefficients:
    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode != "RGB":
                raise ValueError(f"{name}: not a colour JPEG (format {im.format}, mode {im.mode})")
        d = jpeglib.read_dct(path)
        d.load()
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{name}: cannot read JPEG coefficients ({str(e).splitlines()[0]})") from None
    sampling = np.asarray(d.samp_factor).tolist()
    if sampling != [[2, 2], [1, 1], [1, 1]]:
        raise ValueError(f"{name}: chroma sampling {sampling} is not 4:2:0; the study's JPEGs are 4:2:0")
    tables = np.asarray(d.qt, dtype=np.float32)
    which = list(d.quant_tbl_no)
    qy, qc = torch.from_numpy(tables[which[0]]), torch.from_numpy(tables[which[1]])
    if which[1] != which[2]:
        raise ValueError(f"{name}: Cb and Cr use different quantization tables")
    cbcr = torch.stack([_tiles(d.Cb) * qc.repeat(*d.Cb.shape[:2]), _tiles(d.Cr) * qc.repeat(*d.Cr.shape[:2])])
    y = _tiles(d.Y) * qy.repeat(*d.Y.shape[:2])
    # libjpeg stores only the luma blocks the image covers; the chroma blocks cover whole 16x16 MCUs. Repeat the
    # last luma block row/column up to twice the chroma size so both planes describe the same padded area.
    h, w = 2 * cbcr.shape[1], 2 * cbcr.shape[2]
    while y.shape[0] < h:
        y = torch.cat([y, y[-BLOCK:]], 0)
    while y.shape[1] < w:
        y = torch.cat([y, y[:, -BLOCK:]], 1)
    return Coefficients(y[None], cbcr, qy, qc, (int(d.height), int(d.width)))


def pad_to_16(image: Image.Image) -> Image.Image:
    """Replicate the last row and column up to multiples of 16 (QGAC's input contract)."""
    w, h = image.size
    pw, ph = -w % 16, -h % 16
    if not pw and not ph:
        return image
    a = np.asarray(image)
    return Image.fromarray(np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge"))


def compress_coefficients(image: Image.Image, quality: int) -> tuple[bytes, Coefficients]:
    """Compress `image` (padded to 16) and read the file back; size is the unpadded image's."""
    data = compress(pad_to_16(image), quality)
    c = read_coefficients(data)
    return data, Coefficients(c.y, c.cbcr, c.qy, c.qc, (image.height, image.width))


@dataclass
class CoefficientBatch:
    y: torch.Tensor  # (N, 1, H, W)
    cbcr: torch.Tensor  # (N, 2, H/2, W/2)
    qy: torch.Tensor  # (N, 1, 8, 8)
    qc: torch.Tensor  # (N, 1, 8, 8)
    sizes: list[tuple[int, int]]

    def to(self, device) -> CoefficientBatch:
        return CoefficientBatch(self.y.to(device), self.cbcr.to(device), self.qy.to(device), self.qc.to(device),
                                self.sizes)


def stack_coefficients(items: list[Coefficients]) -> CoefficientBatch:
    shapes = {tuple(c.y.shape) for c in items}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch coefficients of different sizes: {sorted(shapes)}")
    return CoefficientBatch(torch.stack([c.y for c in items]), torch.stack([c.cbcr for c in items]),
                            torch.stack([c.qy for c in items])[:, None], torch.stack([c.qc for c in items])[:, None],
                            [c.size for c in items])


# Full-range YCbCr as JFIF defines it and libjpeg computes it (ITU-R BT.601 weights), on the 0..255 scale.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCBCR_OFFSET = torch.tensor([0.0, 128.0, 128.0])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    m = _RGB_TO_YCBCR.to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x) + _YCBCR_OFFSET.to(x.device, x.dtype)[:, None, None]


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x - _YCBCR_OFFSET.to(x.device, x.dtype)[:, None, None])


def coefficients_to_rgb(y: torch.Tensor, cbcr_full: torch.Tensor) -> torch.Tensor:
    """Dequantized coefficients (luma and full-resolution chroma, (N, 1|2, H, W)) -> RGB in [0, 1]; differentiable
    (the clamp passes no gradient to pixels outside [0, 255], as a decoder would clip them)."""
    # libjpeg clips each component to [0, 255] after the IDCT, before converting colours: so do we.
    ycbcr = (block_idct(torch.cat([y, cbcr_full], 1)) + 128).clamp(0, 255)
    return (ycbcr_to_rgb(ycbcr) / 255).clamp(0, 1)


class FrequencyStats:
    """Per-channel (y, cb, cr), per-frequency mean and std of DCT coefficients, (3, 8, 8) each: QGAC's input
    normalisation. Computed from lossless images, chroma at full resolution (before subsampling)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        for name, t in (("mean", mean), ("std", std)):
            if tuple(t.shape) != (3, BLOCK, BLOCK):
                raise ValueError(f"DCT statistics: {name} has shape {list(t.shape)}, expected [3, 8, 8]")
        self.mean, self.std = mean.float(), std.float()

    @classmethod
    def compute(cls, images) -> FrequencyStats:
        """From uint8 (3, H, W) images; sums in float64 so large datasets do not lose precision."""
        total = torch.zeros(3, BLOCK, BLOCK, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for image in images:
            x = image.double()[None]
            x = torch.nn.functional.pad(x, (0, -x.shape[3] % BLOCK, 0, -x.shape[2] % BLOCK), mode="replicate")
            coef = block_dct(rgb_to_ycbcr(x) - 128)[0]  # (3, H, W)
            blocks = coef.reshape(3, coef.shape[1] // BLOCK, BLOCK, coef.shape[2] // BLOCK, BLOCK)
            total += blocks.sum((1, 3))
            squares += (blocks ** 2).sum((1, 3))
            count += blocks.shape[1] * blocks.shape[3]
        if not count:
            raise ValueError("DCT statistics need at least one image")
        mean = total / count
        std = (squares / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-3)  # no division by zero later
        return cls(mean, std)

    def _tiled(self, t: torch.Tensor, channels, like: torch.Tensor) -> torch.Tensor:
        reps = (like.shape[-2] // BLOCK, like.shape[-1] // BLOCK)
        return t[channels].to(like.device, like.dtype).repeat(1, *reps)

    def normalize(self, coef: torch.Tensor, channels: list[int]) -> torch.Tensor:
        return (coef - self._tiled(self.mean, channels, coef)) / self._tiled(self.std, channels, coef)

    def denormalize(self, coef: torch.Tensor, channels: list[int]) -> torch.Tensor:
        return coef * self._tiled(self.std, channels, coef) + self._tiled(self.mean, channels, coef)

    def to(self, device) -> FrequencyStats:
        return FrequencyStats(self.mean.to(device), self.std.to(device))

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, d) -> FrequencyStats:
        if not isinstance(d, dict) or not {"mean", "std"} <= set(d):
            raise ValueError("DCT statistics: expected a dict with 'mean' and 'std'")
        return cls(torch.as_tensor(d["mean"]), torch.as_tensor(d["std"]))
