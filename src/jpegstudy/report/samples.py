"""The appendix figures' material: a few fixed validation images, and for each what one model sees and predicts
without and with each mitigation.

The images are chosen from the clean validation manifest alone (no model, no seed): one per class, the classes
spread evenly over the manifest's class list, each the first image of its class in manifest order; with more
samples than classes, a second round takes each class's next image. Every figure of every model therefore shows the
same images.

Each image gives panels, in the figures' order:

    original     the lossless image, the reference model
    jpeg         its JPEG at the quality shown (the compress rule's file), the reference model
    finetune     the same JPEG, the fine-tuned model
    offtheshelf  the off-the-shelf QGAC corrector's output on the JPEG, rounded to 8 bits, the reference model
    ttac         the model's TTAC corrector's output on the JPEG, the reference model

The corrector only ever sees the JPEG (evaluate.corrected_images, as evaluation does), never the original. What a
panel shows is the model's own input image: its eval transform's resize and centre crop, before normalisation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: rules run on machines without a display
import matplotlib.pyplot as plt
import torch
from PIL import Image
from torchvision import transforms as T

from jpegstudy import provenance
from jpegstudy.correction import corrector as correctors
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import decode_rgb, verified_bytes
from jpegstudy.data.imagenet import WNID
from jpegstudy.errors import ModelError
from jpegstudy.report.figures import _save
from jpegstudy.tasks import classification

MITIGATIONS = ("finetune", "offtheshelf", "ttac")  # the columns after the JPEG, in this order
COLUMN_TITLES = {"original": "Original", "jpeg": "JPEG Q={quality}", "finetune": "Fine-tuned model",
                 "offtheshelf": "Off-the-shelf QGAC", "ttac": "TTAC (QGAC)"}


@dataclass
class Panel:
    column: str  # original, jpeg, finetune, offtheshelf or ttac
    image: Image.Image  # what the model sees, before normalisation (after its resize and centre crop)
    x: torch.Tensor  # (1, 3, h, w): the model's normalised input
    model: str  # "reference" or "finetune": the key of the model in Material.models
    pred: int
    prob: float  # softmax probability of pred


@dataclass
class Sample:
    index: int  # into the validation manifest
    label: int
    panels: list[Panel]


@dataclass
class Material:
    classes: list[str]
    quality: int
    models: dict  # {"reference": model[, "finetune": model]}
    arch: str
    samples: list[Sample]

    def column_title(self, column: str) -> str:
        return COLUMN_TITLES[column].format(quality=self.quality)

    def class_name(self, label: int) -> str:
        return display_names(self.classes)[label]


def select(manifest: manifests.Manifest, n: int) -> list[int]:
    """Indices of `n` fixed images: one per class, the classes spread evenly over the class list (each the first
    image of its class, in manifest order); more rounds over every class if n exceeds the classes present."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(manifest.labels):
        by_class.setdefault(label, []).append(i)
    groups = [by_class[c] for c in sorted(by_class)]
    if n <= len(groups):
        return [groups[k * len(groups) // n][0] for k in range(n)]
    chosen: list[int] = []
    for depth in range(max(map(len, groups))):
        chosen += [g[depth] for g in groups if depth < len(g) and len(chosen) < n]
    return chosen[:n]


def display_names(classes: list[str]) -> list[str]:
    """The manifest's class names as titles show them: ImageNet's WordNet ids with their torchvision name
    (n01440764 tench), others as they are."""
    if len(classes) == 1000 and all(WNID.fullmatch(c) for c in classes) and classes == sorted(classes):
        from torchvision.models import ResNet50_Weights

        names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # indexed in sorted-wnid order; no download
        return [f"{c} {n}" for c, n in zip(classes, names)]
    return list(classes)


def _need(path, what: str) -> None:
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file ({what})")


def _load_model(path, what: str) -> tuple[torch.nn.Module, dict]:
    _need(path, what)
    try:
        return classification.load_reference(path)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ModelError(f"{path}: cannot load {what} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None


def _load_corrector(path, what: str):
    _need(path, what)
    corrector, _ = correctors.load(path)
    return corrector


def collect(*, reference: str, clean: str, compressed: str, mitigation_files: dict[str, str], samples: int,
            quality: int | None = None, device: str = "cpu") -> Material:
    """Load the model(s), correctors and fixed images; predict every panel. `mitigation_files`: {finetune: the
    fine-tuned reference file, offtheshelf: a corrector, ttac: a corrector}, any subset."""
    from jpegstudy import evaluate  # corrected_images: the corrector's output exactly as evaluation feeds it on

    unknown = sorted(set(mitigation_files) - set(MITIGATIONS))
    if unknown:
        raise ValueError(f"mitigation {unknown[0]!r}: the appendix figures show {', '.join(MITIGATIONS)}")
    dev = torch.device(device)
    model, meta = _load_model(reference, "the model")
    models = {"reference": model.to(dev)}
    clean_m, jpeg_m = manifests.read(clean), manifests.read(compressed)
    for path, m in ((clean, clean_m), (compressed, jpeg_m)):
        if m.classes != meta["classes"]:
            raise ValueError(f"{path}: its classes differ from those {reference} was trained on")
    if jpeg_m.labels != clean_m.labels:
        raise ValueError(f"{compressed}: not the images of {clean} (its labels differ image by image)")
    stored = jpeg_m.source.get("quality")
    if quality is not None and stored is not None and int(stored) != int(quality):
        raise ValueError(f"{compressed}: its JPEGs are of quality {stored}, not {quality}")
    if quality is None and stored is None:
        raise ValueError(f"{compressed}: records no JPEG quality (not written by the compress rule?)")
    quality = int(quality if quality is not None else stored)
    correctors_ = {}
    for name, path in mitigation_files.items():
        if name == "finetune":
            tuned, tuned_meta = _load_model(path, "the fine-tuned model")
            if tuned_meta["classes"] != meta["classes"]:
                raise ValueError(f"{path}: its classes differ from those {reference} was trained on")
            models["finetune"] = tuned.to(dev)
        else:
            correctors_[name] = _load_corrector(path, f"the {name} corrector").to(dev)

    steps = classification.eval_transform(meta["transform"]).transforms
    shown, normalise = T.Compose(steps[:2]), T.Compose(steps[2:])  # resize + crop | to tensor + normalise

    def panel(column: str, image: Image.Image, which: str = "reference") -> Panel:
        image = shown(image)
        x = normalise(image)[None].to(dev)
        with torch.no_grad():
            p = models[which](x).softmax(1)[0]
        pred = int(p.argmax())
        return Panel(column, image, x, which, pred, float(p[pred]))

    chosen = []
    for i in select(clean_m, samples):
        original = decode_rgb(verified_bytes(clean_m.path_of(i), clean_m.images[i].get("sha256")),
                              clean_m.path_of(i))
        data = verified_bytes(jpeg_m.path_of(i), jpeg_m.images[i].get("sha256"))
        jpeg = decode_rgb(data, jpeg_m.path_of(i))
        panels = [panel("original", original), panel("jpeg", jpeg)]
        for name in MITIGATIONS:
            if name == "finetune" and "finetune" in models:
                panels.append(panel(name, jpeg, "finetune"))
            elif name in correctors_:
                with torch.no_grad():
                    corrected = evaluate.corrected_images(correctors_[name], [data], dev)[0]
                panels.append(panel(name, corrected))
        chosen.append(Sample(i, clean_m.labels[i], panels))
    return Material(list(meta["classes"]), quality, models, meta["arch"], chosen)


def model_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy to instrument (hooks, swapped activations) without touching the model the panels were predicted by."""
    return copy.deepcopy(model)


RIGHT, WRONG = "#1a7f37", "#b42318"  # title colours; the marks (✓ ✗) say the same without colour


class PanelGrid:
    """A fixed layout in inches (no automatic layout, so the files are the same wherever they are made): a title,
    a header naming each column, then per sample a line naming it and its true class, and `rows_per_sample` rows of
    square panels, the first of them with room for a two-line title above each panel. With `row_labels`, a margin
    on the left for a label of each row."""

    PANEL, GAP, ROW_GAP, BLOCK_GAP = 1.15, 0.08, 0.06, 0.16
    RIGHT, TOP, BOTTOM, SAMPLE, TITLE = 0.08, 0.72, 0.08, 0.2, 0.32

    def __init__(self, material: Material, rows_per_sample: int, title: str, columns: list[str] | None = None,
                 row_labels: bool = False):
        self.material = material
        self.columns = columns or [p.column for p in material.samples[0].panels]
        self.left = 0.3 if row_labels else 0.08
        n, r, c = len(material.samples), rows_per_sample, len(self.columns)
        self.block = self.SAMPLE + self.TITLE + r * self.PANEL + (r - 1) * self.ROW_GAP
        width = self.left + c * self.PANEL + (c - 1) * self.GAP + self.RIGHT
        height = self.TOP + n * self.block + (n - 1) * self.BLOCK_GAP + self.BOTTOM
        self.fig = plt.figure(figsize=(width, height))
        self.width, self.height = width, height
        self.axes = []  # [sample][row][column]
        for s in range(n):
            top = self._block_top(s) + self.SAMPLE + self.TITLE
            rows = []
            for k in range(r):
                y = top + k * (self.PANEL + self.ROW_GAP)
                rows.append([self._axes(self.left + j * (self.PANEL + self.GAP), y) for j in range(c)])
            self.axes.append(rows)
        self.fig.text(0.08 / width, 1 - 0.08 / height, title, ha="left", va="top", fontsize=9, fontweight="bold")
        for j, column in enumerate(self.columns):
            x = (self.left + j * (self.PANEL + self.GAP) + self.PANEL / 2) / width
            self.fig.text(x, 1 - (self.TOP - 0.16) / height, material.column_title(column), ha="center",
                          va="bottom", fontsize=8, fontweight="bold")

    def _block_top(self, s: int) -> float:
        return self.TOP + s * (self.block + self.BLOCK_GAP)

    def _axes(self, left: float, top: float):
        ax = self.fig.add_axes((left / self.width, 1 - (top + self.PANEL) / self.height, self.PANEL / self.width,
                                self.PANEL / self.height))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_linewidth(0.5)
        return ax

    def column_of(self, sample: Sample, column: str) -> Panel:
        return next(p for p in sample.panels if p.column == column)

    @staticmethod
    def show(ax, image) -> None:
        # nearest: small images are enlarged, and JPEG's 8x8 blocks should stay visible as such
        ax.imshow(image, interpolation="nearest")

    def prediction_title(self, ax, panel: Panel, label: int) -> None:
        right = panel.pred == label
        name = self.material.class_name(panel.pred)
        name = name if len(name) <= 22 else name[:21] + "…"  # a panel's width
        ax.set_title(f"{name}\n{'✓' if right else '✗'} p={panel.prob:.2f}", fontsize=6.5, pad=2,
                     color=RIGHT if right else WRONG)

    @staticmethod
    def row_label(ax, text: str) -> None:
        ax.set_ylabel(text, fontsize=7, labelpad=2)

    def sample_label(self, s: int, sample: Sample) -> None:
        """The sample's line above its panels: its index in the validation manifest and its true class."""
        y = 1 - (self._block_top(s) + 0.02) / self.height
        self.fig.text(self.left / self.width, y, f"validation image #{sample.index}, true class: "
                      f"{self.material.class_name(sample.label)}", ha="left", va="top", fontsize=7.5,
                      fontweight="bold")


def write_figure(draw, *, model_name: str, reference: str, clean: str, compressed: str, mitigation_files: dict,
                 outputs, params: dict | None = None, device: str = "cpu") -> None:
    """Collect the samples and write `draw(material, model_name)`'s figure to `outputs` (.pdf and/or .png).
    params: samples, quality, dpi."""
    params = {"samples": 4, "dpi": 150, **(params or {})}
    material = collect(reference=reference, clean=clean, compressed=compressed, mitigation_files=mitigation_files,
                       samples=params["samples"], quality=params.get("quality"), device=device)
    # the figure holds no metric row; its metadata names the files it was drawn from, for `jpegstudy audit`
    inputs = provenance.file_inputs({"model": reference, "clean images": clean, "JPEG images": compressed,
                                     **mitigation_files})
    _save(draw(material, model_name).fig, outputs, [], params["dpi"], inputs)
