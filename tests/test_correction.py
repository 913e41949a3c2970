"""The artifact-correction networks (QGAC, ARCNN, IDCN) and loading their checkpoints."""

import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import torch

from jpegstudy.correction.arcnn import ARCNN
from jpegstudy.correction.checkpoints import ForeignObject, load_state_dict
from jpegstudy.correction.idcn import IDCN, idct_basis, implicit_trans
from jpegstudy.correction.qgac import CFM, QGAC
from jpegstudy.jpeg import block_idct

LAYOUT = Path(__file__).parent / "data" / "qgac-state-dict.txt"
TINY = {"luma_channels": 16, "chroma_channels": 8, "luma_blocks": 1}


def published_layout():
    """(name -> shape, tensor count, parameter count) of the full-width QGACCrab, from the listing and its header.

    The listing shows block_enhancer_y.0 and each RRDB's block1 only; .1/.2 and block2/block3 follow the same
    pattern, as the file says."""
    lines = LAYOUT.read_text().splitlines()
    header = re.match(r"# QGACCrab: (\d+) tensors, ([\d,]+) parameters", lines[0])
    shapes = {}
    for line in lines[1:]:
        if line.startswith("# m3l"):  # the next network's section
            break
        if not line.strip() or line.startswith("#"):
            continue
        name, shape = line.split(maxsplit=1)
        shapes[name] = tuple(int(s) for s in re.findall(r"\d+", shape))
    expanded = {}
    for name, shape in shapes.items():
        names = [name]
        if name.startswith("block_enhancer_y.0."):
            names = [name.replace(".0.", f".{i}.", 1) for i in range(3)]
        names = [n.replace(".block1.", f".block{b}.") for n in names for b in (1, 2, 3)] if ".block1." in name \
            else names
        expanded.update(dict.fromkeys(names, shape))
    return expanded, int(header[1]), int(header[2].replace(",", ""))


def test_qgac_full_width_matches_published_state_dict():
    expected, n_tensors, n_params = published_layout()
    with torch.device("meta"):  # no memory, no init cost: only names and shapes matter here
        model = QGAC()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(expected) == n_tensors == 281
    assert set(got) - set(expected) == set() and set(expected) - set(got) == set()
    assert got == expected
    assert sum(v.numel() for v in model.state_dict().values()) == n_params == 82_602_604


def tiny_inputs(n=2, h=32, w=48):
    g = torch.Generator().manual_seed(1)
    y = torch.randn(n, 1, h, w, generator=g, requires_grad=True)
    cbcr = torch.randn(n, 2, h // 2, w // 2, generator=g, requires_grad=True)
    q_y, q_c = torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, 1, 8, 8, generator=g)
    return q_y, y, q_c, cbcr


def test_qgac_tiny_forward_backward_and_determinism():
    torch.manual_seed(0)
    model = QGAC(**TINY)
    torch.manual_seed(0)
    again = QGAC(**TINY)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    q_y, y, q_c, cbcr = tiny_inputs()
    out = model(q_y, y, q_c, cbcr)
    assert out.shape == (2, 3, 32, 48)
    assert (out[:, :1] - y).abs().max() < 0.05  # scaled init: the luma residual starts near zero
    out.square().mean().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert cbcr.grad is not None and cbcr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiples of 16"):
        model(q_y, y[..., :40], q_c, cbcr)


@pytest.mark.parametrize("transposed", [False, True])
def test_cfm_filters_each_image_with_its_own_table(transposed):
    torch.manual_seed(0)
    cfm = CFM(3, 5, transposed=transposed, manifold_channels=8)
    x = torch.randn(4, 3, 16, 24) if not transposed else torch.randn(4, 3, 2, 3)
    q = torch.rand(4, 1, 8, 8)
    batch = cfm(x, q)
    assert batch.shape == ((4, 5, 2, 3) if not transposed else (4, 5, 16, 24))
    for i in range(4):
        torch.testing.assert_close(batch[i:i + 1], cfm(x[i:i + 1], q[i:i + 1]), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(cfm(x, q), cfm(x, q.flip(0)))  # the table matters


@pytest.mark.parametrize("channels", [(64, 32, 16), (16, 8, 8)])
def test_arcnn_starts_near_identity_and_backpropagates(channels):
    torch.manual_seed(0)
    model = ARCNN(channels)
    x = torch.rand(2, 3, 24, 40, requires_grad=True)
    out = model(x)
    assert out.shape == x.shape
    assert (out - x).abs().max() < 0.05
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in model.parameters())


