"""Appendix A of the paper: where a classifier looks, on the original, on its JPEG and after each mitigation.

For each fixed validation image (report.samples; samples.select says which) two rows: the GradCAM heatmap on the
image and the guided-backprop input gradient, both for the class the panel's model *predicts* on the panel's input
(what it looks at to decide, right or wrong; the title says whether that class is the true one). Columns: the
original, the JPEG at the lowest quality of the study, then the mitigations the study asks for (the fine-tuned model
on the JPEG, the off-the-shelf QGAC output, the model's TTAC output; see samples).

GradCAM (pytorch-grad-cam) is taken at the last block whose map has at least MIN_CELLS cells per side (target_layer:
the last block at ImageNet's sizes, as in the paper), its map upsampled to the input and scaled to [0, 1] per panel.
Guided backprop replaces each ReLU's backward pass (ReLU6 too, so MobileNetV2 gets guided gradients); the gradient is
shown per panel with the keras-grad-cam normalisation (gradient_image).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.find_layers import replace_all_layer_type_recursive
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from jpegstudy.errors import ModelError
from jpegstudy.report import samples as samples_
from jpegstudy.tasks import classification


# The coarsest GradCAM map worth showing, in cells per side. At ImageNet's 224 px every architecture's last block
# has at least 7x7 (the paper's choice, and pytorch-grad-cam's); the embedded study's 48 px images leave the last
# block 2x2 (a quadrant, not a place), so there an earlier block is taken: the figure's title names it.
MIN_CELLS = 6


def candidate_layers(arch: str, model: torch.nn.Module) -> list[str]:
    """The blocks GradCAM may look at, from the last one back (module names as in model.named_modules())."""
    if arch.startswith(("resnet", "resnext")):
        return ["layer4", "layer3", "layer2", "layer1"]
    if arch == "inception_v3":
        return [name for name, _ in model.named_children() if name.startswith("Mixed_")][::-1]
    if arch == "vgg19":  # the output of each stage (a convolution's output is overwritten by its in-place ReLU)
        return [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, torch.nn.MaxPool2d)][::-1]
    if arch in ("mobilenet_v2", "efficientnet_b3"):
        return [f"features.{i}" for i in range(len(model.features))][::-1]
    blocks = classification.feature_blocks(model)  # any other model: timm's feature_info, or its conv blocks
    if not blocks:
        raise ModelError(f"{arch}: no GradCAM layer known for this architecture, and it has no convolutional block")
    return blocks[::-1]


def target_layer(arch: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[str, int]:
    """(name, cells per side) of the last block whose map of `x` has at least MIN_CELLS per side (else the block
    with the finest map)."""
    names = candidate_layers(arch, model)
    modules = dict(model.named_modules())
    cells: dict[str, int] = {}
    hooks = [modules[name].register_forward_hook(
        lambda module, args, out, name=name: cells.__setitem__(name, min(out.shape[-2:]))) for name in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    name = next((n for n in names if cells[n] >= MIN_CELLS), names[-1])
    return name, cells[name]


def cam_map(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """GradCAM of `target` for the (1, 3, h, w) input `x`: an (h, w) map in [0, 1]."""
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


class _GuidedReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (x < 6) & (grad > 0)).type_as(grad)


class _GuidedReLU6Module(torch.nn.Module):
    def forward(self, x):
        return _GuidedReLU6.apply(x)


def guided_model(model: torch.nn.Module) -> GuidedBackpropReLUModel:
    """Guided backprop of a copy of `model` (the model the panels were predicted by stays untouched), its ReLU6
    units made guided too (pytorch-grad-cam only swaps ReLU)."""
    guided = samples_.model_copy(model)
    replace_all_layer_type_recursive(guided, torch.nn.ReLU6, _GuidedReLU6Module())
    return GuidedBackpropReLUModel(guided)


def guided_gradient(model, x: torch.Tensor, target: int) -> np.ndarray:
    """Guided backprop of `target` w.r.t. the (1, 3, h, w) input: an (h, w, 3) array. `model`: a classifier, or
    its guided_model to reuse."""
    guided = model if isinstance(model, GuidedBackpropReLUModel) else guided_model(model)
    return guided(x.detach().clone(), target_category=target)


def gradient_image(gradient: np.ndarray) -> np.ndarray:
    """A gradient as an image: keras-grad-cam's normalisation (pytorch-grad-cam's deprocess_image: mean 0.5,
    standard deviation 0.1, clipped), without its absolute epsilon, which flattens the tiny gradients of a barely
    trained model to grey."""
    g = gradient - gradient.mean()
    std = g.std()
    g = g / std if std > 0 else g
    return np.uint8(np.clip(g * 0.1 + 0.5, 0, 1) * 255)


def maps(material: samples_.Material) -> tuple[str, int, list[list[tuple[np.ndarray, np.ndarray]]]]:
    """The GradCAM layer (name, cells per side) and, for each sample and panel, (GradCAM map (h, w) in [0, 1],
    guided gradient (h, w, 3))."""
    first = material.samples[0].panels[0]
    name, cells = target_layer(material.arch, material.models[first.model], first.x)
    layers = {key: dict(model.named_modules())[name] for key, model in material.models.items()}
    guided = {key: guided_model(model) for key, model in material.models.items()}
    out = []
    for sample in material.samples:
        row = []
        for p in sample.panels:
            cam = cam_map(material.models[p.model], layers[p.model], p.x, p.pred)
            row.append((cam, guided_gradient(guided[p.model], p.x, p.pred)))
        out.append(row)
    return name, cells, out


def draw(material: samples_.Material, model_name: str) -> samples_.PanelGrid:
    """The figure of `material`: per sample a GradCAM row and a guided-backprop row, one column per panel."""
    layer, cells, found = maps(material)
    grid = samples_.PanelGrid(material, rows_per_sample=2, row_labels=True, title=(
        f"{model_name}: GradCAM (at {layer}, {cells}×{cells}) and guided backprop for the predicted class"))
    for s, (sample, row) in enumerate(zip(material.samples, found)):
        for c, (panel, (cam, gradient)) in enumerate(zip(sample.panels, row)):
            image = np.asarray(panel.image, dtype=np.float32) / 255
            cam_ax, grad_ax = grid.axes[s][0][c], grid.axes[s][1][c]
            grid.show(cam_ax, show_cam_on_image(image, cam, use_rgb=True))
            grid.prediction_title(cam_ax, panel, sample.label)
            grid.show(grad_ax, gradient_image(gradient))
        grid.row_label(grid.axes[s][0][0], "GradCAM")
        grid.row_label(grid.axes[s][1][0], "Guided backprop")
        grid.sample_label(s, sample)
    return grid


def gradcam_figure(**kwargs) -> None:
    """Write the appendix A figure of one model (keyword arguments: samples.write_figure's)."""
    samples_.write_figure(draw, **kwargs)
