"""The mitigations' training and evaluation on a tiny embedded dataset: TTAC never reads a label, a corrector
that changes nothing reproduces the unmitigated numbers, the clean reference never meets a corrector."""

import dataclasses
import json

import pytest
import torch
from torchvision.transforms.functional import pil_to_tensor

from jpegstudy import compress, evaluate, jpeg, throughput
from jpegstudy.config import ConfigError, check_semantics, study_mitigations, mitigation_inputs
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.data import embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb
from jpegstudy.tasks import classification
from jpegstudy.train import finetune, restore, ttac

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    train = embedded.write_split(root / "train", "train", 2, SIZE, 0)
    train.write(root / "train" / "manifest.json")
    val = embedded.write_split(root / "val", "val", 2, SIZE, 0)
    val.write(root / "val" / "manifest.json")
    compressed = {q: compress.compress_split(root / "val" / "manifest.json", q, root / f"val-q{q}") for q in (10, 50)}
    torch.manual_seed(0)
    model = classification.build("resnet18", len(train.classes))
    transform = classification.transform_spec("resnet18", "train", None, SIZE)
    classification.save_reference(root / "reference.pt", arch="resnet18", build_kwargs={}, classes=train.classes,
                                  transform=transform, source="train", state_dict=model.state_dict())
    return {"root": root, "train": manifests.read(root / "train" / "manifest.json"), "compressed": compressed,
            "reference": root / "reference.pt"}


