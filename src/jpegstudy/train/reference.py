"""Train a reference classifier from scratch on the embedded training split (the embedded study's stand-in for
torchvision's ImageNet weights). The images are the lossless originals: the reference never sees a JPEG.

AdamW with a one-cycle schedule, random flips and small shifts; deterministic for a seed on CPU.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from jpegstudy.data.loader import ManifestDataset
from jpegstudy.data.manifest import Manifest
from jpegstudy.devices import pick_device
from jpegstudy.tasks import classification


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to `shift` px (reflect padding), per image."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = torch.nn.functional.pad(x, (shift,) * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * shift + 1, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train(arch: str, manifest: Manifest, transform: dict, *, epochs: int, batch_size: int, lr: float,
          weight_decay: float, seed: int, device: str = "cpu") -> torch.nn.Module:
    """The trained model, on the CPU, in eval mode. Deterministic for `seed` on the CPU."""
    dev = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = ManifestDataset(manifest, classification.eval_transform(transform))
    # The embedded training set is small: decode it once and keep it in memory.
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor(manifest.labels)
    model = classification.build(arch, len(manifest.classes)).to(dev)
    # AdamW learns the fine-grain evidence within the few epochs a CPU allows: after 5 epochs resnet18 reached 98 %
    # val top-1 with it, 77 % with SGD (momentum 0.9, peak lr 0.1, same schedule).
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        correct = 0
        for start in tqdm(range(0, len(images), batch_size), desc=f"{arch} epoch {epoch + 1}/{epochs}",
                          leave=False, mininterval=5):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue  # batch norm cannot train on a single image
            x, y = augment(images[idx], generator).to(dev), labels[idx].to(dev)
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += (logits.argmax(1) == y).sum().item()
        print(f"{arch} epoch {epoch + 1}/{epochs}: train top-1 {correct / len(images):.3f}", flush=True)
    return model.cpu().eval()
