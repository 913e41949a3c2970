"""Detection and instance segmentation: torchvision's detectors behind the task interface (jpegstudy.tasks).

Architectures (a model's `arch`): the paper's three torchvision R50-FPN detectors, as torchvision builds them for
its COCO weights (fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn, maskrcnn_resnet50_fpn), and their embedded
twins, built here for the embedded scenes (faster_rcnn, fast_rcnn, retinanet, mask_rcnn):
- the backbone is an embedded classifier (a ResNet reference file), its weights kept, as the real detectors start
  from ImageNet weights; its last three stages feed a 64-channel FPN plus a max-pooled level (strides 8-64);
- images are not resized (min_size = max_size = the image size: torchvision's default upsamples to 800 px), and
  anchors are fitted to it: one size per level, from 3/16 of the image up, three aspect ratios (RetinaNet: three
  scales per level, as its paper);
- the box head is a 256-wide two-layer MLP (torchvision's 1024-wide one on 7x7x64 ROIs is most of a CPU step), the
  mask head two 32-wide convolutions, and 64 ROIs an image are sampled in training; RetinaNet's head has GroupNorm;
- Fast R-CNN, which torchvision lacks, is Faster R-CNN's box stage on precomputed proposals (FastRCNN below; the
  proposals: tasks/proposals.py).
The models normalise (ImageNet mean/std) and resize inside (GeneralizedRCNNTransform), so the eval transform only
makes a [0, 1] tensor, and the differentiable transform is the identity.

Labels are class index + 1 (0 is the background), as data/coco.to_targets writes them.
"""

from __future__ import annotations

import functools
import io

import torch
import torchvision
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.transforms import functional as TF

from jpegstudy import atomic
from jpegstudy.config import MASK_DETECTORS
from jpegstudy.errors import ModelError
from jpegstudy.tasks import classification, detection_metric, proposals, reference_files

NAME = "detection"
METRIC = ("map", "Box mAP@[.5:.95]")

PAPER = ("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn")
ROIS_PER_IMAGE = 64  # ROIs sampled an image in training (torchvision's 512 make the box head most of a CPU step)
TEST_PROPOSALS = 100  # proposals the box head scores an image at test time, as the embedded Faster R-CNN's RPN gives


class FastRCNN(torch.nn.Module):
    """Fast R-CNN (Girshick, 2015) over an FPN, as Detectron2's: the R-CNN box head on precomputed proposals, which
    torchvision lacks. Each target (in training and at test time) carries its image's proposals, "proposals"
    (N, 4) x1 y1 x2 y2 in the image's pixels, or an "image_id" looked up in `proposals` (a table from
    proposals.read). In training the ground-truth boxes join the proposals and 64 are sampled, as for Faster
    R-CNN; at test time the TEST_PROPOSALS highest-scoring ones are scored."""

    def __init__(self, backbone, transform: GeneralizedRCNNTransform, roi_heads: RoIHeads):
        super().__init__()
        self.backbone, self.transform, self.roi_heads = backbone, transform, roi_heads
        self.proposals: dict[int, torch.Tensor] | None = None

    def boxes_of(self, target: dict) -> torch.Tensor:
        if "proposals" in target:
            return target["proposals"]
        image_id = target.get("image_id")
        if self.proposals is None or image_id is None or int(image_id) not in self.proposals:
            raise ModelError(f"Fast R-CNN: no proposals for image {image_id} (give the set's proposals file: "
                             "--proposals)")
        return self.proposals[int(image_id)][:TEST_PROPOSALS]

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if targets is None:
            raise ModelError("Fast R-CNN scores proposals: give each image's target with its proposals or image_id")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        boxes = [self.boxes_of(t).to(images[0].device) for t in targets]
        batch, targets = self.transform(images, targets) if self.training else (self.transform(images)[0], None)
        boxes = [resize_boxes(b, size, resized) for b, size, resized in zip(boxes, original_sizes, batch.image_sizes)]
        features = self.backbone(batch.tensors)
        detections, losses = self.roi_heads(features, boxes, batch.image_sizes, targets)
        if self.training:
            return losses
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


