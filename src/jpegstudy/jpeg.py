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
from dataclasses import dataclass, replace

import jpeglib
import numpy as np
import torch
from PIL import Image, features

from jpegstudy.codecs.base import as_integer

MIN_QUALITY, MAX_QUALITY = 1, 100


def check_quality(quality) -> int:
    """Return `quality` as an int, or raise a one-line ValueError naming it."""
    q = as_integer(quality)
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


# --- QGAC's inputs: a file's own dequantized coefficients and tables (jpeglib wraps jpeg_read_coefficients) ---

# jpeglib only reads paths: bytes go through a temporary file, in memory (tmpfs) where the machine has one.
_TMPDIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_SOI = b"\xff\xd8"  # every JPEG starts with it; checked first so libjpeg never sees other files


@dataclass(frozen=True, eq=False)
class Coefficients:
    """One JPEG's dequantized DCT coefficients (coef * table), each 8x8 block's 64 as an 8x8 tile in natural
    (row-major) order: y (1, H, W), cbcr (2, H/2, W/2), H and W the padded size (multiples of 16); the tables
    qy, qc (8, 8) in natural order; size = (height, width) of the image before padding."""
    y: torch.Tensor
    cbcr: torch.Tensor
    qy: torch.Tensor
    qc: torch.Tensor
    size: tuple[int, int]


def _plane(blocks: np.ndarray, table: np.ndarray) -> torch.Tensor:
    """jpeglib's (rows, cols, 8, 8) quantized blocks ([row frequency, column frequency], natural order) -> one
    dequantized (rows*8, cols*8) plane. int16 * uint16 promotes to int32: no overflow before the float cast."""
    rows, cols = blocks.shape[:2]
    plane = (blocks * table).astype(np.float32).transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK)
    return torch.from_numpy(np.ascontiguousarray(plane))


def read_coefficients(source: bytes | str | os.PathLike) -> Coefficients:
    """The coefficients and tables of a colour 4:2:0 JPEG, padded to whole 16x16 MCUs (QGAC's input)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"JPEG data ({len(data)} bytes)"
        if data[:2] != _SOI:
            raise ValueError(f"{name}: not a JPEG file (no SOI marker)")
        with tempfile.NamedTemporaryFile(suffix=".jpg", dir=_TMPDIR) as f:
            f.write(data)
            f.flush()
            return _read_coefficients(f.name, name)
    path = os.fspath(source)
    with open(path, "rb") as f:
        if f.read(2) != _SOI:
            raise ValueError(f"{path}: not a JPEG file (no SOI marker)")
    return _read_coefficients(path, path)


def _read_coefficients(path: str, name: str) -> Coefficients:
    try:
        d = jpeglib.read_dct(path)
        d.load()  # jpeglib reads lazily; the temporary file is gone after the caller returns
        ncomp, space = d.num_components, d.jpeg_color_space
    except OSError as e:
        why = str(e).splitlines()[0].replace(path, "the file")  # never name our temporary file
        raise ValueError(f"{name}: cannot read JPEG coefficients ({why}; libjpeg's reason is on stderr)") from None
    if ncomp != 3 or space.name != "JCS_YCbCr":
        raise ValueError(f"{name}: {ncomp}-component {space.name} JPEG; QGAC needs colour (YCbCr) JPEGs")
    sampling = np.asarray(d.samp_factor).tolist()
    if sampling != [[2, 2], [1, 1], [1, 1]]:
        raise ValueError(f"{name}: sampling factors {sampling} are not 4:2:0 ([[2, 2], [1, 1], [1, 1]])")
    # jpeglib keeps only the luma blocks the image covers, while the chroma blocks cover whole 16x16 MCUs. A file
    # whose size is not a multiple of 16 (any ImageNet photo the compress rule wrote) gets its last luma block
    # row/column repeated up to twice the chroma size, so both planes describe the same padded area; everything
    # beyond the image is cropped away after correction.
    (bh, bw), chroma = d.Y.shape[:2], {d.Cb.shape[:2], d.Cr.shape[:2]}
    if len(chroma) != 1 or not (0 <= 2 * d.Cb.shape[0] - bh <= 1 and 0 <= 2 * d.Cb.shape[1] - bw <= 1):
        raise ValueError(f"{name}: luma blocks {bh}x{bw} do not match chroma blocks {sorted(chroma)}")
    luma = np.pad(d.Y, ((0, 2 * d.Cb.shape[0] - bh), (0, 2 * d.Cb.shape[1] - bw), (0, 0), (0, 0)), mode="edge")
    tno = [int(t) for t in d.quant_tbl_no]  # the table index of each component
    if tno[1] != tno[2]:
        raise ValueError(f"{name}: Cb and Cr use different quantization tables ({tno[1]}, {tno[2]})")
    qt = np.asarray(d.qt)
    qy, qc = qt[tno[0]], qt[tno[1]]
    cbcr = torch.stack([_plane(d.Cb, qc), _plane(d.Cr, qc)])
    return Coefficients(_plane(luma, qy)[None], cbcr, torch.from_numpy(qy.astype(np.float32)),
                        torch.from_numpy(qc.astype(np.float32)), (int(d.height), int(d.width)))


def pad_to_16(image: Image.Image) -> Image.Image:
    """Replicate the last row and column (bottom/right) up to multiples of 16; `image` itself if already so."""
    w, h = image.size
    pw, ph = -w % 16, -h % 16
    if not pw and not ph:
        return image
    out = image.crop((0, 0, w + pw, h + ph))  # keeps mode and palette; the new area is overwritten below
    if ph:
        out.paste(image.crop((0, h - 1, w, h)).resize((w, ph), Image.Resampling.NEAREST), (0, h))
    if pw:
        out.paste(out.crop((w - 1, 0, w, h + ph)).resize((pw, h + ph), Image.Resampling.NEAREST), (w, 0))
    return out


def compress_coefficients(image: Image.Image, quality: int) -> tuple[bytes, Coefficients]:
    """QGAC's steps 1-2: pad to 16, compress(), read the file back. The bytes are the padded JPEG; size is the
    unpadded image's (crop decoded pixels and corrected outputs to it)."""
    data = compress(pad_to_16(image), quality)
    return data, replace(read_coefficients(data), size=(image.height, image.width))


