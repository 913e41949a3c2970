"""The segmentation model zoo (tasks/segmentation_models): CSAIL's pairs built without downloads, the embedded
encoders made from torchvision classifiers, the loss, and strict loading of CSAIL's checkpoint files."""

from __future__ import annotations

import copy
import re
import urllib.request

import pytest
import torch
import torch.nn.functional as F
import torchvision
from mit_semseg.lib.nn import SynchronizedBatchNorm2d
from mit_semseg.models import hrnet, mobilenet, resnet
from mit_semseg.models.models import MobileNetV2Dilated, ModelBuilder, ResnetDilated

from jpegstudy.errors import ModelError
from jpegstudy.tasks import segmentation_models as zoo

K = 7  # classes of the small test nets


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small nets run faster on one thread


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=_seeded())


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def mobilenet_v2() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10).eval()


@pytest.fixture(scope="module")
def embedded(resnet18, mobilenet_v2) -> dict[str, zoo.SegmentationNet]:
    torch.manual_seed(1)
    return {"resnet18dilated": zoo.embedded_net(resnet18, "resnet18dilated", "ppm_deepsup", K).eval(),
            "mobilenetv2dilated": zoo.embedded_net(mobilenet_v2, "mobilenetv2dilated", "c1_deepsup", K).eval()}


def _no_downloads(monkeypatch, tmp_path) -> None:
    """Every way mit-semseg or torch could fetch weights raises; the working directory is empty (mit-semseg's
    load_url makes ./pretrained before downloading)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")

    import mit_semseg.models.utils as semseg_utils

    monkeypatch.setattr(semseg_utils, "urlretrieve", refuse)
    monkeypatch.setattr(semseg_utils, "load_url", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for module in (resnet, mobilenet, hrnet):
        monkeypatch.setattr(module, "load_url", refuse)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def run64(embedded) -> dict[str, dict]:
    """Each embedded pair on two 64 x 64 images (eval mode): the encoder's features, the decoder's outputs on them
    and forward's."""
    runs = {}
    x = _images()
    with torch.no_grad():
        for encoder, net in embedded.items():
            features = net.features(x)
            runs[encoder] = {"features": features, "decoded": net.decoder(features), "out": net(x)}
    return runs


# Embedded pairs: shapes, output stride, weights kept, dilation as mit-semseg's.

@pytest.mark.parametrize("encoder", ["resnet18dilated", "mobilenetv2dilated"])
def test_embedded_output_is_log_probabilities_at_the_input_size(run64, encoder):
    out = run64[encoder]["out"]
    assert out.shape == (2, K, 64, 64)
    assert torch.allclose(out.exp().sum(1), torch.ones(2, 64, 64), atol=1e-5)


@pytest.mark.parametrize("encoder", ["resnet18dilated", "mobilenetv2dilated"])
def test_forward_is_the_log_of_csails_inference(embedded, run64, encoder):
    """CSAIL's decoders with use_softmax: scores upsampled bilinearly to segSize, then softmax."""
    net = embedded[encoder]
    net.decoder.use_softmax = True
    try:
        with torch.no_grad():
            csail = net.decoder(run64[encoder]["features"], segSize=(64, 64))
    finally:
        net.decoder.use_softmax = False
    assert torch.allclose(run64[encoder]["out"], csail.log(), atol=1e-4)


@pytest.mark.parametrize("encoder, widths", [("resnet18dilated", (64, 128, 256, 512)),
                                             ("mobilenetv2dilated", (24, 32, 64, 160, 320))])
def test_embedded_encoders_have_output_stride_8(embedded, run64, encoder, widths):
    features = run64[encoder]["features"]
    assert tuple(f.shape[1] for f in features) == widths == embedded[encoder].encoder.widths
    assert features[-1].shape[-2:] == (8, 8) and features[-2].shape[-2:] == (8, 8)
    assert features[0].shape[-2:] == (16, 16)
    assert all(d.shape[-2:] == (8, 8) for d in run64[encoder]["decoded"])  # main and deep supervision


def _geometry(module: torch.nn.Module) -> list[tuple]:
    return [(m.stride, m.dilation, m.padding, m.kernel_size) for m in module.modules()
            if isinstance(m, torch.nn.Conv2d)]


def test_resnet_dilation_is_mit_semsegs(embedded):
    ours = embedded["resnet18dilated"].encoder
    theirs = ResnetDilated(resnet.resnet18(pretrained=False), dilate_scale=8)
    # layer1 differs: mit-semseg's deep stem gives it 128 input channels, so its first block has a downsample.
    for layer in ("layer2", "layer3", "layer4"):
        assert _geometry(getattr(ours, layer)) == _geometry(getattr(theirs, layer)), layer