EMBEDDED = {"faster_rcnn": FasterRCNN, "fast_rcnn": FastRCNN, "retinanet": RetinaNet, "mask_rcnn": MaskRCNN}
FPN_CHANNELS = 64
BOX_HEAD_WIDTH = 256
RETINANET_GROUPS = 16
# Its convolutions on 14x14 ROIs were 40 % of a Mask R-CNN step at 64 wide; 32 wide cut the step by a quarter.
MASK_HEAD_WIDTH = 32
RETURN_LAYERS = {"layer2": "0", "layer3": "1", "layer4": "2"}


def has_masks(arch: str) -> bool:
    return arch in MASK_DETECTORS


def anchor_sizes(image_size: int, levels: int, scales: int) -> tuple[tuple[float, ...], ...]:
    """One base size per FPN level, doubling from 3/16 of the image; `scales` sizes a level (2^(i/scales))."""
    base = 3 * image_size / 16
    return tuple(tuple(round(base * 2**level * 2 ** (i / scales), 2) for i in range(scales)) for level in range(levels))


def embedded_backbone(classifier: torch.nn.Module) -> BackboneWithFPN:
    """A ResNet classifier's stages 2-4 (its weights kept) under a small FPN."""
    stages = [getattr(classifier, name, None) for name in RETURN_LAYERS]
    if any(stage is None for stage in stages):
        raise ModelError(f"a detector's backbone must be a ResNet (layer2-layer4); got {type(classifier).__name__}")
    # A stage's width is its last block's output: conv3 of a bottleneck (ResNet-50 and up), else conv2.
    widths = [getattr(stage[-1], "conv3", stage[-1].conv2).out_channels for stage in stages]
    return BackboneWithFPN(classifier, RETURN_LAYERS, widths, FPN_CHANNELS, extra_blocks=LastLevelMaxPool())


def build(arch: str, num_classes: int, image_size: int | None = None,
          classifier: torch.nn.Module | None = None) -> torch.nn.Module:
    """The untrained detector of `arch` for `num_classes` classes (+ background); nothing downloads. Embedded ones
    need the image size and the backbone classifier (from its reference file)."""
    if arch in PAPER:
        return torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes + 1)
    if arch not in EMBEDDED:
        raise ModelError(f"unknown detector {arch!r}: one of {', '.join([*EMBEDDED, *PAPER])}")
    if image_size is None or classifier is None:
        raise ModelError(f"{arch}: an embedded detector needs its image size and backbone classifier")
    backbone = embedded_backbone(classifier)
    levels = len(RETURN_LAYERS) + 1
    common = {"min_size": image_size, "max_size": image_size, "image_mean": classification.IMAGENET_MEAN,
              "image_std": classification.IMAGENET_STD}
    if arch == "retinanet":
        anchors = AnchorGenerator(anchor_sizes(image_size, levels, 3), ((0.5, 1.0, 2.0),) * levels)
        # GroupNorm in the head, as torchvision's RetinaNet v2: without it 10 CPU epochs left the head's features
        # alike for every image (1.9 box mAP); with it, it learns where the objects are.
        head = RetinaNetHead(FPN_CHANNELS, anchors.num_anchors_per_location()[0], num_classes + 1,
                             norm_layer=functools.partial(torch.nn.GroupNorm, RETINANET_GROUPS))
        return RetinaNet(backbone, num_classes + 1, anchor_generator=anchors, head=head, **common)
    anchors = AnchorGenerator(anchor_sizes(image_size, levels, 1), ((0.5, 1.0, 2.0),) * levels)
    heads = {"box_head": TwoMLPHead(FPN_CHANNELS * 7 * 7, BOX_HEAD_WIDTH),
             "box_predictor": FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes + 1)}
    if arch == "fast_rcnn":  # Faster R-CNN's box stage, with torchvision's defaults as FasterRCNN passes them
        roi_heads = RoIHeads(MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2), heads["box_head"],
                             heads["box_predictor"], fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                             batch_size_per_image=ROIS_PER_IMAGE, positive_fraction=0.25, bbox_reg_weights=None,
                             score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
        transform = GeneralizedRCNNTransform(image_size, image_size, classification.IMAGENET_MEAN,
                                             classification.IMAGENET_STD)
        return FastRCNN(backbone, transform, roi_heads)
    rpn = {"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300,
           "rpn_post_nms_top_n_test": TEST_PROPOSALS, "box_batch_size_per_image": ROIS_PER_IMAGE,
           "rpn_batch_size_per_image": 128}
    if arch == "mask_rcnn":  # torchvision's mask head is four 256-wide convolutions: two 32-wide ones here
        heads |= {"mask_head": MaskRCNNHeads(FPN_CHANNELS, (MASK_HEAD_WIDTH,) * 2, 1),
                  "mask_predictor": MaskRCNNPredictor(MASK_HEAD_WIDTH, MASK_HEAD_WIDTH, num_classes + 1)}
    return EMBEDDED[arch](backbone, None, rpn_anchor_generator=anchors, **heads, **rpn, **common)