@dataclass(eq=False)
class CoefficientBatch:
    y: torch.Tensor  # (N, 1, H, W)
    cbcr: torch.Tensor  # (N, 2, H/2, W/2)
    qy: torch.Tensor  # (N, 1, 8, 8)
    qc: torch.Tensor  # (N, 1, 8, 8)
    sizes: list[tuple[int, int]]

    def to(self, device) -> CoefficientBatch:
        return CoefficientBatch(self.y.to(device), self.cbcr.to(device), self.qy.to(device), self.qc.to(device),
                                list(self.sizes))


def stack_coefficients(items: list[Coefficients]) -> CoefficientBatch:
    """Batch files of one padded size (their unpadded sizes may differ)."""
    shapes = sorted({tuple(c.y.shape[1:]) for c in items})
    if len(shapes) != 1:
        raise ValueError(f"cannot batch coefficients of padded sizes {shapes}; need exactly one")
    return CoefficientBatch(torch.stack([c.y for c in items]), torch.stack([c.cbcr for c in items]),
                            torch.stack([c.qy for c in items])[:, None], torch.stack([c.qc for c in items])[:, None],
                            [c.size for c in items])


# Full-range YCbCr as JFIF defines it and libjpeg computes it (ITU-R BT.601 weights), on the 0..255 scale.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                             dtype=torch.float64)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)  # 1.402, -0.344136, -0.714136, 1.772 (libjpeg's, to 6 digits)
_CHROMA_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> YCbCr, both on the 0..255 scale."""
    m, off = _RGB_TO_YCBCR.to(x.device, x.dtype), _CHROMA_OFFSET.to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x) + off[:, None, None]


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_ycbcr."""
    m, off = _YCBCR_TO_RGB.to(x.device, x.dtype), _CHROMA_OFFSET.to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x - off[:, None, None])


def coefficients_to_rgb(y: torch.Tensor, cbcr_full: torch.Tensor, sizes=None) -> torch.Tensor:
    """Dequantized coefficients, y (N, 1, H, W) and full-resolution chroma (N, 2, H, W) -> RGB in [0, 1],
    cropped to `sizes` (all equal) if given. Differentiable; the clamps pass no gradient where they clip."""
    # libjpeg clips Y, Cb and Cr to [0, 255] before the colour transform; without it, overshooting luma of a noisy
    # image decodes up to 50 grey levels away from libjpeg's pixels.
    ycbcr = (block_idct(torch.cat([y, cbcr_full], 1)) + 128).clamp(0, 255)
    rgb = (ycbcr_to_rgb(ycbcr) / 255).clamp(0, 1)
    if sizes:
        if len(set(sizes)) != 1:
            raise ValueError(f"coefficients_to_rgb crops a batch to one size, got {sorted(set(sizes))}")
        h, w = sizes[0]
        rgb = rgb[..., :h, :w]
    return rgb


