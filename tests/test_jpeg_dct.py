"""QGAC's JPEG internals: the file's own coefficients and tables, YCbCr, block DCT to pixels, per-frequency stats."""

import io

import jpeglib
import numpy as np
import pytest
import torch
from PIL import Image

from jpegstudy import jpeg

QUALITIES = [10, 50, 90]


def image(h, w, seed=0, noise=40.0, gray=False):
    """A smooth colour pattern plus noise (noise strong enough that decoded luma overshoots [0, 255])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(3)], -1)
    x = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
    if gray:
        x = np.repeat(x[..., :1], 3, -1)
    return Image.fromarray(x)


def hwc(t):
    """(1, C, H, W) in [0, 1] -> (H, W, C) on the 0..255 scale."""
    return t[0].permute(1, 2, 0).numpy().astype(np.float64) * 255


def libjpeg(path, **kwargs):
    # libjpeg's default decode upsamples chroma with a triangle filter; QGAC's (and ours) replicates pixels.
    return jpeglib.read_spatial(str(path), flags=["-DO_FANCY_UPSAMPLING"], **kwargs).spatial.astype(np.float64)


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize("size", [(48, 64), (32, 32), (40, 56)])
def test_coefficients_decode_as_libjpeg(tmp_path, quality, size):
    data, c = jpeg.compress_coefficients(image(*size, seed=quality), quality)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    y, cbcr = c.y[None], jpeg.upsample_chroma_dct(c.cbcr[None])
    # Each plane (layout, dequantization, tables, chroma upsampling): within libjpeg's integer IDCT rounding.
    ycbcr = (jpeg.block_idct(torch.cat([y, cbcr], 1)) + 128).clamp(0, 255) / 255
    ref = libjpeg(path, out_color_space=jpeglib.Colorspace["JCS_YCbCr"])
    assert np.abs(hwc(ycbcr).round() - ref).max() <= 1
    # RGB: libjpeg rounds Y, Cb, Cr to integers before the colour transform, so a 1-level difference in Cr can
    # become 1.402 in R: within 2, and mostly exact.
    rgb = hwc(jpeg.coefficients_to_rgb(y, cbcr, [c.size])).round()
    ref = libjpeg(path)[: size[0], : size[1]]
    assert rgb.shape == ref.shape and np.abs(rgb - ref).max() <= 2 and np.abs(rgb - ref).mean() < 0.5


@pytest.mark.parametrize("quality", QUALITIES)
def test_gray_image_decodes_as_pillow(quality):
    # Gray RGB has flat chroma (Cb = Cr = 128), so upsampling and colour rounding drop out: within 1 grey level.
    im = image(40, 56, seed=quality, gray=True)
    data, c = jpeg.compress_coefficients(im, quality)
    rgb = hwc(jpeg.coefficients_to_rgb(c.y[None], jpeg.upsample_chroma_dct(c.cbcr[None]), [c.size])).round()
    ref = np.asarray(jpeg.decode(data), dtype=np.float64)[:40, :56]
    assert rgb.shape == (40, 56, 3) and np.abs(rgb - ref).max() <= 1


@pytest.mark.parametrize("quality", QUALITIES)
def test_tables_are_the_ones_pillow_wrote(quality):
    data, c = jpeg.compress_coefficients(image(32, 32), quality)
    with Image.open(io.BytesIO(data)) as im:
        tables = im.quantization  # Pillow >= 8.3 reports natural (row-major) order, as jpeglib does
    assert torch.equal(c.qy, torch.tensor(tables[0], dtype=torch.float32).reshape(8, 8))
    assert torch.equal(c.qc, torch.tensor(tables[1], dtype=torch.float32).reshape(8, 8))
    assert c.qy.max() <= 255 and c.qy.dtype == torch.float32
    if quality == 50:  # the IJG standard tables themselves; row 0 in zigzag order would start 16, 11, 12, 14
        assert c.qy[0].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]
        assert c.qc[0].tolist() == [17, 18, 24, 47, 99, 99, 99, 99]


def test_compress_coefficients_pads_and_batches():
    im = image(40, 56)
    data, c = jpeg.compress_coefficients(im, 50)
    assert c.size == (40, 56) and c.y.shape == (1, 48, 64) and c.cbcr.shape == (2, 24, 32)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.size == (64, 48)
    padded = np.asarray(jpeg.pad_to_16(im))
    assert padded.shape == (48, 64, 3)
    assert (padded[40:] == padded[39:40]).all() and (padded[:, 56:] == padded[:, 55:56]).all()
    assert (padded[:40, :56] == np.asarray(im)).all()
    square = image(32, 32)
    assert jpeg.pad_to_16(square) is square
    # A file written at its own size (as the compress rule writes ImageNet photos): jpeglib holds 5x7 luma blocks
    # but 3x4 chroma blocks; the last luma block row and column are repeated to 6x8.
    unpadded = jpeg.read_coefficients(jpeg.compress(im, 50))
    assert unpadded.size == (40, 56) and unpadded.y.shape == (1, 48, 64) and unpadded.cbcr.shape == (2, 24, 32)
    assert torch.equal(unpadded.y[:, 40:], unpadded.y[:, 32:40]) and torch.equal(unpadded.y[:, :, 56:],
                                                                                 unpadded.y[:, :, 48:56])

    b = jpeg.stack_coefficients([c, jpeg.compress_coefficients(image(48, 50, seed=1), 90)[1]]).to("cpu")
    assert b.y.shape == (2, 1, 48, 64) and b.cbcr.shape == (2, 2, 24, 32)
    assert b.qy.shape == b.qc.shape == (2, 1, 8, 8) and b.sizes == [(40, 56), (48, 50)]
    with pytest.raises(ValueError, match="padded sizes"):
        jpeg.stack_coefficients([c, jpeg.compress_coefficients(square, 50)[1]])


def test_read_coefficients_from_path_equals_from_bytes(tmp_path):
    data, c = jpeg.compress_coefficients(image(32, 48), 30)
    (tmp_path / "a.jpg").write_bytes(data)
    d = jpeg.read_coefficients(tmp_path / "a.jpg")
    assert torch.equal(c.y, d.y) and torch.equal(c.cbcr, d.cbcr) and d.size == (32, 48)


def test_unsupported_files_are_refused(tmp_path):
    for data in (b"not a jpeg at all", b"\xff\xd8 truncated"):
        with pytest.raises(ValueError, match=r"JPEG data \(\d+ bytes\)") as e:
            jpeg.read_coefficients(data)
        assert "\n" not in str(e.value) and "tmp" not in str(e.value)
    gray = tmp_path / "gray.jpg"
    Image.new("L", (32, 32), 90).save(gray)
    with pytest.raises(ValueError, match="gray.jpg: 1-component") as e:
        jpeg.read_coefficients(gray)
    assert "\n" not in str(e.value)
    buf = io.BytesIO()
    image(32, 32).save(buf, format="JPEG", subsampling=0)  # 4:4:4
    with pytest.raises(ValueError, match="not 4:2:0"):
        jpeg.read_coefficients(buf.getvalue())


def test_ycbcr():
    x = torch.rand(2, 3, 8, 16, dtype=torch.float64) * 255
    assert (jpeg.ycbcr_to_rgb(jpeg.rgb_to_ycbcr(x)) - x).abs().max() < 1e-3
    red = jpeg.rgb_to_ycbcr(torch.tensor([255.0, 0, 0]).reshape(1, 3, 1, 1)).flatten()
    assert torch.allclose(red, torch.tensor([76.245, 84.97232, 255.5]), atol=1e-3)
    gray = jpeg.rgb_to_ycbcr(torch.full((1, 3, 1, 1), 77.0)).flatten()
    assert torch.allclose(gray, torch.tensor([77.0, 128, 128]), atol=1e-4)


def test_rgb_to_coefficients_inverts_coefficients_to_rgb():
    x = 0.1 + 0.8 * torch.rand(2, 3, 16, 24, dtype=torch.float64)  # away from the clamps
    y, cbcr = jpeg.rgb_to_coefficients(x)
    assert y.shape == (2, 1, 16, 24) and cbcr.shape == (2, 2, 16, 24)
    assert (jpeg.coefficients_to_rgb(y, cbcr) - x).abs().max() < 1e-6
    # At quality 100 (all-ones tables) the file's luma is these coefficients up to libjpeg's integer rounding.
    im = image(32, 48)
    _, c = jpeg.compress_coefficients(im, 100)
    y, _ = jpeg.rgb_to_coefficients(torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255)
    assert (y[0] - c.y).abs().max() < 2 and (y[0] - c.y).abs().mean() < 0.5


def test_frequency_stats_constant_gray_and_round_trip():
    v = 200
    for img in (torch.full((3, 20, 28), v, dtype=torch.uint8), torch.full((3, 20, 28), v / 255)):
        s = jpeg.FrequencyStats.compute([img])
        expected = torch.zeros(3, 8, 8)
        expected[0, 0, 0] = (v - 128) * 8  # the orthonormal DC of a flat block is 8x its level
        assert torch.allclose(s.mean, expected, atol=1e-3)
        assert torch.equal(s.std, torch.full((3, 8, 8), 1e-3))
    s = jpeg.FrequencyStats.compute(torch.from_numpy(np.array(image(24, 40, seed=k))).permute(2, 0, 1)
                                    for k in range(3))
    assert s.mean.shape == s.std.shape == (3, 8, 8) and (s.std > 1).all()
    t = jpeg.FrequencyStats.from_state_dict(s.state_dict())
    assert torch.equal(t.mean, s.mean) and torch.equal(t.std, s.std)
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        jpeg.FrequencyStats.from_state_dict({"mean": torch.zeros(3, 4, 4), "std": torch.ones(3, 8, 8)})

    coef = torch.randn(2, 2, 16, 24) * 50
    n = s.normalize(coef, [1, 2])
    for i, j in ((0, 0), (1, 2)):  # each block normalised with the (8, 8) stats of its channel
        block = coef[:, :, 8 * i: 8 * i + 8, 8 * j: 8 * j + 8]
        assert torch.allclose(n[:, :, 8 * i: 8 * i + 8, 8 * j: 8 * j + 8], (block - s.mean[1:]) / s.std[1:])
    assert torch.allclose(s.denormalize(n, slice(1, 3)), coef, atol=1e-4)


def test_gradients_flow_through_normalisation_and_decoding():
    s = jpeg.FrequencyStats.compute(torch.from_numpy(np.array(image(32, 32, seed=k))).permute(2, 0, 1)
                                    for k in range(2))
    y = torch.randn(1, 1, 16, 16, requires_grad=True)
    cbcr = torch.randn(1, 2, 16, 16, requires_grad=True)
    rgb = jpeg.coefficients_to_rgb(s.denormalize(s.normalize(s.denormalize(y, [0]), [0]), [0]),
                                   s.denormalize(cbcr, [1, 2]), [(12, 10)])
    assert rgb.shape == (1, 3, 12, 10)
    rgb.sum().backward()
    for g in (y.grad, cbcr.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
