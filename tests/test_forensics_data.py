"""CNNDetection-layout forensics sets: both layouts listed in place with labels, groups and each file's actual
encoding, the manifest's round trip and relative root, bad layouts refused naming the folder or file, and write_set's
lossless PNGs."""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from jpegstudy.data import forensics
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import BadImageError


def _image(path, size=(8, 6), seed=0, format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=format)
    return path


def _flat(root):
    _image(root / "0_real/b.png", seed=1)
    _image(root / "0_real/a.jpg", size=(5, 7), seed=2)
    _image(root / "1_fake/00001.png", seed=3)
    (root / "0_real/.DS_Store").write_bytes(b"\0\1")
    (root / "README").write_text("not an image")
    return root


def _grouped(root):
    for g, group in enumerate(["cat", "airplane"]):
        _image(root / group / "0_real/r.png", seed=10 + g)
        _image(root / group / "1_fake/00002.png", seed=20 + g)
        _image(root / group / "1_fake/00001.PNG", seed=30 + g)
    return root


def test_a_set_without_groups_is_listed_with_labels_sizes_hashes_and_encodings(tmp_path):
    root = _flat(tmp_path / "set")
    m = forensics.manifest(root, "test")
    assert forensics.is_forensics(m) and m.classes == ["real", "fake"] and m.root == str(root.resolve())
    assert [(e["path"], e["label"], e["group"]) for e in m.images] == [
        ("0_real/a.jpg", 0, None), ("0_real/b.png", 0, None), ("1_fake/00001.png", 1, None)]
    for i, e in enumerate(m.images):
        assert e["sha256"] == hashlib.sha256(m.path_of(i).read_bytes()).hexdigest()
    assert [(e["width"], e["height"]) for e in m.images] == [(5, 7), (8, 6), (8, 6)]
    assert [e["encoding"] for e in m.images] == ["jpeg", "lossless", "lossless"]
    assert m.source == {"layout": "forensics", "groups": [], "encodings": ["jpeg", "lossless"],
                        "counts": {"real": 2, "fake": 1}}


def test_group_folders_are_listed_by_group_then_label_then_name(tmp_path):
    root = _grouped(tmp_path / "progan")
    m = forensics.manifest(root, "test", dataset="progan", workers=2)
    assert [(e["path"], e["label"], e["group"]) for e in m.images] == [
        ("airplane/0_real/r.png", 0, "airplane"), ("airplane/1_fake/00001.PNG", 1, "airplane"),
        ("airplane/1_fake/00002.png", 1, "airplane"), ("cat/0_real/r.png", 0, "cat"),
        ("cat/1_fake/00001.PNG", 1, "cat"), ("cat/1_fake/00002.png", 1, "cat")]
    assert m.dataset == "progan" and m.source["groups"] == ["airplane", "cat"]
    assert m.source["counts"] == {"real": 2, "fake": 4} and m.source["encodings"] == ["lossless"]
    assert all(m.path_of(i).is_file() for i in range(len(m.images)))


def test_the_encoding_is_read_from_the_bytes_not_the_suffix(tmp_path):
    root = tmp_path / "set"
    _image(root / "0_real/a.png", format="JPEG")  # a JPEG renamed .png has still lost what JPEG removes
    _image(root / "1_fake/b.jpg", format="PNG")
    m = forensics.manifest(root, "test")
    assert [e["encoding"] for e in m.images] == ["jpeg", "lossless"]
    unchecked = forensics.manifest(root, "test", check=False)  # without decoding, only the suffix is known
    assert [e["encoding"] for e in unchecked.images] == ["lossless", "jpeg"]


def test_without_check_nothing_is_decoded(tmp_path):
    root = _flat(tmp_path / "set")
    (root / "1_fake/broken.png").write_bytes(b"not a png")
    m = forensics.manifest(root, "test", check=False)
    assert "1_fake/broken.png" in [e["path"] for e in m.images]
    assert not any(key in e for e in m.images for key in ("width", "height", "sha256"))
    with pytest.raises(BadImageError, match=r"broken.png: not an image Pillow can read"):
        forensics.manifest(root, "test")


