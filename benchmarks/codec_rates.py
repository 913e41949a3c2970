"""Each codec's rate, fidelity and speed on the embedded images: bits per pixel, PSNR and encode/decode time.

Run:  .venv/bin/python benchmarks/codec_rates.py [--n 200] [--size 48] [--codecs jpeg webp jpeg2000 avif heif jxl]
                                                [--learned-epochs 5]

It writes --n embedded images (jpegstudy.data.embedded.write_split; not timed) and, for each codec at three
qualities spanning its study range, prints the mean bits per pixel (file bytes x 8 / pixels), the mean PSNR of the
decode against the original, and the milliseconds an image to encode and decode (one thread, best of 3). With
--learned-epochs, the learned codec is trained here first (train_learned, the embedded config's N and M) at three
qualities and timed the same way, its training time printed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jpegstudy import codecs
from jpegstudy.codecs import learned
from jpegstudy.data import embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb

QUALITIES = {"jpeg": (10, 50, 90), "webp": (0, 50, 90), "jpeg2000": (20, 28, 34), "avif": (10, 50, 90),
             "heif": (10, 50, 90), "jxl": (10, 50, 90), "learned": (1, 4, 7)}


def measure(codec, images, quality, decode) -> tuple[float, float, float, float]:
    best_encode = best_decode = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        files = [codec.encode(im, quality) for im in images]
        best_encode = min(best_encode, time.perf_counter() - start)
        start = time.perf_counter()
        back = [decode(data) for data in files]
        best_decode = min(best_decode, time.perf_counter() - start)
    bpp = np.mean([codecs.bits_per_pixel(len(d), *im.size) for d, im in zip(files, images)])
    psnr = np.mean([10 * np.log10(255 ** 2 / max(np.mean((np.asarray(b, float) - np.asarray(im, float)) ** 2),
                                                  1e-10)) for b, im in zip(back, images)])
    return bpp, psnr, 1000 * best_encode / len(images), 1000 * best_decode / len(images)


def _written(manifest, folder: Path):
    """The split's manifest as a file in its folder, read back (so its paths resolve against it)."""
    manifest.write(folder / "manifest.json")
    return manifests.read(folder / "manifest.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "jpeg2000", "avif", "heif", "jxl"])
    parser.add_argument("--learned-epochs", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        m = _written(embedded.write_split(Path(tmp) / "val", "val", max(1, -(-args.n // 10)), args.size, seed=0),
                     Path(tmp) / "val")
        images = [load_rgb(m.path_of(i)) for i in range(len(m.images))][: args.n]
        print(f"{len(images)} embedded images, {args.size} px")
        print(f"{'codec':10s} {'quality':>7s} {'bpp':>7s} {'PSNR dB':>8s} {'encode ms':>10s} {'decode ms':>10s}")
        for name in args.codecs:
            codec = codecs.get(name)
            for q in QUALITIES[name]:
                print(f"{name:10s} {q:7d} " + "{:7.3f} {:8.2f} {:10.2f} {:10.2f}".format(
                    *measure(codec, images, q, codec.decode)))
        if args.learned_epochs:
            train = _written(embedded.write_split(Path(tmp) / "train", "train", 120, args.size, seed=0),
                             Path(tmp) / "train")
            weights = {}
            for q in QUALITIES["learned"]:
                start = time.perf_counter()
                learned.train_learned(train, quality=q, n=32, m=48, epochs=args.learned_epochs,
                                      batch_size=16, lr=0.003, seed=0, out=Path(tmp) / f"q{q}.pt")
                weights[q] = str(Path(tmp) / f"q{q}.pt")
                print(f"learned q{q}: trained in {time.perf_counter() - start:.1f} s")
            codec = codecs.get("learned", weights)
            for q in QUALITIES["learned"]:
                print(f"{'learned':10s} {q:7d} " + "{:7.3f} {:8.2f} {:10.2f} {:10.2f}".format(
                    *measure(codec, images, q, lambda data, q=q: codec.decode_at(data, q))))


if __name__ == "__main__":
    main()