def test_mobilenet_dilation_is_mit_semsegs(embedded):
    ours = embedded["mobilenetv2dilated"].encoder
    theirs = MobileNetV2Dilated(mobilenet.mobilenetv2(pretrained=False), dilate_scale=8)
    assert len(ours.features) == len(theirs.features) == 18
    assert tuple(ours.down_idx) == tuple(theirs.down_idx)
    for i in range(len(ours.features)):
        assert _geometry(ours.features[i]) == _geometry(theirs.features[i]), i


def test_embedded_encoders_keep_the_classifiers_weights(embedded, resnet18, mobilenet_v2):
    r = embedded["resnet18dilated"].encoder
    assert torch.equal(r.conv1.weight, resnet18.conv1.weight)
    assert torch.equal(r.layer4[1].conv2.weight, resnet18.layer4[1].conv2.weight)
    assert torch.equal(r.layer3[0].bn1.running_var, resnet18.layer3[0].bn1.running_var)
    m = embedded["mobilenetv2dilated"].encoder
    assert torch.equal(m.features[17].conv[1][0].weight, mobilenet_v2.features[17].conv[1][0].weight)
    assert set(r.state_dict()) == {k for k in resnet18.state_dict() if not k.startswith("fc.")}
    # The classifier itself is left as it was (the encoder is a copy).
    assert resnet18.layer3[0].conv1.stride == (2, 2) and resnet18.layer4[0].conv2.dilation == (1, 1)
    assert r.conv1.weight is not resnet18.conv1.weight


def test_embedded_decoders_fit_the_encoders_width(embedded):
    decoder = embedded["resnet18dilated"].decoder
    assert decoder.ppm[0][1].in_channels == 512 and decoder.cbr_deepsup[0].in_channels == 256
    # the PPM's branches are EMBEDDED_PPM_WIDTH wide (CSAIL's 512): the fused convolution takes 512 + 4 x 128
    assert [b[1].out_channels for b in decoder.ppm] == [zoo.EMBEDDED_PPM_WIDTH] * 4 == [128] * 4
    assert decoder.conv_last[0].in_channels == 512 + 4 * 128 and decoder.conv_last[4].in_channels == 128
    assert embedded["mobilenetv2dilated"].decoder.cbr[0].in_channels == 320
    assert all(net.embedded and net.deep_sup_scale == 0.4 for net in embedded.values())


def test_batch_norms_are_torchs_and_the_nets_copy(embedded):
    """mit-semseg's SynchronizedBatchNorm2d holds a lock (no deepcopy, no pickle); torch's BatchNorm2d replaces it,
    at torch's momentum (mit-semseg's is 0.001)."""
    for net in embedded.values():
        norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(type(m) is torch.nn.BatchNorm2d and m.momentum == 0.1 for m in norms)
        copied = copy.deepcopy(net)
        assert torch.equal(copied.decoder.conv_last_deepsup.weight, net.decoder.conv_last_deepsup.weight)


