"""The embedded dataset: natural-looking synthetic scenes, generated deterministically from a seed.

A scene is a 1/f-noise background (the power spectrum of natural images) with textured objects on it. An object's
category is a (shape, texture) pair. The shape, and the hue typical of it, are coarse evidence that survives
strong compression. Every object is mottled (band-pass noise of 8-16 px periods); "grainy" objects also carry fine
grain (periods of 2.5-4 px) that "smooth" ones lack. Fine grain lives in exactly the high-frequency DCT
coefficients that low JPEG qualities quantize to zero, so, as in photographs (fur, foliage, fabric), part of the
class evidence disappears at Q=10 while the shape survives. The grain's band and strength were chosen so that a
small CNN trained for a few CPU minutes learns it (weaker grain was not learned) and Q=10 removes most of it.

Scenes keep their objects (category, mask, box), so later stages can write COCO boxes/masks and ADE20K-style
semantic maps of the very same scenes; classification uses the category of the scene's main object.
On disk the classification dataset follows ImageNet's layout: {split}/{class folder}/{name}.png, lossless PNG being
the uncompressed original. Detection scenes (make_detection_scene) hold 2-4 objects of random categories, rendered
the same way, overlapping and cut by the frame; write_coco_split writes them in COCO's layout (data/coco.py).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from jpegstudy import atomic
from jpegstudy.data.manifest import Manifest

SHAPES = ("ellipse", "triangle", "square", "star", "ring")
TEXTURES = ("grainy", "smooth")
FINE_BAND, COARSE_BAND = (0.25, 0.40), (0.06, 0.12)  # bands of spatial frequencies, cycles per pixel
GRAIN_STD = (20, 30)
CATEGORIES = [f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES]
SUPERSAMPLE = 4  # shape edges are anti-aliased by rendering the mask at 4x and averaging


def class_folder(category: int) -> str:
    # Folder names sort in category order, so ImageFolder-style sorted indices equal our category ids.
    return f"c{category:02d}_{CATEGORIES[category].replace('-', '_')}"


@dataclass
class SceneObject:
    category: int
    mask: np.ndarray  # float32 HxW visible coverage in [0, 1]: its weight in the image's pixels
    covered: np.ndarray | None = None  # bool HxW, the instance's pixels; mask >= 0.5 unless given (ties, below)

    def __post_init__(self):
        if self.covered is None:
            self.covered = self.mask >= 0.5

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the instance's pixels (those it covers at least half), as COCO writes boxes."""
        ys, xs = np.nonzero(self.covered)
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@dataclass
class Scene:
    image: np.ndarray  # uint8 HxWx3
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def label(self) -> int:
        """The category of the largest object: the classification label."""
        return max(self.objects, key=lambda o: o.mask.sum()).category


