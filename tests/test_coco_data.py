"""COCO-layout data: the embedded detection scenes written as COCO, jpegstudy.data.coco on them and on hand-written
annotation files (gapped category ids, polygons, RLE, crowds, degenerate boxes, every user error)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from jpegstudy import atomic
from jpegstudy.data import coco, embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.data.coco import CocoLayoutError

SIZE, N_IMAGES, SEED = 64, 6, 2


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    m = embedded.write_coco_split(out, "val", N_IMAGES, SIZE, seed=SEED)
    return out, m, json.loads((out / "annotations" / "instances_val.json").read_text())


def test_classification_split_is_unchanged(tmp_path):
    # Computed with the code of commit 714230f (before detection scenes shared its rendering code):
    # embedded.write_split(d, "val", 1, 40, seed=11) image sha256s, and a sha256 over image and mask bytes of
    # embedded.scenes(11, "train", 2, 40).
    expected = [
        "7a2639f82159cedf3485d2fe45c70424cea8fe786f0f43a47887fda290c231fe",
        "313f605d051650a2647ac9a97213b7dfe8c4fb07c2c2d711f317f91196ef2c89",
        "5ab277d848fb4ca2befa05b2e63e94dbec081e457e9f35501c5f076177cadc9e",
        "12ac40f8f47441ef84352db0b5ba58618aaa0b77c345de9c952a4dcb99eef725",
        "6dc1d723481f1dfc6ab1c117a0ad9ac829c36646799d58251e7642b7246b4b8b",
        "4fb61d65efb41b46810de1f537734d5493b5e1df8dda070309564554513661d1",
        "ee334b521f9c01ad0c102035f99c58d9b5ee896a73200d86bbe6d629ec822cda",
        "255865ac6324733af4a5abe04b2ea1bf6bd465181633d0f35af432803878a4f2",
        "e6789a07282ec0295bb35a74a59524bcac5006f45acda22e02544d34c07526e8",
        "353cceaa62739913ddacc958297a882d19cd3e5ea22301759532772555335e31",
    ]
    assert [im["sha256"] for im in embedded.write_split(tmp_path, "val", 1, 40, seed=11).images] == expected
    h = hashlib.sha256()
    for _, _, scene in embedded.scenes(11, "train", 2, 40):
        h.update(scene.image.tobytes())
        h.update(scene.objects[0].mask.tobytes())
    assert h.hexdigest() == "914e410f311e7983b91c3d5c445b016d47ac841018907c48c29536d995971682"


def test_written_split_is_coco_and_loads_with_pycocotools(written):
    out, m, obj = written
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(out / "annotations" / "instances_val.json"))
    assert sorted(api.getImgIds()) == list(range(1, N_IMAGES + 1))
    assert [c["id"] for c in obj["categories"]] == list(range(1, 11))
    assert [c["name"] for c in obj["categories"]] == embedded.CATEGORIES
    assert obj["categories"][9] == {"id": 10, "name": "ring-smooth", "supercategory": "ring"}
    assert obj["images"][0] == {"id": 1, "file_name": "000000000001.png", "width": SIZE, "height": SIZE}
    assert [a["id"] for a in obj["annotations"]] == list(range(1, len(obj["annotations"]) + 1))
    assert len(obj["annotations"]) >= 2 * N_IMAGES
    for a in obj["annotations"]:
        binary = mask_utils.decode(a["segmentation"])
        assert binary.shape == (SIZE, SIZE) and a["iscrowd"] == 0
        assert binary.sum() == a["area"] >= 30  # no instance is (nearly) invisible
        ys, xs = np.nonzero(binary)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert mask_utils.toBbox(a["segmentation"]).tolist() == a["bbox"]
    for im in obj["images"]:
        with Image.open(out / "val" / im["file_name"]) as png:
            assert png.format == "PNG" and png.size == (SIZE, SIZE)


def test_written_split_is_deterministic(written, tmp_path):
    out, m, _ = written
    again = embedded.write_coco_split(tmp_path, "val", N_IMAGES, SIZE, seed=SEED, manifest_dir=tmp_path / "val")
    assert again.root == "." and again.source["annotations"] == "../annotations/instances_val.json"
    name = "annotations/instances_val.json"
    assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    assert [im["sha256"] for im in again.images] == [im["sha256"] for im in m.images]
    other = embedded.write_coco_split(tmp_path / "other", "train", N_IMAGES, SIZE, seed=SEED)
    assert not set(im["sha256"] for im in other.images) & set(im["sha256"] for im in m.images)


def test_manifest_of_written_split(written):
    out, m, _ = written
    assert m.classes == embedded.CATEGORIES and m.source["category_ids"] == list(range(1, 11))
    assert [im["id"] for im in m.images] == list(range(1, N_IMAGES + 1))
    assert m.images[2]["path"] == "000000000003.png" and (m.images[2]["width"], m.images[2]["height"]) == (64, 64)
    assert m.root == "val" and m.source["annotations"] == "annotations/instances_val.json"
    assert m.source["annotations_sha256"] == atomic.sha256_file(out / "annotations" / "instances_val.json")
    assert m.source["seed"] == SEED and m.source["degenerate_ann_ids"] == []
    m.write(out / "manifest.json")
    read = manifests.read(out / "manifest.json")
    for i, im in enumerate(read.images):
        assert atomic.sha256_file(read.path_of(i)) == im["sha256"]
    assert sorted(coco.load_annotations(read).getImgIds()) == list(range(1, N_IMAGES + 1))


def test_occlusion_leaves_disjoint_visible_masks_and_frames_cut_objects(written):
    _, _, obj = written
    by_image: dict[int, list] = {}
    for a in obj["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    occluded = touching = 0
    for anns in by_image.values():
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in anns]
        assert sum(mk.astype(int) for mk in masks).max() == 1  # every pixel belongs to one instance at most
        for i, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            touching += x == 0 or y == 0 or x + w == SIZE or y + h == SIZE
            for b in anns[i + 1:]:
                bx, by, bw, bh = b["bbox"]
                overlap = max(0, min(x + w, bx + bw) - max(x, bx)) * max(0, min(y + h, by + bh) - max(y, by))
                occluded += overlap >= 20  # boxes overlap, masks do not: one hides part of the other
    assert occluded >= 1 and touching >= 1
    # The scenes written are these; the visible weights of a pixel never add up to more than the pixel.
    for image_id, scene in embedded.detection_scenes(SEED, "val", N_IMAGES, SIZE):
        assert sum(o.mask for o in scene.objects).max() <= 1 + 1e-6
        for o, a in zip(scene.objects, by_image[image_id]):
            assert (mask_utils.decode(a["segmentation"]) == o.covered).all() and a["category_id"] == o.category + 1


def test_a_later_object_hides_the_earlier_one():
    lower = embedded.shape_mask("square", 32, 12, 16, 8, 0)
    upper = embedded.shape_mask("square", 32, 20, 16, 8, 0)
    low, up = embedded._visible([lower, upper])
    assert (up == upper).all()
    assert low[16, 16] == 0 and lower[16, 16] == 1  # covered by both: the upper one shows
    assert low[16, 8] == 1  # only the lower one is there


def test_a_pixel_half_covered_by_two_goes_to_the_upper():
    # visible weights: at the first pixel both are 0.5, and the upper object takes it
    low, up = np.array([[0.5, 1.0]], np.float32), np.array([[0.5, 0.0]], np.float32)
    low_c, up_c = embedded._claimed([low, up])
    assert low_c.tolist() == [[False, True]] and up_c.tolist() == [[True, False]]


# Hand-written annotation files: category ids with gaps, listed out of order, as real COCO's are.

def write_png(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)


POLYGON = [[2, 3, 10, 3, 10, 8, 2, 8]]
CROWD_RLE = {"counts": [16, 32, 272], "size": [16, 20]}  # uncompressed, column-major: columns 1 and 2 are set


def small_rle():
    binary = np.zeros((16, 20), np.uint8)
    binary[10:14, 12:18] = 1
    rle = mask_utils.encode(np.asfortranarray(binary))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def hand_written(tmp_path, **change):
    obj = {
        "images": [{"id": 42, "file_name": "b.png", "width": 20, "height": 16},
                   {"id": 7, "file_name": "a.png", "width": 20, "height": 16},
                   {"id": 8, "file_name": "c.png", "width": 20, "height": 16}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 5, "bbox": [2, 3, 8, 5], "area": 40.0, "iscrowd": 0,
             "segmentation": POLYGON},
            {"id": 2, "image_id": 42, "category_id": 1, "bbox": [1, 0, 2, 16], "area": 32.0, "iscrowd": 1,
             "segmentation": CROWD_RLE},
            {"id": 3, "image_id": 42, "category_id": 90, "bbox": [12, 10, 6, 4], "area": 24, "iscrowd": 0,
             "segmentation": small_rle()},
            {"id": 4, "image_id": 42, "category_id": 1, "bbox": [5, 5, 0, 3], "area": 0, "iscrowd": 0,
             "segmentation": [[5, 5, 5, 8, 5, 5]]},
            {"id": 5, "image_id": 7, "category_id": 90, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        ],
    }
    obj.update(change)
    images = tmp_path / "val2017"
    for im in obj["images"]:
        write_png(images / im["file_name"], 20, 16)
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return images, path


def test_manifest_of_a_users_coco_maps_gapped_category_ids(tmp_path, capsys):
    images, path = hand_written(tmp_path)
    m = coco.manifest(images, path, "val2017")
    assert m.classes == ["person", "airplane", "toothbrush"] and m.source["category_ids"] == [1, 5, 90]
    assert [(im["id"], im["path"]) for im in m.images] == [(7, "a.png"), (8, "c.png"), (42, "b.png")]
    assert m.root == str(images.resolve()) and m.source["annotations"] == str(path.resolve())
    assert m.images[0]["sha256"] == atomic.sha256_file(images / "a.png")
    assert m.source["degenerate_ann_ids"] == [4]
    assert capsys.readouterr().err == (
        f"{path}: 1 annotation(s) with a degenerate box (width or height <= 0) skipped: ids 4\n")
    api = coco.load_annotations(m)
    assert sorted(api.getAnnIds()) == [1, 2, 3, 5]  # the crowd stays (COCOeval ignores it); the degenerate one not
    assert capsys.readouterr().err == ""  # said once, when the manifest was made
    assert coco.manifest(images, path, "val2017", workers=2).images == m.images


def test_to_targets_decodes_polygons_and_rle_and_leaves_out_crowds(tmp_path):
    images, path = hand_written(tmp_path)
    m = coco.manifest(images, path, "val2017")
    t = coco.to_targets(coco.load_annotations(m), 42, m.source["category_ids"])
    assert t["boxes"].tolist() == [[2, 3, 10, 8], [12, 10, 18, 14]]
    assert t["labels"].tolist() == [2, 3] and t["iscrowd"].tolist() == [0, 0] and t["image_id"] == 42
    assert t["masks"].shape == (2, 16, 20) and str(t["masks"].dtype) == "torch.uint8"
    polygon_area = mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(POLYGON, 16, 20)))
    assert t["masks"][0].sum() == polygon_area > 0
    assert t["masks"][1].sum() == mask_utils.area(small_rle()) == 24
    assert t["masks"][1][10:14, 12:18].all()
    # the crowd region decodes too, but is no target
    api = coco.load_annotations(m)
    crowd = api.annToMask(api.anns[2])
    assert crowd.sum() == mask_utils.area(mask_utils.frPyObjects(CROWD_RLE, 16, 20)) == 32 and crowd[:, 1:3].all()
    none = coco.to_targets(api, 8, m.source["category_ids"])
    assert none["boxes"].shape == (0, 4) and none["masks"].shape == (0, 16, 20)
    assert none["labels"].tolist() == []


def test_to_targets_refuses_a_category_outside_the_classes(tmp_path):
    images, path = hand_written(tmp_path)
    api = coco.load_annotations(coco.manifest(images, path, "val2017"))
    with pytest.raises(CocoLayoutError) as e:
        coco.to_targets(api, 7, [1, 5])
    assert str(e.value) == "annotation 5: category_id 90 is not among the classes"


def one_line(fn, *args, **kwargs) -> str:
    with pytest.raises(CocoLayoutError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_annotation_files_give_one_line_naming_file_and_id(tmp_path):
    images, path = hand_written(tmp_path)
    missing = tmp_path / "annotations" / "nope.json"
    assert one_line(coco.manifest, images, missing, "val") == f"{missing}: annotation file not found"
    path.write_text("{not json")
    assert one_line(coco.manifest, images, path, "val") == (
        f"{path}: not valid JSON (Expecting property name enclosed in double quotes at line 1)")
    path.write_text('{"images": []}')
    assert one_line(coco.manifest, images, path, "val") == (
        f"{path}: not a COCO annotation file (no 'categories' or 'annotations' list)")
    path.write_text("[]")
    assert one_line(coco.manifest, images, path, "val") == (
        f"{path}: not a COCO annotation file (a JSON object with 'images', 'annotations', 'categories' expected)")


@pytest.mark.parametrize("change, message", [
    ({"image_id": 99}, "annotation 1 names image_id 99, which is not in 'images'"),
    ({"category_id": 2}, "annotation 1 names category_id 2, which is not in 'categories'"),
    ({"bbox": [1, 2, 3]}, "annotation 1 has bbox [1, 2, 3], not [x, y, width, height]"),
    ({"area": None}, "annotation 1 has no 'area'"),
    ({"id": 3}, "annotation id 3 appears twice in 'annotations'"),
])
def test_bad_annotations(tmp_path, change, message):
    _, path = hand_written(tmp_path)
    obj = json.loads(path.read_text())
    first = {k: v for k, v in {**obj["annotations"][0], **change}.items() if v is not None}
    images, path = hand_written(tmp_path, annotations=[first] + obj["annotations"][1:])
    assert one_line(coco.manifest, images, path, "val") == f"{path}: {message}"


def test_bad_images_and_categories(tmp_path):
    images, path = hand_written(tmp_path, categories=[{"id": 1, "name": "person"}, {"id": 1, "name": "bicycle"},
                                                      {"id": 5, "name": "airplane"}, {"id": 90, "name": "x"}])
    assert one_line(coco.manifest, images, path, "val") == f"{path}: category id 1 appears twice in 'categories'"
    images, path = hand_written(tmp_path, images=[{"id": 42, "file_name": "b.png", "width": 20},
                                                  {"id": 7, "file_name": "a.png", "width": 20, "height": 16}])
    assert one_line(coco.manifest, images, path, "val") == f"{path}: image 42 has no 'height'"

    images, path = hand_written(tmp_path)
    (images / "b.png").unlink()
    assert one_line(coco.manifest, images, path, "val") == f"{images / 'b.png'}: no such file (image 42 of {path})"
    assert len(coco.manifest(images, path, "val", check=False).images) == 3  # unchecked, it is only listed

    write_png(images / "b.png", 16, 16)
    assert one_line(coco.manifest, images, path, "val") == (
        f"{images / 'b.png'}: 16x16 pixels, but image 42 of {path} is 20x16")


def test_load_annotations_refuses_a_changed_json(tmp_path):
    images, path = hand_written(tmp_path)
    m = coco.manifest(images, path, "val2017")
    path.write_text(path.read_text().replace('"toothbrush"', '"hair drier"'))
    assert one_line(coco.load_annotations, m) == (
        f"{path}: its sha256 differs from the manifest's; the file changed after it was listed "
        "(rerun the rule that wrote the manifest)")
