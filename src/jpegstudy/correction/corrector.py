"""A corrector as the study uses it: a JPEG batch in, the corrected RGB image in [0, 1] out, whatever the network.

QGAC works on the file's normalised DCT coefficients and its quantization tables; ARCNN on the decoded pixels; IDCN
on the decoded pixels and the tables. The file format keeps everything needed to rebuild it (network, widths,
quality for the quality-aware ones, QGAC's DCT statistics) so evaluation needs nothing else.
"""

from __future__ import annotations

import io

import torch

from jpegstudy import atomic, jpeg
from jpegstudy.correction.arcnn import ARCNN
from jpegstudy.correction.idcn import IDCN
from jpegstudy.correction.inputs import JpegBatch
from jpegstudy.correction.qgac import QGAC
from jpegstudy.errors import ModelError

NETWORKS = {"qgac": QGAC, "arcnn": ARCNN, "idcn": IDCN}


def network_kwargs(network: str, config: dict) -> dict:
    """The constructor arguments of a network from its config section (correction.<network>)."""
    if network == "qgac":
        return {k: config[k] for k in ("luma_channels", "chroma_channels", "luma_blocks")}
    if network == "arcnn":
        return {"channels": tuple(config["channels"])}
    if network == "idcn":
        return {"channels": config["channels"], "blocks": config["blocks"]}
    raise ModelError(f"unknown corrector {network!r}; known: {', '.join(NETWORKS)}")


class Corrector(torch.nn.Module):
    def __init__(self, network: str, kwargs: dict, stats: jpeg.FrequencyStats | None = None,
                 quality: int | None = None):
        super().__init__()
        if network not in NETWORKS:
            raise ModelError(f"unknown corrector {network!r}; known: {', '.join(NETWORKS)}")
        if network == "qgac" and stats is None:
            raise ModelError("QGAC needs the DCT statistics its weights were trained with")
        self.network, self.kwargs, self.stats, self.quality = network, dict(kwargs), stats, quality
        self.net = NETWORKS[network](**kwargs)

    def forward(self, batch: JpegBatch) -> torch.Tensor:
        c = batch.coefficients
        if self.network == "arcnn":
            return self.net(batch.rgb).clamp(0, 1)
        if c is None:  # another codec's decode (correction/inputs.py)
            raise ModelError(f"{self.network} reads JPEG coefficients and quantization tables; a non-JPEG image has "
                             "none (the codec study corrects with ARCNN, in the pixel domain)")
        if self.network == "idcn":
            return self.net(batch.rgb, c.qy / 255, c.qc / 255).clamp(0, 1)
        stats = self.stats.to(c.y.device)
        base = stats.normalize(jpeg.upsample_chroma_dct(c.cbcr), [1, 2])  # the JPEG's own chroma, doubled
        out = self.net(c.qy / 255, stats.normalize(c.y, [0]), c.qc / 255, stats.normalize(c.cbcr, [1, 2]), base)
        rgb = jpeg.coefficients_to_rgb(stats.denormalize(out[:, :1], [0]), stats.denormalize(out[:, 1:], [1, 2]))
        h, w = c.sizes[0]
        return rgb[..., :h, :w]

    def describe(self) -> str:
        return f"{self.network}" + (f" for Q={self.quality}" if self.quality is not None else "")


def save(path, corrector: Corrector, *, source: str, source_sha256: str | None = None) -> None:
    """Write a corrector file (deterministic bytes for identical weights, as classification.save_reference)."""
    buf = io.BytesIO()
    torch.save({"network": corrector.network, "kwargs": corrector.kwargs, "quality": corrector.quality,
                "stats": corrector.stats.state_dict() if corrector.stats is not None else None,
                "source": source, "source_sha256": source_sha256,
                "state_dict": corrector.net.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path) -> tuple[Corrector, dict]:
    """The corrector of a file, in eval mode, and the file's metadata."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ModelError(f"{path}: cannot load corrector ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict) or "network" not in obj or "state_dict" not in obj:
        raise ModelError(f"{path}: not a jpegstudy corrector file")
    kwargs = obj["kwargs"]
    if "channels" in kwargs and isinstance(kwargs["channels"], list):
        kwargs["channels"] = tuple(kwargs["channels"])
    stats = jpeg.FrequencyStats.from_state_dict(obj["stats"]) if obj["stats"] is not None else None
    corrector = Corrector(obj["network"], kwargs, stats, obj["quality"])
    corrector.net.load_state_dict(obj["state_dict"])
    return corrector.eval(), {k: v for k, v in obj.items() if k != "state_dict"}

