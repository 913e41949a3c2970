"""ImageNet, referenced in place through a manifest: the images are listed and labelled, never copied.

Two layouts of a split's folder `root`:

- class folders (train, or val after the usual reshuffle): root/<wnid>/<image>, classes = the sorted folder names;
- flat (the val archive as distributed): root/ILSVRC2012_val_00000001.JPEG ..., labelled by a ground-truth file
  whose format is detected from its content:
    kaggle  Kaggle's LOC_val_solution.csv: a header `ImageId,PredictionString`, then `<image id>,<wnid> x y x y ...`;
    pairs   one `<file> <wnid>` per line;
    devkit  the devkit's data/ILSVRC2012_validation_ground_truth.txt, line i holding the ILSVRC2012_ID of image
            ILSVRC2012_val_<i, 8 digits>, with the devkit's meta.mat beside it to map IDs to wnids.
  A listed name matches a file of root by its full name or by its stem (Kaggle's ids have no extension).

A class index is the position of its WordNet id in sorted order, the order torchvision's ImageNet weights use;
the devkit's ILSVRC2012_IDs follow another order and are only ever mapped through meta.mat.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from jpegstudy import atomic
from jpegstudy.data.images import read_rgb
from jpegstudy.data.manifest import Manifest

# torchvision.datasets.folder.IMG_EXTENSIONS, copied so that listing a dataset does not import torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
WNID = re.compile(r"n\d{8}")
DEVKIT_META = "meta.mat"


class ImageNetLayoutError(ValueError):
    """A dataset folder or ground-truth file that cannot be used; the message is one line naming the culprit."""


def manifest(root: str | os.PathLike, split: str, ground_truth: str | os.PathLike | None = None, check: bool = True,
             workers: int = 1, dataset: str = "imagenet") -> Manifest:
    """List a split in place: class folders when `ground_truth` is None, else a flat folder labelled by it.

    With `check`, every image is decoded (in `workers` processes), so a bad file fails here, with its name, and its
    sha256 is recorded: provenance can then tell exactly which bytes a number was measured on.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ImageNetLayoutError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    root = root.resolve()
    if ground_truth is None:
        classes, labels = _class_folders(root)
        source = {"layout": "folders", "ground_truth": None}
    else:
        classes, labels, source = _flat(root, Path(ground_truth).expanduser())
    images = [{"path": path, "label": labels[path]} for path in sorted(labels)]
    if check:
        for im, digest in zip(images, _decode_all([root / im["path"] for im in images], workers)):
            im["sha256"] = digest
    return Manifest(dataset=dataset, split=split, root=str(root), classes=classes, images=images, source=source)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_folders(root: Path) -> tuple[list[str], dict[str, int]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    labels = {}
    for label, wnid in enumerate(classes):
        # Walked recursively like torchvision's ImageFolder; an empty class keeps its index, so labels never shift.
        for folder, subfolders, files in os.walk(root / wnid, followlinks=True):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            for name in filter(_is_image, files):
                labels[(Path(folder) / name).relative_to(root).as_posix()] = label
    loose = any(_is_image(p.name) and p.is_file() for p in root.iterdir())
    if labels and loose:
        raise ImageNetLayoutError(f"{root}: images lie both in class folders and directly in the folder; a flat "
                                  "folder needs a ground-truth file, a class-folder layout no loose images")
    if not labels:
        if loose:
            raise ImageNetLayoutError(f"{root}: images lie directly in the folder; a flat folder needs a "
                                      "ground-truth file (--ground-truth)")
        raise ImageNetLayoutError(f"{root}: no images ({' '.join(IMAGE_EXTENSIONS)}) in class folders")
    return classes, labels


def _flat(root: Path, gt: Path) -> tuple[list[str], dict[str, int], dict]:
    if not gt.is_file():
        raise ImageNetLayoutError(f"{gt.absolute()}: ground-truth file not found")
    gt = gt.resolve()
    try:
        text = gt.read_text(encoding="utf-8-sig")  # -sig: a CSV saved on Windows may start with a byte-order mark
    except UnicodeDecodeError:
        raise ImageNetLayoutError(f"{gt}: not a text file; expected a ground-truth file") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ImageNetLayoutError(f"{gt}: empty ground-truth file")
    source = {"layout": "flat", "ground_truth": str(gt), "ground_truth_sha256": atomic.sha256_file(gt)}
    if lines[0][1].replace(" ", "").startswith("ImageId,PredictionString"):
        source["ground_truth_format"] = "kaggle"
        entries = list(_kaggle_entries(gt, lines[1:]))
        if not entries:
            raise ImageNetLayoutError(f"{gt}: no entries after the header")
        classes = sorted({wnid for _, _, wnid in entries})
    elif lines[0][1].isdigit():
        meta = gt.parent / DEVKIT_META
        id_to_wnid = _leaf_synsets(meta)
        source.update(ground_truth_format="devkit", meta_mat=str(meta), meta_mat_sha256=atomic.sha256_file(meta))
        entries = list(_devkit_entries(gt, lines, id_to_wnid, meta.name))
        classes = sorted(id_to_wnid.values())  # all leaf synsets: indices stay those of the full 1000 classes
    else:
        source["ground_truth_format"] = "pairs"
        entries = list(_pair_entries(gt, lines))
        classes = sorted({wnid for _, _, wnid in entries})
    index = {wnid: i for i, wnid in enumerate(classes)}
    return classes, {name: index[wnid] for name, wnid in _match(root, gt, entries).items()}, source


def _bad_line(gt: Path, n: int, expected: str, line: str) -> ImageNetLayoutError:
    return ImageNetLayoutError(f"{gt}, line {n}: expected {expected}, got {line[:80]!r}")


def _kaggle_entries(gt: Path, lines):
    for n, line in lines:
        image_id, _, prediction = line.partition(",")
        wnid = prediction.split()[0] if prediction.split() else ""
        if not image_id.strip() or not WNID.fullmatch(wnid):
            raise _bad_line(gt, n, "'<ImageId>,<wnid> <box> ...'", line)
        yield n, image_id.strip(), wnid


def _pair_entries(gt: Path, lines):
    for n, line in lines:
        parts = line.split()
        if len(parts) != 2 or not WNID.fullmatch(parts[1]):
            raise _bad_line(gt, n, "'<file> <wnid>'", line)
        yield n, parts[0], parts[1]


def _devkit_entries(gt: Path, lines, id_to_wnid: dict[int, str], meta_name: str):
    for n, line in lines:
        if not line.isdigit() or int(line) not in id_to_wnid:
            raise _bad_line(gt, n, f"the ILSVRC2012_ID of a leaf synset of {meta_name}", line)
        # Line n labels image n: the image is named, not taken by position, so a missing file (or a blank line) is
        # reported instead of shifting every later label.
        yield n, f"ILSVRC2012_val_{n:08d}", id_to_wnid[int(line)]


def devkit_meta(ground_truth: str | os.PathLike) -> list[str]:
    """[meta.mat beside `ground_truth`] if there is one (the devkit's labels depend on it too), else []."""
    meta = Path(ground_truth).expanduser().parent / DEVKIT_META
    return [str(meta)] if meta.is_file() else []


def _leaf_synsets(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the 1000 leaf classes (num_children == 0) of the devkit's meta.mat."""
    if not meta.is_file():
        raise ImageNetLayoutError(f"{meta}: not found; the devkit's ground truth needs its meta.mat beside it")
    # meta.mat is a MATLAB v5 file; scipy.io reads it (as torchvision's ImageNet does). Imported here, so that only
    # the devkit format needs scipy.
    import scipy.io

    try:
        synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
        leaves = synsets[synsets["num_children"] == 0]
        return {int(i): str(wnid) for i, wnid in zip(leaves["ILSVRC2012_ID"], leaves["WNID"])}
    except (scipy.io.matlab.MatReadError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ImageNetLayoutError(f"{meta}: not the devkit's meta.mat ({type(e).__name__}: {e})") from None


def _match(root: Path, gt: Path, entries) -> dict[str, str]:
    """File name in root -> wnid, every listed name matched to exactly one file and every file listed."""
    files = sorted(p.name for p in root.iterdir() if _is_image(p.name) and p.is_file())
    names = set(files)
    by_stem: dict[str, list[str]] = {}
    for name in files:
        by_stem.setdefault(Path(name).stem, []).append(name)
    found, missing = {}, []
    for n, name, wnid in entries:
        matches = [name] if name in names else by_stem.get(name, [])
        if not matches:
            missing.append(f"{gt}, line {n}: {name} is not in {root}")
        elif len(matches) > 1:
            raise ImageNetLayoutError(f"{gt}, line {n}: {name} matches several files in {root}: {' '.join(matches)}")
        elif matches[0] in found:
            raise ImageNetLayoutError(f"{gt}, line {n}: {matches[0]} is listed twice")
        else:
            found[matches[0]] = wnid
    if missing:
        raise ImageNetLayoutError(missing[0] + _more(len(missing) - 1, "listed file"))
    unlisted = [name for name in files if name not in found]
    if unlisted:
        raise ImageNetLayoutError(f"{root / unlisted[0]}: no entry in {gt}" + _more(len(unlisted) - 1, "image"))
    return found


def _more(count: int, what: str) -> str:
    return f" (and {count} more {what}{'s' if count > 1 else ''})" if count else ""


def _decode(path: Path) -> str:
    return read_rgb(path)[1]  # raises BadImageError naming the file


def _decode_all(paths: list[Path], workers: int) -> list[str]:
    """Decode every image (the first bad one raises) and return the files' sha256s, in order."""
    if workers <= 1:
        return [_decode(path) for path in paths]
    with ProcessPoolExecutor(workers) as pool:
        try:
            return list(pool.map(_decode, paths, chunksize=64))  # chunks: ImageNet's images are many and small
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the first bad file fails now, not after all the others decode
            raise