def tiny_arcnn(quality=None, zero=False) -> correctors.Corrector:
    torch.manual_seed(0)
    c = correctors.Corrector("arcnn", {"channels": (4, 4, 4)}, quality=quality)
    if zero:  # the residual is the last conv's output: with it zero the corrector returns its input
        last = [m for m in c.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    return c


def state_bytes(module) -> list:
    return [v.clone() for v in module.state_dict().values()]


def test_ttac_never_reads_a_label(data, tmp_path):
    task, meta = classification.load_reference(data["reference"])
    shuffled = dataclasses.replace(data["train"], images=[
        {**im, "label": (im["label"] + 3) % len(data["train"].classes)} for im in data["train"].images])
    weights = []
    for i, manifest in enumerate([data["train"], shuffled]):
        c = ttac.train(tiny_arcnn(quality=10), task, meta["transform"], manifest, out=tmp_path / f"{i}.pt",
                       epochs=1, batch_size=8, lr=1e-3, lr_min=1e-5, seed=0)
        weights.append(state_bytes(c))
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    assert not all(torch.equal(a, b) for a, b in zip(weights[0], state_bytes(tiny_arcnn(quality=10))))


def test_task_network_stays_frozen_during_ttac(data, tmp_path):
    task, meta = classification.load_reference(data["reference"])
    before = state_bytes(task)
    ttac.train(tiny_arcnn(quality=10), task, meta["transform"], data["train"], out=tmp_path / "t.pt", epochs=1,
               batch_size=8, lr=1e-3, lr_min=1e-5, seed=0)
    # running statistics of batch norm included: eval mode never updates them
    assert all(torch.equal(a, b) for a, b in zip(before, state_bytes(task)))


def evaluate_with(data, corrector_files, mitigation="x"):
    return evaluate.evaluate(
        model_name="resnet18", reference=str(data["reference"]), clean=str(data["root"] / "val" / "manifest.json"),
        compressed={q: str(data["root"] / f"val-q{q}" / "manifest.json") for q in data["compressed"]}, params={},
        rule="test", batch_size=7, workers=0, device="cpu", mitigation=mitigation, corrector_files=corrector_files)


def scores(result):
    return {r["quality"]: (r["top1"], r["top5"], r["n_images"]) for r in result["rows"]}


def test_a_corrector_that_changes_nothing_reproduces_no_mitigation(data, tmp_path):
    identity = tiny_arcnn(zero=True)
    correctors.save(tmp_path / "id.pt", identity, source="test")
    mitigated = evaluate_with(data, {None: str(tmp_path / "id.pt")})
    none = evaluate_with(data, {}, "none")
    assert scores(mitigated) == scores(none)
    assert mitigated["rows"][1]["provenance"]["inputs"]["corrector"]["path"] == str(tmp_path / "id.pt")
    assert "corrector" not in mitigated["rows"][0]["provenance"]["inputs"]  # the clean row has none


def test_clean_reference_never_goes_through_the_corrector(data, tmp_path):
    black = tiny_arcnn(quality=10, zero=True)
    last = [m for m in black.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.constant_(last.bias, -10.0)  # every output pixel clamps to 0: a black image
    correctors.save(tmp_path / "black.pt", black, source="test")
    result = evaluate_with(data, {10: str(tmp_path / "black.pt")})
    none = scores(evaluate_with(data, {}, "none"))
    got = scores(result)
    assert set(got) == {None, 10}  # quality-aware: only its own quality is evaluated
    assert got[None] == none[None]
    # a black image gets one prediction for all 20 images: the accuracy of always answering one class
    assert got[10][0] in (0.0, 10.0)


def test_quality_aware_corrector_for_a_missing_quality_is_refused(data, tmp_path):
    correctors.save(tmp_path / "c.pt", tiny_arcnn(quality=30), source="test")
    with pytest.raises(ValueError, match=r"correctors for Q=\[30\] but no compressed set"):
        evaluate_with(data, {30: str(tmp_path / "c.pt")})


def test_qgac_with_the_pixel_loss_learns_to_beat_the_jpeg(data):
    """The whole corrector path (coefficients, normalisation, QGAC, back to pixels) and the off-the-shelf loss:
    a few Adam steps on one Q=10 batch make the output closer to the originals than the JPEG is."""
    images = torch.stack([pil_to_tensor(load_rgb(data["train"].path_of(i))) for i in range(20)])
    torch.manual_seed(0)
    c = correctors.Corrector("qgac", {"luma_channels": 8, "chroma_channels": 4, "luma_blocks": 1},
                             jpeg.FrequencyStats.compute(iter(images)))
    batch = inputs.from_images(images, [10] * 20)
    original = images.float() / 255
    jpeg_loss = restore.pixel_loss("qgac", batch.rgb, original).item()
    optimizer = torch.optim.Adam(c.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = restore.pixel_loss("qgac", c(batch), original)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - jpeg_loss) < 0.005  # untrained, QGAC returns (nearly) its input
    assert losses[-1] < jpeg_loss - 0.002


def test_offtheshelf_training_is_deterministic(data, tmp_path):
    runs = []
    for i in range(2):
        torch.manual_seed(0)
        c = restore.train(tiny_arcnn(quality=10), data["train"], out=tmp_path / f"o{i}.pt", epochs=1, batch_size=8,
                          lr=1e-3, lr_min=1e-4, seed=0)
        runs.append(state_bytes(c))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], state_bytes(tiny_arcnn(quality=10))))


def test_finetuning_changes_the_weights_deterministically(data, tmp_path):
    runs = []
    for i in range(2):
        model, meta = classification.load_reference(data["reference"])
        finetune.train(model, meta["transform"], data["train"], out=tmp_path / f"f{i}.pt", epochs=1, batch_size=8,
                       lr=1e-3, lr_min=1e-6, momentum=0.9, weight_decay=5e-4, seed=0)
        runs.append(state_bytes(model))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    untouched = state_bytes(classification.load_reference(data["reference"])[0])
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], untouched))


