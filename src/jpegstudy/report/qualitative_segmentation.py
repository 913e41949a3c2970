"""Appendix C of the paper for semantic segmentation (its Figure 10): for a few fixed validation scenes, one row each:
the JPEG at the lowest quality of the study, the segmenter's label map on it without mitigation, by the fine-tuned
segmenter, after off-the-shelf QGAC, after TTAC (each mitigation only if the study has it), on the original, and
the ground truth.

Label maps are drawn in ADE20K's colours: ADE_PALETTE, label k in colour k - 1. That list is CSAIL's color150 as
mmsegmentation ships it (mmseg/datasets/ade.py, ADE20KDataset's palette); CSAIL's own color150.mat, a MATLAB file,
was not at hand to compare it with. A dataset of at most 20 classes (the embedded scenes' 14) takes tab10's colours,
then tab20's lighter ten (ADE's first colours are near-greys, too alike for a few classes). Label 0 ("other", never
scored) is black. A legend names the classes drawn, those of the ground truth first.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from jpegstudy import provenance
from jpegstudy.correction import corrector as correctors
from jpegstudy.data import ade20k
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import decode_rgb, verified_bytes
from jpegstudy.report.figures import _save
from jpegstudy.tasks import segmentation

COLUMNS = ("jpeg", "none", "finetune", "offtheshelf", "ttac", "original", "truth")
TITLES = {"jpeg": "JPEG Q={quality}", "none": "No mitigation", "finetune": "Fine-tuned segmenter",
          "offtheshelf": "Off-the-shelf QGAC", "ttac": "TTAC (QGAC)", "original": "On the original",
          "truth": "Ground truth"}
MITIGATIONS = ("finetune", "offtheshelf", "ttac")
PANEL = 1.25  # inches
LEGEND_MAX = 30  # classes named in the legend at most (ADE's 150: the largest in area)

# ADE20K's 150 class colours (RGB), label k in row k - 1: mmsegmentation's ADE20KDataset palette (module docstring).
ADE_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
)


def _small_palette() -> list[tuple[int, int, int]]:
    """tab10's ten colours, then tab20's lighter ten (its odd entries), as 8-bit RGB."""
    tab20 = plt.get_cmap("tab20").colors
    ordered = list(plt.get_cmap("tab10").colors) + [tab20[i] for i in range(1, 20, 2)]
    return [tuple(int(round(255 * c)) for c in rgb) for rgb in ordered]


def palette(num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) uint8: row 0 black (label 0), row k label k's colour (module docstring)."""
    if num_classes > len(ADE_PALETTE):
        raise ValueError(f"{num_classes} classes: label maps are drawn with at most {len(ADE_PALETTE)} colours "
                         "(ADE20K's)")
    small = _small_palette()
    colours = small if num_classes <= len(small) else ADE_PALETTE
    return np.array([(0, 0, 0), *colours[:num_classes]], dtype=np.uint8)


