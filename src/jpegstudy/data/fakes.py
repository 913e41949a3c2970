"""The embedded study's fake images: a small image generator trained here on the embedded scenes, and the spectrum
that shows the traces its upsampling leaves.

The generator is CycleGAN's ResNet generator (Zhu et al. 2017, after Johnson et al. 2016) made small: a 7x7
convolution, one stride-2 downsampling, residual blocks, one stride-2 transposed convolution back up (kernel 3,
output padding 1, as CycleGAN's), a 7x7 convolution to RGB. It maps a real scene to a fake one and is trained to
reproduce its input (L1), as Zhang et al.'s AutoGAN ("Detecting and simulating artifacts in GAN fake images", 2019)
trains a GAN's generator pipeline as an auto-encoder to simulate GAN images: the traces detectors read come from the
upsampling layers, not from the adversarial loss, and an adversarial game on a laptop CPU in seconds would not
converge. The fakes look like blurred, smeared copies of scenes with a checkerboard at the 2-pixel period of the
transposed convolution, which the spectrum shows (`spectrum`, `upsampling_peak`); the real scenes have none.

Everything here is deterministic for a seed on CPU.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jpegstudy import atomic
from jpegstudy.data import embedded


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.InstanceNorm2d(channels), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """RGB in [0, 1] (N, 3, H, W), H and W even -> a fake of the same size in [0, 1]."""

    def __init__(self, channels: int = 32, blocks: int = 2):
        super().__init__()
        c = channels
        self.settings = {"channels": channels, "blocks": blocks}
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 7, padding=3), nn.InstanceNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU(),
            *[_Residual(2 * c) for _ in range(blocks)],
            nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1), nn.InstanceNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, 3, 7, padding=3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def train(images: np.ndarray, *, channels: int, blocks: int, epochs: int, batch_size: int, lr: float,
          seed: int) -> tuple[Generator, list[float]]:
    """A generator trained to reproduce `images` ((N, H, W, 3) uint8) under L1 with Adam, and each epoch's mean
    loss."""
    if len(images) < batch_size:
        raise ValueError(f"{len(images)} generator training images, fewer than one batch of {batch_size}")
    if images.shape[1] % 2 or images.shape[2] % 2:
        raise ValueError(f"generator images of {images.shape[2]}x{images.shape[1]} px: both sides must be even "
                         "(one downsampling, one upsampling)")
    torch.manual_seed(seed)
    generator = Generator(channels, blocks)
    optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))  # CycleGAN's betas
    x = to_tensor(images)
    order = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        total = steps = 0
        for start in range(0, len(x) - batch_size + 1, batch_size):
            batch = x[perm[start:start + batch_size]]
            loss = (generator(batch) - batch).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / steps)
    return generator.eval(), losses


@torch.no_grad()
def generate(generator: Generator, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The generator's fakes of `images` ((N, H, W, 3) uint8), rounded to uint8 images."""
    out = []
    for start in range(0, len(images), batch_size):
        fake = generator(to_tensor(images[start:start + batch_size]))
        out.append(fake.mul(255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def save(path, generator: Generator, meta: dict) -> None:
    buf = io.BytesIO()
    torch.save({"what": "forensics generator", "settings": generator.settings, "meta": meta,
                "state_dict": generator.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path) -> tuple[Generator, dict]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("what") != "forensics generator":
        raise ValueError(f"{path}: not a forensics generator file (jpegstudy train-generator writes them)")
    generator = Generator(**obj["settings"])
    generator.load_state_dict(obj["state_dict"])
    return generator.eval(), obj["meta"]


def spectrum(images: np.ndarray) -> np.ndarray:
    """The mean log amplitude spectrum (H, W, zero frequency at the centre) of the images' high-pass residuals (the
    grey image minus its 3x3 mean), as Zhang et al. and Wang et al. show GAN traces: the residual removes the scene's
    own low frequencies, which would swamp the traces."""
    grey = images.astype(np.float64).mean(-1)
    smooth = F.avg_pool2d(torch.from_numpy(grey)[:, None], 3, stride=1, padding=1, count_include_pad=False)
    residual = grey - smooth[:, 0].numpy()
    amplitude = np.abs(np.fft.fft2(residual)).mean(0)
    return np.fft.fftshift(np.log(amplitude + 1e-6))


def upsampling_peak(log_spectrum: np.ndarray) -> float:
    """How far the spectrum stands above its median at the frequencies a 2x upsampler aliases onto (half the
    sampling rate along either axis, or both): the largest log-amplitude of those three points minus the median."""
    h, w = log_spectrum.shape
    cy, cx = h // 2, w // 2  # fftshift puts frequency 0 at (h // 2, w // 2) and the Nyquist frequency at index 0
    points = [log_spectrum[0, cx], log_spectrum[cy, 0], log_spectrum[0, 0]]
    return float(max(points) - np.median(log_spectrum))


def scenes(seed: int, role: str, n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 embedded scenes (stuff regions and objects: the segmentation scenes' model) of one
    role: "generator" (what the generator learns from), "{split}-real" (the real images), "{split}-fake" (what the
    generator turns into the fakes). Each role has its own scenes, so no fake is a copy of a real image of the set."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"forensics/{seed}/{role}".encode()).digest()[:8],
                                               "little"))
    return np.stack([embedded.make_segmentation_scene(rng, size)[0] for _ in range(n)])


def write_split(out_dir: str | Path, split: str, n_images: int, size: int, seed: int, generator_path: str | Path,
                dataset: str = "fakes", manifest_dir: str | Path | None = None):
    """Write a real/fake split in CNNDetection's layout (data/forensics.py) and return its manifest: n_images real
    scenes in out_dir/0_real and the generator's fakes of n_images other scenes in out_dir/1_fake, lossless PNG. The
    manifest's source records the generator file and the spectrum's upsampling peak of both halves."""
    from PIL import Image

    from jpegstudy.data import forensics

    generator, _ = load(generator_path)
    reals = scenes(seed, f"{split}-real", n_images, size)
    made = generate(generator, scenes(seed, f"{split}-fake", n_images, size))
    forensics.write_set(out_dir, [Image.fromarray(a) for a in reals], [Image.fromarray(a) for a in made])
    m = forensics.manifest(out_dir, split, dataset, relative_to=manifest_dir or out_dir)
    m.source.update(generator=str(generator_path), generator_sha256=atomic.sha256_file(generator_path), seed=seed,
                    size=size, upsampling_peak={"real": round(upsampling_peak(spectrum(reals)), 4),
                                                "fake": round(upsampling_peak(spectrum(made)), 4)})
    return m