# The predictor layers whose rows are classes, and how many values a class has in each: resolve() keeps the rows of
# the study's classes (background first), so a COCO-trained detector predicts class index + 1 like ours.
CLASS_ROWS = {
    "fasterrcnn_resnet50_fpn": {"roi_heads.box_predictor.cls_score": 1, "roi_heads.box_predictor.bbox_pred": 4},
    "maskrcnn_resnet50_fpn": {"roi_heads.box_predictor.cls_score": 1, "roi_heads.box_predictor.bbox_pred": 4,
                              "roi_heads.mask_predictor.mask_fcn_logits": 1},
    "retinanet_resnet50_fpn": {"head.classification_head.cls_logits": "per anchor"},
}
RETINANET_ANCHORS = 9  # torchvision's retinanet_resnet50_fpn: 3 sizes x 3 aspect ratios per location


def resolve(arch: str, source: str, classes: list[str]) -> dict:
    """The state_dict of build(arch, len(classes)) from torchvision's COCO weights (a weights name: COCO_V1) or a
    local checkpoint of the same architecture (COCO's 91 outputs, or the dataset's classes + background), its
    keys and shapes checked. Only the study's classes are kept, matched by name to COCO's categories (torchvision's
    meta["categories"]): the background row and one row per class, in the dataset's order; a class COCO lacks is
    refused. (Faster and Mask R-CNN then take their softmax over those classes alone; COCO's unused "N/A" rows are
    never targets in training, so this changes scores by very little.)"""
    if arch not in PAPER:
        raise ModelError(f"{arch}: COCO weights are for {', '.join(PAPER)}")
    weights_enum = torchvision.models.get_model_weights(arch)
    coco_names = weights_enum.COCO_V1.meta["categories"]
    if source in weights_enum.__members__:
        weights = weights_enum[source]
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # noqa: BLE001 - urllib, hash and torch errors alike: the user needs the file
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelError(f"{arch} {source}: cannot read {weights.url} ({why}); torchvision looks for it in "
                             f"{torch.hub.get_dir()}/checkpoints/") from None
        names = weights.meta["categories"]
    else:
        state = classification.extract_state_dict(torch.load(source, map_location="cpu", weights_only=True), source)
        first = next(iter(CLASS_ROWS[arch]))
        rows_per_class = RETINANET_ANCHORS if CLASS_ROWS[arch][first] == "per anchor" else 1
        n = state[f"{first}.weight"].shape[0] // rows_per_class if f"{first}.weight" in state else None
        if n == len(coco_names):
            names = coco_names
        elif n == len(classes) + 1:
            names = ["__background__", *classes]
        else:
            raise ModelError(f"{source}: {n} classes in {first}: neither COCO's {len(coco_names)} (with background "
                             f"and N/A) nor the dataset's {len(classes)} + background")
    full = build(arch, len(names) - 1)
    classification.fit_state_dict(full, state, arch, source)
    missing = [c for c in classes if c not in names]
    if missing:
        raise ModelError(f"{source}: class {missing[0]!r} of the dataset is not among the detector's categories "
                         f"({', '.join(n for n in names[1:6])}, ...)")
    rows = torch.tensor([0] + [names.index(c) for c in classes])
    reduced = full.state_dict()
    for layer, per_class in CLASS_ROWS[arch].items():
        for kind in ("weight", "bias"):
            value = reduced[f"{layer}.{kind}"]
            if per_class == "per anchor":  # RetinaNet: anchors x classes channels, anchor-major
                grouped = value.reshape(-1, len(names), *value.shape[1:])
                reduced[f"{layer}.{kind}"] = grouped[:, rows].reshape(-1, *value.shape[1:])
            else:
                grouped = value.reshape(len(names), per_class, *value.shape[1:])
                reduced[f"{layer}.{kind}"] = grouped[rows].reshape(-1, *value.shape[1:]).clone()
    return reduced


