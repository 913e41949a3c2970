"""Multihead TTAC: one corrector against several frozen task networks at once (train.ttac.train_multihead on
restore.fit_streams). Never reads a label, deterministic, resumable, its loss the sum of the members' TTAC losses;
single-task training through the generalised loop gives the weights the old one gave; the CLI's refusals."""

import copy
import dataclasses

import pytest
import torch
from torchvision.transforms.functional import pil_to_tensor

from jpegstudy import cli, jpeg
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.data import embedded, training
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb
from jpegstudy.tasks import classification, detection
from jpegstudy.train import loop, restore, ttac

CLASSIFY, DETECT = 32, 48  # image sizes: members differ in size as well as in task
SETTINGS = {"epochs": 1, "lr": 1e-3, "lr_min": 1e-5, "seed": 0}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihead")
    embedded.write_split(root / "cls", "train", 2, CLASSIFY, 0).write(root / "cls" / "manifest.json")
    embedded.write_coco_split(root / "det", "train", 6, DETECT, seed=1).write(root / "det" / "manifest.json")
    cls_train, det_train = (manifests.read(root / name / "manifest.json") for name in ("cls", "det"))
    torch.manual_seed(0)
    classifier = classification.build("resnet18", len(cls_train.classes))
    spec = classification.transform_spec("resnet18", "train", None, CLASSIFY)
    classification.save_reference(root / "cls.pt", arch="resnet18", build_kwargs={}, classes=cls_train.classes,
                                  transform=spec, source="test", state_dict=classifier.state_dict())
    detector = detection.build("faster_rcnn", len(det_train.classes), DETECT, copy.deepcopy(classifier))
    stats = jpeg.FrequencyStats.compute(pil_to_tensor(load_rgb(cls_train.path_of(i))) for i in range(4))
    return {"root": root, "cls": cls_train, "det": det_train, "classifier": classifier, "spec": spec,
            "detector": detector, "stats": stats}


def qgac(data) -> correctors.Corrector:
    """A tiny QGAC: it draws a quality per image from the epoch's generator, as the study's does."""
    torch.manual_seed(0)
    return correctors.Corrector("qgac", {"luma_channels": 8, "chroma_channels": 4, "luma_blocks": 1}, data["stats"])


def members(data, cls_manifest=None) -> list[ttac.Member]:
    """A classifier (3 steps an epoch: 12 of its 20 images) and a detector (2 steps, so its stream starts again)."""
    return [ttac.Member("classification", data["classifier"], data["spec"], cls_manifest or data["cls"], 4,
                        images_per_epoch=12),
            ttac.Member("detection", data["detector"], {}, data["det"], 3)]


def weights(module) -> list[torch.Tensor]:
    return [v.clone() for v in module.state_dict().values()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def multihead(data, out, **kwargs) -> list[torch.Tensor]:
    settings = {**SETTINGS, **kwargs}
    ms = settings.pop("members", None) or members(data)
    return weights(ttac.train_multihead(qgac(data), ms, out=out, **settings))


def test_two_tasks_train_one_corrector_and_never_read_a_label(data, tmp_path, capsys):
    scrambled = dataclasses.replace(data["cls"], images=[
        {**im, "label": (im["label"] + 3) % len(data["cls"].classes)} for im in data["cls"].images])
    first = multihead(data, tmp_path / "a.pt")
    line = capsys.readouterr().out
    assert "qgac multihead loss" in line and "(classification " in line and ", detection " in line
    assert same(first, multihead(data, tmp_path / "b.pt", members=members(data, scrambled)))
    assert not same(first, weights(qgac(data)))
    assert not same(first, multihead(data, tmp_path / "c.pt", seed=1))


def test_the_step_loss_is_the_sum_of_the_members_ttac_losses(data, tmp_path, monkeypatch):
    """The first step's loss, recomputed from the very JPEG batches it was made of with the untrained corrector."""
    made, stepped = [], []
    from_images, step = inputs.from_images, loop.step

    def recorded(images, qualities):
        made.append((images, from_images(images, qualities)))
        return made[-1][1]

    monkeypatch.setattr(inputs, "from_images", recorded)
    monkeypatch.setattr(loop, "step", lambda loss, *a: stepped.append(loss.item()) or step(loss, *a))
    start = qgac(data).train()
    multihead(data, tmp_path / "m.pt")
    assert len(stepped) == 3 and len(made) == 6  # 3 steps, one batch of each member a step
    (cls_images, cls_batch), (det_images, det_batch) = made[:2]
    assert cls_images.shape[-1] == CLASSIFY and det_images.shape[-1] == DETECT
    with torch.no_grad():
        parts = [ttac.ttac_loss(classification.ttac_target, data["classifier"],
                                classification.tensor_transform(data["spec"]), start, cls_images, cls_batch).item(),
                 ttac.ttac_loss(detection.ttac_target, data["detector"], lambda x: x, start, det_images,
                                det_batch).item()]
    assert min(parts) > 0
    assert stepped[0] == pytest.approx(sum(parts), rel=1e-5)


class Interrupted(Exception):
    pass


def test_a_run_stopped_after_epoch_one_resumes_to_the_same_weights(data, tmp_path, monkeypatch, capsys):
    whole = multihead(data, tmp_path / "whole.pt", epochs=2)
    real_seed = loop.epoch_seed

    def stop_at_two(seed, epoch):
        if epoch == 1:
            raise Interrupted
        return real_seed(seed, epoch)

    monkeypatch.setattr(loop, "epoch_seed", stop_at_two)
    with pytest.raises(Interrupted):
        multihead(data, tmp_path / "m.pt", epochs=2)
    monkeypatch.setattr(loop, "epoch_seed", real_seed)
    capsys.readouterr()
    assert same(whole, multihead(data, tmp_path / "m.pt", epochs=2))
    assert "epochs 1-1 already done" in capsys.readouterr().out
    # Another member set is another job: its checkpoint is not resumed.
    fewer = members(data)[:1]
    multihead(data, tmp_path / "m.pt", epochs=2, members=fewer)
    assert "made with other settings" in capsys.readouterr().out


def old_fit(corrector, manifest, loss_fn, *, what, out, epochs, batch_size, lr, lr_min, seed, crop=None, workers=0,
            images_per_epoch=None, device="cpu"):
    """restore.fit as it was before fit_streams (commit 548eb61), verbatim but for the names it imports."""
    dev = restore.pick_device(device)
    torch.manual_seed(seed)
    corrector.to(dev).train()
    optimizer = torch.optim.Adam(corrector.parameters(), lr=lr)
    schedule = loop.cosine(optimizer, epochs * training.steps_per_epoch(manifest, batch_size, images_per_epoch),
                           lr_min)

    def epoch(_, generator):
        total = steps = 0
        for images, _labels in training.batches(manifest, batch_size=batch_size, generator=generator, crop=crop,
                                                workers=workers, images_per_epoch=images_per_epoch):
            batch = inputs.from_images(images, restore.qualities_for(corrector, len(images), generator)).to(dev)
            loss = loss_fn(images.to(dev), batch)
            total, steps = total + loop.step(loss, optimizer, schedule), steps + 1
        return f"{corrector.describe()} {what} loss {total / steps:.4f}"

    settings = {"what": what, "network": corrector.network, "kwargs": corrector.kwargs,
                "quality": corrector.quality, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "lr_min": lr_min, "seed": seed, "crop": crop, "images": len(manifest.images),
                "images_per_epoch": images_per_epoch}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"corrector": corrector, "optimizer": optimizer, "schedule": schedule}, epoch_fn=epoch)
    return corrector.cpu().eval()


