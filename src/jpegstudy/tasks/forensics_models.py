"""The two GAN-image forensic detectors' networks and strict loading of their released checkpoints.

- Wang et al. 2020, "CNN-generated images are surprisingly easy to spot... for now" (github peterwang512/CNNDetection):
  torchvision's ResNet-50 with fc = Linear(2048, 1), one logit whose sigmoid is P(fake) (their networks/resnet.py is
  a copy of torchvision's; demo.py: resnet50(num_classes=1), ImageNet mean/std applied by the caller). Their files
  (blur_jpg_prob0.5.pth, blur_jpg_prob0.1.pth, ...) are {"model": state_dict, "optimizer": ..., "total_steps": ...}
  with torchvision's key names (conv1.weight, bn1.*, layer1.0.conv1.weight, ..., fc.weight (1, 2048), fc.bias (1,)).
  wang_net(): that network; fewer blocks per stage and a narrower width give a CPU-sized embedded variant.
- Chai et al. 2020, "What makes fake images detectable? Understanding properties that generalize" (github
  chail/patch-forensics): Cadene's Xception (their models/networks/xception.py) truncated after block N, then a 1x1
  convolution `convout` to 2 channels: a map of patch logits, channel 0 real and 1 fake (their labels). Released
  configuration xception_block2 (customnet.make_patch_xceptionnet("block2")): 37 x 37 patches of a 299 px input,
  inputs normalised by the caller to [-1, 1] (their transforms: mean = std = 0.5). Their files (bestval_net_D.pth)
  are {"state_dict": the net's state_dict, "optimizer": ..., "scheduler": ..., "epoch": ..., ...}, keys named by
  CustomXceptionNet's top-level children: conv1, bn1, conv2, bn2, block1.rep.0.conv1.weight, ..., convout.weight.
  chai_net(): that network, built from timm's legacy-Xception Block (Cadene's, the same structure and parameter
  names); `width` scales the channels for an embedded variant.

load_wang / load_chai read a file with weights_only=True, strip DataParallel's "module." prefixes and check every key
and shape against the network (segmentation_models.fitted_state) before anything is loaded: one line naming the file
and the first offending key. Each built net records detector = "wang" or "chai".
"""

from __future__ import annotations


import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from jpegstudy.errors import ModelError
from jpegstudy.tasks.segmentation_models import fitted_state, read_checkpoint

RESNET50_LAYERS = (3, 4, 6, 3)
RESNET_WIDTH = 64  # torchvision's stem and first-stage width
# Cadene's / Chai's Xception widths: the input, the stem's two convolutions, then blocks 1-12 (exit flow dropped: a
# patch model always ends at a block). Block i outputs XCEPTION_CHANNELS[i + 2].
XCEPTION_CHANNELS = (3, 32, 64, 128, 256, *[728] * 9, 1024)
XCEPTION_BLOCKS = 12
CHAI_BLOCK = 2  # their released xception_block2


# Wang et al.: ResNet-50, one logit.