def rgb_to_coefficients(rgb01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB in [0, 1], H and W multiples of 8 -> unquantized (y (N, 1, H, W), cbcr (N, 2, H, W))."""
    coef = block_dct(rgb_to_ycbcr(rgb01 * 255) - 128)
    return coef[:, :1], coef[:, 1:]


@dataclass(frozen=True, eq=False)
class FrequencyStats:
    """Per-channel (y, cb, cr) per-frequency mean and std of dequantized DCT coefficients, shape (3, 8, 8) each."""
    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self):
        for key in ("mean", "std"):
            t = torch.as_tensor(getattr(self, key))
            if tuple(t.shape) != (3, BLOCK, BLOCK):
                raise ValueError(f"DCT statistics: {key} has shape {tuple(t.shape)}, expected (3, 8, 8)")
            object.__setattr__(self, key, t.float())

    @classmethod
    def compute(cls, rgb_images) -> FrequencyStats:
        """From lossless (3, H, W) images, uint8 or float in [0, 1]. Chroma is taken at full resolution (before any
        subsampling); sums are float64 so a large dataset loses no precision."""
        total = torch.zeros(3, BLOCK, BLOCK, dtype=torch.float64)
        squares, count = torch.zeros_like(total), 0
        for image in rgb_images:
            x = torch.as_tensor(image)
            if x.ndim != 3 or x.shape[0] != 3:
                raise ValueError(f"DCT statistics need (3, H, W) RGB images, got shape {tuple(x.shape)}")
            x = x.double()[None] * (1.0 if x.dtype == torch.uint8 else 255.0)
            x = torch.nn.functional.pad(x, (0, -x.shape[3] % BLOCK, 0, -x.shape[2] % BLOCK), mode="replicate")
            coef = block_dct(rgb_to_ycbcr(x) - 128)[0]
            blocks = coef.reshape(3, coef.shape[1] // BLOCK, BLOCK, coef.shape[2] // BLOCK, BLOCK)
            total += blocks.sum((1, 3))
            squares += (blocks ** 2).sum((1, 3))
            count += blocks.shape[1] * blocks.shape[3]
        if not count:
            raise ValueError("DCT statistics need at least one image")
        mean = total / count
        std = (squares / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-3)  # population std; never divide by 0
        return cls(mean, std)

    def _blocks(self, coef: torch.Tensor, channels):
        """coef as (N, C, H/8, 8, W/8, 8) and the selected (C, 1, 8, 1, 8) mean and std, broadcast over blocks."""
        n, c, h, w = coef.shape
        mean, std = self.mean[channels], self.std[channels]
        if mean.shape[0] != c or h % BLOCK or w % BLOCK:
            raise ValueError(f"DCT statistics for {mean.shape[0]} channel(s) cannot apply to coefficients {n}x{c}x"
                             f"{h}x{w} (sides must be multiples of 8)")
        def shape(t):
            return t.to(coef.device, coef.dtype)[:, None, :, None, :]
        return coef.reshape(n, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK), shape(mean), shape(std)

    def normalize(self, coef: torch.Tensor, channels) -> torch.Tensor:
        """coef (N, C, H, W) tiled; channels picks the stats of (y, cb, cr): [0] for y, [1, 2] for cbcr."""
        blocks, mean, std = self._blocks(coef, channels)
        return ((blocks - mean) / std).reshape(coef.shape)

    def denormalize(self, coef: torch.Tensor, channels) -> torch.Tensor:
        blocks, mean, std = self._blocks(coef, channels)
        return (blocks * std + mean).reshape(coef.shape)

    def to(self, device) -> FrequencyStats:
        return FrequencyStats(self.mean.to(device), self.std.to(device))

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, d) -> FrequencyStats:
        if not isinstance(d, dict) or not {"mean", "std"} <= set(d):
            raise ValueError("DCT statistics: expected a dict with 'mean' and 'std'")
        return cls(d["mean"], d["std"])
