"""Appendix C of the paper for detection (its Figure 5): for a few fixed validation scenes, one row each: the
detector's boxes (and Mask R-CNN's masks) on the JPEG at the lowest quality of the study, after off-the-shelf QGAC,
after TTAC, by the fine-tuned detector, on the original, and the ground truth. Each detection is labelled with its
class and score; those below SCORE_THRESHOLD are not drawn (as detection figures show them). Drawn with
torchvision.utils' draw_bounding_boxes and draw_segmentation_masks on the image enlarged 4x (nearest, so JPEG's
blocks stay blocks), so labels are legible on 64-pixel scenes.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torchvision.transforms import functional as TF
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from jpegstudy import provenance
from jpegstudy.correction import corrector as correctors
from jpegstudy.data import coco
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import decode_rgb, verified_bytes
from jpegstudy.report.figures import _save
from jpegstudy.tasks import detection, detection_metric

COLUMNS = ("jpeg", "offtheshelf", "ttac", "finetune", "original", "truth")  # the paper's order, then ground truth
TITLES = {"jpeg": "JPEG Q={quality}", "offtheshelf": "Off-the-shelf QGAC", "ttac": "TTAC (QGAC)",
          "finetune": "Fine-tuned detector", "original": "Original", "truth": "Ground truth"}
SCORE_THRESHOLD = 0.5
SCALE = 4  # enlargement before drawing
PANEL = 1.6  # inches


def select(n_images: int, n: int) -> list[int]:
    """`n` fixed scenes spread evenly over the split (manifest order)."""
    n = min(n, n_images)
    return [k * n_images // n for k in range(n)]


def drawn(image: torch.Tensor, boxes, labels, scores, masks, names: list[str]) -> torch.Tensor:
    """A uint8 (3, H*SCALE, W*SCALE) image with the detections drawn: masks, then boxes labelled 'class score'."""
    big = TF.resize(image, [image.shape[-2] * SCALE, image.shape[-1] * SCALE],
                    interpolation=TF.InterpolationMode.NEAREST)
    colors = [tuple(int(255 * c) for c in plt.get_cmap("tab10")(int(label) - 1)[:3]) for label in labels]
    if masks is not None and len(masks):
        big_masks = TF.resize(masks.float(), list(big.shape[-2:]), interpolation=TF.InterpolationMode.NEAREST) > 0.5
        big = draw_segmentation_masks(big, big_masks, alpha=0.35, colors=colors)
    text = [names[int(label) - 1] + ("" if score is None else f" {score:.2f}") for label, score in zip(labels, scores)]
    if len(boxes):
        big = draw_bounding_boxes(big, boxes * SCALE, labels=text, colors=colors, width=2)
    return big


def _panel(model, image: torch.Tensor, image_id: int, names: list[str], with_masks: bool, device) -> torch.Tensor:
    with torch.no_grad():
        out = {k: v.cpu() for k, v in detection.infer(model, [image.to(device)], [image_id])[0].items()}
    keep = out["scores"] >= SCORE_THRESHOLD
    masks = (out["masks"][keep, 0] > detection_metric.MASK_THRESHOLD) if with_masks else None
    return drawn((image * 255).round().byte(), out["boxes"][keep], out["labels"][keep], out["scores"][keep].tolist(),
                 masks, names)


def figure(*, model_name: str, reference: str, clean: str, compressed: str, mitigation_files: dict, outputs,
           params: dict | None = None, device: str = "cpu", proposals: str | None = None) -> None:
    """Write the figure to `outputs` (.pdf and/or .png). params: samples, quality, dpi. `mitigation_files`:
    {finetune: a fine-tuned detector, offtheshelf: a corrector, ttac: a corrector}, any subset. `proposals`: a
    Fast R-CNN's, of the clean split."""
    from jpegstudy import evaluate  # corrected_images: the corrector's output exactly as evaluation feeds it on

    params = {"samples": 4, "dpi": 150, **(params or {})}
    unknown = sorted(set(mitigation_files) - {"finetune", "offtheshelf", "ttac"})
    if unknown:
        raise ValueError(f"mitigation {unknown[0]!r}: the appendix figures show finetune, offtheshelf, ttac")
    dev = torch.device(device)
    clean_m, jpeg_m = manifests.read(clean), manifests.read(compressed)
    ids = [e["id"] for e in clean_m.images]
    model, meta = detection.load_reference(reference, proposals, ids)
    models = {"reference": model.to(dev)}
    if "finetune" in mitigation_files:
        models["finetune"] = detection.load_reference(mitigation_files["finetune"], proposals, ids)[0].to(dev)
    fixers = {name: correctors.load(path)[0].to(dev) for name, path in mitigation_files.items() if name != "finetune"}
    for path, m in ((clean, clean_m), (compressed, jpeg_m)):
        detection.check_eval_set(m, meta, path, reference)
    if [e["id"] for e in clean_m.images] != [e["id"] for e in jpeg_m.images]:
        raise ValueError(f"{compressed}: not the images of {clean} (their ids differ)")
    quality = jpeg_m.source.get("quality", params.get("quality"))
    gt = coco.load_annotations(clean_m)
    names, with_masks = meta["classes"], detection.has_masks(meta["arch"])
    columns = [c for c in COLUMNS if c in ("jpeg", "original", "truth") or c in mitigation_files]
    chosen = select(len(clean_m.images), params["samples"])
    fig, axes = plt.subplots(len(chosen), len(columns), squeeze=False,
                             figsize=(PANEL * len(columns), PANEL * len(chosen) + 0.5))
    for row, i in enumerate(chosen):
        original = TF.to_tensor(decode_rgb(verified_bytes(clean_m.path_of(i), clean_m.images[i].get("sha256")),
                                           clean_m.path_of(i)))
        data = verified_bytes(jpeg_m.path_of(i), jpeg_m.images[i].get("sha256"))
        jpeg = TF.to_tensor(decode_rgb(data, jpeg_m.path_of(i)))
        image_id = clean_m.images[i]["id"]
        truth = coco.to_targets(gt, image_id, clean_m.source["category_ids"])
        for col, column in enumerate(columns):
            if column == "truth":
                panel = drawn((original * 255).round().byte(), truth["boxes"], truth["labels"],
                              [None] * len(truth["labels"]), truth.get("masks") if with_masks else None, names)
            elif column in fixers:
                with torch.no_grad():
                    corrected = evaluate.corrected_images(fixers[column], [data], dev)[0]
                panel = _panel(models["reference"], TF.to_tensor(corrected), image_id, names, with_masks, dev)
            else:
                which = "finetune" if column == "finetune" else "reference"
                panel = _panel(models[which], original if column == "original" else jpeg, image_id, names,
                               with_masks, dev)
            ax = axes[row][col]
            ax.imshow(panel.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(TITLES[column].format(quality=quality), fontsize=7, fontweight="bold")
            if col == 0:
                ax.set_ylabel(f"scene #{clean_m.images[i]['id']}", fontsize=7)
    fig.suptitle(f"{model_name}: detections with score >= {SCORE_THRESHOLD}", fontsize=8, fontweight="bold")
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.45 / (PANEL * len(chosen) + 0.5), bottom=0.01,
                        wspace=0.04, hspace=0.04)
    # the figure holds no metric row; its metadata names the files it was drawn from, for `jpegstudy audit`
    inputs = provenance.file_inputs({"model": reference, "clean images": clean, "JPEG images": compressed,
                                     **mitigation_files, **({"proposals": proposals} if proposals else {})})
    _save(fig, outputs, [], params["dpi"], inputs)