def test_throughput_rows(data, tmp_path):
    correctors.save(tmp_path / "a.pt", tiny_arcnn(quality=10), source="test")
    result = throughput.task_throughput(
        model_name="resnet18", reference=str(data["reference"]), corrector_files={"arcnn": str(tmp_path / "a.pt")},
        batch_sizes=[1, 4], seconds=0.05, params={}, rule="test", device="cpu")
    rows = result["rows"]
    # at 32 px resnet18's last features are 1x1: batch norm cannot train on a batch of one, so that figure is absent
    assert [(r["corrector"], r["mode"], r["batch_size"]) for r in rows] == [
        (c, m, b) for b in (1, 4) for c in (None, "arcnn") for m in ("inference", "train")
        if (c, m, b) != (None, "train", 1)]
    assert all(r["images_per_s"] > 0 and r["image_size"] == SIZE and r["id"] for r in rows)
    assert rows[1]["provenance"]["inputs"]["weights"]["path"] == str(data["reference"])


def config_with(**classification):
    from snakemake.utils import validate

    from .conftest import REPO

    config = {"classification": classification}
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def test_each_model_gets_its_mitigations():
    config = config_with()
    plan = study_mitigations(config)
    assert plan["resnet18"] == ["none", "finetune", "offtheshelf", "ttac", "transfer-mobilenet_v2"]
    assert plan["mobilenet_v2"][-4:] == ["arcnn-offtheshelf", "arcnn-ttac", "idcn-offtheshelf", "idcn-ttac"]
    needs = mitigation_inputs(config, "mobilenet_v2", "idcn-ttac")
    assert needs["correctors"] == {10: "results/models/correction/idcn/q10/ttac/classification-mobilenet_v2.pt",
                                   20: "results/models/correction/idcn/q20/ttac/classification-mobilenet_v2.pt"}
    assert mitigation_inputs(config, "resnet18", "finetune")["reference"].endswith("resnet18/finetune.pt")
    assert study_mitigations(config_with(mitigations=[]))["resnet18"] == ["none"]


@pytest.mark.parametrize("key, value, message", [
    ("transfer_from", ["vgg19"], "config classification.transfer_from: 'vgg19' is not one of classification.models"),
    ("ac_comparison", {"qualities": [15]}, "config classification.ac_comparison.qualities: 15 is not one of qualities"),
    ("train_dataset", "nope", "config classification.train_dataset: 'nope' is not one of datasets (embedded)"),
])
def test_mitigation_config_errors_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as e:
        check_semantics(config_with(**{key: value}))
    assert str(e.value) == message




def test_published_qgac_checkpoint_becomes_a_corrector(tmp_path):
    """A Lightning-style checkpoint (prefixed keys, statistics beside the weights) as resolve-corrector loads it;
    one with a wrong key is refused in one line naming it."""
    import subprocess

    from jpegstudy.correction.qgac import QGAC

    widths = {"luma_channels": 8, "chroma_channels": 4, "luma_blocks": 1}
    torch.manual_seed(1)
    net = QGAC(**widths)
    stats = {"mean": torch.randn(3, 8, 8), "std": torch.rand(3, 8, 8) + 0.5}
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "stats": stats, "epoch": 7},
               tmp_path / "qgac.ckpt")
    args = ["jpegstudy", "resolve-corrector", "--network", "qgac", "--params", json.dumps(widths)]
    subprocess.run([*args, "--weights", str(tmp_path / "qgac.ckpt"), "--out", str(tmp_path / "c.pt")], check=True,
                   capture_output=True)
    corrector, meta = correctors.load(tmp_path / "c.pt")
    assert all(torch.equal(a, b) for a, b in zip(corrector.net.state_dict().values(), net.state_dict().values()))
    assert torch.equal(corrector.stats.std, stats["std"]) and meta["source"] == str(tmp_path / "qgac.ckpt")

    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["model.block_y.bias_transform.weight"] = state.pop("model.block_y.bias_transfrom.weight")
    torch.save({"state_dict": state, "stats": stats}, tmp_path / "bad.ckpt")
    result = subprocess.run([*args, "--weights", str(tmp_path / "bad.ckpt"), "--out", str(tmp_path / "d.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "d.pt").exists()
    assert result.stderr.count("\n") == 1 and "block_y.bias_transfrom.weight" in result.stderr
    assert str(tmp_path / "bad.ckpt") in result.stderr