def save_reference(path, *, arch: str, classes: list[str], image_size: int | None, transform: dict, source: str,
                   state_dict: dict, backbone: dict | None = None) -> None:
    """A detector's reference file: what build() needs again (arch, classes, image size, the backbone
    classifier's reference fields without its weights, which the detector's state_dict holds), and the weights."""
    buf = io.BytesIO()
    torch.save({"task": NAME, "arch": arch, "classes": classes, "image_size": image_size, "transform": transform,
                "source": source, "backbone": backbone, "state_dict": state_dict}, buf)
    atomic.write_bytes(path, buf.getvalue())


def save_finetuned(path, meta: dict, *, source: str, state_dict: dict) -> None:
    save_reference(path, arch=meta["arch"], classes=meta["classes"], image_size=meta["image_size"],
                   transform=meta["transform"], source=source, state_dict=state_dict, backbone=meta["backbone"])


def load_reference(path, proposals_file=None, image_ids=None) -> tuple[torch.nn.Module, dict]:
    """The detector of a reference file, in eval mode, and the file's metadata. A Fast R-CNN needs the proposals of
    the images it will see (`proposals_file`, for `image_ids`); other detectors take none."""
    ref = reference_files.read(path, NAME)
    model = reference_files.load_weights(
        build(ref["arch"], len(ref["classes"]), ref["image_size"], reference_files.backbone_classifier(ref)), ref, path)
    if isinstance(model, FastRCNN) and proposals_file is not None:
        model.proposals = proposals.read(proposals_file, image_ids)
    elif proposals_file is not None:
        raise ModelError(f"{path}: {ref['arch']} makes its own proposals; {proposals_file} is for a Fast R-CNN")
    return model, reference_files.meta(ref)


def eval_transform(spec: dict):
    """To a [0, 1] tensor: the detector normalises and resizes inside."""
    return TF.to_tensor


def tensor_transform(spec: dict):
    return lambda x: x


def check_eval_set(manifest, meta: dict, path, reference) -> None:
    if "annotations" not in manifest.source:
        raise ValueError(f"{path}: not a COCO-layout set (no annotations file); a detector needs boxes")
    if manifest.classes != meta["classes"]:
        raise ValueError(f"{path}: its classes differ from those {reference} was trained on")


def target_of(entry: dict) -> int:
    return entry["id"]


def collate(items) -> tuple[list[torch.Tensor], list[int]]:
    """Images of a batch stay a list: COCO's differ in size, and the detector batches them itself."""
    return [image for image, _ in items], [image_id for _, image_id in items]


