"""jpegstudy.data.imagenet on tiny real image files: both layouts, every ground-truth format, every user error."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from jpegstudy.data import imagenet
from jpegstudy.data import manifest as manifests
from jpegstudy.data.imagenet import ImageNetLayoutError
from jpegstudy.data.images import BadImageError, load_rgb


def paths_and_labels(m):
    return [{"path": im["path"], "label": im["label"]} for im in m.images]


def write_image(path, mode="RGB", fmt=None, size=8, seed=0):
    """A small noisy image; noise makes JPEG scan data outweigh the headers, so cutting a file truncates its data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(path, format=fmt)
    return path


def val_name(i, ext=".JPEG"):
    return f"ILSVRC2012_val_{i:08d}{ext}"


def flat_root(tmp_path, count):
    root = tmp_path / "val"
    for i in range(1, count + 1):
        write_image(root / val_name(i), fmt="JPEG", seed=i)
    return root


def raises(exc, match_name, fn, *args, **kwargs):
    """Call fn expecting `exc`; its message must be one line naming `match_name`. Returns the message."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert match_name in message, message
    assert "\n" not in message, message
    return message


def assert_round_trip(m, tmp_path):
    m.write(tmp_path / "manifest.json")
    back = manifests.read(tmp_path / "manifest.json")
    assert back.to_json() == m.to_json()
    assert [back.path_of(i) for i in range(len(back.images))] == [m.path_of(i) for i in range(len(m.images))]


# --- class folders -------------------------------------------------------------------------------------------------

def test_loose_images_beside_class_folders_are_refused(tmp_path):
    write_image(tmp_path / "val" / "n01440764" / "a.JPEG", fmt="JPEG")
    write_image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG", fmt="JPEG")
    with pytest.raises(ImageNetLayoutError, match="images lie both in class folders and directly in the folder"):
        imagenet.manifest(tmp_path / "val", "val")


def test_class_folders_layout(tmp_path):
    root = tmp_path / "train"
    write_image(root / "n02084071" / "dog_1.JPEG", fmt="JPEG")
    write_image(root / "n02084071" / "dog_2.png")
    write_image(root / "n01440764" / "fish_1.jpeg", fmt="JPEG")
    write_image(root / "n01440764" / "deeper" / "fish_2.WEBP", fmt="WEBP")  # walked recursively, any case
    (root / "n01530575").mkdir()  # an empty class keeps its index
    (root / "n01440764" / "notes.txt").write_text("not an image")
    write_image(root / "n01440764" / ".fish_hidden.jpg", fmt="JPEG")
    write_image(root / ".cache" / "x.jpg", fmt="JPEG")
    write_image(root / "n01440764" / ".thumbs" / "x.jpg", fmt="JPEG")
    (root / "README.md").write_text("loose files beside the class folders are ignored")

    m = imagenet.manifest(root, "train")

    assert m.dataset == "imagenet" and m.split == "train"
    assert m.root == str(root.resolve())
    assert m.classes == ["n01440764", "n01530575", "n02084071"]
    assert paths_and_labels(m) == [
        {"path": "n01440764/deeper/fish_2.WEBP", "label": 0},
        {"path": "n01440764/fish_1.jpeg", "label": 0},
        {"path": "n02084071/dog_1.JPEG", "label": 2},
        {"path": "n02084071/dog_2.png", "label": 2},
    ]
    assert m.source == {"layout": "folders", "ground_truth": None}
    # checked images carry the sha256 of their bytes: provenance names exactly what a number was measured on
    assert m.images[2]["sha256"] == hashlib.sha256((root / "n02084071" / "dog_1.JPEG").read_bytes()).hexdigest()
    # referenced in place: the manifest's paths are the original files, nothing was copied
    assert m.path_of(2) == root.resolve() / "n02084071" / "dog_1.JPEG"
    assert m.path_of(2).samefile(root / "n02084071" / "dog_1.JPEG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    assert_round_trip(m, tmp_path)


def test_grayscale_cmyk_and_rgba_images_pass_the_check_as_rgb(tmp_path):
    root = tmp_path / "val"
    gray = write_image(root / "n01440764" / "gray.JPEG", mode="L", fmt="JPEG")
    cmyk = write_image(root / "n01440764" / "cmyk.JPEG", mode="CMYK", fmt="JPEG")
    rgba = write_image(root / "n02084071" / "rgba.png", mode="RGBA")
    assert Image.open(gray).mode == "L" and Image.open(cmyk).mode == "CMYK"

    m = imagenet.manifest(root, "val", check=True, workers=2)

    assert [im["label"] for im in m.images] == [0, 0, 1]
    for path in (gray, cmyk, rgba):
        image = load_rgb(path)
        assert image.mode == "RGB" and image.size == (8, 8)


def truncated_jpeg(path):
    write_image(path, fmt="JPEG", size=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def text_file(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a JPEG\n")


@pytest.mark.parametrize("make_bad", [truncated_jpeg, zero_bytes, text_file])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_image_fails_the_check_naming_the_file(tmp_path, make_bad, workers):
    root = tmp_path / "val"
    write_image(root / "n01440764" / "good.JPEG", fmt="JPEG")
    make_bad(root / "n01440764" / "bad_one.JPEG")

    raises(BadImageError, "bad_one.JPEG", imagenet.manifest, root, "val", workers=workers)
    # without the check the file is listed; it would fail when loaded
    m = imagenet.manifest(root, "val", check=False)
    assert [im["path"] for im in m.images] == ["n01440764/bad_one.JPEG", "n01440764/good.JPEG"]


def test_folder_errors(tmp_path):
    raises(ImageNetLayoutError, "nowhere", imagenet.manifest, tmp_path / "nowhere", "val")
    (tmp_path / "a_file").write_text("")
    raises(ImageNetLayoutError, "a_file", imagenet.manifest, tmp_path / "a_file", "val")

    empty = tmp_path / "empty"
    (empty / "n01440764").mkdir(parents=True)
    (empty / "n01440764" / "notes.txt").write_text("")
    raises(ImageNetLayoutError, "empty", imagenet.manifest, empty, "val")

    # a flat folder given without ground truth: the message says what is missing
    flat = flat_root(tmp_path, 2)
    message = raises(ImageNetLayoutError, str(flat), imagenet.manifest, flat, "val")
    assert "ground-truth" in message


def test_image_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert imagenet.IMAGE_EXTENSIONS == IMG_EXTENSIONS


# --- flat folder + ground truth ------------------------------------------------------------------------------------

KAGGLE = """ImageId,PredictionString
ILSVRC2012_val_00000003,n02084071 1 2 5 6
ILSVRC2012_val_00000001,n01751748 0 0 7 7 n01751748 1 1 3 3
ILSVRC2012_val_00000002,n01440764 2 2 4 4
"""


def test_kaggle_csv(tmp_path):
    root = flat_root(tmp_path, 3)
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_text(KAGGLE)

    m = imagenet.manifest(root, "val", ground_truth=gt)

    assert m.classes == ["n01440764", "n01751748", "n02084071"]
    assert paths_and_labels(m) == [{"path": val_name(1), "label": 1}, {"path": val_name(2), "label": 0},
                        {"path": val_name(3), "label": 2}]
    assert m.source["layout"] == "flat" and m.source["ground_truth_format"] == "kaggle"
    assert m.source["ground_truth"] == str(gt.resolve())
    assert len(m.source["ground_truth_sha256"]) == 64
    assert m.path_of(0).samefile(root / val_name(1))
    assert_round_trip(m, tmp_path)


def test_kaggle_csv_with_byte_order_mark_and_crlf(tmp_path):
    root = flat_root(tmp_path, 3)
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_bytes(b"\xef\xbb\xbf" + KAGGLE.replace("\n", "\r\n").encode())
    assert imagenet.manifest(root, "val", ground_truth=gt).labels == [1, 0, 2]


def test_pairs_file(tmp_path):
    root = flat_root(tmp_path, 4)
    gt = tmp_path / "val.txt"
    gt.write_text(f"{val_name(4)} n01440764\n{val_name(1)}\tn09999999\n\n"
                  f"{val_name(2)}   n01440764\n{val_name(3, ext='')} n02084071\n")  # a stem matches too

    m = imagenet.manifest(root, "val", ground_truth=gt, check=False)

    assert m.classes == ["n01440764", "n02084071", "n09999999"]
    assert paths_and_labels(m) == [{"path": val_name(1), "label": 2}, {"path": val_name(2), "label": 0},
                        {"path": val_name(3), "label": 1}, {"path": val_name(4), "label": 0}]
    assert m.source["ground_truth_format"] == "pairs"
    assert_round_trip(m, tmp_path)


def write_meta_mat(path, synsets):
    """The devkit's data/meta.mat: a struct array `synsets` (N x 1) with the devkit's fields."""
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    struct = np.zeros((len(synsets), 1), dtype=[(f, "O") for f in fields])
    for row, (ilsvrc_id, wnid, children) in enumerate(synsets):
        struct[row, 0] = (ilsvrc_id, wnid, f"words of {wnid}", "a gloss", len(children),
                          np.array([children], dtype=float).reshape(1, -1), 0 if not children else 1, 1300)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"synsets": struct})


# ILSVRC2012_IDs are not in sorted-wnid order; ID 4 is a non-leaf (it has children) and is no class.
DEVKIT_SYNSETS = [(1, "n03000000", []), (2, "n01000000", []), (3, "n02000000", []), (4, "n00000001", [1, 2]),
                  (5, "n04000000", [])]


def devkit(tmp_path, ids):
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    write_meta_mat(data / "meta.mat", DEVKIT_SYNSETS)
    gt = data / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(f"{i}\n" for i in ids))
    return gt


def test_devkit_ground_truth_maps_ids_through_meta_mat(tmp_path):
    pytest.importorskip("scipy")
    root = flat_root(tmp_path, 4)
    gt = devkit(tmp_path, [1, 3, 2, 1])

    m = imagenet.manifest(root, "val", ground_truth=gt)

    # by hand: sorted leaf wnids n01 (ID 2) -> 0, n02 (ID 3) -> 1, n03 (ID 1) -> 2, n04 (ID 5, no image) -> 3
    assert m.classes == ["n01000000", "n02000000", "n03000000", "n04000000"]
    assert paths_and_labels(m) == [{"path": val_name(1), "label": 2}, {"path": val_name(2), "label": 1},
                        {"path": val_name(3), "label": 0}, {"path": val_name(4), "label": 2}]
    assert m.source["ground_truth_format"] == "devkit"
    assert m.source["meta_mat"] == str(gt.parent / "meta.mat")
    assert len(m.source["meta_mat_sha256"]) == 64
    assert_round_trip(m, tmp_path)


def test_devkit_errors(tmp_path):
    pytest.importorskip("scipy")
    root = flat_root(tmp_path, 3)
    gt = devkit(tmp_path, [1, 4, 2])  # 4 is the non-leaf
    message = raises(ImageNetLayoutError, f"{gt.resolve()}, line 2", imagenet.manifest, root, "val", ground_truth=gt)
    assert "'4'" in message

    gt = devkit(tmp_path, [1, 2])  # the third image has no line
    raises(ImageNetLayoutError, val_name(3), imagenet.manifest, root, "val", ground_truth=gt)

    gt = devkit(tmp_path, [1, 2, 3, 5])  # line 4 names an image that is not there
    message = raises(ImageNetLayoutError, "ILSVRC2012_val_00000004", imagenet.manifest, root, "val", ground_truth=gt)
    assert "line 4" in message

    (gt.parent / "meta.mat").unlink()
    raises(ImageNetLayoutError, "meta.mat", imagenet.manifest, root, "val", ground_truth=gt)

    (gt.parent / "meta.mat").write_bytes(b"not a MATLAB file")
    raises(ImageNetLayoutError, "meta.mat", imagenet.manifest, root, "val", ground_truth=gt)


@pytest.mark.parametrize("content, line", [
    (KAGGLE + "ILSVRC2012_val_00000004\n", 5),  # no prediction
    (KAGGLE.replace("n01440764 2 2", "dog 2 2"), 4),  # not a wnid
    (f"{val_name(1)} n01440764\n{val_name(2)} n01440764 extra\n", 2),
    (f"{val_name(1)} n01440764\nn01440764 {val_name(2)}\n", 2),  # columns swapped
    ("1\n2\nthree\n", 3),
])
def test_malformed_ground_truth_line(tmp_path, content, line):
    root = flat_root(tmp_path, 3)
    write_meta_mat(tmp_path / "meta.mat", DEVKIT_SYNSETS)
    gt = tmp_path / "gt.txt"
    gt.write_text(content)
    raises(ImageNetLayoutError, f"{gt}, line {line}:", imagenet.manifest, root, "val", ground_truth=gt)


def test_flat_folder_errors(tmp_path):
    root = flat_root(tmp_path, 3)
    gt = tmp_path / "val.txt"

    raises(ImageNetLayoutError, "missing.txt", imagenet.manifest, root, "val", ground_truth=tmp_path / "missing.txt")

    gt.write_text(f"{val_name(1)} n01440764\n{val_name(2)} n01440764\n")
    message = raises(ImageNetLayoutError, val_name(3), imagenet.manifest, root, "val", ground_truth=gt)
    assert "no entry" in message and str(gt) in message

    gt.write_text(f"{val_name(1)} n01440764\n{val_name(2)} n01440764\n{val_name(3)} n01440764\n"
                  f"{val_name(7)} n01440764\n{val_name(8)} n01440764\n")
    message = raises(ImageNetLayoutError, val_name(7), imagenet.manifest, root, "val", ground_truth=gt)
    assert "line 4" in message and "1 more" in message

    gt.write_text(f"{val_name(1)} n01440764\n{val_name(1)} n01440764\n")
    raises(ImageNetLayoutError, "line 2", imagenet.manifest, root, "val", ground_truth=gt)

    write_image(root / val_name(1, ext=".png"))
    gt.write_text(f"{val_name(1, ext='')} n01440764\n")
    raises(ImageNetLayoutError, val_name(1, ext=".png"), imagenet.manifest, root, "val", ground_truth=gt)

    gt.write_text("ImageId,PredictionString\n")
    raises(ImageNetLayoutError, str(gt), imagenet.manifest, root, "val", ground_truth=gt)

    gt.write_bytes(b"\xff\xfe\x00binary")
    raises(ImageNetLayoutError, str(gt), imagenet.manifest, root, "val", ground_truth=gt)


def test_flat_folder_bad_image_is_named(tmp_path):
    root = flat_root(tmp_path, 2)
    truncated_jpeg(root / val_name(2))
    gt = tmp_path / "val.txt"
    gt.write_text(f"{val_name(1)} n01440764\n{val_name(2)} n01440764\n")
    raises(BadImageError, val_name(2), imagenet.manifest, root, "val", ground_truth=gt)


# --- the command line ----------------------------------------------------------------------------------------------

def test_cli_prepare_imagenet(tmp_path, capsys):
    from jpegstudy.cli import main

    root = flat_root(tmp_path, 3)
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_text(KAGGLE)
    out = tmp_path / "results" / "manifest.json"
    out.parent.mkdir()

    main(["prepare-imagenet", "--root", str(root), "--split", "val", "--ground-truth", str(gt), "--workers", "2",
          "--out", str(out)])

    m = manifests.read(out)
    assert m.dataset == "imagenet" and m.split == "val"
    assert m.classes == ["n01440764", "n01751748", "n02084071"]
    assert m.labels == [1, 0, 2]
    assert m.path_of(0).samefile(root / val_name(1))
    assert "3 images in 3 classes" in capsys.readouterr().out

    folders = tmp_path / "train"
    write_image(folders / "n01440764" / "a.JPEG", fmt="JPEG")
    write_image(folders / "n02084071" / "b.JPEG", fmt="JPEG")
    main(["prepare-imagenet", "--root", str(folders), "--split", "train", "--out", str(tmp_path / "train.json")])
    assert manifests.read(tmp_path / "train.json").labels == [0, 1]


def test_cli_bad_image_exits_2_without_a_manifest(tmp_path, capsys):
    from jpegstudy.cli import main

    root = tmp_path / "val"
    write_image(root / "n01440764" / "good.JPEG", fmt="JPEG")
    zero_bytes(root / "n01440764" / "empty_one.JPEG")
    out = tmp_path / "manifest.json"

    with pytest.raises(SystemExit) as info:
        main(["prepare-imagenet", "--root", str(root), "--split", "val", "--out", str(out)])

    assert info.value.code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "empty_one.JPEG" in err and err.count("\n") == 1