def test_the_manifest_round_trips_and_a_relative_root_resolves(tmp_path):
    root = _grouped(tmp_path / "data" / "progan")
    out = tmp_path / "results" / "manifests"
    out.mkdir(parents=True)
    m = forensics.manifest(root, "test", relative_to=out)
    assert not m.root.startswith("/")
    m.write(out / "manifest.json")
    back = manifests.read(out / "manifest.json")
    assert forensics.is_forensics(back)
    assert (back.dataset, back.split, back.classes, back.images, back.source) == (
        m.dataset, m.split, m.classes, m.images, m.source)
    assert back.path_of(0).resolve() == (root / "airplane/0_real/r.png").resolve() and back.path_of(0).is_file()


def _mkdir(path):
    path.mkdir(parents=True)


@pytest.mark.parametrize("damage, names", [
    (lambda r: shutil.rmtree(r / "0_real"), "set: no 0_real folder"),
    (lambda r: shutil.rmtree(r / "1_fake"), "set: no 1_fake folder"),
    (lambda r: (r / "1_fake/f.png").unlink(), "set/1_fake: no images"),
    (lambda r: (r / "1_fake/f.png").rename(r / "1_fake/f.txt"), "set/1_fake: no images"),
    (lambda r: _image(r / "g/0_real/x.png") and _image(r / "g/1_fake/y.png"), "set: mixes both layouts"),
    (lambda r: _image(r / "stray.png"), "set/stray.png: an image outside 0_real/1_fake"),
])
def test_a_bad_set_without_groups_is_refused_naming_it(tmp_path, damage, names):
    root = tmp_path / "set"
    _image(root / "0_real/r.png")
    _image(root / "1_fake/f.png")
    damage(root)
    with pytest.raises(forensics.ForensicsLayoutError, match=names) as info:
        forensics.manifest(root, "test")
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("damage, names", [
    (lambda r: shutil.rmtree(r / "cat/1_fake"), "progan/cat: no 1_fake folder"),
    (lambda r: shutil.rmtree(r / "cat/0_real"), "progan/cat: no 0_real folder"),
    (lambda r: (r / "cat/0_real/r.png").unlink(), "progan/cat/0_real: no images"),
    (lambda r: _mkdir(r / "dog"), "progan/dog: a group folder without 0_real or 1_fake"),
    # 0_real/1_fake two levels down do not make "deep" a group
    (lambda r: _image(r / "deep/x/0_real/a.png") and _image(r / "deep/x/1_fake/b.png"),
     "progan/deep: a group folder without 0_real or 1_fake"),
    (lambda r: _image(r / "cat/stray.jpg", format="JPEG"), "progan/cat/stray.jpg: an image outside 0_real/1_fake"),
    (lambda r: _image(r / "stray.webp"), "progan/stray.webp: an image outside 0_real/1_fake"),
])
def test_a_bad_set_with_groups_is_refused_naming_the_group(tmp_path, damage, names):
    root = _grouped(tmp_path / "progan")
    damage(root)
    with pytest.raises(forensics.ForensicsLayoutError, match=names) as info:
        forensics.manifest(root, "test")
    assert "\n" not in str(info.value)


def test_a_set_nested_two_levels_down_is_not_a_set(tmp_path):
    _image(tmp_path / "set/a/b/0_real/x.png")
    _image(tmp_path / "set/a/b/1_fake/y.png")
    with pytest.raises(forensics.ForensicsLayoutError, match=r"set: no 0_real folder \(.*set/0_real not found\)"):
        forensics.manifest(tmp_path / "set", "test")


def test_a_root_that_is_not_a_folder_is_refused(tmp_path):
    for root in (tmp_path / "missing", _image(tmp_path / "file.png")):
        with pytest.raises(forensics.ForensicsLayoutError, match=rf"{root.name}: not a folder") as info:
            forensics.manifest(root, "test")
        assert "\n" not in str(info.value)


def test_write_set_writes_lossless_pngs_that_list_as_a_set(tmp_path):
    rng = np.random.default_rng(5)
    reals = [Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)) for _ in range(2)]
    fakes = [Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)) for _ in range(3)]
    out = forensics.write_set(tmp_path / "made" / "set", reals, fakes)
    assert sorted(p.name for p in (out / "1_fake").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    m = forensics.manifest(out, "test")
    assert m.source["counts"] == {"real": 2, "fake": 3} and m.source["encodings"] == ["lossless"]
    for i, im in enumerate(reals + fakes):
        with Image.open(m.path_of(i)) as back:
            assert back.format == "PNG" and np.array_equal(np.asarray(back), np.asarray(im))