def score(model: torch.nn.Module, manifest, batches, device, confidence: dict | None = None) -> dict:
    """COCO box mAP (and mask mAP for Mask R-CNN) of one eval set: COCOeval's 12 stats (%), bootstrap intervals of
    AP, AP50, AP75 over images, the per-image records they are recomputed from, and the detections as a COCO
    results list (predictions)."""
    from jpegstudy.data import coco

    predictions = {}
    for images, ids in batches:
        outputs = infer(model, [image.to(device) for image in images], ids)
        predictions.update({image_id: {k: v.cpu() for k, v in out.items()} for image_id, out in zip(ids, outputs)})
    gt = coco.load_annotations(manifest)
    category_ids = manifest.source["category_ids"]
    results = detection_metric.coco_results(predictions, category_ids)
    fields: dict = {"n_images": len(predictions)}
    per_image = {}
    iou_types = ("bbox", "segm") if predictions and all("masks" in p for p in predictions.values()) else ("bbox",)
    for iou_type in iou_types:
        prefix = "" if iou_type == "bbox" else "mask_"
        stats, record = detection_metric.evaluate_map(gt, results, iou_type, image_ids=sorted(predictions))
        intervals = detection_metric.map_interval(record, **(confidence or {}))
        for name, value in stats.items():
            fields[prefix + name.lower()] = value
        for name, (low, high) in intervals.items():
            fields[f"{prefix}{name.lower()}_low"], fields[f"{prefix}{name.lower()}_high"] = low, high
        per_image[iou_type] = record
    fields["map"], fields["map_low"], fields["map_high"] = fields["ap"], fields["ap_low"], fields["ap_high"]
    return {**fields, "per_image": per_image, "predictions": results}


# A paper detector's throughput is timed at COCO's typical image size (torchvision resizes it to 800 px inside).
PAPER_THROUGHPUT_SIZE = 640


def throughput_batch(meta: dict, n: int, generator: torch.Generator) -> tuple[torch.Tensor, list[dict]]:
    """n random uint8 images of the detector's image size and, for its training step, three random boxes (and
    their masks) an image of random classes (and a Fast R-CNN's TEST_PROPOSALS random proposals): what a
    throughput figure times."""
    size = meta["image_size"] or PAPER_THROUGHPUT_SIZE
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    targets = []
    for _ in range(n):
        corner = torch.randint(0, size // 2, (3, 2), generator=generator).float()
        extent = torch.randint(size // 8, size // 2, (3, 2), generator=generator).float()
        boxes = torch.cat([corner, corner + extent], 1)
        target = {"boxes": boxes, "labels": torch.randint(1, len(meta["classes"]) + 1, (3,), generator=generator)}
        if has_masks(meta["arch"]):
            masks = torch.zeros(3, size, size, dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[k, y1:y2, x1:x2] = 1
            target["masks"] = masks
        if meta["arch"] == "fast_rcnn":
            corner = torch.rand(TEST_PROPOSALS, 2, generator=generator) * size * 0.75
            target["proposals"] = torch.cat([corner, corner + size / 8 + torch.rand(
                TEST_PROPOSALS, 2, generator=generator) * (size - corner - size / 8)], 1)
        targets.append(target)
    return images, targets


def infer(model: torch.nn.Module, images, targets) -> list[dict]:
    """A detector's outputs on a batch; `targets`: the images' ids (eval batches) or target dicts (throughput's),
    where a Fast R-CNN finds its proposals."""
    if not isinstance(model, FastRCNN):
        return model(list(images))
    return model(list(images), [t if isinstance(t, dict) else {"image_id": t} for t in targets])


def ttac_target(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Every FPN level of the backbone, as the paper's detection TTAC compares (after the detector's own
    normalisation and resize)."""
    images, _ = model.transform(list(x))
    return model.backbone(images.tensors)


def finetune_loss(model: torch.nn.Module, x, targets: list[dict]) -> torch.Tensor:
    """The sum of the detector's own training losses (RPN + box head, RetinaNet's focal and box losses, + mask)."""
    return sum(model(list(x), targets).values())
