"""A learned codec: CompressAI's factorized-prior model (Ballé et al. 2018, "bmshj2018-factorized"), one network per
quality as CompressAI ships it (quality 1-8, each its own rate-distortion trade-off lambda).

The embedded study trains its own, small, on the embedded training images (train_learned: lambda * 255^2 * MSE +
bits per pixel, CompressAI's recipe, with the entropy bottleneck's auxiliary loss on its own optimiser);
config/paper.yaml reads CompressAI's published weights by path (resolve_published). Either way the file holds the
network after `update()`, so its entropy coder's tables are fixed and encoding is deterministic.

The file a quality writes: 4 bytes (width, height as big-endian uint16) and the entropy coder's string of the
latent. Every byte is counted in bits per pixel. Pillow cannot read it, so the compress stage writes each decode
beside it (base.Codec.pillow_decodes).
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import struct
import warnings

import numpy as np
import torch
from PIL import Image

from jpegstudy import atomic
from jpegstudy.codecs import LEARNED_RANGE, missing_library
from jpegstudy.codecs.base import Codec, CodecError
from jpegstudy.errors import ModelError

# CompressAI's lambdas for its MSE-trained qualities 1-8 (compressai.zoo; the published weights were trained at them).
LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}
STRIDE = 16  # the analysis transform halves the size four times
HEADER = struct.Struct(">HH")


@functools.cache
def _compressai():
    with warnings.catch_warnings():  # its import scripts a function with torch.jit, which torch 2.14 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        import compressai.models

    return compressai.models


def build(n: int, m: int) -> torch.nn.Module:
    return _compressai().FactorizedPrior(n, m)


def save(path, model: torch.nn.Module, *, quality: int, lam: float, source: str, source_sha256: str | None = None):
    """The network's file, its entropy tables updated first (deterministic bytes for identical weights)."""
    model.update(force=True)
    buf = io.BytesIO()
    torch.save({"codec": "learned", "architecture": "bmshj2018-factorized", "quality": quality, "lambda": lam,
                "N": model.N, "M": model.M, "source": source, "source_sha256": source_sha256,
                "state_dict": model.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path) -> tuple[torch.nn.Module, dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ModelError(f"{path}: cannot load the learned codec ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict) or obj.get("codec") != "learned":
        raise ModelError(f"{path}: not a jpegstudy learned-codec file")
    model = _compressai().FactorizedPrior.from_state_dict(obj["state_dict"])
    return model.eval(), {k: v for k, v in obj.items() if k != "state_dict"}


def resolve_published(weights: str, quality: int, out) -> None:
    """CompressAI's published bmshj2018-factorized checkpoint for `quality` (a state_dict file, as its zoo
    downloads), checked by loading it into the architecture of that quality, saved in our format."""
    from compressai.zoo.pretrained import load_pretrained

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{weights}: cannot load CompressAI weights ({str(e).splitlines()[0]})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        model = _compressai().FactorizedPrior.from_state_dict(load_pretrained(state))
    except (KeyError, RuntimeError) as e:
        raise ModelError(f"{weights}: not a bmshj2018-factorized state_dict "
                         f"({str(e).splitlines()[0][:120]})") from None
    save(out, model.eval(), quality=quality, lam=LAMBDAS[quality], source=weights,
         source_sha256=atomic.sha256_file(weights))


def _padded(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def train_learned(manifest, *, quality: int, n: int, m: int, epochs: int, batch_size: int, lr: float, seed: int,
                  out, workers: int = 0) -> torch.nn.Module:
    """CompressAI's rate-distortion training of one quality on a manifest's lossless training images: loss =
    lambda * 255^2 * MSE + bpp, Adam; the entropy bottleneck's quantiles by its auxiliary loss (Adam, 1e-3)."""
    from jpegstudy.data import training
    from jpegstudy.train import loop

    torch.manual_seed(seed)
    model = build(n, m).train()
    lam = LAMBDAS[quality]
    main = [p for name, p in model.named_parameters() if not name.endswith(".quantiles")]
    aux = [p for name, p in model.named_parameters() if name.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=1e-3)

    def epoch(_: int, generator: torch.Generator) -> str:
        totals = np.zeros(3)
        steps = 0
        for images, _labels in training.batches(manifest, batch_size=batch_size, generator=generator,
                                                workers=workers):
            x = _padded(images.float() / 255)
            result = model(x)
            pixels = x.shape[0] * x.shape[2] * x.shape[3]
            bpp = sum(torch.log(lk).sum() for lk in result["likelihoods"].values()) / (-np.log(2) * pixels)
            mse = torch.nn.functional.mse_loss(result["x_hat"], x)
            loss = lam * 255 ** 2 * mse + bpp
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(main, 1.0)
            optimizer.step()
            aux_loss = model.aux_loss()
            aux_optimizer.zero_grad()
            aux_loss.backward()
            aux_optimizer.step()
            totals += (loss.item(), bpp.item(), mse.item())
            steps += 1
        loss, bpp, mse = totals / max(steps, 1)
        return f"learned codec q{quality} (lambda {lam}): loss {loss:.4f}, {bpp:.3f} bpp, MSE {mse:.5f}"

    settings = {"what": "learned-codec", "quality": quality, "N": n, "M": m, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": seed, "images": len(manifest.images)}
    loop.run_epochs(out, epochs=epochs, seed=seed, settings=settings,
                    states={"model": model, "optimizer": optimizer, "aux_optimizer": aux_optimizer}, epoch_fn=epoch)
    model.eval()
    save(out, model, quality=quality, lam=lam, source="train")
    return model


class LearnedCodec(Codec):
    name, label, suffix = "learned", "Learned (bmshj2018)", ".cai"
    quality_range = LEARNED_RANGE
    quality_meaning = "CompressAI quality"
    pillow_decodes = False

    def __init__(self, weights: dict):
        missing = missing_library("learned")
        if missing:
            raise CodecError(missing)
        self.weights = {int(q): str(p) for q, p in weights.items()}
        self._models: dict[int, torch.nn.Module] = {}

    def model(self, quality: int) -> torch.nn.Module:
        q = self.check_quality(quality)
        if q not in self._models:
            if q not in self.weights:
                raise CodecError(f"codec learned: no network for quality {q} (have {sorted(self.weights)})")
            self._models[q] = load(self.weights[q])[0]
        return self._models[q]

    @torch.no_grad()
    def encode(self, image: Image.Image, quality: int) -> bytes:
        if image.mode != "RGB":
            raise ValueError(f"learned: encode() expects an RGB image, got mode {image.mode!r}")
        w, h = image.size
        if max(w, h) > 65535:
            raise ValueError(f"learned: images up to 65535 px a side, got {w}x{h}")
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
        out = self.model(quality).compress(_padded(x))
        return HEADER.pack(w, h) + out["strings"][0][0]

    @torch.no_grad()
    def decode_at(self, data: bytes, quality: int) -> Image.Image:
        w, h = HEADER.unpack_from(data)
        shape = (-(-h // STRIDE), -(-w // STRIDE))
        x = self.model(quality).decompress([[data[HEADER.size:]]], shape)["x_hat"][0, :, :h, :w]
        return Image.fromarray(x.mul(255).round().byte().permute(1, 2, 0).numpy())

    def decode(self, data: bytes) -> Image.Image:
        raise CodecError("learned: decoding needs the quality's network: use decode_at(data, quality)")

    def roundtrip(self, image: Image.Image, quality: int) -> Image.Image:
        return self.decode_at(self.encode(image, quality), quality)

    def settings(self) -> dict:
        return {"codec": self.name, "architecture": "bmshj2018-factorized", "quality": self.quality_meaning,
                "networks": {q: atomic.sha256_file(p) for q, p in sorted(self.weights.items())},
                "library": f"compressai {importlib.metadata.version('compressai')}",
                "options": {"padding": f"replicate to a multiple of {STRIDE}", "header": "width, height (uint16)"}}