@pytest.mark.parametrize("what", ["offtheshelf", "ttac"])
def test_single_task_training_gives_the_weights_it_gave_before_fit_streams(data, tmp_path, monkeypatch, what,
                                                                            capsys):
    def run(name):
        kwargs = {"out": tmp_path / name, "epochs": 2, "batch_size": 8, "seed": 0, "lr": 1e-3, "lr_min": 1e-5}
        if what == "offtheshelf":
            return weights(restore.train(qgac(data), data["cls"], **kwargs))
        return weights(ttac.train(qgac(data), data["classifier"], data["spec"], data["cls"], images_per_epoch=16,
                                  **kwargs))

    now = run("now.pt")
    log = capsys.readouterr().out
    monkeypatch.setattr(restore, "fit", old_fit)
    assert same(now, run("before.pt"))
    assert log == capsys.readouterr().out  # the same log lines, the same losses


@pytest.mark.parametrize("member, message", [
    ("classification=ref.pt", "--member 'classification=ref.pt': expected TASK=REFERENCE=TRAIN_MANIFEST"),
    ("classification=ref.pt=", "--member 'classification=ref.pt=': expected TASK=REFERENCE=TRAIN_MANIFEST"),
    ("colour=ref.pt=train.json", "--member 'colour=ref.pt=train.json': unknown task 'colour': one of"),
])
def test_a_malformed_member_is_refused_in_one_line(tmp_path, capsys, member, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["train-multihead", "--corrector", "c.pt", "--member", member, "--out", str(tmp_path / "o.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"jpegstudy train-multihead: error: {message}") and "\n" not in err


def test_the_command_trains_and_writes_a_corrector(data, tmp_path, capsys):
    correctors.save(tmp_path / "start.pt", qgac(data), source="test")
    member = f"classification={data['root'] / 'cls.pt'}={data['cls'].location}"
    args = ["train-multihead", "--corrector", str(tmp_path / "start.pt"), "--member", member, "--out",
            str(tmp_path / "mh.pt"), "--device", "cpu"]
    with pytest.raises(SystemExit):  # no batch size for the member's task
        cli.main([*args, "--params", '{"epochs": 1, "lr": 0.001, "lr_min": 0, "seed": 0, "batch_size": {}}'])
    assert "--params batch_size: none for task 'classification'" in capsys.readouterr().err
    cli.main([*args, "--params", '{"epochs": 1, "lr": 0.001, "lr_min": 0, "seed": 0, "images_per_epoch": 8, '
                                 '"batch_size": {"classification": 4}}'])
    trained, meta = correctors.load(tmp_path / "mh.pt")
    assert meta["source"] == str(tmp_path / "start.pt") and not (tmp_path / "mh.pt.resume").exists()
    assert not same(weights(trained), weights(qgac(data)))
