"""The forensic detectors' networks (tasks/forensics_models): Wang et al.'s ResNet-50 with one logit and Chai et al.'s
truncated Xception patch net, built without downloads, and strict loading of their checkpoint layouts."""

from __future__ import annotations

import sys
import urllib.request

import pytest
import torch
import torchvision

from jpegstudy.errors import ModelError
from jpegstudy.tasks import forensics_models as fm


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets run faster on one thread


def _images(n: int = 2, size: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """Random batch-norm statistics too, so a round trip that dropped them would change the outputs."""
    torch.manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def _refused(call, path, *words) -> str:
    with pytest.raises(ModelError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


# Wang et al.

def test_wang_net_is_torchvision_resnet50_with_one_output():
    net = fm.wang_net((3, 4, 6, 3), 64)
    reference = torchvision.models.resnet50(num_classes=1)
    assert list(_shapes(net).items()) == list(_shapes(reference).items())
    assert _shapes(net)["fc.weight"] == (1, 2048) and net.detector == "wang"


def test_embedded_wang_net_keeps_torchvision_names_and_runs():
    net = fm.wang_net((1, 1, 1, 1), 32).eval()
    shapes = _shapes(net)
    assert shapes["conv1.weight"] == (32, 3, 7, 7) and shapes["layer1.0.conv1.weight"] == (32, 32, 1, 1)
    assert shapes["layer4.0.conv3.weight"] == (1024, 256, 1, 1) and shapes["fc.weight"] == (1, 1024)
    assert "layer1.1.conv1.weight" not in shapes
    assert [name for name, _ in net.named_children()] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                                         "layer3", "layer4", "avgpool", "fc"]
    with torch.no_grad():
        assert net(_images()).shape == (2, 1)
    # Fewer blocks at torchvision's width is a plain torchvision ResNet.
    assert type(fm.wang_net((1, 1, 1, 1))) is torchvision.models.resnet.ResNet


@pytest.mark.parametrize("layers, width", [((1, 1, 1), 64), ((1, 0, 1, 1), 64), ((1, 1, 1, 1), 0)])
def test_wang_net_refuses_bad_sizes(layers, width):
    with pytest.raises(ModelError):
        fm.wang_net(layers, width)


@pytest.fixture(scope="module")
def small_wang() -> torch.nn.Module:
    torch.manual_seed(0)
    return _trained_like(fm.wang_net((1, 1, 1, 1), 16))


def test_wang_checkpoint_round_trips(small_wang, tmp_path):
    path = tmp_path / "blur_jpg_prob0.5.pth"
    sd = small_wang.state_dict()
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "total_steps": 7}, path)
    torch.manual_seed(1)
    fresh = fm.wang_net((1, 1, 1, 1), 16).eval()
    fresh.load_state_dict(fm.load_wang(path, fresh))
    with torch.no_grad():
        assert torch.equal(fresh(_images()), small_wang(_images()))
    # DataParallel's "module." prefixes, and a plain state_dict, load the same.
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    assert all(torch.equal(v, sd[k]) for k, v in fm.load_wang(path, fresh).items())
    torch.save(sd, path)
    assert all(torch.equal(v, sd[k]) for k, v in fm.load_wang(path, fresh).items())


def test_wang_default_is_resnet50(tmp_path):
    torch.manual_seed(0)
    sd = torchvision.models.resnet50(num_classes=1).state_dict()
    path = tmp_path / "model_epoch_best.pth"
    torch.save({"model": sd}, path)
    assert fm.load_wang(path).keys() == sd.keys()
    torch.save({"model": fm.wang_net((1, 1, 1, 1), 16).state_dict()}, path)
    _refused(lambda: fm.load_wang(path), path, "ResNet-50", "layer1.1.")


def test_wang_refusals_name_file_and_key(small_wang, tmp_path):
    sd = small_wang.state_dict()
    path = tmp_path / "bad.pth"
    torch.save({"model": {k: v for k, v in sd.items() if k != "fc.bias"}}, path)
    _refused(lambda: fm.load_wang(path, small_wang), path, "fc.bias", "missing")
    torch.save({"model": {**sd, "fc2.weight": torch.zeros(1)}}, path)
    _refused(lambda: fm.load_wang(path, small_wang), path, "fc2.weight", "not in")
    torch.save({"model": {**sd, "fc.weight": torch.zeros(2, 512)}}, path)
    _refused(lambda: fm.load_wang(path, small_wang), path, "fc.weight", "(2, 512)", "(1, 512)")
    torch.save({"weights": sd, "total_steps": 3}, path)
    _refused(lambda: fm.load_wang(path, small_wang), path, "'model'")
    path.write_bytes(b"not a checkpoint")
    _refused(lambda: fm.load_wang(path, small_wang), path, "cannot load")
    _refused(lambda: fm.load_wang(tmp_path / "absent.pth", small_wang), tmp_path / "absent.pth", "not found")


# Chai et al.

