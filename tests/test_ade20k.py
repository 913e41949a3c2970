"""ADE20K-layout data: the embedded segmentation scenes, the in-place listing of an ADEChallengeData2016 folder, its
bad input, and compressed copies (the image compressed, the label map never)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from jpegstudy import compress
from jpegstudy.data import ade20k, embedded, training
from jpegstudy.data import manifest as manifests


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("parsing")
    m = embedded.write_ade_split(root, "val", 6, 32, seed=0)
    m.write(root / "manifest.json")
    return root


def test_the_embedded_scenes_are_written_in_ade20k_layout_the_same_each_time(split, tmp_path):
    m = manifests.read(split / "manifest.json")
    assert m.classes == embedded.SEGMENTATION_CLASSES and len(m.classes) == 14
    assert ade20k.read_classes(split / "objectInfo150.txt") == m.classes
    assert [e["path"] for e in m.images] == [f"ADE_val_{n:08d}.png" for n in range(1, 7)]
    entry = m.images[0]
    assert (split / "images/validation" / entry["path"]).is_file()
    label = ade20k.load_label(m, entry)
    assert label.shape == (32, 32) and label.dtype == np.uint8 and label.max() <= 14
    again = embedded.write_ade_split(tmp_path, "val", 6, 32, seed=0)
    assert [e["sha256"] for e in again.images] == [e["sha256"] for e in m.images]
    assert [e["annotation_sha256"] for e in again.images] == [e["annotation_sha256"] for e in m.images]


def test_a_scene_labels_stuff_regions_objects_and_their_edges():
    image, label = embedded.make_segmentation_scene(np.random.default_rng(3), 64)
    assert image.shape == (64, 64, 3) and label.shape == (64, 64)
    present = set(np.unique(label).tolist())
    stuff = {i + 1 for i in range(len(embedded.STUFF))}
    assert 2 <= len(present & stuff) <= 3  # the background is 2-3 regions, each its own stuff class
    assert present - stuff - {0}, "at least one object class"
    assert 0 < (label == 0).mean() < 0.1  # only the objects' half-covered edges are "other"


def test_objectinfo150_is_read_as_ade_ships_it(tmp_path):
    (tmp_path / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n2\t0.1072\t6046\t612\tbuilding, edifice\n")
    assert ade20k.read_classes(tmp_path / "objectInfo150.txt") == ["wall", "building"]
    (tmp_path / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n2\t0.1\t1\t1\twall\n")
    with pytest.raises(ade20k.AdeLayoutError, match=r"objectInfo150.txt: class indices are not 1..1"):
        ade20k.read_classes(tmp_path / "objectInfo150.txt")


def _copy(split, tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    shutil.copytree(split, root)
    return root


def test_a_folder_is_listed_in_place_with_both_files_checked(split, tmp_path):
    root = _copy(split, tmp_path)
    m = ade20k.manifest(root, "val")
    assert m.root == str((root / "images/validation").resolve()) and m.source["layout"] == "ade20k"
    assert m.images[0]["width"] == 32 and len(m.images[0]["annotation_sha256"]) == 64
    assert ade20k.load_label(m, m.images[0]).shape == (32, 32)


@pytest.mark.parametrize("damage, message", [
    (lambda r: Image.new("L", (16, 32)).save(r / "annotations/validation/ADE_val_00000002.png"),
     r"ADE_val_00000002.png: 16x32 pixels, but its image ADE_val_00000002.png is 32x32"),
    (lambda r: (r / "annotations/validation/ADE_val_00000003.png").unlink(),
     r"images/validation/ADE_val_00000003.png: no label map .*ADE_val_00000003.png"),
    (lambda r: (r / "images/validation/ADE_val_00000004.png").unlink(),
     r"annotations/validation/ADE_val_00000004.png: a label map without an image"),
    (lambda r: Image.fromarray(np.full((32, 32), 15, np.uint8)).save(r / "annotations/validation/ADE_val_00000001.png"),
     r"ADE_val_00000001.png: label 15 above the 14 classes of the class list"),
    (lambda r: Image.new("RGB", (32, 32)).save(r / "annotations/validation/ADE_val_00000005.png"),
     r"ADE_val_00000005.png: a RGB image; a label map has one 8-bit channel"),
    (lambda r: (r / "annotations/validation/ADE_val_00000006.png").write_bytes(b"not a png"),
     r"ADE_val_00000006.png: cannot decode label map"),
])
def test_bad_input_is_one_line_naming_the_file(split, tmp_path, damage, message):
    root = _copy(split, tmp_path)
    damage(root)
    with pytest.raises(ade20k.AdeLayoutError, match=message) as info:
        ade20k.manifest(root, "val")
    assert "\n" not in str(info.value)


def test_the_cli_writes_nothing_when_the_folder_is_bad(split, tmp_path):
    import subprocess
    import sys

    root = _copy(split, tmp_path)
    (root / "annotations/validation/ADE_val_00000001.png").unlink()
    out = tmp_path / "manifest.json"
    result = subprocess.run([sys.executable, "-m", "jpegstudy.cli", "prepare-ade20k", "--root", str(root),
                             "--split", "val", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode != 0 and "no label map" in result.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_a_label_map_changed_after_listing_is_refused(split, tmp_path):
    root = _copy(split, tmp_path)
    m = ade20k.manifest(root, "val")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "annotations/validation/ADE_val_00000001.png")
    with pytest.raises(ade20k.AdeLayoutError, match="its sha256 differs from the manifest's"):
        ade20k.load_label(m, m.images[0])


def test_compressed_copies_keep_each_label_map_uncompressed(split, tmp_path):
    out = compress.compress_split(split / "manifest.json", 10, tmp_path / "val-q10")
    m = manifests.read(tmp_path / "val-q10" / "manifest.json")
    assert out.images[0]["path"].endswith(".jpg") and m.source["layout"] == "ade20k"
    original = manifests.read(split / "manifest.json")
    for entry, source in zip(m.images, original.images):
        assert entry["annotation_sha256"] == source["annotation_sha256"]
        assert np.array_equal(ade20k.load_label(m, entry), ade20k.load_label(original, source))
    # the copy's references stay relative, so results/ can move
    assert not json.loads((tmp_path / "val-q10" / "manifest.json").read_text())["source"]["annotations"].startswith("/")


def test_training_items_flip_the_label_map_with_the_image(split):
    m = manifests.read(split / "manifest.json")
    items, collate = training.training_set(m)
    assert collate is None
    truth = torch.from_numpy(ade20k.load_label(m, m.images[0])).long()
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, label = items[0]
        assert image.dtype == torch.uint8 and label.dtype == torch.int64
        flipped = torch.equal(label, truth.flip(-1))
        assert flipped or torch.equal(label, truth)
        seen.add(flipped)
    assert seen == {True, False}
