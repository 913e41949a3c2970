"""Precomputed region proposals, Fast R-CNN's input besides the image: made by an RPN, or a file the user provides.

A proposals file is COCO's results layout without categories, a JSON list of

    {"image_id": 139, "bbox": [x, y, w, h], "score": 0.97}

one entry a proposal (pixels of the original image; score: objectness, higher first), as Detectron2's shipped
proposals are once converted (its .pkl files hold ids, boxes and objectness logits per image). `rpn_proposals`
writes them from the RPN of a Faster or Mask R-CNN, `read` gives a Fast R-CNN its table, one tensor an image.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes

from jpegstudy.errors import ModelError

PER_IMAGE = 300  # proposals written an image: what the embedded RPNs keep after NMS in training


@torch.no_grad()
def rpn_proposals(model: torch.nn.Module, images: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(boxes (N, 4) x1 y1 x2 y2 in the images' pixels, objectness (N,)) of a Faster/Mask R-CNN's RPN on [0, 1]
    images, PER_IMAGE an image at most, in eval mode. (torchvision's RPN forward returns the boxes alone; the scores
    a file keeps come from its filter_proposals, called here as forward calls it.)"""
    if not hasattr(model, "rpn"):
        raise ModelError(f"{type(model).__name__} has no RPN: proposals come from a Faster or Mask R-CNN")
    model.eval()
    rpn = model.rpn
    batch, _ = model.transform(images)
    features = list(model.backbone(batch.tensors).values())
    objectness, deltas = rpn.head(features)
    anchors = rpn.anchor_generator(batch, features)
    per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    boxes = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    kept = dict(rpn._pre_nms_top_n), dict(rpn._post_nms_top_n)
    rpn._pre_nms_top_n["testing"], rpn._post_nms_top_n["testing"] = 2 * PER_IMAGE, PER_IMAGE
    try:
        boxes, scores = rpn.filter_proposals(boxes, objectness, batch.image_sizes, per_level)
    finally:
        rpn._pre_nms_top_n, rpn._post_nms_top_n = kept
    return [(resize_boxes(b, size, image.shape[-2:]), s)
            for b, s, size, image in zip(boxes, scores, batch.image_sizes, images)]


def entries(image_id: int, boxes: torch.Tensor, scores: torch.Tensor) -> list[dict]:
    """One image's proposals as file entries: boxes to 0.01 px, scores to 1e-5. A box left without area at that
    precision is not written (the RPN keeps boxes down to 0.001 px; one clipped at the frame can be that thin)."""
    rows = [{"image_id": int(image_id), "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
             "score": round(s, 5)} for (x1, y1, x2, y2), s in zip(boxes.tolist(), scores.tolist())]
    return [r for r in rows if r["bbox"][2] > 0 and r["bbox"][3] > 0]


def read(path, image_ids) -> dict[int, torch.Tensor]:
    """{image id: (N, 4) x1 y1 x2 y2 boxes, highest score first} for each of `image_ids` from a proposals file.
    Refused in one line naming the file: not such a file, an entry without image_id/bbox/score or with a value
    that is not finite, or an image of `image_ids` without any proposal (the file is another split's). Boxes of no
    area (width or height <= 0) are skipped, as COCO skips such annotations, and counted on stderr. Other images
    are left."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read proposals ({type(e).__name__}: {e})") from None
    if not isinstance(rows, list):
        raise ModelError(f"{path}: a proposals file is a JSON list of {{image_id, bbox, score}}")
    wanted = {int(i) for i in image_ids}
    table: dict[int, list] = {i: [] for i in wanted}
    degenerate = []
    for n, row in enumerate(rows):
        try:
            image_id, score = int(row["image_id"]), float(row["score"])
            x, y, w, h = (float(v) for v in row["bbox"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: entry {n} is not {{image_id, bbox: [x, y, w, h], score}} ({e})") from None
        if not math.isfinite(x + y + w + h + score):
            raise ModelError(f"{path}: entry {n} (image {image_id}) is not finite: bbox {[x, y, w, h]}, score {score}")
        if not (w > 0 and h > 0):
            degenerate.append(n)
        elif image_id in table:
            table[image_id].append((score, [x, y, x + w, y + h]))
    if degenerate:
        print(f"{path}: skipped {len(degenerate)} proposals without area (entry {degenerate[0]} first)",
              file=sys.stderr)
    missing = sorted(i for i, found in table.items() if not found)
    if missing:
        raise ModelError(f"{path}: no proposals for image {missing[0]} ({len(missing)} of {len(wanted)} images "
                         "have none): proposals of another split?")
    # A stable sort: equal scores keep the file's order, so the table is the same on every run.
    return {i: torch.tensor([box for _, box in sorted(found, key=lambda p: -p[0])], dtype=torch.float32)
            for i, found in table.items()}