def test_chai_net_has_their_names_and_a_37_patch_map():
    net = fm.chai_net(2).eval()
    shapes = _shapes(net)
    assert [name for name, _ in net.named_children()] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "block1",
                                                         "block2", "convout"]
    assert shapes["conv1.weight"] == (32, 3, 3, 3) and shapes["conv2.weight"] == (64, 32, 3, 3)
    assert shapes["block1.rep.0.conv1.weight"] == (64, 1, 3, 3)  # block1 starts without a ReLU
    assert shapes["block1.rep.0.pointwise.weight"] == (128, 64, 1, 1)
    assert shapes["block1.rep.1.weight"] == (128,) and "block1.rep.1.running_var" in shapes
    assert shapes["block1.rep.3.conv1.weight"] == (128, 1, 3, 3) and "block1.rep.4.running_mean" in shapes
    assert shapes["block1.skip.weight"] == (128, 64, 1, 1) and shapes["block1.skipbn.weight"] == (128,)
    assert shapes["block2.rep.1.conv1.weight"] == (128, 1, 3, 3)  # block2's rep.0 is a ReLU
    assert shapes["block2.rep.4.pointwise.weight"] == (256, 256, 1, 1) and "block2.rep.0.conv1.weight" not in shapes
    assert shapes["convout.weight"] == (2, 256, 1, 1) and shapes["convout.bias"] == (2,)
    assert not any(k.startswith("block3") for k in shapes) and net.detector == "chai"
    # Everything before convout is (Cadene's and timm's) Xception's own keys and shapes, in order.
    xception = sys.modules["timm.models.xception"].Xception()
    stem = ("conv1.", "bn1.", "conv2.", "bn2.", "block1.", "block2.")
    assert [(k, s) for k, s in shapes.items() if not k.startswith("convout")] == \
        [(k, s) for k, s in _shapes(xception).items() if k.startswith(stem)]
    with torch.no_grad():
        assert net(_images(1, 299)).shape == (1, 2, 37, 37)


@pytest.mark.parametrize("block, channels, size", [(1, 32, 23), (3, 182, 6), (4, 182, 6), (12, 256, 3)])
def test_chai_net_other_blocks_and_widths(block, channels, size):
    net = fm.chai_net(block, 0.25).eval()
    assert _shapes(net)["convout.weight"] == (2, channels, 1, 1)
    with torch.no_grad():
        assert net(_images(2, 96)).shape == (2, 2, size, size)


@pytest.mark.parametrize("block, width", [(0, 1.0), (13, 1.0), (2, 0)])
def test_chai_net_refuses_bad_sizes(block, width):
    with pytest.raises(ModelError):
        fm.chai_net(block, width)


@pytest.fixture(scope="module")
def small_chai() -> torch.nn.Module:
    torch.manual_seed(0)
    return _trained_like(fm.chai_net(2, 0.25))


def test_chai_checkpoint_round_trips(small_chai, tmp_path):
    path = tmp_path / "bestval_net_D.pth"
    sd = small_chai.state_dict()
    torch.save({"state_dict": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3,
                "best_val_metric": 0.9, "best_val_ep": 2}, path)
    torch.manual_seed(1)
    fresh = fm.chai_net(2, 0.25).eval()
    fresh.load_state_dict(fm.load_chai(path, fresh))
    with torch.no_grad():
        assert torch.equal(fresh(_images()), small_chai(_images()))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    assert all(torch.equal(v, sd[k]) for k, v in fm.load_chai(path, fresh).items())
    # A block number checks against their full-width net.
    torch.save({"state_dict": fm.chai_net(2).state_dict()}, path)
    assert "convout.weight" in fm.load_chai(path, 2)
    _refused(lambda: fm.load_chai(path, 1), path, "xception_block1", "block2.")


def test_chai_refusals_name_file_and_key(small_chai, tmp_path):
    sd = small_chai.state_dict()
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {k: v for k, v in sd.items() if k != "block2.skip.weight"}}, path)
    _refused(lambda: fm.load_chai(path, small_chai), path, "block2.skip.weight", "missing")
    torch.save({"state_dict": {**sd, "block3.skip.weight": torch.zeros(1)}}, path)
    _refused(lambda: fm.load_chai(path, small_chai), path, "block3.skip.weight", "not in")
    torch.save({"state_dict": {**sd, "convout.weight": torch.zeros(1, 64, 1, 1)}}, path)
    _refused(lambda: fm.load_chai(path, small_chai), path, "convout.weight", "(1, 64, 1, 1)", "(2, 64, 1, 1)")
    torch.save({"model": "x", "epoch": 3}, path)
    _refused(lambda: fm.load_chai(path, small_chai), path, "'state_dict'")


def test_nothing_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    assert fm.wang_net().detector == "wang" and fm.wang_net((1, 1, 1, 1), 16).detector == "wang"
    assert fm.chai_net().detector == "chai" and fm.chai_net(2, 0.25).detector == "chai"