def test_idcn_starts_near_identity_and_backpropagates():
    torch.manual_seed(0)
    model = IDCN(channels=16, blocks=2)
    assert "dct_basis" in dict(model.named_buffers())
    assert not any("dct_basis" in k for k, _ in model.named_parameters())
    x = torch.rand(2, 3, 24, 40, requires_grad=True)
    q_y, q_c = torch.rand(2, 1, 8, 8), torch.rand(1, 1, 8, 8)  # one table may serve the whole batch
    out = model(x, q_y, q_c)
    assert out.shape == x.shape
    assert (out - x).abs().max() < 0.05
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in model.parameters())


def test_idcn_implicit_translation_is_the_inverse_dct_of_table_weighted_coefficients():
    coefficients = torch.randn(3, 1, 8, 8)
    q = torch.rand(3, 1, 8, 8)
    maps = implicit_trans(coefficients.reshape(3, 64, 1, 1), q, idct_basis())
    torch.testing.assert_close(maps.reshape(3, 1, 8, 8), block_idct(coefficients * q), rtol=1e-5, atol=1e-5)


# --- checkpoints ---

def tiny_qgac(seed):
    torch.manual_seed(seed)
    return QGAC(**TINY)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def save_with_vanished_class(path: Path, payload_for) -> None:
    """torch.save payload_for(instance) where the instance's class lives in a module that is gone afterwards."""
    name = f"throwaway_{uuid.uuid4().hex}"
    folder = path.parent / name
    folder.mkdir()
    (folder / f"{name}.py").write_text("class SomeLocalClass:\n    def __init__(self):\n        self.lr = 1e-4\n")
    sys.path.insert(0, str(folder))
    try:
        module = __import__(name)
        torch.save(payload_for(module.SomeLocalClass()), path)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
        shutil.rmtree(folder)
    with pytest.raises(ModuleNotFoundError):  # unpickling it for real is impossible now
        torch.load(path, weights_only=False)


def test_load_plain_state_dict_and_extras(tmp_path):
    source = tiny_qgac(1)
    plain = tmp_path / "plain.pt"
    torch.save(source.state_dict(), plain)
    fresh = tiny_qgac(2)
    assert load_state_dict(plain, fresh, "QGAC weights") == {}
    assert_same_weights(source, fresh)

    with_stats = tmp_path / "stats.pt"
    torch.save({"state_dict": source.state_dict(), "stats": {"mean": torch.ones(3, 8, 8)}}, with_stats)
    extras = load_state_dict(with_stats, tiny_qgac(3), "QGAC weights")
    assert torch.equal(extras["stats"]["mean"], torch.ones(3, 8, 8))


def test_load_lightning_checkpoint_without_its_classes(tmp_path):
    source = tiny_qgac(1)
    ckpt = tmp_path / "last.ckpt"
    save_with_vanished_class(ckpt, lambda obj: {
        "state_dict": {"model." + k: v for k, v in source.state_dict().items()},
        "hyper_parameters": {"opt": obj, "lr": 1e-4}, "epoch": 3})
    fresh = tiny_qgac(2)
    extras = load_state_dict(ckpt, fresh, "QGAC weights")
    assert_same_weights(source, fresh)
    assert extras["epoch"] == 3 and extras["hyper_parameters"]["lr"] == 1e-4
    opt = extras["hyper_parameters"]["opt"]
    assert isinstance(opt, ForeignObject) and type(opt).__name__ == "SomeLocalClass" and opt.state == {"lr": 1e-4}


class _Evil:
    def __init__(self, victim):
        self.victim = victim

    def __reduce__(self):
        return (os.remove, (str(self.victim),))


def test_foreign_code_in_a_checkpoint_is_never_run(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    source = tiny_qgac(1)
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {"x": _Evil(victim)}}, ckpt)
    extras = load_state_dict(ckpt, tiny_qgac(2), "QGAC weights")
    assert victim.exists()
    assert isinstance(extras["hyper_parameters"]["x"], ForeignObject)


def test_mismatched_checkpoints_are_refused_with_the_key(tmp_path):
    state = tiny_qgac(1).state_dict()
    renamed = dict(state)
    renamed["block_y.bias_transform.bias"] = renamed.pop("block_y.bias_transfrom.bias")
    path = tmp_path / "renamed.pt"
    torch.save({"state_dict": {"network." + k: v for k, v in renamed.items()}}, path)
    with pytest.raises(ValueError) as e:
        load_state_dict(path, tiny_qgac(2), "QGAC weights")
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert "missing key block_y.bias_transfrom.bias" in message and "block_y.bias_transform.bias" in message

    wide = QGAC(luma_channels=24, chroma_channels=8, luma_blocks=1).state_dict()
    path = tmp_path / "wide.pt"
    torch.save(wide, path)
    with pytest.raises(ValueError) as e:
        load_state_dict(path, tiny_qgac(2), "QGAC weights")
    message = str(e.value)
    assert str(path) in message
    assert re.search(r"block_y\.weight_transform\.weight has shape \[16, 24, 8, 8\], the network \[16, 16, 8, 8\]",
                     message)
