import numpy as np
from PIL import Image

from jpegstudy import jpeg
from jpegstudy.data import embedded, manifest


def high_frequency_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared Laplacian of the luminance inside the object (away from its edge)."""
    y = image.astype(float) @ [0.299, 0.587, 0.114]
    lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    inner = mask[1:-1, 1:-1] == 1.0
    return float((lap[inner] ** 2).mean())


def test_split_is_deterministic_and_in_imagenet_layout(tmp_path):
    a = embedded.write_split(tmp_path / "a", "val", 2, 32, seed=3)
    b = embedded.write_split(tmp_path / "b", "val", 2, 32, seed=3)
    c = embedded.write_split(tmp_path / "c", "val", 2, 32, seed=4)
    assert [im["sha256"] for im in a.images] == [im["sha256"] for im in b.images]
    assert [im["sha256"] for im in a.images] != [im["sha256"] for im in c.images]
    assert len(a.images) == 2 * len(embedded.CATEGORIES) == 20
    # class folders sort in category order, so folder-based loaders give the same label indices
    assert a.classes == sorted(a.classes) and a.classes[3] == "c03_triangle_smooth"
    first = a.images[3]
    assert first["path"].startswith("c03_triangle_smooth/") and first["label"] == 3
    a.write(tmp_path / "a" / "m.json")
    again = manifest.read(tmp_path / "a" / "m.json")
    with Image.open(again.path_of(3)) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)


def test_train_and_val_streams_are_independent():
    val = [s.image for _, _, s in embedded.scenes(0, "val", 1, 32)]
    train = [s.image for _, _, s in embedded.scenes(0, "train", 1, 32)]
    assert not any((v == t).all() for v, t in zip(val, train))


def test_grain_is_fine_evidence_that_q10_removes():
    rng = np.random.default_rng(0)
    ratios_clean, ratios_q10, ratios_q90 = [], [], []
    for shape in range(len(embedded.SHAPES)):
        grainy = embedded.make_scene(rng, 2 * shape, 64)
        smooth = embedded.make_scene(rng, 2 * shape + 1, 64)
        assert grainy.label == 2 * shape and smooth.label == 2 * shape + 1

        def energy(scene, quality=None):
            img = scene.image
            if quality:
                img = np.asarray(jpeg.decode(jpeg.compress(Image.fromarray(img), quality)))
            return high_frequency_energy(img, scene.objects[0].mask)

        ratios_clean.append(energy(grainy) / energy(smooth))
        ratios_q90.append(energy(grainy, 90) / energy(smooth, 90))
        ratios_q10.append(energy(grainy, 10) / energy(smooth, 10))
    # Clean and at Q=90 the grain makes grainy objects many times busier; at Q=10 most of that is gone.
    assert min(ratios_clean) > 5 and min(ratios_q90) > 3
    assert np.median(ratios_q10) < np.median(ratios_clean) / 3


def test_objects_keep_masks_and_boxes_for_detection_and_segmentation():
    scene = embedded.make_scene(np.random.default_rng(5), 4, 48)
    (obj,) = scene.objects
    x, y, w, h = obj.bbox
    covered = obj.mask >= 0.5
    assert covered[y:y + h, x:x + w].sum() == covered.sum()  # the box holds the whole object
    assert covered[y, x:x + w].any() and covered[y + h - 1, x:x + w].any()  # and is tight
    assert obj.mask.max() == 1.0 and ((obj.mask > 0) & (obj.mask < 1)).any()  # anti-aliased edge
