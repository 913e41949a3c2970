"""The codecs Pillow writes: JPEG (jpeg.py, the study's), WebP, JPEG 2000 and AVIF built in; HEIF through
pillow-heif (libheif with x265) and JPEG XL through pillow-jxl-plugin (libjxl), each registered with Pillow only
when asked for. Every lossy setting is explicit, so a library's change of default cannot move a number unnoticed."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import io

from PIL import Image, features

from jpegstudy.codecs.base import Codec, CodecError


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def register_openers() -> list[str]:
    """Teach Pillow the formats its plug-ins add (HEIF, JPEG XL), those installed; returns their names."""
    done = []
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        done.append("heif")
    except ImportError:
        pass
    try:
        importlib.import_module("pillow_jxl")  # registers JXL with Pillow on import
        done.append("jxl")
    except ImportError:
        pass
    return done


class _PillowCodec(Codec):
    pillow_format = ""
    feature = ""  # Pillow's name of the built-in library (features.check)
    plugin = ""  # or the plug-in package to import
    plugin_dist = ""

    @classmethod
    def missing_library(cls) -> str | None:
        if cls.feature and not features.check(cls.feature):
            return f"codec {cls.name}: this Pillow ({Image.__version__}) was built without {cls.feature}"
        if cls.plugin and importlib.util.find_spec(cls.plugin) is None:
            return f"codec {cls.name}: the package {cls.plugin_dist} is not installed (pip install {cls.plugin_dist})"
        return None

    def __init__(self):
        missing = self.missing_library()
        if missing:
            raise CodecError(missing)
        if self.plugin:
            register_openers()

    def save_options(self, quality: int) -> dict:
        raise NotImplementedError

    def encode(self, image: Image.Image, quality: int) -> bytes:
        q = self.check_quality(quality)
        if image.mode != "RGB":
            raise ValueError(f"{self.name}: encode() expects an RGB image, got mode {image.mode!r}")
        buf = io.BytesIO()
        image.save(buf, format=self.pillow_format, **self.save_options(q))
        return buf.getvalue()

    def library(self) -> str:
        if self.feature:
            return f"{self.feature} {features.version(self.feature)}"
        return f"{self.plugin_dist} {_package_version(self.plugin_dist)}"

    def settings(self) -> dict:
        options = {k: v for k, v in self.save_options(self.quality_range[1]).items() if k not in ("quality",
                                                                                                   "quality_layers")}
        return {"codec": self.name, "format": self.pillow_format, "quality": self.quality_meaning,
                "options": options, "library": self.library(), "pillow": Image.__version__}


class JpegCodec(_PillowCodec):
    """The study's JPEG, jpeg.compress itself: byte-identical to `cjpeg -baseline` and to every set made before."""
    name, label, suffix, pillow_format = "jpeg", "JPEG", ".jpg", "JPEG"
    feature = "jpg"
    quality_range = (1, 100)  # jpeg.MIN_QUALITY, jpeg.MAX_QUALITY (jpeg.py imports torch; this module does not)
    quality_meaning = "IJG quality"

    def check_quality(self, quality) -> int:
        from jpegstudy import jpeg

        return jpeg.check_quality(quality)  # its message, as every JPEG set has given it

    def encode(self, image: Image.Image, quality: int) -> bytes:
        from jpegstudy import jpeg

        return jpeg.compress(image, self.check_quality(quality))

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "subsampling": "4:2:0", "optimize": False, "progressive": False,
                "tables": "IJG baseline (clamped to 255)"}

    def library(self) -> str:
        from jpegstudy import jpeg

        return jpeg.libjpeg_version()


class WebpCodec(_PillowCodec):
    """libwebp's lossy VP8 (always 4:2:0), method 4 (its default speed/effort trade-off)."""
    name, label, suffix, pillow_format = "webp", "WebP", ".webp", "WEBP"
    feature = "webp"
    quality_range = (0, 100)
    quality_meaning = "libwebp quality"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "method": 4, "lossless": False, "exact": False}


class Jpeg2000Codec(_PillowCodec):
    """OpenJPEG, the 9/7 irreversible wavelet, one quality layer at a target PSNR in dB (JPEG 2000 has no quality
    scale of its own; Pillow's other mode is a compression ratio)."""
    name, label, suffix, pillow_format = "jpeg2000", "JPEG 2000", ".jp2", "JPEG2000"
    feature = "jpg_2000"
    quality_range = (10, 80)
    quality_meaning = "target PSNR (dB)"

    def save_options(self, quality: int) -> dict:
        return {"quality_mode": "dB", "quality_layers": [quality], "irreversible": True, "num_resolutions": 3}


class AvifCodec(_PillowCodec):
    """libavif (AV1 intra), 4:2:0, speed 6 (libavif's default)."""
    name, label, suffix, pillow_format = "avif", "AVIF", ".avif", "AVIF"
    feature = "avif"
    quality_range = (0, 100)
    quality_meaning = "libavif quality"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "speed": 6, "subsampling": "4:2:0"}

    def library(self) -> str:
        return f"libavif {features.version('avif')}"


class HeifCodec(_PillowCodec):
    """HEIF (HEVC intra, x265 through libheif), 4:2:0."""
    name, label, suffix, pillow_format = "heif", "HEIF", ".heic", "HEIF"
    plugin, plugin_dist = "pillow_heif", "pillow-heif"
    quality_range = (0, 100)
    quality_meaning = "libheif quality"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "chroma": 420}

    def library(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info['libheif']}, {info['HEIF']}"


class JxlCodec(_PillowCodec):
    """JPEG XL (libjxl's VarDCT) through pillow-jxl-plugin, effort 7 (libjxl's default)."""
    name, label, suffix, pillow_format = "jxl", "JPEG XL", ".jxl", "JXL"
    plugin, plugin_dist = "pillow_jxl", "pillow-jxl-plugin"
    quality_range = (0, 100)
    quality_meaning = "libjxl quality"

    def save_options(self, quality: int) -> dict:
        return {"quality": quality, "effort": 7, "lossless": False}


PILLOW_CODECS = {c.name: c for c in (JpegCodec, WebpCodec, Jpeg2000Codec, AvifCodec, HeifCodec, JxlCodec)}
