"""The forensics appendix's evidence that the embedded fakes carry upsampling traces: a few real and fake validation
images, and the mean spectrum of each half's high-pass residuals (data/fakes.spectrum), as Zhang et al. (2019) and
Wang et al. (2020) show GAN traces. The generator's transposed convolution lifts the spectrum at half the sampling
rate (the corners and edge midpoints of each panel); the real scenes have no such peaks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jpegstudy import provenance  # noqa: E402
from jpegstudy.data import fakes, forensics  # noqa: E402
from jpegstudy.data import manifest as manifests  # noqa: E402
from jpegstudy.data.images import load_rgb  # noqa: E402
from jpegstudy.report.figures import _save  # noqa: E402

EXAMPLES = 6


def halves(manifest) -> dict[str, np.ndarray]:
    """{"real": (N, H, W, 3), "fake": ...} uint8 images of a real/fake set, in manifest order."""
    out = {}
    for label, name in enumerate(forensics.CLASSES):
        images = [np.asarray(load_rgb(manifest.path_of(i), entry.get("sha256")))
                  for i, entry in enumerate(manifest.images) if entry["label"] == label]
        if not images:
            raise ValueError(f"{manifest.location}: no {name} images")
        out[name] = np.stack(images)
    return out


def spectrum_figure(manifest_path, outputs, params: dict | None = None) -> dict[str, float]:
    """Draw the figure from a real/fake set's manifest; returns each half's upsampling peak."""
    params = params or {}
    manifest = manifests.read(manifest_path)
    images = halves(manifest)
    spectra = {name: fakes.spectrum(a) for name, a in images.items()}
    peaks = {name: fakes.upsampling_peak(s) for name, s in spectra.items()}
    low = min(float(np.percentile(s, 1)) for s in spectra.values())
    high = max(float(s.max()) for s in spectra.values())
    fig = plt.figure(figsize=(9, 4.6), layout="constrained")
    grid = fig.add_gridspec(2, EXAMPLES + 4)
    spectrum_axes = []
    for row, name in enumerate(forensics.CLASSES):
        for k, image in enumerate(images[name][:EXAMPLES]):
            ax = fig.add_subplot(grid[row, k])
            ax.imshow(image, interpolation="nearest")
            ax.set_axis_off()
            if k == 0:
                ax.set_title(f"{name}", fontsize=9, loc="left")
        ax = fig.add_subplot(grid[row, EXAMPLES:])
        shown = ax.imshow(spectra[name], cmap="magma", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"{name}: residual spectrum, peak {peaks[name]:.2f}", fontsize=8)
        ax.set_axis_off()
        spectrum_axes.append(ax)
    fig.colorbar(shown, ax=spectrum_axes, shrink=0.8, label="log amplitude")  # both panels one size
    inputs = provenance.file_inputs({"manifest": str(manifest_path)})
    _save(fig, outputs, [], params.get("dpi", 150), inputs=inputs)
    return peaks