def pink_noise(rng: np.random.Generator, size: int, channels: int = 3) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum, scaled to unit standard deviation per channel."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = rng.standard_normal((channels, size, size // 2 + 1)) + 1j * rng.standard_normal(
        (channels, size, size // 2 + 1))
    spectrum /= f
    spectrum[:, 0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(size, size))
    return noise / noise.std(axis=(1, 2), keepdims=True)


def band_noise(rng: np.random.Generator, size: int, band: tuple[float, float]) -> np.ndarray:
    """Isotropic noise whose frequencies lie in `band` (cycles/pixel), unit standard deviation."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    keep = (f >= band[0]) & (f <= band[1])
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) * keep
    noise = np.fft.irfft2(spectrum, s=(size, size))
    return noise / noise.std()


def shape_mask(shape: str, size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage of a shape centred at (cx, cy)."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    y, x = np.meshgrid(coords - cy, coords - cx, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y  # rotated frame
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    if shape == "ellipse":
        inside = (u / radius) ** 2 + (v / (0.6 * radius)) ** 2 <= 1
    elif shape == "ring":
        inside = (r <= radius) & (r >= 0.55 * radius)
    elif shape == "square":
        inside = (np.abs(u) <= 0.75 * radius) & (np.abs(v) <= 0.75 * radius)
    elif shape == "triangle":
        inside = _regular_polygon(r, theta, 3, radius)
    elif shape == "star":
        # radius varies between the tips (1.0) and the notches (0.45) with five points
        edge = radius * (0.45 + 0.55 * np.abs(((theta * 5 / (2 * math.pi)) % 1) * 2 - 1))
        inside = r <= edge
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


def _regular_polygon(r: np.ndarray, theta: np.ndarray, sides: int, radius: float) -> np.ndarray:
    sector = 2 * math.pi / sides
    local = (theta % sector) - sector / 2
    return r * np.cos(local) <= radius * math.cos(sector / 2)


def make_scene(rng: np.random.Generator, category: int, size: int) -> Scene:
    """One scene whose main object has `category`."""
    background = _background(rng, size)
    radius = rng.uniform(0.24, 0.36) * size
    margin = radius * 0.8
    cx, cy = rng.uniform(margin, size - margin, size=2)
    mask, foreground = _render_object(rng, category, size, cx, cy, radius)
    return Scene(image=_composite(background, [(mask, foreground)]), objects=[SceneObject(category, mask)])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random mean colour plus 1/f noise, and a soft illumination gradient: float 3xHxW."""
    base = rng.uniform(70, 180, size=3)
    background = base[:, None, None] + rng.uniform(12, 25) * pink_noise(rng, size)
    ramp = np.linspace(-1, 1, size)
    gx, gy = rng.uniform(-15, 15, size=2)
    background += gx * ramp[None, None, :] + gy * ramp[None, :, None]
    return background


def _render_object(rng: np.random.Generator, category: int, size: int, cx: float, cy: float,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(coverage HxW, textured colour 3xHxW) of one object of `category` at (cx, cy)."""
    shape, texture = CATEGORIES[category].split("-")
    mask = shape_mask(shape, size, cx, cy, radius, rng.uniform(0, 2 * math.pi))
    # Each shape has a typical hue (as a class of things often has a typical colour), jittered per object.
    color = object_color(rng, SHAPES.index(shape))
    # Every object is mottled; only the "grainy" half of the categories also carries fine grain.
    surface = rng.uniform(15, 25) * band_noise(rng, size, COARSE_BAND)
    if texture == "grainy":
        surface += rng.uniform(*GRAIN_STD) * band_noise(rng, size, FINE_BAND)
    foreground = color[:, None, None] + surface[None] * rng.uniform(0.8, 1.2, size=3)[:, None, None]
    return mask, foreground


def _composite(background: np.ndarray, layers) -> np.ndarray:
    """Paint (coverage, colour) layers over the background in order, each over the ones before; uint8 HxWx3."""
    image = background
    for mask, foreground in layers:
        image = image * (1 - mask) + foreground * mask
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(image)


def make_detection_scene(rng: np.random.Generator, size: int, objects: tuple[int, int] = (2, 4),
                         radius: tuple[float, float] = (0.12, 0.3), min_area: int = 30) -> Scene:
    """A scene of `objects` (min, max) objects of random categories, for detection and instance segmentation.

    Objects are drawn in order, each over the ones before, and may overlap and run out of the frame, so each
    object's mask is what remains VISIBLE. An object left with fewer than `min_area` pixels is not drawn at all
    (dropping it only uncovers the others), so every object in the image is annotated. Radii are fractions of size.
    """
    if not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"objects={objects}: expected (min, max) with 1 <= min <= max")
    for _ in range(100):
        background = _background(rng, size)
        placed = []
        for _ in range(rng.integers(objects[0], objects[1] + 1)):
            category = int(rng.integers(len(CATEGORIES)))
            r = rng.uniform(*radius) * size
            # Centres stay 0.1 of the frame inside it: objects near an edge are cut by it, their middle in view.
            cx, cy = rng.uniform(0.1 * size, 0.9 * size, size=2)
            placed.append((category, *_render_object(rng, category, size, cx, cy, r)))
        visible = _visible([mask for _, mask, _ in placed])
        placed = [p for p, covered in zip(placed, _claimed(visible)) if covered.sum() >= min_area]
        if placed:
            visible = _visible([mask for _, mask, _ in placed])
            objs = [SceneObject(c, v, covered) for (c, _, _), v, covered in zip(placed, visible, _claimed(visible))]
            return Scene(image=_composite(background, [(m, f) for _, m, f in placed]), objects=objs)
    raise ValueError(f"size {size}: 100 scenes in a row had no object of {min_area} visible pixels; use a larger size")


def _visible(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each object's weight in the composite: its coverage times what the objects drawn after it leave showing."""
    visible, showing = [], np.ones_like(masks[0])
    for mask in reversed(masks):
        visible.append(mask * showing)
        showing = showing * (1 - mask)
    return visible[::-1]


def _claimed(visible: list[np.ndarray]) -> list[np.ndarray]:
    """Instance pixels (visible >= 0.5), disjoint: a pixel half-covered by two objects goes to the upper one."""
    claimed, out = np.zeros(visible[0].shape, bool), []
    for v in reversed(visible):
        covered = (v >= 0.5) & ~claimed
        claimed |= covered
        out.append(covered)
    return out[::-1]


def object_color(rng: np.random.Generator, shape_index: int) -> np.ndarray:
    """RGB (0-255) with the hue of the shape's family (±0.05 of the hue circle), random saturation and value."""
    hue = (shape_index / len(SHAPES) + rng.uniform(-0.05, 0.05)) % 1.0
    saturation, value = rng.uniform(0.45, 0.85), rng.uniform(0.45, 0.85)
    return 255 * np.array(colorsys.hsv_to_rgb(hue, saturation, value))


def split_seed(seed: int, split: str) -> int:
    # Each split has its own stream, so growing the val set never changes the train images.
    return int.from_bytes(f"{seed}/{split}".encode(), "little") % (2**63)


def scenes(seed: int, split: str, per_class: int, size: int):
    """Yield (index, category, Scene) for a split, classes interleaved, deterministic from `seed`."""
    rng = np.random.default_rng(split_seed(seed, split))
    for i in range(per_class * len(CATEGORIES)):
        category = i % len(CATEGORIES)
        yield i, category, make_scene(rng, category, size)


def write_split(out_dir: str | Path, split: str, per_class: int, size: int, seed: int,
                dataset: str = "embedded") -> Manifest:
    """Write a split as PNGs in ImageNet's class-folder layout and return its manifest (root: `out_dir`)."""
    out_dir = Path(out_dir)
    images = []
    for i, category, scene in scenes(seed, split, per_class, size):
        rel = f"{class_folder(category)}/{split}_{i:06d}.png"
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.output_path(path) as tmp:
            Image.fromarray(scene.image).save(tmp, format="PNG")
        images.append({"path": rel, "label": category, "sha256": atomic.sha256_file(path)})
    classes = [class_folder(c) for c in range(len(CATEGORIES))]
    source = {"generator": "jpegstudy.data.embedded", "seed": seed, "size": size, "per_class": per_class}
    return Manifest(dataset=dataset, split=split, root=".", classes=classes, images=images, source=source)


def detection_seed(seed: int, split: str) -> int:
    # Hashed, not split_seed: its modulus keeps only the first 8 bytes of "{seed}/{split}", which would give
    # "detection/val" and "detection/train" one stream.
    return int.from_bytes(hashlib.sha256(f"detection/{seed}/{split}".encode()).digest()[:8], "little")


def detection_scenes(seed: int, split: str, n_images: int, size: int):
    """Yield (image id from 1, Scene) of a detection split; its stream is apart from classification's."""
    rng = np.random.default_rng(detection_seed(seed, split))
    for i in range(n_images):
        yield i + 1, make_detection_scene(rng, size)


def write_coco_split(out_dir: str | Path, split: str, n_images: int, size: int, seed: int, dataset: str = "embedded",
                     manifest_dir: str | Path | None = None) -> Manifest:
    """Write a detection split in COCO's layout and return coco.manifest() of it.

    out_dir/{split}/{image id:012d}.png (lossless PNG: the uncompressed original) and
    out_dir/annotations/instances_{split}.json with boxes, areas and RLE masks of the visible instance pixels.
    Category id = category + 1. The manifest's paths are relative to `manifest_dir` (default `out_dir`), the
    folder it is to be written in, so the whole folder can be moved.
    """
    # pycocotools and coco are imported here: the classification data needs neither.
    from pycocotools import mask as mask_utils

    from jpegstudy.data import coco

    out_dir = Path(out_dir)
    images, annotations = [], []
    for image_id, scene in detection_scenes(seed, split, n_images, size):
        name = f"{image_id:012d}.png"
        path = out_dir / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.output_path(path) as tmp:
            Image.fromarray(scene.image).save(tmp, format="PNG")
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for obj in scene.objects:
            rle = mask_utils.encode(np.asfortranarray(obj.covered.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj.category + 1,
                "bbox": [float(v) for v in obj.bbox], "area": int(obj.covered.sum()),
                "segmentation": {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "iscrowd": 0})
    categories = [{"id": c + 1, "name": name, "supercategory": name.split("-")[0]}
                  for c, name in enumerate(CATEGORIES)]
    info = {"description": "jpegstudy embedded detection scenes", "generator": "jpegstudy.data.embedded",
            "seed": seed, "size": size}
    json_path = out_dir / "annotations" / f"instances_{split}.json"
    atomic.write_json(json_path, {"info": info, "images": images, "annotations": annotations,
                                  "categories": categories})
    m = coco.manifest(out_dir / split, json_path, split, dataset, relative_to=manifest_dir or out_dir)
    m.source.update(generator="jpegstudy.data.embedded", seed=seed, size=size, n_images=n_images)
    return m


# --- semantic segmentation scenes (ADE20K layout) ------------------------------------------------------------------
# The background is split by straight boundaries into 2-3 regions of "stuff", each a texture class on a random
# colour (colour says nothing of the class). Two of the four textures live in fine detail that low JPEG qualities
# quantize away (stripes of 3-4 px periods, speckle in the grain band), so Q=10 confuses them with plain and
# checkered stuff, as it confuses grainy and smooth objects.
STUFF = ("plain", "striped", "speckled", "checkered")
SEGMENTATION_CLASSES = [f"{s}-stuff" for s in STUFF] + CATEGORIES  # label i + 1; 0 is "other", never scored
EDGE = (0.25, 0.75)  # an object pixel half-covered (anti-aliased edge) is labelled 0, "other", as ADE leaves edges


def _stuff(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A stuff region's colour and texture over the whole frame: float 3xHxW."""
    base = rng.uniform(60, 190, size=3)
    soft = rng.uniform(6, 12) * pink_noise(rng, size)  # every surface has some low-frequency unevenness
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    along = x * math.cos(angle) + y * math.sin(angle)
    if kind == "striped":
        pattern = 30 * np.sin(2 * math.pi * along / rng.uniform(3.0, 4.0) + rng.uniform(0, 2 * math.pi))
    elif kind == "speckled":
        pattern = rng.uniform(*GRAIN_STD) * band_noise(rng, size, FINE_BAND)
    elif kind == "checkered":
        period = rng.uniform(12, 16)
        across = -x * math.sin(angle) + y * math.cos(angle)
        pattern = 22 * np.sign(np.sin(2 * math.pi * along / period) * np.sin(2 * math.pi * across / period))
    else:
        pattern = np.zeros((size, size))
    return base[:, None, None] + soft + pattern[None]


def _regions(rng: np.random.Generator, size: int) -> np.ndarray:
    """Region index (0..n-1) of every pixel: one random line splits the frame, and one side is split once more
    with probability 1/2."""
    y, x = np.mgrid[0:size, 0:size] + 0.5

    def side(inside: np.ndarray) -> np.ndarray:
        cx, cy = rng.uniform(0.3 * size, 0.7 * size, size=2)
        angle = rng.uniform(0, math.pi)
        return inside & ((x - cx) * math.sin(angle) - (y - cy) * math.cos(angle) > 0)

    regions = side(np.ones((size, size), bool)).astype(np.int64)
    if rng.uniform() < 0.5:
        regions[side(regions == 1)] = 2
    return regions


def make_segmentation_scene(rng: np.random.Generator, size: int, objects: tuple[int, int] = (1, 3),
                            radius: tuple[float, float] = (0.2, 0.36)) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 HxWx3, label map uint8 HxW) of a scene of stuff regions and objects (make_detection_scene's
    objects); labels index SEGMENTATION_CLASSES + 1, 0 on objects' anti-aliased edges."""
    regions = _regions(rng, size)
    kinds = rng.permutation(len(STUFF))[:regions.max() + 1]
    background = np.zeros((3, size, size))
    label = np.zeros((size, size), np.uint8)
    for region, kind in enumerate(kinds):
        inside = regions == region
        background[:, inside] = _stuff(rng, STUFF[kind], size)[:, inside]
        label[inside] = kind + 1
    layers = []
    for _ in range(rng.integers(objects[0], objects[1] + 1)):
        category = int(rng.integers(len(CATEGORIES)))
        cx, cy = rng.uniform(0.15 * size, 0.85 * size, size=2)
        mask, foreground = _render_object(rng, category, size, cx, cy, rng.uniform(*radius) * size)
        layers.append((category, mask, foreground))
    if layers:
        visible = _visible([mask for _, mask, _ in layers])
        for (category, _, _), v, covered in zip(layers, visible, _claimed(visible)):
            label[covered] = len(STUFF) + category + 1
        edge = (sum(visible) > EDGE[0]) & (sum(visible) < EDGE[1])
        label[edge] = 0
    return _composite(background, [(m, f) for _, m, f in layers]), label


def segmentation_seed(seed: int, split: str) -> int:
    return int.from_bytes(hashlib.sha256(f"segmentation/{seed}/{split}".encode()).digest()[:8], "little")


def write_ade_split(out_dir: str | Path, split: str, n_images: int, size: int, seed: int, dataset: str = "embedded",
                    manifest_dir: str | Path | None = None) -> Manifest:
    """Write a segmentation split in ADE20K's layout (data/ade20k.py) and return ade20k.manifest() of it:
    out_dir/images/{training,validation}/ADE_{train,val}_{n:08d}.png (lossless: the uncompressed original),
    out_dir/annotations/.../*.png label maps and out_dir/objectInfo150.txt with SEGMENTATION_CLASSES."""
    from jpegstudy.data import ade20k

    out_dir = Path(out_dir)
    folder = ade20k.SPLITS[split]
    short = {"training": "train", "validation": "val"}[folder]
    rng = np.random.default_rng(segmentation_seed(seed, split))
    for kind in ("images", "annotations"):
        (out_dir / kind / folder).mkdir(parents=True, exist_ok=True)
    for n in range(1, n_images + 1):
        image, label = make_segmentation_scene(rng, size)
        name = f"ADE_{short}_{n:08d}.png"
        for kind, array in (("images", image), ("annotations", label)):
            with atomic.output_path(out_dir / kind / folder / name) as tmp:
                Image.fromarray(array).save(tmp, format="PNG")
    ade20k.write_classes(out_dir / ade20k.CLASS_FILE, SEGMENTATION_CLASSES)
    m = ade20k.manifest(out_dir, split, dataset, relative_to=manifest_dir or out_dir)
    m.source.update(generator="jpegstudy.data.embedded", seed=seed, size=size, n_images=n_images)
    return m
