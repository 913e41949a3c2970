"""Published values the reference tables print beside ours, each as a ref `jpegstudy audit` can look up again.

- torchvision:<Enum>.<NAME>:<metric>: the ImageNet-1K or COCO-val2017 value in the installed torchvision's weights
  meta (read there, not copied here).
- csail:ade20k-<encoder>-<decoder>:<metric>: CSAIL's ADE20K validation mIoU and pixel accuracy of their published
  pair, single-scale test ("MultiScale Testing: No"), as the Performance table of semantic-segmentation-pytorch's
  README lists them (CSAIL_SOURCE). mit-semseg ships no such table, so it is copied here; the multi-scale rows are
  left out, as the study tests at one scale (tasks/segmentation).
"""

from __future__ import annotations

PREFIXES = ("torchvision:", "csail:")
CSAIL_SOURCE = ("github.com/CSAILVision/semantic-segmentation-pytorch README.md, Performance table, "
                "commit 9aff40de31ee4b21f18514d31e5d6e4ba056924d")
# (encoder, decoder) -> (mean IoU, pixel accuracy), percent: the paper's seven pairs, as CSAIL_SOURCE prints them
# (UperNet50/101 there are resnet50/101 + upernet, HRNetV2 is hrnetv2 + c1).
CSAIL_ADE20K = {
    ("mobilenetv2dilated", "c1_deepsup"): (34.84, 75.75),
    ("resnet18dilated", "ppm_deepsup"): (38.00, 78.64),
    ("resnet50dilated", "ppm_deepsup"): (41.26, 79.73),
    ("resnet101dilated", "ppm_deepsup"): (42.19, 80.59),
    ("resnet50", "upernet"): (40.44, 79.80),
    ("resnet101", "upernet"): (42.00, 80.79),
    ("hrnetv2", "c1"): (42.03, 80.77),
}
CSAIL_FIELDS = ("miou", "pixel_acc")


def is_documented(ref: str) -> bool:
    """Whether a table ref names a published value (not a metric row)."""
    return ref.startswith(PREFIXES)


def csail_ref(encoder: str, decoder: str) -> str:
    return f"csail:ade20k-{encoder}-{decoder}"  # CSAIL's name of the pair's config and model folder


def csail(model_config: dict) -> dict | None:
    """CSAIL's documented values of the pair a segmenter was loaded as, {"ref", "miou", "pixel_acc"}; None for a
    pair trained here (weights: train) or one CSAIL does not document."""
    pair = (model_config.get("encoder"), model_config.get("decoder"))
    if model_config.get("weights", "train") == "train" or pair not in CSAIL_ADE20K:
        return None
    return {"ref": csail_ref(*pair), **dict(zip(CSAIL_FIELDS, CSAIL_ADE20K[pair]))}


def csail_value(ref: str, field: str) -> float | None:
    """The value a csail: ref names, or None."""
    values = {csail_ref(*pair): dict(zip(CSAIL_FIELDS, v)) for pair, v in CSAIL_ADE20K.items()}
    return values.get(ref, {}).get(field)


def describe(ref: str) -> str:
    """Where a documented ref's value comes from, for the study PDF's provenance appendix (plain text)."""
    if ref.startswith("csail:"):
        return f"CSAIL's documented ADE20K validation value (single-scale test), from {CSAIL_SOURCE}"
    return "torchvision's documented value (weights.meta[\"_metrics\"]), read from the installed torchvision"
