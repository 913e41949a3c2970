"""Semantic segmentation networks: CSAIL's encoder/decoder pairs (mit-semseg 1.0.0) for the task module
(tasks/segmentation).

- paper_net: the paper's seven ADE20K pairs (PAPER), built with mit-semseg's own classes and nothing downloaded
  (mit-semseg's ModelBuilder.build_encoder(weights="") means pretrained=True, a download; the encoders are built
  here from mit_semseg.models' resnet/mobilenet/hrnet with pretrained=False instead). fc_dim as CSAIL's
  config/ade20k-*.yaml: the encoder's last width (hrnetv2 720, mobilenetv2dilated 320, resnet18dilated 512, the
  ResNet-50/101 ones 2048).
- load_csail: CSAIL's published encoder_epoch_N.pth / decoder_epoch_N.pth, loaded strictly (mit-semseg loads them
  with strict=False, so a wrong file silently leaves layers random).
- embedded_net: an embedded classifier (torchvision resnet18 or mobilenet_v2, its weights kept) made dilated at
  output stride 8 exactly as mit-semseg's ResnetDilated / MobileNetV2Dilated do their own, under a mit-semseg
  decoder whose fc_dim is the encoder's last width.

mit-semseg's SynchronizedBatchNorm2d is replaced by torch's BatchNorm2d (plain_batch_norms): on one device it
computes the same (it calls F.batch_norm), and it holds a thread lock that makes a network impossible to deepcopy
or pickle (throughput and the report copy models).

SegmentationNet normalises inside (ImageNet mean/std, as CSAIL's dataset.py does to [0, 1] RGB, and as torchvision's
detectors do inside), so callers pass [0, 1] RGB batches. Labels are ADE's: 0 "other" (ignored), 1..K the classes;
channel c of the output is label c + 1.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from mit_semseg.lib.nn import SynchronizedBatchNorm2d
from mit_semseg.models import hrnet, mobilenet, resnet
from mit_semseg.models.models import MobileNetV2Dilated, ModelBuilder, Resnet, ResnetDilated, UPerNet
from torch import nn

from jpegstudy.errors import ModelError
from jpegstudy.tasks import classification

# Each encoder's feature-map widths, shallow to deep, as its forward(x, return_feature_maps=True) returns them (the
# last is CSAIL's fc_dim). mobilenetv2dilated returns the outputs of blocks 2, 4, 7, 14 and the last (down_idx).
ENCODERS = {
    "hrnetv2": (720,),  # HRNetV2-W48's four branches upsampled and concatenated (48 + 96 + 192 + 384)
    "mobilenetv2dilated": (24, 32, 64, 160, 320),
    "resnet18dilated": (64, 128, 256, 512),
    "resnet50dilated": (256, 512, 1024, 2048),
    "resnet101dilated": (256, 512, 1024, 2048),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
}
DECODERS = ("c1", "c1_deepsup", "ppm", "ppm_deepsup", "upernet", "upernet_lite")  # mit-semseg's build_decoder
# The paper's seven (CSAIL's ADE20K model zoo).
PAPER = (("hrnetv2", "c1"), ("mobilenetv2dilated", "c1_deepsup"), ("resnet18dilated", "ppm_deepsup"),
         ("resnet50dilated", "ppm_deepsup"), ("resnet101dilated", "ppm_deepsup"), ("resnet50", "upernet"),
         ("resnet101", "upernet"))
# Embedded encoders: the torchvision classifier family each is made from.
EMBEDDED_ENCODERS = {"resnet18dilated": "resnet", "mobilenetv2dilated": "mobilenet_v2"}

NUM_CLASS = 150  # ADE20K's SceneParsing classes
DEEP_SUP_SCALE = 0.4  # CSAIL's TRAIN.deep_sup_scale (every ade20k-*.yaml)
# The embedded pairs' PPM is 128 wide (CSAIL's 512): at 512 its 3x3 convolution over 2560 channels was half of a
# ResNet18-dilated + PPM-deepsup training step on the CPU, as torchvision's wide heads are for the embedded detectors.
EMBEDDED_PPM_WIDTH = 128
UPERNET_FPN_DIM = {"upernet": 512, "upernet_lite": 256}  # as mit-semseg's build_decoder
MOBILENET_DOWN_IDX = (2, 4, 7, 14)  # mit-semseg's MobileNetV2Dilated.down_idx
# Batch-norm momentum of every network here: PyTorch's and torchvision's 0.1. mit-semseg 1.0.0's SynchronizedBatchNorm2d
# defaults to 0.001 (its multi-GPU path bias-corrects that average; on one device it is plain batch norm), which
# would leave the running statistics of our short single-device runs near their initial values.
BN_MOMENTUM = 0.1
# The multi-GPU running-average state of the SynchronizedBatchNorm2d mit-semseg 1.0.0 ships, in the files it saves
# (older copies of it, as in CSAIL's repository, have none): never used on one device, dropped on loading.
SYNC_BN_BUFFERS = ("_tmp_running_mean", "_tmp_running_var", "_running_iter")
# A file from before PyTorch 0.4.1 has no num_batches_tracked (unused at a fixed momentum): tolerated when the file
# has none at all.
OPTIONAL_BUFFER = "num_batches_tracked"


class SegmentationNet(nn.Module):
    """An encoder and a mit-semseg decoder on [0, 1] RGB batches (normalised inside). `deep_sup_scale` weighs the
    deep-supervision branch's loss (*_deepsup decoders); None for the others."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, encoder_arch: str, decoder_arch: str, num_class: int,
                 *, embedded: bool, deep_sup_scale: float | None = None,
                 mean: list[float] = classification.IMAGENET_MEAN, std: list[float] = classification.IMAGENET_STD):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.encoder_arch, self.decoder_arch, self.num_class = encoder_arch, decoder_arch, num_class
        self.embedded, self.deep_sup_scale = embedded, deep_sup_scale
        plain_batch_norms(self)
        # Not persistent: the state_dict stays encoder.* + decoder.*, CSAIL's two files side by side.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # The decoders' softmax branch (use_softmax=True) is never used: it returns probabilities without the deep
        # supervision output, so forward upsamples the log-probabilities itself, in train and eval mode alike.
        decoder.use_softmax = False

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, shallow to deep (what the paper's segmentation TTAC compares)."""
        return self.encoder((x - self.mean) / self.std, return_feature_maps=True)

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder's log-probabilities at its own resolution: (main,) or (main, deep supervision)."""
        out = self.decoder(self.features(x))
        return out if isinstance(out, tuple) else (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, K, H, W) at the input's size: the log of CSAIL's inference output (scores
        upsampled bilinearly, align_corners=False, then softmax)."""
        return upsample_log_probs(self._decode(x)[0], x.shape[-2:])

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CSAIL's training loss on ADE labels (N, h, w) long, 0..K: NLL over labelled pixels, + deep_sup_scale x
        the deep-supervision branch's NLL. CSAIL downsamples the label map to the decoder's resolution
        (segm_downsampling_rate 8, UPerNet and HRNet 4); here the predictions are upsampled to the label map's
        size instead, as mmsegmentation does: at our 64 px an 8 x 8 label map would drop most small objects.
        Training needs batches of 2 or more (the PPM's 1 x 1 pooled branch has a batch norm)."""
        target = labels.long() - 1  # 0 "other" -> -1, ignored, as CSAIL's segm_transform
        preds = self._decode(x)
        loss = pixel_nll(preds[0], target)
        if self.deep_sup_scale is not None:
            loss = loss + self.deep_sup_scale * pixel_nll(preds[1], target)
        return loss


def upsample_log_probs(log_probs: torch.Tensor, size) -> torch.Tensor:
    """Log-probabilities resized bilinearly (align_corners=False) and renormalised: log_softmax of the resized
    log-probabilities equals log_softmax of the resized logits (a pixel's constant offset cancels)."""
    if tuple(log_probs.shape[-2:]) != tuple(size):
        log_probs = F.log_softmax(F.interpolate(log_probs, size=tuple(size), mode="bilinear", align_corners=False), 1)
    return log_probs


def pixel_nll(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NLL (CSAIL's nn.NLLLoss(ignore_index=-1)) of log-probabilities at any resolution against class indices
    (-1 ignored) at the label map's: the mean over labelled pixels, 0 when there are none (not NaN; and no
    host-device sync to find out)."""
    log_probs = upsample_log_probs(log_probs, target.shape[-2:])
    total = F.nll_loss(log_probs, target, ignore_index=-1, reduction="sum")
    return total / (target >= 0).sum().clamp(min=1)


# Building.

def plain_batch_norms(module: nn.Module) -> None:
    """Each SynchronizedBatchNorm2d in `module` replaced by an nn.BatchNorm2d with its parameters and running
    statistics (momentum BN_MOMENTUM)."""
    for name, child in module.named_children():
        if not isinstance(child, SynchronizedBatchNorm2d):
            plain_batch_norms(child)
            continue
        bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=BN_MOMENTUM, affine=child.affine,
                            device=child.running_mean.device)
        with torch.no_grad():
            for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                if getattr(child, key, None) is not None:
                    getattr(bn, key).copy_(getattr(child, key))
        bn.train(child.training)
        setattr(module, name, bn)


def _check_pair(encoder_arch: str, decoder_arch: str, widths: tuple[int, ...]) -> None:
    if decoder_arch not in DECODERS:
        raise ModelError(f"unknown segmentation decoder {decoder_arch!r}: one of {', '.join(DECODERS)}")
    fc_dim = widths[-1]
    if decoder_arch.endswith("deepsup") and (len(widths) < 2 or widths[-2] != fc_dim // 2):
        # The deep-supervision branch reads conv_out[-2] with fc_dim // 2 channels.
        raise ModelError(f"{encoder_arch}+{decoder_arch}: {decoder_arch} needs a second-to-last feature map of "
                         f"{fc_dim // 2} channels; {encoder_arch} gives {widths}")
    if decoder_arch.startswith("upernet") and len(widths) < 2:
        raise ModelError(f"{encoder_arch}+{decoder_arch}: UPerNet needs several feature maps; {encoder_arch} gives one")


def _decoder(decoder_arch: str, widths: tuple[int, ...], num_class: int) -> nn.Module:
    """mit-semseg's decoder (its own initialisation; empty weights: nothing loaded). UPerNet is built directly to
    give it the encoder's widths (build_decoder assumes a ResNet-50's)."""
    if decoder_arch.startswith("upernet"):
        decoder = UPerNet(num_class=num_class, fc_dim=widths[-1], fpn_inplanes=widths,
                          fpn_dim=UPERNET_FPN_DIM[decoder_arch])
        decoder.apply(ModelBuilder.weights_init)
        return decoder
    return ModelBuilder.build_decoder(arch=decoder_arch, fc_dim=widths[-1], num_class=num_class, weights="")


def _paper_encoder(encoder_arch: str) -> nn.Module:
    """mit-semseg's encoder as build_encoder makes it, but from pretrained=False (build_encoder downloads)."""
    if encoder_arch == "hrnetv2":
        return hrnet.hrnetv2(pretrained=False)
    if encoder_arch == "mobilenetv2dilated":
        return MobileNetV2Dilated(mobilenet.mobilenetv2(pretrained=False), dilate_scale=8)
    depth = encoder_arch.removeprefix("resnet").removesuffix("dilated")
    orig = getattr(resnet, f"resnet{depth}")(pretrained=False)
    return ResnetDilated(orig, dilate_scale=8) if encoder_arch.endswith("dilated") else Resnet(orig)


def paper_net(encoder_arch: str, decoder_arch: str, num_class: int = NUM_CLASS) -> SegmentationNet:
    """An untrained CSAIL pair (any of ENCODERS with any fitting decoder; PAPER lists the paper's), as CSAIL's
    train.py builds it; nothing downloads. Its weights: load_csail."""
    if encoder_arch not in ENCODERS:
        raise ModelError(f"unknown segmentation encoder {encoder_arch!r}: one of {', '.join(ENCODERS)}")
    widths = ENCODERS[encoder_arch]
    _check_pair(encoder_arch, decoder_arch, widths)
    deep_sup = DEEP_SUP_SCALE if decoder_arch.endswith("deepsup") else None
    return SegmentationNet(_paper_encoder(encoder_arch), _decoder(decoder_arch, widths, num_class), encoder_arch,
                           decoder_arch, num_class, embedded=False, deep_sup_scale=deep_sup)


# Embedded encoders: torchvision classifiers made dilated.

def nostride_dilate(module: nn.Module, dilate: int) -> None:
    """mit-semseg's ResnetDilated._nostride_dilate on every nn.Conv2d of `module`: a stride-2 convolution gets
    stride 1 (a 3x3 one dilation and padding dilate // 2), every other 3x3 one dilation and padding `dilate`. Only
    nn.Conv2d: torchvision's Conv2dNormActivation has "Conv" in its name (mit-semseg's test) but no stride."""
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = m.padding = (dilate // 2, dilate // 2)
        elif m.kernel_size == (3, 3):
            m.dilation = m.padding = (dilate, dilate)


def _out_width(module: nn.Module) -> int:
    """The channels a block outputs: its last convolution's (a ResNet block's downsample outputs the same)."""
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class TorchvisionResnetDilated(nn.Module):
    """A torchvision ResNet without avgpool/fc, layer3 and layer4 dilated (output stride 8), as mit-semseg's
    ResnetDilated(dilate_scale=8) (whose ResNet has a three-convolution stem; torchvision's has one)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(classifier, name))
        nostride_dilate(self.layer3, 2)
        nostride_dilate(self.layer4, 4)
        self.widths = tuple(_out_width(getattr(self, f"layer{i}")) for i in range(1, 5))

    def forward(self, x: torch.Tensor, return_feature_maps: bool = False) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        conv_out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            conv_out.append(x)
        return conv_out if return_feature_maps else [x]


class TorchvisionMobileNetV2Dilated(nn.Module):
    """A torchvision MobileNetV2's features without the last 1x1 convolution, blocks 7-13 dilated 2 and 14-17
    dilated 4 (output stride 8), returning blocks 2, 4, 7, 14 and the last: mit-semseg's MobileNetV2Dilated
    (dilate_scale=8), whose layout torchvision's shares block for block."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.features = classifier.features[:-1]
        self.down_idx = MOBILENET_DOWN_IDX
        for i in range(self.down_idx[-2], len(self.features)):
            nostride_dilate(self.features[i], 2 if i < self.down_idx[-1] else 4)
        self.widths = tuple(_out_width(self.features[i]) for i in (*self.down_idx, len(self.features) - 1))

    def forward(self, x: torch.Tensor, return_feature_maps: bool = False) -> list[torch.Tensor]:
        if not return_feature_maps:
            return [self.features(x)]
        conv_out = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.down_idx:
                conv_out.append(x)
        conv_out.append(x)
        return conv_out


def _embedded_encoder(classifier: nn.Module, encoder_arch: str) -> nn.Module:
    if encoder_arch not in EMBEDDED_ENCODERS:
        raise ModelError(f"unknown embedded segmentation encoder {encoder_arch!r}: one of "
                         f"{', '.join(EMBEDDED_ENCODERS)}")
    if encoder_arch == "resnet18dilated":
        if not all(hasattr(classifier, n) for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer4")):
            raise ModelError(f"{encoder_arch}: the classifier must be a torchvision ResNet (conv1, layer1-layer4); "
                             f"got {type(classifier).__name__}")
        return TorchvisionResnetDilated(classifier)
    features = getattr(classifier, "features", None)
    if not isinstance(features, nn.Sequential) or len(features) != 19:
        raise ModelError(f"{encoder_arch}: the classifier must be a torchvision MobileNetV2 (19 feature blocks); "
                         f"got {type(classifier).__name__}")
    return TorchvisionMobileNetV2Dilated(classifier)


def narrowed_ppm(decoder: nn.Module, width: int) -> nn.Module:
    """A mit-semseg PPM decoder with its 512-wide pooling branches and fused 3x3 convolution made `width` wide,
    freshly initialised as build_decoder does (its forward only concatenates and convolves, so any width works)."""
    fc_dim = decoder.ppm[0][1].in_channels
    for branch in decoder.ppm:
        branch[1], branch[2] = nn.Conv2d(fc_dim, width, 1, bias=False), nn.BatchNorm2d(width, momentum=BN_MOMENTUM)
    last = decoder.conv_last
    last[0] = nn.Conv2d(fc_dim + len(decoder.ppm) * width, width, 3, padding=1, bias=False)
    last[1], last[4] = nn.BatchNorm2d(width, momentum=BN_MOMENTUM), nn.Conv2d(width, last[4].out_channels, 1)
    decoder.apply(ModelBuilder.weights_init)
    return decoder


def embedded_net(classifier: nn.Module, encoder_arch: str, decoder_arch: str, num_class: int) -> SegmentationNet:
    """A segmenter whose encoder is the embedded classifier's (a copy: the classifier is left as it is), its weights
    kept, under an untrained mit-semseg decoder (fc_dim = the encoder's last width; a PPM's branches
    EMBEDDED_PPM_WIDTH wide)."""
    encoder = _embedded_encoder(copy.deepcopy(classifier), encoder_arch)
    _check_pair(encoder_arch, decoder_arch, encoder.widths)
    decoder = _decoder(decoder_arch, encoder.widths, num_class)
    if decoder_arch.startswith("ppm"):
        decoder = narrowed_ppm(decoder, EMBEDDED_PPM_WIDTH)
    deep_sup = DEEP_SUP_SCALE if decoder_arch.endswith("deepsup") else None
    return SegmentationNet(encoder, decoder, encoder_arch, decoder_arch, num_class, embedded=True,
                           deep_sup_scale=deep_sup)


# CSAIL's checkpoints.

def _shape(shape) -> str:
    return f"({', '.join(str(n) for n in shape)})"


def read_checkpoint(path):
    """What a checkpoint file holds (torch.load, weights only), or ModelError in one line naming the file."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; one line names the file
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: cannot load checkpoint ({why})") from None
    return obj


def _read_state(path) -> dict:
    obj = read_checkpoint(path)
    # A plain state_dict (CSAIL's train.py saves net_encoder.state_dict(): no "module." prefix, as its encoder and
    # decoder are not what DataParallel wraps); a "module." prefix and nesting are undone anyway.
    return classification.extract_state_dict(obj, str(path))


def _is_sync_bn_buffer(key: str, expected: dict) -> bool:
    """A SynchronizedBatchNorm2d's multi-GPU buffer, of a batch norm the network has."""
    prefix, _, buffer = key.rpartition(".")
    return buffer in SYNC_BN_BUFFERS and f"{prefix}.running_mean" in expected


def fitted_state(module: nn.Module, state: dict, path, arch: str) -> dict:
    """`state` checked key by key and shape by shape against `module` (the first offending key, in one line):
    SYNC_BN_BUFFERS dropped, a missing OPTIONAL_BUFFER filled from `module` when the file has none at all."""
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if not _is_sync_bn_buffer(k, expected)}
    optional = not any(k.rpartition(".")[2] == OPTIONAL_BUFFER for k in state)
    missing = [k for k in expected if k not in state and not (optional and k.rpartition(".")[2] == OPTIONAL_BUFFER)]
    unexpected = [k for k in state if k not in expected]
    for keys, what in ((missing, f"is missing ({arch} wants it)"), (unexpected, f"is not in {arch}")):
        if keys:
            more = f"; {len(keys) - 1} more keys alike" if len(keys) > 1 else ""
            raise ModelError(f"{path}: key {keys[0]} {what}{more}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ModelError(f"{path}: key {k} has shape {_shape(v.shape)}, {arch} wants {_shape(expected[k].shape)}")
    return {k: state.get(k, v) for k, v in expected.items()}


def load_csail(net: SegmentationNet, encoder_file, decoder_file) -> SegmentationNet:
    """CSAIL's encoder_epoch_N.pth and decoder_epoch_N.pth into `net` (both checked before either is loaded);
    any missing or unexpected key or shape is refused in one line naming the file and the first key."""
    states = [fitted_state(part, _read_state(path), path, arch) for part, path, arch in
              ((net.encoder, encoder_file, net.encoder_arch), (net.decoder, decoder_file, net.decoder_arch))]
    net.encoder.load_state_dict(states[0])
    net.decoder.load_state_dict(states[1])
    return net
