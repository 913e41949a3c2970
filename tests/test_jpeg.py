import io
import subprocess

import numpy as np
import pytest
from PIL import Image

from jpegstudy import jpeg
from jpegstudy.data import embedded

from .conftest import needs


def images():
    """Three real test images: two embedded scenes (odd sizes too) and a smooth gradient."""
    rng = np.random.default_rng(1)
    a = embedded.make_scene(rng, 0, 48).image
    b = embedded.make_scene(rng, 7, 64).image[:61, :37]
    grad = np.stack([*np.meshgrid(np.linspace(0, 255, 40), np.linspace(255, 0, 24)), np.full((24, 40), 128.0)], -1)
    return [Image.fromarray(x.astype(np.uint8)) for x in (a, np.ascontiguousarray(b), grad)]


@needs("cjpeg")
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_byte_identical_to_cjpeg_baseline(tmp_path, quality):
    for k, im in enumerate(images()):
        ppm = tmp_path / f"{k}.ppm"
        im.save(ppm)
        ref = subprocess.run(["cjpeg", "-baseline", "-quality", str(quality), str(ppm)], capture_output=True,
                             check=True).stdout
        assert jpeg.compress(im, quality) == ref


@needs("djpeg")
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_decoded_pixels_equal_djpeg(tmp_path, quality):
    for k, im in enumerate(images()):
        data = jpeg.compress(im, quality)
        path = tmp_path / f"{k}.jpg"
        path.write_bytes(data)
        ppm = subprocess.run(["djpeg", "-pnm", str(path)], capture_output=True, check=True).stdout
        np.testing.assert_array_equal(np.asarray(jpeg.decode(data)), np.asarray(Image.open(io.BytesIO(ppm))))


def test_quality_scaling_and_baseline_tables():
    im = images()[0]
    with Image.open(io.BytesIO(jpeg.compress(im, 10))) as j:
        luma = j.quantization[0]
        # IJG scaling at q=10 is 500%: the standard luma DC entry 16 becomes (16*500+50)//100 = 80; the largest
        # entries (121 -> 605) are clamped to 255 because the tables are baseline (8-bit).
        assert luma[0] == 80 and max(luma) == 255
        assert j.layer[0][1:3] == (2, 2) and j.layer[1][1:3] == (1, 1)  # 4:2:0: luma sampled 2x2, chroma 1x1
    with Image.open(io.BytesIO(jpeg.compress(im, 50))) as j:
        assert j.quantization[0][0] == 16  # q=50 is the standard table itself


@pytest.mark.parametrize("bad", [0, 101, -5, 50.0, True, "abc", None])
def test_bad_quality_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match=r"JPEG quality must be an integer in \[1, 100\], got " + repr(bad).replace(
            ".", r"\.")):
        jpeg.compress(images()[0], bad)


def test_compress_refuses_non_rgb():
    with pytest.raises(ValueError, match="mode 'L'"):
        jpeg.compress(Image.new("L", (8, 8)), 50)


def test_libjpeg_version_is_reported():
    assert jpeg.libjpeg_version().startswith("libjpeg")