class NarrowResNet(ResNet):
    """torchvision's ResNet with a `width`-wide stem and stages width, 2w, 4w, 8w (torchvision: 64..512). Its __init__
    has no width argument (width_per_group only widens a Bottleneck's inner 3x3): it hard-codes the stem's 64 channels
    and calls _make_layer with 64, 128, 256, 512. So _make_layer scales the planes, and the stem and fc are remade
    after; blocks, module names and initialisation stay torchvision's."""

    def __init__(self, layers, width: int, num_classes: int = 1):
        self._width = width  # read by _make_layer while ResNet.__init__ runs
        super().__init__(Bottleneck, list(layers), num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # as ResNet.__init__
        self.bn1 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(8 * width * Bottleneck.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == RESNET_WIDTH:  # layer1: its input is the stem's output
            self.inplanes = self._width
        return super()._make_layer(block, planes * self._width // RESNET_WIDTH, blocks, stride, dilate)


def _positive_ints(value, n: int | None, what: str) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if (n is not None and len(values) != n) or not all(isinstance(v, int) and v > 0 for v in values):
        raise ModelError(f"{what} must be {n or 1} positive integer(s); got {value!r}")
    return values


def wang_net(layers=RESNET50_LAYERS, width: int = RESNET_WIDTH) -> nn.Module:
    """Wang et al.'s detector: a torchvision ResNet of Bottleneck blocks (`layers` per stage) with one output logit.
    (3, 4, 6, 3) and width 64 is ResNet-50 exactly (torchvision.models.resnet50(num_classes=1)'s keys and shapes)."""
    layers = _positive_ints(layers, 4, "wang_net layers")
    (width,) = _positive_ints(width, None, "wang_net width")
    net = ResNet(Bottleneck, list(layers), num_classes=1) if width == RESNET_WIDTH else NarrowResNet(layers, width)
    net.detector, net.layers, net.width = "wang", layers, width
    return net


def _wang_arch(net: nn.Module) -> str:
    layers, width = getattr(net, "layers", None), getattr(net, "width", None)
    if (layers, width) == (RESNET50_LAYERS, RESNET_WIDTH):
        return "Wang's ResNet-50 with one output"
    return f"Wang's ResNet (layers {layers}, width {width}) with one output"


# Chai et al.: Xception truncated after block N, 1x1 convolution to 2 patch logits.

class ChaiNet(nn.Module):
    """CustomXceptionNet as make_patch_xceptionnet(f"block{block}") leaves it: conv1, bn1, relu1, conv2, bn2, relu2,
    block1..block{block}, convout, run in that order (as their forward runs its children). forward(x) -> (N, 2, h, w)
    patch logits, channel 0 real, 1 fake."""

    def __init__(self, block: int = CHAI_BLOCK, width: float = 1.0):
        super().__init__()
        # Imported here: timm's package import costs a second, and only this network needs it. Legacy Xception's
        # Block and SeparableConv2d are Cadene's, parameter names included (skip, skipbn, rep.N.conv1/pointwise).
        from timm.models.xception import Block

        c = [3] + [max(1, round(n * width)) for n in XCEPTION_CHANNELS[1:]]
        self.conv1 = nn.Conv2d(c[0], c[1], 3, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(c[1])
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c[1], c[2], 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c[2])
        self.relu2 = nn.ReLU(inplace=True)
        for i in range(1, block + 1):
            # Entry flow (1-3): reps 2, stride 2; middle flow (4-11): reps 3, stride 1; block 12: the exit flow's.
            reps, stride = (2, 2) if i <= 3 or i == 12 else (3, 1)
            setattr(self, f"block{i}", Block(c[i + 1], c[i + 2], reps, stride, start_with_relu=i > 1,
                                             grow_first=i != 12))
        self.convout = nn.Conv2d(c[block + 2], 2, kernel_size=1)
        self.detector, self.block, self.width = "chai", block, width
        self.layername = f"xception_block{block}"  # their which_model_netD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


def chai_net(block: int = CHAI_BLOCK, width: float = 1.0) -> ChaiNet:
    """Chai et al.'s patch detector truncated after Xception block `block` (1-12; theirs 2). width 1.0 is theirs
    exactly (their checkpoint's keys and shapes); a smaller one scales every channel count for an embedded variant."""
    if not isinstance(block, int) or not 1 <= block <= XCEPTION_BLOCKS:
        raise ModelError(f"chai_net block must be 1..{XCEPTION_BLOCKS}; got {block!r}")
    if not isinstance(width, (int, float)) or not width > 0:
        raise ModelError(f"chai_net width must be a positive number; got {width!r}")
    return ChaiNet(block, float(width))


def _chai_arch(net: nn.Module) -> str:
    width = getattr(net, "width", 1.0)
    return f"Chai's {getattr(net, 'layername', 'xception patch net')}" + (f" (width {width})" if width != 1.0 else "")


# Checkpoints.

def _read_weights(path, key: str, detector: str) -> dict:
    """The state_dict under `key` (or the file itself when it is a plain state_dict), "module." stripped per key."""
    obj = read_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        obj = obj[key]
    elif not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        found = ", ".join(repr(k) for k in list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"{path}: not a {detector} checkpoint (its weights are under {key!r}; "
                         f"found {found or 'none'})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelError(f"{path}: {key!r} is not a state_dict (expected a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel saves module.<key>


def load_wang(path, net: nn.Module | None = None) -> dict:
    """Wang et al.'s checkpoint ({"model": state_dict}, or a plain state_dict) checked against `net` (default
    ResNet-50 with one output): the full state_dict to load, or ModelError naming the file and first bad key."""
    net = wang_net() if net is None else net
    return fitted_state(net, _read_weights(path, "model", "Wang et al. (CNNDetection)"), path, _wang_arch(net))


def load_chai(path, net: nn.Module | int = CHAI_BLOCK) -> dict:
    """Chai et al.'s checkpoint ({"state_dict": state_dict}, or a plain state_dict) checked against `net`, or against
    chai_net(block) when given a block number: the full state_dict to load, or ModelError naming the file and key."""
    net = chai_net(net) if isinstance(net, int) else net
    return fitted_state(net, _read_weights(path, "state_dict", "Chai et al. (patch-forensics)"), path, _chai_arch(net))