def colored(label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """An (H, W) label map as an (H, W, 3) uint8 image in `colours` (palette's rows)."""
    if label.max(initial=0) >= len(colours):
        raise ValueError(f"label {int(label.max())} above the {len(colours) - 1} classes drawn")
    return colours[label]


def select(n_images: int, n: int) -> list[int]:
    """`n` fixed scenes spread evenly over the split (manifest order), as qualitative_detection chooses them."""
    n = min(n, n_images)
    return [k * n_images // n for k in range(n)]


def predict(model, image, device, transform=None) -> np.ndarray:
    """The segmenter's ADE labels (1..K) of one PIL image, (H, W) uint8, at the image's size; `transform`: its
    eval transform (segmentation.eval_transform)."""
    x = (transform or segmentation.eval_transform({}))(image)[None].to(device)
    with torch.no_grad():
        scores = segmentation.infer(model, x)[0]
    return segmentation.predicted_labels(scores).cpu().numpy().astype(np.uint8)


def _load(path, what: str, classes: list[str] | None = None):
    """A segmenter (reference or fine-tuned file), its classes checked against the reference's."""
    model, meta = segmentation.load_reference(path)
    if classes is not None and meta["classes"] != classes:
        raise ValueError(f"{path}: its classes differ from those of the reference ({what})")
    return model, meta


def _check_pair(clean_m, jpeg_m, clean: str, compressed: str) -> None:
    if [e["annotation"] for e in clean_m.images] != [e["annotation"] for e in jpeg_m.images]:
        raise ValueError(f"{compressed}: not the images of {clean} (their label maps differ)")


def row_panels(models: dict, fixers: dict, columns: list[str], original, jpeg, data: bytes, truth: np.ndarray,
               device, transform=None) -> dict[str, np.ndarray]:
    """{column: label map, or the JPEG itself as an RGB array} of one scene: `original` and `jpeg` decoded (PIL),
    `data` the JPEG file (what a corrector reads)."""
    from jpegstudy import evaluate  # corrected_images: the corrector's output exactly as evaluation feeds it on

    out = {}
    for column in columns:
        if column == "jpeg":
            out[column] = np.asarray(jpeg)
        elif column == "truth":
            out[column] = truth
        elif column in fixers:
            with torch.no_grad():
                corrected = evaluate.corrected_images(fixers[column], [data], device)[0]
            out[column] = predict(models["reference"], corrected, device, transform)
        else:
            which = "finetune" if column == "finetune" else "reference"
            out[column] = predict(models[which], original if column == "original" else jpeg, device, transform)
    return out


def legend_labels(maps: list[np.ndarray], truths: list[np.ndarray]) -> list[int]:
    """The labels (1..K) to name: those of the ground truth, then those only predicted, each by area; at most
    LEGEND_MAX."""
    def by_area(arrays):
        counts = np.bincount(np.concatenate([a.ravel() for a in arrays]).astype(np.int64))
        return [int(k) for k in np.argsort(-counts, kind="stable") if k > 0 and counts[k] > 0]

    first = by_area(truths)
    rest = [k for k in by_area(maps) if k not in first]
    return (first + rest)[:LEGEND_MAX]


def figure(*, model_name: str, reference: str, clean: str, compressed: str, mitigation_files: dict, outputs,
           params: dict | None = None, device: str = "cpu") -> None:
    """Write the figure to `outputs` (.pdf and/or .png). params: samples, quality, dpi. `mitigation_files`:
    {finetune: a fine-tuned segmenter, offtheshelf: a corrector, ttac: a corrector}, any subset."""
    params = {"samples": 4, "dpi": 150, **(params or {})}
    unknown = sorted(set(mitigation_files) - set(MITIGATIONS))
    if unknown:
        raise ValueError(f"mitigation {unknown[0]!r}: the appendix figures show {', '.join(MITIGATIONS)}")
    dev = torch.device(device)
    clean_m, jpeg_m = manifests.read(clean), manifests.read(compressed)
    model, meta = _load(reference, "the reference")
    models = {"reference": model.to(dev)}
    if "finetune" in mitigation_files:
        models["finetune"] = _load(mitigation_files["finetune"], "fine-tuned", meta["classes"])[0].to(dev)
    fixers = {name: correctors.load(path)[0].to(dev) for name, path in mitigation_files.items() if name != "finetune"}
    for path, m in ((clean, clean_m), (compressed, jpeg_m)):
        segmentation.check_eval_set(m, meta, path, reference)
    _check_pair(clean_m, jpeg_m, clean, compressed)
    quality = jpeg_m.source.get("quality", params.get("quality"))
    columns = [c for c in COLUMNS if c not in MITIGATIONS or c in mitigation_files]
    transform = segmentation.eval_transform(meta.get("transform") or {})
    rows = []
    for i in select(len(clean_m.images), params["samples"]):
        entry = clean_m.images[i]
        original = decode_rgb(verified_bytes(clean_m.path_of(i), entry.get("sha256")), clean_m.path_of(i))
        data = verified_bytes(jpeg_m.path_of(i), jpeg_m.images[i].get("sha256"))
        jpeg = decode_rgb(data, jpeg_m.path_of(i))
        truth = ade20k.load_label(clean_m, entry)
        rows.append((entry, row_panels(models, fixers, columns, original, jpeg, data, truth, dev, transform)))
    fig = draw(rows, columns, meta["classes"], model_name, quality)
    # the figure holds no metric row; its metadata names the files it was drawn from, for `jpegstudy audit`
    inputs = provenance.file_inputs({"model": reference, "clean images": clean, "JPEG images": compressed,
                                     **mitigation_files})
    _save(fig, outputs, [], params["dpi"], inputs)


def draw(rows: list[tuple[dict, dict]], columns: list[str], classes: list[str], model_name: str, quality):
    """The figure of rows [(manifest entry, {column: panel})]: label maps coloured, a legend of the classes drawn."""
    colours = palette(len(classes))
    named = legend_labels([p[c] for _, p in rows for c in columns if c not in ("jpeg", "truth")],
                          [p["truth"] for _, p in rows])
    ncol = max(1, min(len(columns), 5))
    legend_h = 0.2 * math.ceil(len(named) / ncol) + 0.1
    height = PANEL * len(rows) + 0.55 + legend_h
    fig, axes = plt.subplots(len(rows), len(columns), squeeze=False, figsize=(PANEL * len(columns) + 0.2, height))
    for r, (entry, panels) in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            image = panels[column] if column == "jpeg" else colored(panels[column], colours)
            ax.imshow(image, interpolation="nearest")  # nearest: label edges and JPEG blocks stay sharp
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(TITLES[column].format(quality=quality), fontsize=7, fontweight="bold")
            if c == 0:
                ax.set_ylabel(entry["annotation"].rsplit(".", 1)[0], fontsize=6)
    handles = [Patch(facecolor=colours[k] / 255, edgecolor="0.3", linewidth=0.4,
                     label=_short(classes[k - 1])) for k in named]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=6, frameon=False, handlelength=1.2,
               columnspacing=1.0, borderaxespad=0.2)
    fig.suptitle(f"{model_name}: predicted label maps (black: label 0, not scored)", fontsize=8, fontweight="bold")
    fig.subplots_adjust(left=0.2 / (PANEL * len(columns) + 0.2), right=0.99, top=1 - 0.5 / height,
                        bottom=legend_h / height, wspace=0.04, hspace=0.04)
    return fig


def _short(name: str) -> str:
    return name if len(name) <= 20 else name[:19] + "…"