def test_plain_batch_norms_compute_what_mit_semsegs_do():
    torch.manual_seed(4)
    decoder = ModelBuilder.build_decoder("c1_deepsup", fc_dim=64, num_class=K, weights="")
    for m in decoder.modules():
        if isinstance(m, SynchronizedBatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    features = [torch.randn(2, 32, 8, 8, generator=_seeded()), torch.randn(2, 64, 8, 8, generator=_seeded(1))]
    decoder.eval()
    with torch.no_grad():
        theirs = decoder(features)
        zoo.plain_batch_norms(decoder)
        ours = decoder(features)
    assert not any(isinstance(m, SynchronizedBatchNorm2d) for m in decoder.modules())
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_embedded_net_refuses_the_wrong_classifier(resnet18, mobilenet_v2):
    with pytest.raises(ModelError, match=r"^resnet18dilated: the classifier must be a torchvision ResNet .*"
                                         r"got MobileNetV2$"):
        zoo.embedded_net(mobilenet_v2, "resnet18dilated", "ppm_deepsup", K)
    with pytest.raises(ModelError, match="^mobilenetv2dilated: the classifier must be a torchvision MobileNetV2"):
        zoo.embedded_net(resnet18, "mobilenetv2dilated", "c1_deepsup", K)
    with pytest.raises(ModelError, match="^unknown embedded segmentation encoder 'resnet50dilated'"):
        zoo.embedded_net(resnet18, "resnet50dilated", "ppm_deepsup", K)


# The loss.

def _labels_with_few_pixels(n: int = 2, size: int = 64) -> torch.Tensor:
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[0, 3, 5], labels[0, 40, 41], labels[1, 60, 2], labels[1, 10, 10] = 1, K, 3, 3
    return labels


def _independent_nll(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean over pixels labelled 1..K of -log p(label - 1), the scores upsampled bilinearly first."""
    up = F.log_softmax(F.interpolate(log_probs, size=labels.shape[-2:], mode="bilinear", align_corners=False), 1)
    n, h, w = torch.nonzero(labels, as_tuple=True)
    return -up[n, labels[n, h, w] - 1, h, w].mean()


@pytest.mark.parametrize("encoder", ["resnet18dilated", "mobilenetv2dilated"])
def test_loss_is_nll_over_labelled_pixels_plus_0_4_deep_supervision(embedded, run64, encoder):
    net, labels = embedded[encoder], _labels_with_few_pixels()
    main, deep = run64[encoder]["decoded"]
    with torch.no_grad():
        loss = net.loss(_images(), labels)
    expected_main, expected_deep = _independent_nll(main, labels), _independent_nll(deep, labels)
    assert torch.isfinite(loss)
    assert torch.allclose(loss, expected_main + 0.4 * expected_deep, atol=1e-5)
    assert abs(float(loss - expected_main) - 0.4 * float(expected_deep)) < 1e-4


def test_loss_without_deep_supervision_is_the_main_term(resnet18):
    net = zoo.embedded_net(resnet18, "resnet18dilated", "c1", K).eval()
    x, labels = _images(), _labels_with_few_pixels()
    with torch.no_grad():
        main = net.decoder(net.features(x))
        assert torch.allclose(net.loss(x, labels), _independent_nll(main, labels), atol=1e-5)
    assert net.deep_sup_scale is None


def test_label_0_is_ignored():
    labels = _labels_with_few_pixels()
    log_probs = F.log_softmax(torch.randn(2, K, 64, 64, generator=_seeded()), 1)
    loss = zoo.pixel_nll(log_probs, labels - 1)
    other = log_probs.clone()
    other[:, :, labels[0] == 0] = F.log_softmax(torch.randn(2, K, int((labels[0] == 0).sum())), 1)
    other[1, :, 60, 2] = log_probs[1, :, 60, 2]  # labelled in image 1, not in image 0
    other[1, :, 10, 10] = log_probs[1, :, 10, 10]
    assert torch.equal(zoo.pixel_nll(other, labels - 1), loss)
    changed = log_probs.clone()
    changed[0, :, 3, 5] = changed[0, :, 3, 5].flip(0)
    assert not torch.equal(zoo.pixel_nll(changed, labels - 1), loss)
    assert torch.allclose(loss, _independent_nll(log_probs, labels))


def test_loss_of_an_image_with_no_labelled_pixel_is_zero(embedded):
    with torch.no_grad():
        loss = embedded["resnet18dilated"].loss(_images(), torch.zeros(2, 64, 64, dtype=torch.long))
    assert float(loss) == 0.0


def test_loss_trains_the_encoder_in_train_mode(embedded):
    net = copy.deepcopy(embedded["resnet18dilated"]).train()
    labels = torch.randint(0, K + 1, (2, 32, 32), generator=_seeded())
    loss = net.loss(_images(size=32), labels)
    loss.backward()
    assert torch.isfinite(loss) and net.encoder.conv1.weight.grad.abs().sum() > 0
    assert net.decoder.conv_last_deepsup.weight.grad.abs().sum() > 0
    assert net(_images(size=32)).shape == (2, K, 32, 32)  # train mode too


# Paper pairs: built without downloads.

def test_paper_pairs_build_without_downloading(monkeypatch, tmp_path):
    _no_downloads(monkeypatch, tmp_path)
    for encoder, decoder in [("resnet18dilated", "ppm_deepsup"), ("mobilenetv2dilated", "c1_deepsup")]:
        net = zoo.paper_net(encoder, decoder).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 3, 32, 32)).shape == (1, 150, 32, 32)
        assert not net.embedded and net.deep_sup_scale == 0.4
    assert list(tmp_path.iterdir()) == []


# Keys of each pair's encoder and decoder state_dicts (mit-semseg 1.0.0's own have three more a batch norm:
# SYNC_BN_BUFFERS).
PAPER_KEYS = {("hrnetv2", "c1"): (1830, 8), ("mobilenetv2dilated", "c1_deepsup"): (306, 16),
              ("resnet18dilated", "ppm_deepsup"): (138, 40), ("resnet50dilated", "ppm_deepsup"): (330, 40),
              ("resnet101dilated", "ppm_deepsup"): (636, 40), ("resnet50", "upernet"): (330, 74),
              ("resnet101", "upernet"): (636, 74)}


@pytest.mark.slow
@pytest.mark.parametrize("encoder, decoder", zoo.PAPER)
def test_every_paper_pair_builds_and_runs(monkeypatch, tmp_path, encoder, decoder):
    _no_downloads(monkeypatch, tmp_path)
    net = zoo.paper_net(encoder, decoder).eval()
    with torch.no_grad():
        features = net.features(torch.rand(1, 3, 64, 64))
        out = net(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 150, 64, 64)
    assert tuple(f.shape[1] for f in features) == zoo.ENCODERS[encoder]
    assert (len(net.encoder.state_dict()), len(net.decoder.state_dict())) == PAPER_KEYS[(encoder, decoder)]
    first_conv = next(m for m in net.decoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == zoo.ENCODERS[encoder][-1]  # CSAIL's fc_dim


def test_paper_pairs_are_the_papers_seven():
    assert set(zoo.PAPER) == set(PAPER_KEYS)
    assert {e: zoo.ENCODERS[e][-1] for e, _ in zoo.PAPER} == {
        "hrnetv2": 720, "mobilenetv2dilated": 320, "resnet18dilated": 512, "resnet50dilated": 2048,
        "resnet101dilated": 2048, "resnet50": 2048, "resnet101": 2048}


def test_unknown_and_unfitting_pairs_are_refused():
    with pytest.raises(ModelError, match="^unknown segmentation encoder 'resnet34'"):
        zoo.paper_net("resnet34", "ppm")
    with pytest.raises(ModelError, match="^unknown segmentation decoder 'aspp'"):
        zoo.paper_net("resnet18dilated", "aspp")
    with pytest.raises(ModelError, match=re.escape("hrnetv2+ppm_deepsup: ppm_deepsup needs a second-to-last feature "
                                                   "map of 360 channels; hrnetv2 gives (720,)")):
        zoo.paper_net("hrnetv2", "ppm_deepsup")


# CSAIL's checkpoint files, loaded strictly.

@pytest.fixture(scope="module")
def csail_files(tmp_path_factory):
    """A resnet18dilated + ppm_deepsup pair's encoder and decoder files as CSAIL's train.py writes them (the
    state_dicts of mit-semseg's own modules, SynchronizedBatchNorm2d's buffers and all; running statistics made up),
    and those modules in eval mode."""
    torch.manual_seed(2)
    encoder = ResnetDilated(resnet.resnet18(pretrained=False), dilate_scale=8)
    decoder = ModelBuilder.build_decoder("ppm_deepsup", fc_dim=512, num_class=150, weights="")
    for m in [*encoder.modules(), *decoder.modules()]:
        if isinstance(m, SynchronizedBatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2)
    folder = tmp_path_factory.mktemp("csail")
    enc, dec = folder / "encoder_epoch_20.pth", folder / "decoder_epoch_20.pth"
    torch.save(encoder.state_dict(), enc)
    torch.save(decoder.state_dict(), dec)
    assert "layer1.0.bn1._tmp_running_mean" in encoder.state_dict()
    return (encoder.eval(), decoder.eval()), enc, dec


@pytest.fixture(scope="module")
def pristine() -> zoo.SegmentationNet:
    torch.manual_seed(3)
    return zoo.paper_net("resnet18dilated", "ppm_deepsup")


@pytest.fixture()
def fresh(pristine) -> zoo.SegmentationNet:
    """An untrained pair of the same architecture (other weights than the files')."""
    return copy.deepcopy(pristine)


def _edited(path, tmp_path, edit) -> str:
    state = torch.load(path, weights_only=True)
    edit(state)
    out = tmp_path / path.name
    torch.save(state, out)
    return str(out)


def test_csail_files_load_into_the_same_pair_and_give_csails_inference(csail_files, fresh):
    (encoder, decoder), enc, dec = csail_files
    zoo.load_csail(fresh, enc, dec)
    theirs = {f"encoder.{k}": v for k, v in encoder.state_dict().items()} | {
        f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    ours = fresh.state_dict()
    assert set(ours) == {k for k in theirs if k.rpartition(".")[2] not in zoo.SYNC_BN_BUFFERS}
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    # CSAIL's inference: ImageNet-normalised input, the decoder's softmax at segSize.
    x = torch.rand(1, 3, 32, 32, generator=_seeded())
    normalised = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    decoder.use_softmax = True
    try:
        with torch.no_grad():
            csail = decoder(encoder(normalised, return_feature_maps=True), segSize=(32, 32))
            assert torch.allclose(fresh.eval()(x), csail.log(), atol=1e-4)
    finally:
        decoder.use_softmax = False


def test_a_missing_key_is_refused(csail_files, fresh, tmp_path):
    _, enc, dec = csail_files
    bad = _edited(enc, tmp_path, lambda s: s.pop("layer4.1.bn2.weight"))
    with pytest.raises(ModelError) as e:
        zoo.load_csail(fresh, bad, dec)
    assert str(e.value) == f"{bad}: key layer4.1.bn2.weight is missing (resnet18dilated wants it)"


def test_an_unexpected_key_is_refused(csail_files, fresh, tmp_path):
    _, enc, dec = csail_files

    def extra(state):
        state["aux.weight"] = torch.zeros(3)
        state["aux.bias"] = torch.zeros(3)

    bad = _edited(dec, tmp_path, extra)
    with pytest.raises(ModelError) as e:
        zoo.load_csail(fresh, enc, bad)
    assert str(e.value) == f"{bad}: key aux.weight is not in ppm_deepsup; 1 more keys alike"


def test_a_wrong_shape_is_refused_and_nothing_is_loaded(csail_files, fresh, tmp_path):
    _, enc, dec = csail_files
    bad = _edited(dec, tmp_path, lambda s: s.update({"conv_last_deepsup.weight": torch.zeros(150, 512, 1, 1)}))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ModelError) as e:
        zoo.load_csail(fresh, enc, bad)
    assert str(e.value) == (f"{bad}: key conv_last_deepsup.weight has shape (150, 512, 1, 1), ppm_deepsup wants "
                            f"(150, 128, 1, 1)")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())  # the encoder was not loaded


def test_the_encoder_file_given_as_the_decoder_is_refused(csail_files, fresh):
    _, enc, _ = csail_files
    with pytest.raises(ModelError, match=rf"^{re.escape(str(enc))}: key ppm\.0\.1\.weight is missing "
                                         r"\(ppm_deepsup wants it\); \d+ more keys alike$"):
        zoo.load_csail(fresh, enc, enc)


def test_a_module_prefix_is_undone(csail_files, fresh, tmp_path):
    (encoder, _), enc, dec = csail_files
    state = torch.load(enc, weights_only=True)
    prefixed = tmp_path / "encoder_epoch_20.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    zoo.load_csail(fresh, prefixed, dec)
    assert torch.equal(fresh.encoder.conv1.weight, encoder.conv1.weight)


def test_files_without_batch_norm_bookkeeping_load(csail_files, fresh, tmp_path):
    """Files from an older SynchronizedBatchNorm (no _tmp_running_*) and an older PyTorch (no num_batches_tracked)
    load; a file with some num_batches_tracked but not all, or a SyncBN buffer where no batch norm is, does not."""
    (encoder, _), enc, dec = csail_files

    def drop(state):
        for k in [k for k in state if k.rpartition(".")[2] in (*zoo.SYNC_BN_BUFFERS, zoo.OPTIONAL_BUFFER)]:
            del state[k]

    zoo.load_csail(fresh, _edited(enc, tmp_path, drop), _edited(dec, tmp_path, drop))
    assert torch.equal(fresh.encoder.layer1[0].bn1.running_mean, encoder.layer1[0].bn1.running_mean)
    partial = _edited(enc, tmp_path, lambda s: s.pop("layer1.0.bn1.num_batches_tracked"))
    with pytest.raises(ModelError, match=r": key layer1\.0\.bn1\.num_batches_tracked is missing \(resnet18dil"):
        zoo.load_csail(fresh, partial, dec)
    stray = _edited(enc, tmp_path, lambda s: s.update({"conv1._running_iter": torch.ones(1)}))
    with pytest.raises(ModelError, match=r": key conv1\._running_iter is not in resnet18dilated$"):
        zoo.load_csail(fresh, stray, dec)


def test_unreadable_files_are_refused(csail_files, fresh, tmp_path):
    _, enc, dec = csail_files
    with pytest.raises(ModelError, match=r"nope\.pth: checkpoint not found$"):
        zoo.load_csail(fresh, tmp_path / "nope.pth", dec)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"junk\.pth: cannot load checkpoint \("):
        zoo.load_csail(fresh, enc, junk)
