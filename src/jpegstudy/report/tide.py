"""TIDE error analysis of COCO detections (Bolya et al. 2020), the paper's appendix B, through tidecv.

errors() runs tidecv's TIDE at IoU 0.5 (background below 0.1) on the in-memory pycocotools ground truth and a COCO
results list, and returns AP50 with the dAP of each error type: how many AP points fixing every error of that type
(and nothing else) would give back. The main types, in TIDE's order: Cls (right box, wrong class), Loc (right
class, IoU in [0.1, 0.5)), Both (wrong class and badly placed), Dupe (a second detection of an object already
found), Bkg (a detection on background, IoU < 0.1 with every object), Miss (an object no detection comes near);
the special ones: FalsePos (every false positive scored last) and FalseNeg (every object found).

Where tidecv departs from COCOeval, errors() makes them agree (see its docstring); what remains: TIDE keeps the 100
highest-scoring detections of an image over all categories, COCOeval 100 of each category (torchvision's detectors
output at most 100 an image, so the two coincide), and a detection is ignored on a crowd region at IoU > 0.5 in
TIDE, >= 0.5 in COCOeval.

summary_plot() draws TIDE's summary figure of one result; dap_by_quality_figure() each main error's dAP against
JPEG quality, a figure the paper does not have.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: rules run on machines without a display
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from pycocotools.coco import COCO
from tidecv import TIDE, Data
from tidecv.errors.main_errors import (
    BackgroundError,
    BoxError,
    ClassError,
    DuplicateError,
    MissedError,
    OtherError,
)

from jpegstudy import atomic, provenance
from jpegstudy.data import coco
from jpegstudy.data import manifest as manifests
from jpegstudy.tasks import detection_metric

MAIN_ERRORS = (ClassError, BoxError, OtherError, DuplicateError, BackgroundError, MissedError)  # TIDE's order
MAIN = tuple(e.short_name for e in MAIN_ERRORS)  # ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL = ("FalsePos", "FalseNeg")
MODES = {"bbox": TIDE.BOX, "segm": TIDE.MASK}
POS_THRESHOLD = 0.5  # TIDE's defaults, the paper's appendix B: errors at AP50
BACKGROUND_THRESHOLD = 0.1
MAX_DETECTIONS = 100  # per image, as COCO's maxDets and torchvision's box_detections_per_img
_PALETTE = sns.color_palette("muted", 10)  # TIDE's own colours (tidecv.plotting.Plotter), read, not set globally
COLORS = dict(zip(MAIN + SPECIAL, [_PALETTE[i] for i in (9, 8, 2, 6, 4, 3, 0, 1)]))
MAIN_SCALE, SPECIAL_SCALE = 10, 25  # TIDE's fixed bar scales (dAP points), widened in steps of 5 when exceeded


def errors(gt: COCO, results: list[dict], iou_type: str = "bbox", image_ids: list[int] | None = None) -> dict:
    """TIDE's AP50 and errors of `results` (COCO results format) on `image_ids` of `gt` (default: all its images).

    Returns {"ap": AP50 (percent), "main": {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss": dAP},
    "special": {"FalsePos", "FalseNeg": dAP}, "n_detections": detections evaluated, "n_dropped": detections left
    out (below)}, dAPs in AP points (main ones clipped at 0, as TIDE does).

    - Detections of a category without ground truth (crowd regions aside) in the evaluated images are dropped:
      COCOeval leaves such a category out of the mean, tidecv counts it with AP 0 (dbolya/tide#28), so keeping
      them would lower TIDE's AP below COCOeval's. A dropped detection over an object of another class is then
      no Cls error: that object counts as missed, as COCOeval sees it.
    - Crowd annotations (iscrowd=1) are TIDE ignore regions of their category, as in COCOeval: a detection on one
      is neither a true nor a false positive, so it costs no AP and is no background error (TIDE still counts it
      as a Cls or Loc error where fixing that would find an object).
    - Where fixing a type leaves nothing to score, tidecv divides by zero; that dAP is None (undefined). This
      happens when no detection is scored (none at all, or all on crowd regions): AP is 0, Miss and FalseNeg are
      None, and every other dAP is exactly 0.0 (no such errors to fix).
    - No ground truth object in the evaluated images: ValueError (AP is undefined, COCOeval's -1).

    Neither `gt` nor `results` is modified."""
    if iou_type not in MODES:
        raise ValueError(f"iou_type {iou_type!r}: one of {', '.join(MODES)}")
    image_ids = _image_ids(gt, image_ids)
    counted = _counted_categories(gt, image_ids)
    if not counted:
        raise ValueError("no ground-truth object (crowd regions aside) in the evaluated images: AP is undefined")
    evaluated = _evaluated_results(gt, results, iou_type, set(image_ids))
    kept = [r for r in evaluated if r["category_id"] in counted]
    # TIDE() sets seaborn's style and matplotlib's dpi globally when it builds its plotter: undo that on leaving
    with matplotlib.rc_context():
        tide = TIDE(pos_threshold=POS_THRESHOLD, background_threshold=BACKGROUND_THRESHOLD, mode=MODES[iou_type])
    run = tide.evaluate(_ground_truth(gt, image_ids, iou_type), _detections(kept, iou_type), name="run")
    main = {e.short_name: _or_none(lambda e=e: run.fix_main_errors(error_types=[e])[e]) for e in MAIN_ERRORS}
    return {"ap": float(run.ap), "main": main, "special": _special(run), "n_detections": len(kept),
            "n_dropped": len(evaluated) - len(kept)}


def summary_plot(result: dict, out_png: Path, title: str) -> None:
    """TIDE's summary figure of an errors() result as a PNG: a pie of the main errors' shares of their summed dAP,
    bars of the main dAPs (TIDE's fixed 0-10 scale, widened in steps of 5) and of the special ones (0-25).

    Drawn here with matplotlib's object interface rather than through TIDE.plot(): that one empties and reuses one
    folder shared by every process (parallel jobs would delete each other's images), draws through pyplot's
    global state (not thread-safe), resets seaborn's style for the whole process, saves 11-inch figures at 300 dpi
    and divides by zero when every main dAP is 0 (perfect detections). The file is written atomically."""
    fig = Figure(figsize=(7.5, 6.0))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.25, 1.0), width_ratios=(3.0, 1.0), hspace=0.35, wspace=0.35)
    _pie(fig.add_subplot(grid[0, :]), result["main"])
    _bars(fig.add_subplot(grid[1, 0]), MAIN, result["main"], MAIN_SCALE, horizontal=True)
    _bars(fig.add_subplot(grid[1, 1]), SPECIAL, result["special"], SPECIAL_SCALE, horizontal=False)
    fig.suptitle(f"{title}\nAP50 {result['ap']:.1f}", fontsize=12, fontweight="bold")
    _save(fig, [Path(out_png)], dpi=150)


def dap_by_quality_figure(rows: list[dict], out_png: Path, out_pdf: Path | None = None) -> None:
    """Each main error type's dAP against JPEG quality, one line per type, one panel per model (in the order the
    rows first name them). rows: [{"quality": int, or None for clean, "model": str, "main": {type: dAP}}]; a dAP
    of None (undefined) leaves a gap. The clean row is its own marker at the right edge, labelled "clean", not
    joined to the lines. Written atomically as PNG and, if `out_pdf`, PDF."""
    panels = _panels(rows)
    qualities = sorted({q for by_quality in panels.values() for q in by_quality if q is not None})
    clean_x = (qualities[-1] if qualities else 0) + 10
    fig = Figure(figsize=(1.0 + 3.6 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (model, by_quality) in zip(axes, panels.items()):
        for name in MAIN:
            ax.plot(qualities, [_value(by_quality[q]["main"].get(name)) if q in by_quality else math.nan
                                for q in qualities], color=COLORS[name], marker="o", markersize=3, label=name)
            if None in by_quality:
                ax.plot([clean_x], [_value(by_quality[None]["main"].get(name))], color=COLORS[name], marker="D",
                        markersize=5, linestyle="none")
        ax.set_xticks(qualities + ([clean_x] if None in by_quality else []),
                      [str(q) for q in qualities] + (["clean"] if None in by_quality else []), fontsize=7)
        ax.set_xlim(min(qualities + [clean_x]) - 3, clean_x + 3)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("JPEG quality")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dAP (AP50 points)")
    axes[0].set_ylim(bottom=0)
    axes[-1].legend(title="error", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    _save(fig, [Path(out_png)] + ([Path(out_pdf)] if out_pdf is not None else []), dpi=150)


def _image_ids(gt: COCO, image_ids: Sequence[int] | None) -> list[int]:
    known = set(gt.getImgIds())
    ids = sorted(known) if image_ids is None else sorted({int(i) for i in image_ids})
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"image id {missing[0]} is not in the ground truth")
    return ids


def _counted_categories(gt: COCO, image_ids: list[int]) -> set[int]:
    """Categories with a non-crowd object in the images: those COCOeval averages over."""
    return {a["category_id"] for i in image_ids for a in gt.imgToAnns[i] if not a.get("iscrowd", 0)}


def _evaluated_results(gt: COCO, results: list[dict], iou_type: str, image_ids: set[int]) -> list[dict]:
    """The detections on the evaluated images, checked as detection_metric checks them."""
    known, categories = set(gt.getImgIds()), set(gt.getCatIds())
    evaluated = []
    for r in results:
        detection_metric.check_result(r, known, categories, iou_type)
        if r["image_id"] in image_ids:
            evaluated.append(r)
    return evaluated


def _ground_truth(gt: COCO, image_ids: list[int], iou_type: str) -> Data:
    # max_dets lives on the ground truth: TIDERun reads gt.max_dets
    data = Data("ground truth", max_dets=MAX_DETECTIONS)
    for category in gt.dataset["categories"]:
        data.add_class(category["id"], category["name"])
    for i in image_ids:  # every image, also those without objects: detections there are background errors
        data.add_image(i, gt.imgs[i].get("file_name", str(i)))
        for ann in gt.imgToAnns[i]:
            # annToRLE: polygons and uncompressed RLE as the compressed RLE that pycocotools' iou reads
            mask = gt.annToRLE(ann) if iou_type == "segm" else None
            if ann.get("iscrowd", 0):  # COCOeval's gt ignore flag is iscrowd alone
                data.add_ignore_region(i, ann["category_id"], box=list(ann["bbox"]), mask=mask)
            else:
                data.add_ground_truth(i, ann["category_id"], box=list(ann["bbox"]), mask=mask)
    return data


def _detections(results: list[dict], iou_type: str) -> Data:
    data = Data("detections", max_dets=MAX_DETECTIONS)
    for r in results:
        if iou_type == "segm":  # RLE with str or bytes counts: pycocotools reads both
            data.add_detection(r["image_id"], r["category_id"], float(r["score"]), mask=dict(r["segmentation"]))
        else:
            data.add_detection(r["image_id"], r["category_id"], float(r["score"]), box=list(r["bbox"]))
    return data


def _or_none(fixed_dap: Callable[[], float]) -> float | None:
    try:
        return float(fixed_dap())
    except ZeroDivisionError:  # the fix left no category with ground truth or detections: dAP undefined
        return None


def _special(run) -> dict:
    try:
        return {e.short_name: float(v) for e, v in run.fix_special_errors().items()}
    except ZeroDivisionError:
        # only FalseNeg can divide by zero (it removes every unmatched object; FalsePos keeps the ground truth), and
        # only with no detection scored, where FalsePos' rescoring changes nothing: exactly 0
        return {"FalsePos": 0.0, "FalseNeg": None}


def _value(dap: float | None) -> float:
    return math.nan if dap is None else float(dap)


def _scale(values, base: int) -> float:
    top = max([v for v in values if v is not None and not math.isnan(v)], default=0.0)
    return base if top <= base else 5 * math.ceil(top / 5)


def _pie(ax, main: dict) -> None:
    sizes = [0.0 if main[name] is None else max(float(main[name]), 0.0) for name in MAIN]
    total = sum(sizes)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if total <= 0:  # perfect detections, or nothing defined: there is no share to show
        undefined = [name for name in MAIN if main[name] is None]
        text = f"no detection scored: {', '.join(undefined)} undefined" if undefined else "no main error"
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, transform=ax.transAxes)
        return
    # TIDE labels a wedge only above 5 % of the sum; the bars below give every value
    ax.pie(sizes, colors=[COLORS[name] for name in MAIN], startangle=90, counterclock=True,
           labels=[name if s / total > 0.05 else "" for name, s in zip(MAIN, sizes)], labeldistance=0.6,
           textprops={"fontsize": 10, "fontweight": "bold"})


def _bars(ax, names: Sequence[str], daps: dict, base: int, horizontal: bool) -> None:
    values = [_value(daps[name]) for name in names]
    heights = [0.0 if math.isnan(v) else v for v in values]
    colors = [COLORS[name] for name in names]
    positions = np.arange(len(names))
    limit = _scale(values, base)
    short = {"FalsePos": "FP", "FalseNeg": "FN"}
    labels = [short.get(name, name) for name in names]
    if horizontal:
        ax.barh(positions, heights, color=colors)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()  # TIDE's order top to bottom
        ax.set_xlim(0, limit)
        ax.set_xlabel("dAP")
    else:
        ax.bar(positions, heights, color=colors)
        ax.set_xticks(positions, labels)
        ax.set_ylim(0, limit)
        ax.set_ylabel("dAP")
    for p, v, h in zip(positions, values, heights):  # every value written out, n/a where undefined
        text = "n/a" if math.isnan(v) else f"{v:.1f}"
        if horizontal:
            ax.annotate(text, (max(h, 0.0), p), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
        else:
            ax.annotate(text, (p, max(h, 0.0)), xytext=(0, 2), textcoords="offset points", fontsize=7, ha="center")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _panels(rows: list[dict]) -> dict:
    """{model: {quality (None = clean): row}}, rejecting rows that repeat a (model, quality) or lack a main type."""
    if not rows:
        raise ValueError("no rows to plot")
    panels: dict = {}
    for row in rows:
        quality = None if row["quality"] is None else int(row["quality"])
        by_quality = panels.setdefault(str(row["model"]), {})
        if quality in by_quality:
            raise ValueError(f"two rows of {row['model']} at quality {'clean' if quality is None else quality}")
        absent = [name for name in MAIN if name not in row["main"]]
        if absent:
            raise ValueError(f"the row of {row['model']} at quality {quality} has no {absent[0]} dAP")
        by_quality[quality] = row
    return panels


def _save(fig: Figure, outputs: list[Path], dpi: int) -> None:
    # no dates in the metadata, so that the same rows give the same files
    metadata = {".pdf": {"CreationDate": None, "Creator": "jpegstudy"}, ".png": {"Software": "jpegstudy"}}
    for out in outputs:
        if out.suffix not in metadata:
            raise ValueError(f"{out}: figures are written as .pdf or .png")
        with atomic.output_path(out) as tmp:
            fig.savefig(tmp, format=out.suffix[1:], dpi=dpi, metadata=metadata[out.suffix])


def by_quality(model: str, iou_type: str, sets: dict, rule: str = "tide") -> dict:
    """TIDE rows of one detector without mitigation: {"task", "model", "iou_type", "rows": one per eval set, each
    with quality (None: clean), errors() fields, a provenance record and a row id}. `sets`: {quality or None:
    (eval set manifest, COCO results file of the detector's predictions on it)}."""
    git = provenance.git_state()
    rows = []
    for quality, (manifest_path, results_path) in sorted(sets.items(), key=lambda item: item[0] or 0):
        start = time.perf_counter()
        gt = coco.load_annotations(manifests.read(manifest_path))
        result = errors(gt, json.loads(Path(results_path).read_text()), iou_type)
        row = {"task": "detection", "model": model, "mitigation": "none", "quality": quality, "iou_type": iou_type,
               **result}
        row["provenance"] = provenance.record(
            inputs=provenance.file_inputs({"manifest": manifest_path, "predictions": results_path}),
            params={"iou_type": iou_type, "pos_threshold": POS_THRESHOLD,
                    "background_threshold": BACKGROUND_THRESHOLD}, rule=rule,
            wall_time_s=time.perf_counter() - start, device="cpu", git=git)
        rows.append({"id": provenance.row_id(row), **row})
    return {"task": "detection", "model": model, "iou_type": iou_type, "rows": rows}
