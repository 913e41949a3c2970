"""The `jpegstudy` command: thin argument parsing around the library; every rule calls one subcommand.

Errors a user can cause (bad config values, bad files) end with one line on stderr naming the culprit, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _json(text: str) -> dict:
    return json.loads(text) if text else {}


def cmd_prepare_embedded(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.data import embedded

    out = Path(a.out)  # .../{split}/manifest.json; the images go beside it
    with atomic.output_dir(out.parent) as tmp:
        manifest = embedded.write_split(tmp, a.split, a.per_class, a.size, a.seed, dataset=a.dataset)
        manifest.write(tmp / out.name)
    print(f"{out}: {len(manifest.images)} images in {len(manifest.classes)} classes")


def cmd_prepare_embedded_coco(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.data import embedded

    out = Path(a.out)  # .../{split}/manifest.json; the images and annotations go beside it
    with atomic.output_dir(out.parent) as tmp:
        manifest = embedded.write_coco_split(tmp, a.split, a.images, a.size, a.seed, dataset=a.dataset)
        manifest.write(tmp / out.name)
    print(f"{out}: {len(manifest.images)} scenes of {len(manifest.classes)} object categories")


def cmd_prepare_embedded_ade20k(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.data import embedded

    out = Path(a.out)  # .../{split}/manifest.json; the images, label maps and class list go beside it
    with atomic.output_dir(out.parent) as tmp:
        manifest = embedded.write_ade_split(tmp, a.split, a.images, a.size, a.seed, dataset=a.dataset)
        manifest.write(tmp / out.name)
    print(f"{out}: {len(manifest.images)} scenes labelled with {len(manifest.classes)} classes")


def cmd_prepare_ade20k(a) -> None:
    from jpegstudy.data import ade20k

    manifest = ade20k.manifest(a.root, a.split, dataset=a.dataset, check=not a.no_check, workers=a.workers)
    manifest.write(a.out)
    print(f"{a.out}: {len(manifest.images)} images of {a.root} ({manifest.split}), {len(manifest.classes)} classes")


def cmd_prepare_coco(a) -> None:
    from jpegstudy.data import coco

    manifest = coco.manifest(a.images, a.annotations, a.split, dataset=a.dataset, check=not a.no_check,
                             workers=a.workers)
    manifest.write(a.out)
    print(f"{a.out}: {len(manifest.images)} images, {len(manifest.classes)} categories, referenced in {a.images}")


def cmd_prepare_imagenet(a) -> None:
    from jpegstudy.data import imagenet

    manifest = imagenet.manifest(a.root, a.split, ground_truth=a.ground_truth, check=not a.no_check,
                                 workers=a.workers, dataset=a.dataset)
    manifest.write(a.out)
    print(f"{a.out}: {len(manifest.images)} images in {len(manifest.classes)} classes, referenced in {a.root}")


def cmd_compress(a) -> None:
    from jpegstudy import compress

    m = compress.compress_split(a.manifest, a.quality, Path(a.out).parent, manifest_name=Path(a.out).name,
                                workers=a.workers, codec=a.codec, codec_weights=_by_quality(a.codec_weights))
    print(f"{a.out}: {len(m.images)} images, {a.codec} at quality {a.quality}, "
          f"{m.source['bits_per_pixel']:.4f} bits per pixel on average")


def cmd_train_codec(a) -> None:
    import torch

    from jpegstudy.codecs import learned
    from jpegstudy.data import manifest as manifests
    from jpegstudy.train import loop

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    learned.train_learned(manifests.read(a.train), quality=a.quality, n=p["N"], m=p["M"], epochs=p["epochs"],
                          batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"], out=a.out)
    loop.finish(a.out)


def cmd_resolve_codec(a) -> None:
    from jpegstudy.codecs import learned

    learned.resolve_published(a.weights, a.quality, a.out)
    print(f"{a.out}: CompressAI's bmshj2018-factorized quality {a.quality} from {a.weights}")


def cmd_train_reference(a) -> None:
    import torch

    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import classification
    from jpegstudy.train import reference

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    train = manifests.read(a.train)
    transform = classification.transform_spec(a.arch, "train", p.get("transform"), p["image_size"])
    classification.check_model(a.arch, len(train.classes), transform["crop"])  # before minutes of training
    model = reference.train(a.arch, train, transform, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                            weight_decay=p["weight_decay"], seed=p["seed"], device=a.device)
    classification.save_reference(a.out, arch=a.arch, build_kwargs={}, classes=train.classes, transform=transform,
                                  source="train", state_dict=model.state_dict())


def cmd_train_detector(a) -> None:
    import torch

    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import classification, detection, proposals, reference_files
    from jpegstudy.train import loop, task_model

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    train = manifests.read(a.train)
    if train.source.get("layout") != "coco":
        raise ValueError(f"{a.train}: not a COCO-layout split (no annotations file); a detector trains on boxes")
    size = p["image_size"]
    classifier, backbone = classification.load_reference(a.backbone)
    torch.manual_seed(p["seed"])  # the new heads' initial weights: two runs must give the same detector
    model = detection.build(a.arch, len(train.classes), size, classifier)
    if (a.arch == "fast_rcnn") != (a.proposals is not None):
        raise ValueError(f"--proposals: a Fast R-CNN trains on the training split's proposals, another detector on "
                         f"its own ({a.arch}, proposals {a.proposals})")
    if a.proposals:
        model.proposals = proposals.read(a.proposals, [e["id"] for e in train.images])
    model = task_model.train(model, "detection", a.arch, train, out=a.out, epochs=p["epochs"],
                             batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"], seed=p["seed"],
                             device=a.device)
    detection.save_reference(a.out, arch=a.arch, classes=train.classes, image_size=size, transform={},
                             source=f"train (backbone {a.backbone})", state_dict=model.state_dict(),
                             backbone=reference_files.backbone_fields(backbone))
    loop.finish(a.out)


def cmd_train_segmenter(a) -> None:
    import torch

    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import classification, reference_files, segmentation
    from jpegstudy.train import loop, task_model

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    train = manifests.read(a.train)
    if train.source.get("layout") != "ade20k":
        raise ValueError(f"{a.train}: not an ADE20K-layout split (no label maps); a segmenter trains on them")
    classifier, backbone = classification.load_reference(a.backbone)
    torch.manual_seed(p["seed"])  # the decoder's initial weights: two runs must give the same segmenter
    model = segmentation.build(a.encoder, a.decoder, len(train.classes), classifier)
    model = task_model.train(model, "segmentation", f"{a.encoder}+{a.decoder}", train, out=a.out, epochs=p["epochs"],
                             batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"], seed=p["seed"],
                             device=a.device)
    segmentation.save_reference(a.out, encoder=a.encoder, decoder=a.decoder, classes=train.classes,
                                image_size=p["image_size"], source=f"train (encoder from {a.backbone})",
                                state_dict=model.state_dict(),
                                backbone=reference_files.backbone_fields(backbone))
    loop.finish(a.out)


def cmd_resolve_segmenter(a) -> None:
    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import segmentation, segmentation_models

    classes = manifests.read(a.classes_from).classes
    model = segmentation.build(a.encoder, a.decoder, len(classes))
    segmentation_models.load_csail(model, a.encoder_weights, a.decoder_weights)
    segmentation.save_reference(a.out, encoder=a.encoder, decoder=a.decoder, classes=classes, image_size=None,
                                source=f"{a.encoder_weights} + {a.decoder_weights}", state_dict=model.state_dict())
    print(f"{a.out}: {a.encoder} + {a.decoder} from {a.encoder_weights} and {a.decoder_weights}")


def cmd_train_generator(a) -> None:
    import torch

    from jpegstudy.data import fakes

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    images = fakes.scenes(p["seed"], "generator", p["images"], p["image_size"])
    generator, losses = fakes.train(images, channels=p["channels"], blocks=p["blocks"], epochs=p["epochs"],
                                    batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"])
    for epoch, loss in enumerate(losses, start=1):
        print(f"epoch {epoch}: mean L1 {loss:.4f}")
    fakes.save(a.out, generator, {**p, "losses": losses})
    print(f"{a.out}: generator trained on {len(images)} scenes of {p['image_size']} px")


def cmd_prepare_embedded_forensics(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.data import fakes

    out = Path(a.out)  # .../{split}/manifest.json; 0_real and 1_fake go beside it
    with atomic.output_dir(out.parent) as tmp:
        manifest = fakes.write_split(tmp, a.split, a.images, a.size, a.seed, a.generator, dataset=a.dataset)
        manifest.write(tmp / out.name)
    peak = manifest.source["upsampling_peak"]
    print(f"{out}: {a.images} real and {a.images} fake images; spectrum peak at the upsampling frequencies "
          f"{peak['real']:.2f} (real), {peak['fake']:.2f} (fake)")


def cmd_prepare_forensics(a) -> None:
    from jpegstudy.data import forensics

    manifest = forensics.manifest(a.root, a.split, dataset=a.dataset, check=not a.no_check, workers=a.workers)
    manifest.write(a.out)
    counts = manifest.source["counts"]
    print(f"{a.out}: {counts['real']} real and {counts['fake']} fake images of {a.root} "
          f"({', '.join(manifest.source['encodings'])})")


def _forensic_settings(p: dict) -> dict:
    """The network settings (build()'s) among a forensic job's params (dag.forensic_settings adds crop or size)."""
    keys = ("layers", "width") if p["detector"] == "wang2020" else ("block", "width")
    return {k: p[k] for k in keys if p.get(k) is not None}


def cmd_train_forensic(a) -> None:
    import torch

    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import forensics
    from jpegstudy.train import loop, task_model

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    train = manifests.read(a.train)
    forensics.check_eval_set(train, {}, a.train, a.out)
    settings = _forensic_settings(p)
    torch.manual_seed(p["seed"])  # the initial weights: two runs must give the same detector
    model = forensics.build(p["detector"], settings)
    model = task_model.train(model, "forensics", p["detector"], train, out=a.out, epochs=p["epochs"],
                             batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"], seed=p["seed"],
                             device=a.device)
    forensics.save_reference(a.out, detector=p["detector"], settings=settings,
                             transform=forensics.transform_of(p["detector"], p.get("crop"), p.get("size")),
                             image_size=p["image_size"], source="train", state_dict=model.state_dict())
    loop.finish(a.out)


def cmd_resolve_forensic(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.tasks import forensics

    p = _json(a.params)
    settings = _forensic_settings(p)
    state_dict = forensics.resolve(p["detector"], settings, a.weights)
    forensics.save_reference(a.out, detector=p["detector"], settings=settings,
                             transform=forensics.transform_of(p["detector"], p.get("crop"), p.get("size")),
                             image_size=None, source=a.weights, source_sha256=atomic.sha256_file(a.weights),
                             state_dict=state_dict)
    print(f"{a.out}: {p['detector']} from {a.weights}")


def cmd_propose(a) -> None:
    import torch

    from jpegstudy import atomic
    from jpegstudy.data import manifest as manifests
    from jpegstudy.data.images import decode_rgb, verified_bytes
    from jpegstudy.tasks import detection, proposals

    torch.set_num_threads(a.threads)
    model, _ = detection.load_reference(a.reference)
    split = manifests.read(a.split)
    rows = []
    for start in range(0, len(split.images), a.batch_size):
        chunk = range(start, min(start + a.batch_size, len(split.images)))
        images = [detection.eval_transform({})(decode_rgb(verified_bytes(split.path_of(i), split.images[i].get(
            "sha256")), split.path_of(i))) for i in chunk]
        for i, (boxes, scores) in zip(chunk, proposals.rpn_proposals(model, images)):
            rows += proposals.entries(split.images[i]["id"], boxes, scores)
    atomic.write_json(a.out, rows)


def cmd_resolve_detector(a) -> None:
    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import detection

    classes = manifests.read(a.classes_from).classes
    state = detection.resolve(a.arch, a.weights, classes)
    detection.save_reference(a.out, arch=a.arch, classes=classes, image_size=None, transform={}, source=a.weights,
                             state_dict=state)
    print(f"{a.out}: {a.arch} from {a.weights}, {len(classes)} classes of {a.classes_from}")


def cmd_resolve_model(a) -> None:
    from jpegstudy.data import manifest as manifests
    from jpegstudy.tasks import classification

    classes = manifests.read(a.classes_from).classes
    transform = classification.transform_spec(a.arch, a.weights, _json(a.transform))
    state_dict, kwargs = classification.resolve(a.arch, a.weights, classes, crop=transform["crop"])
    classification.save_reference(a.out, arch=a.arch, build_kwargs=kwargs, classes=classes, transform=transform,
                                  source=a.weights, state_dict=state_dict)


def _by_quality(items: list[str]) -> dict:
    """["10=a.pt", "20=b.pt"] -> {10: "a.pt", 20: "b.pt"}; ["c.pt"] -> {None: "c.pt"}."""
    out = {}
    for item in items:
        quality, sep, path = item.partition("=")
        out[int(quality) if sep else None] = path if sep else item
    return out


def _confidence(params: dict) -> dict:
    """Level, resamples and seed of the bootstrap intervals, from the job's config keys."""
    return {**params.get("confidence", {}), "seed": params.get("seed", 0)}


def cmd_evaluate(a) -> None:
    import torch

    from jpegstudy import atomic, evaluate

    torch.set_num_threads(a.threads)
    compressed = _by_quality(a.compressed)
    result = evaluate.evaluate(
        task=a.task, model_name=a.model, reference=a.reference, clean=a.clean, compressed=compressed,
        params=_json(a.params), rule=a.rule, batch_size=a.batch_size, workers=a.workers, device=a.device,
        mitigation=a.mitigation, corrector_files=_by_quality(a.corrector), confidence=_confidence(_json(a.params)),
        proposals=a.proposals, codec=a.codec, clean_set=not a.no_clean)
    predictions = result.pop("predictions")
    if a.predictions:
        with atomic.output_dir(a.predictions) as tmp:
            for name, content in predictions.items():
                atomic.write_json(tmp / f"{name}.json", content)
    atomic.write_json(a.out, result)


def _training(a, p: dict) -> dict:
    """The keyword arguments every mitigation trainer takes, from --params and the job's flags."""
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(p["seed"])  # the networks' initial weights
    return {"out": a.out, "epochs": p["epochs"], "batch_size": p["batch_size"], "seed": p["seed"],
            "crop": p.get("crop"), "workers": p.get("workers", 0), "device": a.device}


def _corrector_training(a, p: dict) -> dict:
    return {**_training(a, p), "images_per_epoch": p.get("images_per_epoch"), "degradation": _degradation(a)}


def _degradation(a):
    """The on-the-fly compression of a trainer's --codec (JPEG, the paper's, unless the codec study asks)."""
    from jpegstudy import codecs
    from jpegstudy.correction import inputs

    if a.codec == "jpeg" and a.codec_range is None:
        return inputs.JPEG
    codec = codecs.get(a.codec, _by_quality(a.codec_weights))
    low, high = a.codec_range or inputs.QUALITY_RANGE
    codec.check_quality(low), codec.check_quality(high)
    if low > high:
        raise ValueError(f"--codec-range {low} {high}: the low end is above the high one")
    choices = tuple(q for q in sorted(codec.weights) if low <= q <= high) if a.codec == codecs.LEARNED else None
    if choices == ():
        raise ValueError(f"--codec-range {low} {high}: the learned codec has no network in it")
    return inputs.Degradation(None if a.codec == "jpeg" else codec, (low, high), a.codec, choices)


def cmd_frequency_stats(a) -> None:
    import io

    import torch
    from torchvision.transforms.functional import pil_to_tensor

    from jpegstudy import atomic, jpeg
    from jpegstudy.data import manifest as manifests
    from jpegstudy.data.images import load_rgb

    m = manifests.read(a.train)
    stats = jpeg.FrequencyStats.compute(pil_to_tensor(load_rgb(m.path_of(i), e.get("sha256")))
                                        for i, e in enumerate(m.images))
    buf = io.BytesIO()
    torch.save(stats.state_dict(), buf)
    atomic.write_bytes(a.out, buf.getvalue())
    print(f"{a.out}: DCT statistics of {len(m.images)} images of {a.train}")


def cmd_train_corrector(a) -> None:
    import torch

    from jpegstudy import jpeg
    from jpegstudy.correction import corrector as correctors
    from jpegstudy.data import manifest as manifests
    from jpegstudy.train import loop, restore

    p = _json(a.params)
    kwargs = _corrector_training(a, p)
    stats = jpeg.FrequencyStats.from_state_dict(torch.load(a.stats, weights_only=True)) if a.stats else None
    corrector = correctors.Corrector(a.network, correctors.network_kwargs(a.network, p), stats, a.quality)
    corrector = restore.train(corrector, manifests.read(a.train), lr=p["lr"], lr_min=p["lr_min"], **kwargs)
    correctors.save(a.out, corrector, source="train")
    loop.finish(a.out)


def cmd_resolve_corrector(a) -> None:
    import torch

    from jpegstudy import atomic, jpeg
    from jpegstudy.correction import checkpoints
    from jpegstudy.correction import corrector as correctors
    from jpegstudy.correction.qgac import QGAC

    kwargs = correctors.network_kwargs(a.network, _json(a.params))
    net = QGAC(**kwargs)
    extras = checkpoints.load_state_dict(a.weights, net, what="QGAC weights")
    if a.stats:
        stats = torch.load(a.stats, map_location="cpu", weights_only=True)
    else:  # published checkpoints may carry their statistics beside the weights
        stats = next((extras[k] for k in ("stats", "frequency_stats") if isinstance(extras.get(k), dict)), None)
        if stats is None:
            raise ValueError(f"{a.weights}: holds no DCT statistics; give them with correction.qgac.stats")
    corrector = correctors.Corrector(a.network, kwargs, jpeg.FrequencyStats.from_state_dict(stats))
    corrector.net.load_state_dict(net.state_dict())
    correctors.save(a.out, corrector, source=a.weights, source_sha256=atomic.sha256_file(a.weights))
    print(f"{a.out}: {a.weights} loaded into QGAC {kwargs}")


def cmd_train_ttac(a) -> None:
    from jpegstudy import tasks
    from jpegstudy.correction import corrector as correctors
    from jpegstudy.data import manifest as manifests
    from jpegstudy.train import loop, ttac

    p = _json(a.params)
    kwargs = _corrector_training(a, p)
    corrector, _ = correctors.load(a.corrector)
    model, meta = tasks.get(a.task).load_reference(a.reference)
    corrector = ttac.train(corrector, model, meta["transform"], manifests.read(a.train), task=a.task, lr=p["lr"],
                           lr_min=p["lr_min"], **kwargs)
    correctors.save(a.out, corrector, source=a.corrector)
    loop.finish(a.out)


MEMBER_FORM = "TASK=REFERENCE=TRAIN_MANIFEST"


def _member_option(value: str) -> tuple[str, str, str]:
    """(task, reference, train manifest) of a --member value, refused in one line naming it."""
    from jpegstudy import tasks

    parts = value.split("=")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--member {value!r}: expected {MEMBER_FORM}")
    if parts[0] not in tasks.TASKS:
        raise ValueError(f"--member {value!r}: unknown task {parts[0]!r}: one of {', '.join(tasks.TASKS)}")
    return parts[0], parts[1], parts[2]


def _per_task(p: dict, key: str, task: str, required: bool = False):
    """A multihead setting of one member: `key` is a number for every member or {task: number}."""
    value = p.get(key)
    if isinstance(value, dict):
        value = value.get(task)
    if value is None and required:
        raise ValueError(f"--params {key}: none for task {task!r} (give {key}: N or {{{task!r}: N}})")
    return value


def _required(p: dict, *keys: str) -> list:
    missing = [k for k in keys if k not in p]
    if missing:
        raise ValueError(f"--params: no {', '.join(missing)}")
    return [p[k] for k in keys]


def cmd_train_multihead(a) -> None:
    import torch

    from jpegstudy import tasks
    from jpegstudy.correction import corrector as correctors
    from jpegstudy.data import manifest as manifests
    from jpegstudy.train import loop, ttac

    specs = [_member_option(v) for v in a.member]  # every --member checked before anything loads
    p = _json(a.params)
    epochs, lr, lr_min, seed = _required(p, "epochs", "lr", "lr_min", "seed")
    batch_sizes = [_per_task(p, "batch_size", task, required=True) for task, _, _ in specs]
    torch.set_num_threads(a.threads)
    corrector, _ = correctors.load(a.corrector)
    members = []
    for (task, reference, train), batch_size in zip(specs, batch_sizes):
        model, meta = tasks.get(task).load_reference(reference)
        members.append(ttac.Member(task, model, meta["transform"], manifests.read(train), batch_size,
                                   _per_task(p, "crop", task), _per_task(p, "images_per_epoch", task)))
    corrector = ttac.train_multihead(corrector, members, out=a.out, epochs=epochs, lr=lr, lr_min=lr_min, seed=seed,
                                     workers=p.get("workers", 0), device=a.device)
    correctors.save(a.out, corrector, source=a.corrector)
    loop.finish(a.out)


def cmd_finetune(a) -> None:
    from jpegstudy import tasks
    from jpegstudy.data import manifest as manifests
    from jpegstudy.train import finetune, loop

    p = _json(a.params)
    kwargs = _training(a, p)
    t = tasks.get(a.task)
    train = manifests.read(a.train)
    extra = (a.proposals, [e["id"] for e in train.images]) if a.proposals else ()
    model, meta = t.load_reference(a.reference, *extra)
    t.check_eval_set(train, meta, a.train, a.reference)
    model = finetune.train(model, meta["transform"], train, task=a.task, lr=p["lr"], lr_min=p["lr_min"],
                           momentum=p["momentum"], weight_decay=p["weight_decay"], degradation=_degradation(a),
                           **kwargs)
    t.save_finetuned(a.out, meta, source=a.reference, state_dict=model.state_dict())
    loop.finish(a.out)


def cmd_throughput(a) -> None:
    import torch

    from jpegstudy import atomic, throughput

    torch.set_num_threads(a.threads)
    p = _json(a.params)
    correctors = dict(item.split("=", 1) for item in a.corrector)
    result = throughput.task_throughput(
        task=a.task, model_name=a.model, reference=a.reference, corrector_files=correctors, batch_sizes=p["batch_sizes"],
        seconds=p["seconds"], params=p, rule=a.rule, device=a.device, seed=p.get("seed", 0))
    atomic.write_json(a.out, result)


def cmd_tide(a) -> None:
    from jpegstudy import atomic
    from jpegstudy.report import tide

    manifests = {None: a.clean, **_by_quality(a.compressed)}
    predictions = Path(a.predictions)
    sets = {q: (path, predictions / ("clean.json" if q is None else f"q{q}.json")) for q, path in manifests.items()}
    result = tide.by_quality(a.model, a.iou_type, sets)
    what = "box" if a.iou_type == "bbox" else "mask"
    for row in result["rows"]:
        label = "clean" if row["quality"] is None else f"q{row['quality']}"
        quality = "clean images" if row["quality"] is None else f"JPEG Q={row['quality']}"
        tide.summary_plot(row, Path(f"{a.plots}{label}.png"), f"{a.model} ({what}), {quality}")
    atomic.write_json(a.out, result)


def cmd_tide_figure(a) -> None:
    import json

    from jpegstudy.report import tide

    rows = [row for path in a.tide for row in json.loads(Path(path).read_text())["rows"]]
    tide.dap_by_quality_figure(rows, Path(a.png), Path(a.pdf))


def cmd_table(a) -> None:
    from jpegstudy.report import tables

    p = _json(a.params)
    options = {"classification": {"field": a.field or "top1", "intervals": p.get("intervals", True)},
               "ac-comparison": {"field": a.field, "qualities": p.get("qualities")},
               "transfer": {"field": a.field}}.get(a.kind, {})
    tables.write_table(a.kind, a.metrics, a.out, html=a.html, **options)


def cmd_figure(a) -> None:
    from jpegstudy.report import figures

    from jpegstudy.report import across

    p = _json(a.params)
    if a.kind in ("summary", "summary-tasks"):
        if not a.throughput:
            raise ValueError(f"jpegstudy figure --kind {a.kind}: give the throughput files with --throughput")
        (figures.summary_figure if a.kind == "summary" else across.summary_tasks_figure)(
            a.metrics, a.throughput, a.out, p)
    else:
        {"drop": figures.drop_figure, "mitigation": figures.mitigation_figure, "transfer": figures.transfer_figure,
         "model": figures.model_figure, "throughput": figures.throughput_figure,
         "drop-tasks": across.drop_tasks_figure, "mitigation-tasks": across.mitigation_tasks_figure,
         "multihead": across.multihead_figure}[a.kind](a.metrics, a.out, p)


def cmd_rates(a) -> None:
    from jpegstudy.report import rates

    p = _json(a.params)
    if a.kind == "table":
        rates.table(a.metrics, a.out[0], p)
    else:
        (rates.rate_figure if a.kind == "rate" else rates.rate_mitigation_figure)(a.metrics, a.out, p)


def cmd_findings(a) -> None:
    from jpegstudy.report import findings

    findings.write_findings(a.metrics, a.out)


def cmd_spectrum(a) -> None:
    from jpegstudy.report import spectrum

    peaks = spectrum.spectrum_figure(a.manifest, a.out, _json(a.params))
    print(f"{', '.join(a.out)}: upsampling peak {peaks['real']:.2f} (real), {peaks['fake']:.2f} (fake)")


def _appendix_args(a) -> dict:
    """The keyword arguments both appendix figures take, from the command's options."""
    import torch

    torch.set_num_threads(a.threads)
    mitigations = {}
    for item in a.mitigation:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--mitigation {item!r}: expected NAME=FILE (finetune, offtheshelf or ttac)")
        mitigations[name] = path
    return {"model_name": a.model, "reference": a.reference, "clean": a.clean, "compressed": a.compressed,
            "mitigation_files": mitigations, "outputs": a.out, "params": _json(a.params), "device": a.device}


def cmd_gradcam(a) -> None:
    from jpegstudy.report import gradcam

    gradcam.gradcam_figure(**_appendix_args(a))


def cmd_qualitative(a) -> None:
    if a.task == "detection":
        from jpegstudy.report import qualitative_detection

        qualitative_detection.figure(**_appendix_args(a), proposals=a.proposals)
    elif a.task == "segmentation":
        from jpegstudy.report import qualitative_segmentation

        qualitative_segmentation.figure(**_appendix_args(a))
    else:
        from jpegstudy.report import qualitative

        qualitative.qualitative_figure(**_appendix_args(a))


def cmd_study(a) -> None:
    from jpegstudy.report import study

    pieces = {}
    for item in a.pieces:
        key, sep, path = item.partition("=")
        if not sep or ":" not in key:
            raise ValueError(f"--pieces {item!r}: expected KIND:NAME=FILE")
        pieces[key] = path
    study.build(pieces, a.metrics, a.out, keep_tex=a.tex)
    print(f"{a.out}: {len(pieces)} pieces")


def cmd_serve(a) -> None:
    from jpegstudy import jobserver

    jobserver.serve(a.socket, a.parent)


def cmd_audit(a) -> None:
    from jpegstudy import audit

    ok = audit.audit(a.file, a.metrics_dir, verbose=not a.quiet)
    if not ok:
        sys.exit(1)


ARCH_HELP = ("one of the paper's nine (resnet18), torchvision:NAME, timm:NAME, package.module:function or "
             "path/to/file.py:function (called with num_classes=N)")


def _task_option(s: argparse.ArgumentParser) -> None:
    from jpegstudy.tasks import TASKS  # the registry only: no task module (nor torch) is imported

    s.add_argument("--task", default="classification", choices=list(TASKS), help="the task the model is for")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jpegstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare-embedded", help="generate one split of the embedded dataset (PNG, ImageNet layout)")
    s.add_argument("--dataset", default="embedded", help="the dataset's name in config")
    s.add_argument("--split", required=True)
    s.add_argument("--per-class", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="the manifest to write; images go in its folder")
    s.set_defaults(func=cmd_prepare_embedded)

    s = sub.add_parser("prepare-embedded-coco", help="generate one split of the embedded detection scenes (COCO layout)")
    s.add_argument("--dataset", default="scenes", help="the dataset's name in config")
    s.add_argument("--split", required=True)
    s.add_argument("--images", type=int, required=True, help="scenes to generate")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="the manifest to write; images and annotations go in its folder")
    s.set_defaults(func=cmd_prepare_embedded_coco)

    s = sub.add_parser("prepare-embedded-ade20k",
                       help="generate one split of the embedded segmentation scenes (ADE20K layout)")
    s.add_argument("--dataset", default="parsing", help="the dataset's name in config")
    s.add_argument("--split", required=True, choices=["train", "val"])
    s.add_argument("--images", type=int, required=True, help="scenes to generate")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="the manifest to write; the ADE20K layout goes in its folder")
    s.set_defaults(func=cmd_prepare_embedded_ade20k)

    s = sub.add_parser("prepare-ade20k", help="reference an ADEChallengeData2016 split in place")
    s.add_argument("--dataset", default="ade20k", help="the dataset's name in config")
    s.add_argument("--root", required=True, help="the ADEChallengeData2016 folder (images/, annotations/, "
                   "objectInfo150.txt)")
    s.add_argument("--split", required=True, choices=["train", "val"])
    s.add_argument("--no-check", action="store_true", help="do not decode every image and label map while listing")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare_ade20k)

    s = sub.add_parser("prepare-coco", help="reference a COCO-layout split (images + instances json) in place")
    s.add_argument("--dataset", default="coco", help="the dataset's name in config")
    s.add_argument("--images", required=True, help="the split's image folder")
    s.add_argument("--annotations", required=True, help="its instances_*.json")
    s.add_argument("--split", required=True)
    s.add_argument("--no-check", action="store_true", help="do not decode every image while listing")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare_coco)

    s = sub.add_parser("prepare-imagenet", help="reference an ImageNet-layout folder in place through a manifest")
    s.add_argument("--dataset", default="imagenet", help="the dataset's name in config")
    s.add_argument("--root", required=True, help="the split's folder: class folders, or flat with --ground-truth")
    s.add_argument("--split", required=True)
    s.add_argument("--ground-truth", help="labels of a flat folder (see jpegstudy.data.imagenet)")
    s.add_argument("--no-check", action="store_true", help="do not decode every image while listing")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare_imagenet)

    s = sub.add_parser("compress", help="compress every image of a split at one quality, full resolution (JPEG,"
                                        " or another codec)")
    s.add_argument("--manifest", required=True)
    s.add_argument("--quality", required=True)
    s.add_argument("--codec", default="jpeg", help="jpeg (default), webp, jpeg2000, avif, heif, jxl or learned")
    s.add_argument("--codec-weights", nargs="*", default=[], metavar="Q=FILE",
                   help="the learned codec's network of each quality")
    s.add_argument("--workers", type=int, default=1, help="processes encoding in parallel")
    s.add_argument("--out", required=True, help="the manifest to write; the files go in its folder")
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("train-codec", help="train the learned codec (CompressAI's factorized prior) at one quality")
    s.add_argument("--train", required=True, help="manifest of the (lossless) training split")
    s.add_argument("--quality", required=True, type=int, help="CompressAI's quality index (its lambda), 1-8")
    s.add_argument("--params", required=True, help="JSON: N, M, epochs, batch_size, lr, seed")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_codec)

    s = sub.add_parser("resolve-codec", help="CompressAI's published bmshj2018-factorized weights as a codec file")
    s.add_argument("--weights", required=True, help="the published state_dict (.pth.tar) of that quality")
    s.add_argument("--quality", required=True, type=int)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_codec)

    s = sub.add_parser("train-reference", help="train a classifier from scratch on a training split")
    s.add_argument("--arch", required=True, help=ARCH_HELP)
    s.add_argument("--train", required=True, help="training manifest")
    s.add_argument("--params", required=True, help="JSON: epochs, batch_size, lr, weight_decay, seed, image_size")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_reference)

    s = sub.add_parser("train-detector", help="train an embedded detector on a COCO-layout training split")
    s.add_argument("--arch", required=True, choices=["faster_rcnn", "fast_rcnn", "retinanet", "mask_rcnn"])
    s.add_argument("--backbone", required=True, help="the reference file of the classifier whose weights start it")
    s.add_argument("--train", required=True, help="the training split's manifest")
    s.add_argument("--proposals", help="a Fast R-CNN's: the training split's proposals file")
    s.add_argument("--params", required=True, help="JSON: epochs, batch_size, lr, weight_decay, seed, image_size")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_detector)

    s = sub.add_parser("train-segmenter", help="train an embedded segmenter on an ADE20K-layout training split")
    s.add_argument("--encoder", required=True, choices=["resnet18dilated", "mobilenetv2dilated"])
    s.add_argument("--decoder", required=True, help="a mit-semseg decoder: c1, c1_deepsup, ppm, ppm_deepsup, ...")
    s.add_argument("--backbone", required=True, help="the reference file of the classifier whose weights start it")
    s.add_argument("--train", required=True, help="the training split's manifest")
    s.add_argument("--params", required=True, help="JSON: epochs, batch_size, lr, weight_decay, seed, image_size")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_segmenter)

    s = sub.add_parser("resolve-segmenter", help="a reference file of CSAIL's ADE20K encoder/decoder checkpoints")
    s.add_argument("--encoder", required=True)
    s.add_argument("--decoder", required=True)
    s.add_argument("--encoder-weights", required=True, help="CSAIL's encoder_epoch_N.pth")
    s.add_argument("--decoder-weights", required=True, help="CSAIL's decoder_epoch_N.pth")
    s.add_argument("--classes-from", required=True, help="a manifest of the dataset (its 150 ADE20K classes)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_segmenter)

    s = sub.add_parser("train-generator", help="train the embedded study's fake-image generator on embedded scenes")
    s.add_argument("--params", required=True,
                   help="JSON: images, image_size, channels, blocks, epochs, batch_size, lr, seed")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_generator)

    s = sub.add_parser("prepare-embedded-forensics",
                       help="generate one real/fake split of the embedded forensics set (CNNDetection layout)")
    s.add_argument("--dataset", default="fakes", help="the dataset's name in config")
    s.add_argument("--split", required=True, choices=["train", "val"])
    s.add_argument("--generator", required=True, help="the generator file (train-generator) that makes the fakes")
    s.add_argument("--images", type=int, required=True, help="real images, and as many fakes")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="the manifest to write; 0_real and 1_fake go in its folder")
    s.set_defaults(func=cmd_prepare_embedded_forensics)

    s = sub.add_parser("prepare-forensics", help="reference a CNNDetection-layout real/fake set in place")
    s.add_argument("--dataset", required=True)
    s.add_argument("--root", required=True, help="the set's folder: 0_real and 1_fake, or class folders of them")
    s.add_argument("--split", required=True)
    s.add_argument("--no-check", action="store_true", help="list the files without decoding them")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare_forensics)

    s = sub.add_parser("train-forensic", help="train an embedded forensic detector on a real/fake training split")
    s.add_argument("--train", required=True, help="the training split's manifest")
    s.add_argument("--params", required=True, help="JSON: detector, its network settings, crop or size, epochs, "
                   "batch_size, lr, weight_decay, seed, image_size")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_forensic)

    s = sub.add_parser("resolve-forensic", help="Wang et al.'s or Chai et al.'s checkpoint as a forensic reference")
    s.add_argument("--weights", required=True, help="the authors' checkpoint file")
    s.add_argument("--params", required=True, help="JSON: detector, its network settings, crop or size")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_forensic)

    s = sub.add_parser("propose", help="a Faster/Mask R-CNN's RPN proposals on a COCO-layout split (Fast R-CNN's)")
    s.add_argument("--reference", required=True, help="the reference file of the detector whose RPN proposes")
    s.add_argument("--split", required=True, help="the (clean) split's manifest")
    s.add_argument("--batch-size", type=int, default=25)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True, help="the proposals file (JSON: image_id, bbox, score)")
    s.set_defaults(func=cmd_propose)

    s = sub.add_parser("resolve-detector", help="torchvision's COCO weights or a checkpoint as a detector reference file")
    s.add_argument("--arch", required=True, choices=["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn",
                                                     "retinanet_resnet50_fpn"])
    s.add_argument("--weights", required=True, help="a torchvision weights name (COCO_V1) or a checkpoint file")
    s.add_argument("--classes-from", required=True, help="the eval set's manifest: the classes kept, by name")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_detector)

    s = sub.add_parser("resolve-model", help="resolve torchvision weights or a checkpoint into a reference file")
    s.add_argument("--arch", required=True, help=ARCH_HELP)
    s.add_argument("--weights", required=True, help="torchvision weights name (IMAGENET1K_V1) or checkpoint path")
    s.add_argument("--classes-from", required=True, help="a manifest of the dataset the model is evaluated on")
    s.add_argument("--transform", default="", help="JSON overrides of resize, crop, interpolation, mean, std")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_model)

    s = sub.add_parser("evaluate", help="evaluate a model on the clean split and every compressed one")
    _task_option(s)
    s.add_argument("--model", required=True, help="the model's name in config")
    s.add_argument("--reference", required=True)
    s.add_argument("--clean", required=True, help="manifest of the uncompressed split")
    s.add_argument("--compressed", nargs="+", default=[], metavar="Q=MANIFEST")
    s.add_argument("--params", default="", help="JSON of the config keys this job used (kept as provenance)")
    s.add_argument("--rule", default="evaluate")
    s.add_argument("--mitigation", default="none")
    s.add_argument("--corrector", nargs="*", default=[], metavar="[Q=]FILE",
                   help="a corrector in front of every quality, or Q=FILE for one quality each")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--workers", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.add_argument("--predictions", help="a folder to write the predictions on each set in (clean.json, q10.json, ...)")
    s.add_argument("--proposals", help="a Fast R-CNN's: the clean split's proposals file, used at every quality")
    s.add_argument("--codec", default="jpeg", help="the codec of the compressed sets (recorded in every row)")
    s.add_argument("--no-clean", action="store_true", help="score the compressed sets only (the codec study)")
    s.set_defaults(func=cmd_evaluate)

    def trainer(name: str, help: str, func):
        t = sub.add_parser(name, help=help)
        t.add_argument("--train", required=True, help="manifest of the (lossless) training split")
        t.add_argument("--params", default="", help="JSON of the training settings (kept as provenance)")
        t.add_argument("--threads", type=int, default=1)
        t.add_argument("--device", default="auto")
        t.add_argument("--out", required=True)
        t.add_argument("--codec", default="jpeg", help="the codec training images are compressed with on the fly")
        t.add_argument("--codec-range", nargs=2, type=int, metavar=("LOW", "HIGH"),
                       help="its qualities, drawn uniformly per image (JPEG: 10 90, the paper's)")
        t.add_argument("--codec-weights", nargs="*", default=[], metavar="Q=FILE",
                       help="the learned codec's network of each quality")
        t.set_defaults(func=func)
        return t

    s = sub.add_parser("frequency-stats", help="per-frequency DCT mean/std of a split's lossless images (QGAC)")
    s.add_argument("--train", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_frequency_stats)

    s = trainer("train-corrector", "train a corrector off the shelf (pixel loss, no task)", cmd_train_corrector)
    s.add_argument("--network", required=True, choices=["qgac", "arcnn", "idcn"])
    s.add_argument("--stats", help="QGAC: the DCT statistics file")
    s.add_argument("--quality", type=int, help="quality-aware networks: the one quality it is trained for")

    s = sub.add_parser("resolve-corrector", help="a published QGAC checkpoint (+ its statistics) as a corrector file")
    s.add_argument("--network", required=True, choices=["qgac"])
    s.add_argument("--weights", required=True, help="state_dict or Lightning .ckpt")
    s.add_argument("--stats", help="file with the checkpoint's DCT statistics (none: read from the checkpoint)")
    s.add_argument("--params", default="", help="JSON of the network's config (widths)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve_corrector)

    s = trainer("train-ttac", "task-targeted training of a corrector in front of a frozen model", cmd_train_ttac)
    _task_option(s)
    s.add_argument("--corrector", required=True, help="the off-the-shelf corrector to start from")
    s.add_argument("--reference", required=True, help="the task model (reference file)")

    s = sub.add_parser("train-multihead", help="multihead TTAC: one corrector in front of several frozen models at "
                       "once, each step a batch of every member's training set, their losses summed (no labels)")
    s.add_argument("--corrector", required=True, help="the off-the-shelf corrector to start from")
    s.add_argument("--member", action="append", required=True, metavar=MEMBER_FORM,
                   help="a frozen task model (its reference file) and its lossless training split; repeated, once "
                   "per member")
    s.add_argument("--params", default="", help='JSON of the training settings (kept as provenance): epochs, lr, '
                   'lr_min, seed, optional workers, and per member: batch_size (required), crop, images_per_epoch, '
                   'each a number for every member or one per task, e.g. {"epochs": 2, "lr": 0.002, "lr_min": 1e-6, '
                   '"seed": 0, "batch_size": {"classification": 64, "detection": 16}, "crop": {"detection": 64}}')
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_multihead)

    s = sub.add_parser("throughput", help="images/s of training and inference, model alone and with each corrector")
    _task_option(s)
    s.add_argument("--model", required=True, help="the model's name in config")
    s.add_argument("--reference", required=True)
    s.add_argument("--corrector", nargs="*", default=[], metavar="NAME=FILE")
    s.add_argument("--params", default="", help="JSON: batch_sizes, seconds, seed (kept as provenance)")
    s.add_argument("--rule", default="throughput")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_throughput)

    s = trainer("finetune", "fine-tune a model on random-quality JPEGs", cmd_finetune)
    s.add_argument("--proposals", help="a Fast R-CNN's: the training split's proposals file")
    _task_option(s)
    s.add_argument("--reference", required=True)

    s = sub.add_parser("tide", help="TIDE errors (appendix B) of a detector's predictions on clean and every quality")
    s.add_argument("--model", required=True)
    s.add_argument("--iou-type", required=True, choices=["bbox", "segm"])
    s.add_argument("--clean", required=True, help="manifest of the uncompressed split")
    s.add_argument("--compressed", nargs="+", default=[], metavar="Q=MANIFEST")
    s.add_argument("--predictions", required=True, help="the evaluation's predictions folder (clean.json, q10.json)")
    s.add_argument("--plots", required=True, help="prefix of the summary plots: PREFIX{clean,q10,...}.png")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_tide)

    s = sub.add_parser("tide-figure", help="each TIDE error's dAP against JPEG quality, a panel per detector")
    s.add_argument("tide", nargs="+", help="TIDE files (jpegstudy tide)")
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)
    s.set_defaults(func=cmd_tide_figure)

    s = sub.add_parser("table", help="a results table (LaTeX) from metric files")
    s.add_argument("metrics", nargs="+")
    s.add_argument("--kind", default="classification",
                   choices=["classification", "ac-comparison", "transfer", "reference", "throughput"],
                   help="classification: every model and mitigation (appendix D.2); ac-comparison: Table 1; "
                        "transfer: own against transferred and multihead TTAC correctors (Table 5); reference: clean "
                        "results beside torchvision's (D.3); throughput: images/s (E)")
    s.add_argument("--field", choices=["top1", "top5", "map", "mask_ap", "miou", "pixel_acc", "accuracy", "ap"],
                   help="the field shown (default: classification top1; ac-comparison and transfer, each task's "
                        "headline field: top1, map, miou, accuracy)")
    s.add_argument("--params", default="", help="JSON; classification: intervals (bool); ac-comparison: qualities")
    s.add_argument("--out", required=True, help="the LaTeX table (.tex)")
    s.add_argument("--html", help="also its HTML page (for snakemake's report), each number's ref kept")
    s.set_defaults(func=cmd_table)

    s = sub.add_parser("figure", help="a figure (PDF and PNG) from metric files")
    s.add_argument("metrics", nargs="+")
    s.add_argument("--kind", default="drop", choices=["drop", "mitigation", "transfer", "summary", "model",
                                                      "throughput", "summary-tasks", "drop-tasks",
                                                      "mitigation-tasks", "multihead"],
                   help="one task's: drop: Figure 3; mitigation: Figure 4; transfer: Figure 7; summary: Figure 1; "
                        "model: one model's plot (appendix D.1); every task's: summary-tasks (Figure 1), "
                        "drop-tasks (Figure 3), mitigation-tasks (Figure 4), multihead (Figure 8); throughput: "
                        "Figure 19 (its inputs are throughput files)")
    s.add_argument("--throughput", nargs="+", default=[], help="summary: the throughput files (point size)")
    s.add_argument("--params", default="", help="JSON plotting options (width, height, dpi, field; quality)")
    s.add_argument("--out", required=True, nargs="+", help="output files: .pdf and/or .png")
    s.set_defaults(func=cmd_figure)

    s = sub.add_parser("rates", help="the codec study: a task's metric against bits per pixel (a curve per codec, or"
                       " each mitigation a panel per codec), or the bitrate table (within a margin, BD-rate)")
    s.add_argument("--kind", required=True, choices=["rate", "rate-mitigation", "table"])
    s.add_argument("metrics", nargs="+")
    s.add_argument("--params", default="", help="JSON: figure size, dpi, confidence; the table's within margin")
    s.add_argument("--out", nargs="+", required=True, help="a figure's .pdf and .png, or the table's .tex")
    s.set_defaults(func=cmd_rates)

    s = sub.add_parser("findings", help="the findings page: the paper's three claims against the study's numbers")
    s.add_argument("metrics", nargs="+", help="the metric files of every task in the study")
    s.add_argument("--out", required=True, help="the LaTeX piece (.tex), every number traceable")
    s.set_defaults(func=cmd_findings)

    s = sub.add_parser("spectrum", help="a real/fake set's examples and the mean spectra of its two halves")
    s.add_argument("--manifest", required=True, help="the set's manifest (CNNDetection layout)")
    s.add_argument("--params", default="", help="JSON plotting options (dpi)")
    s.add_argument("--out", required=True, nargs="+", help="output files: .pdf and/or .png")
    s.set_defaults(func=cmd_spectrum)

    for name, func, help in (
        ("gradcam", cmd_gradcam, "appendix A: GradCAM and guided-backprop maps of one model on a few fixed images"),
        ("qualitative", cmd_qualitative, "appendix C: one model's predictions on a few fixed images, per mitigation"),
    ):
        s = sub.add_parser(name, help=help)
        s.add_argument("--model", required=True, help="the model's name in config")
        s.add_argument("--reference", required=True)
        s.add_argument("--clean", required=True, help="manifest of the uncompressed validation split")
        s.add_argument("--compressed", required=True, help="manifest of the same split at the quality shown")
        s.add_argument("--mitigation", nargs="*", default=[], metavar="NAME=FILE",
                       help="finetune=MODEL, offtheshelf=CORRECTOR, ttac=CORRECTOR: the columns after the JPEG")
        s.add_argument("--params", default="", help="JSON: samples, quality, dpi")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--device", default="cpu")
        s.add_argument("--out", required=True, nargs="+", help="output files: .pdf and/or .png")
        if name == "qualitative":  # GradCAM is classification's
            _task_option(s)
            s.add_argument("--proposals", help="a Fast R-CNN's: the clean split's proposals file")
        s.set_defaults(func=func)

    s = sub.add_parser("study", help="the study PDF (latexmk): every generated piece, each number linked to its record")
    s.add_argument("--pieces", nargs="+", required=True, metavar="KIND:NAME=FILE",
                   help="tables (table:NAME=.tex) and figures (figure:, model:, gradcam:, qualitative:NAME=.pdf)")
    s.add_argument("--metrics", nargs="+", required=True, help="every metric and throughput file the pieces show")
    s.add_argument("--tex", help="also write the rendered LaTeX skeleton here")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_study)

    s = sub.add_parser("audit", help="for every number in a generated table, figure or the study PDF, print the "
                                     "metric row it came from; or one row's whole record, given its id")
    s.add_argument("file", help="a .tex table, a .pdf/.png figure, reports/study.pdf, or a row id")
    s.add_argument("--metrics-dir", default="results/metrics")
    s.add_argument("--quiet", action="store_true", help="only the summary line")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("serve", help="the job server snakemake starts for a run: jobs fork from it with torch "
                                     "imported (jobserver.py)")
    s.add_argument("--socket", required=True, help="the Unix socket to listen on")
    s.add_argument("--parent", type=int, required=True, help="leave when this process (snakemake) has ended")
    s.set_defaults(func=cmd_serve)
    return p


# The commands that run a network: they start with the faster allocator (jpegstudy.cpu says why).
NETWORK_COMMANDS = {"train-reference", "train-detector", "propose", "train-corrector", "train-ttac", "finetune",
                    "evaluate", "throughput", "gradcam", "qualitative", "train-multihead", "serve"}


def main(argv: list[str] | None = None) -> None:
    command = sys.argv[1] if argv is None and len(sys.argv) > 1 else None  # run as the `jpegstudy` program
    if command not in (None, "serve"):
        from jpegstudy import jobserver

        status = jobserver.run_via_server(sys.argv[1:])
        if status is not None:
            sys.exit(status)
    if command in NETWORK_COMMANDS:
        from jpegstudy import cpu

        cpu.preload_allocator()
    args = parser().parse_args(argv)
    from jpegstudy.errors import USER_ERRORS

    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"jpegstudy {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
