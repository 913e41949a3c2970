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
