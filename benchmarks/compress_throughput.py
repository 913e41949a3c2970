"""Images per second of our compression stage vs libjpeg-turbo's `cjpeg`, on the same PNGs, on one CPU core.

Run:  .venv/bin/python benchmarks/compress_throughput.py [--n 300] [--sizes 48 256] [--qualities 10 50 90]
                                                         [--repeats 3] [--core K]

For every image size it writes --n embedded scenes as PNG (jpegstudy.data.embedded.write_split, into a temporary
folder; not timed), then, for every quality, times (best of --repeats, whole set, wall clock):

  ours             compress_split(manifest, q, out, workers=1): exactly what the `compress` rule runs, i.e. per image
                   load_rgb(PNG) + jpeg.compress + write the .jpg + sha256, plus one manifest per split.
  ours (ppm)       the same `compress` stage over a manifest of the PPM copies cjpeg (ppm) reads: both tools on the
                   very same files.
  ours (encode)    jpeg.compress alone on images decoded beforehand, in memory: the counterpart of cjpeg (ppm)
                   without its process start and file I/O.
  cjpeg (ppm)      `cjpeg -baseline -quality q` on PPM copies made beforehand (cjpeg 2.1 cannot read PNG), one process
                   per image started from a shell loop: encode cost + process start, *no* PNG decoding.
  cjpeg (png-pipe) the full PNG -> JPEG path with cjpeg: Python decodes the PNG (load_rgb), writes PPM bytes to the
                   stdin of one `cjpeg` process per image, cjpeg writes the .jpg.

The process (and so every cjpeg it starts) is pinned to one core with sched_setaffinity. Every .jpg of every method
is compared byte for byte with ours, so the figures compare the very same work.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

from jpegstudy import jpeg
from jpegstudy.compress import compress_split, compressed_name
from jpegstudy.data import embedded
from jpegstudy.data.images import load_rgb
from jpegstudy.data.manifest import Manifest

# One sh process, one cjpeg per file: the cheapest way to run cjpeg over many files.
CJPEG_LOOP = ('q=$1; out=$2; shift 2; for f; do b=${f##*/};'
              ' cjpeg -baseline -quality "$q" -outfile "$out/${b%.ppm}.jpg" "$f" || exit 1; done')


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def make_set(root: Path, n: int, size: int, seed: int):
    """n embedded PNGs of size x size, PPM copies of them (flat folder, unique names), and a manifest of each."""
    m = embedded.write_split(root / "png", "val", per_class=-(-n // len(embedded.CATEGORIES)), size=size, seed=seed)
    m.images = m.images[:n]
    m.write(root / "png" / "manifest.json")
    pngs = [root / "png" / im["path"] for im in m.images]
    (root / "ppm").mkdir()
    ppms = [root / "ppm" / f"{p.stem}.ppm" for p in pngs]
    for png, ppm in zip(pngs, ppms):
        load_rgb(png).save(ppm)
    ppm_manifest = Manifest("bench", "val", ".", m.classes, [{"path": p.name, "label": 0} for p in ppms])
    ppm_manifest.write(root / "ppm" / "manifest.json")
    return root / "png" / "manifest.json", root / "ppm" / "manifest.json", pngs, ppms


def cjpeg_piped(pngs: list[Path], quality: int, out: Path) -> None:
    for png in pngs:
        buf = io.BytesIO()
        load_rgb(png).save(buf, format="PPM")
        subprocess.run(["cjpeg", "-baseline", "-quality", str(quality), "-outfile", str(out / f"{png.stem}.jpg")],
                       input=buf.getvalue(), check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="images per size (default 300)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[48, 256], help="square image sizes (default 48 256)")
    ap.add_argument("--qualities", "--quality", type=int, nargs="+", default=[10, 50, 90])
    ap.add_argument("--repeats", type=int, default=3, help="timings per method; the best is kept (default 3)")
    ap.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="CPU core (default: last allowed)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    os.sched_setaffinity(0, {a.core})  # inherited by every cjpeg / sh started below
    cjpeg_version = subprocess.run(["cjpeg", "-version"], capture_output=True, text=True).stderr.strip()
    print(f"pinned to core {a.core}; ours: {jpeg.libjpeg_version()} via Pillow; cjpeg: {cjpeg_version}")
    print(f"{a.n} images per size, best of {a.repeats}; img/s (higher is better)\n")
    header = f"{'size':>5} {'Q':>3} {'ours':>6} {'ours(ppm)':>10} {'ours(encode)':>13} {'cjpeg(ppm)':>11} " \
             f"{'cjpeg(png-pipe)':>16} {'ppm:ours/cjpeg':>15} {'png:ours/cjpeg':>15} {'mismatches':>11}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="jpegstudy-bench-") as tmp:
        for size in a.sizes:
            root = Path(tmp) / f"s{size}"
            manifest, ppm_manifest, pngs, ppms = make_set(root, a.n, size, a.seed)
            images = [load_rgb(p) for p in pngs]
            for q in a.qualities:
                outs = {k: root / f"q{q}-{k}" for k in ("ours", "ours-ppm", "ppm", "pipe")}
                for k in ("ppm", "pipe"):
                    outs[k].mkdir()
                t_ours = best_of(a.repeats, lambda: compress_split(manifest, q, outs["ours"]))
                t_ours_ppm = best_of(a.repeats, lambda: compress_split(ppm_manifest, q, outs["ours-ppm"]))
                t_enc = best_of(a.repeats, lambda: [jpeg.compress(im, q) for im in images])
                t_ppm = best_of(a.repeats, lambda: subprocess.run(
                    ["sh", "-c", CJPEG_LOOP, "sh", str(q), str(outs["ppm"]), *map(str, ppms)], check=True))
                t_pipe = best_of(a.repeats, lambda: cjpeg_piped(pngs, q, outs["pipe"]))
                bad = []
                for png in pngs:
                    ours = (outs["ours"] / compressed_name(str(png.relative_to(root / "png")))).read_bytes()
                    for k in ("ours-ppm", "ppm", "pipe"):
                        if (outs[k] / f"{png.stem}.jpg").read_bytes() != ours:
                            bad.append(f"{png.name} ({k})")
                n = len(pngs)
                print(f"{size:>5} {q:>3} {n / t_ours:>6.0f} {n / t_ours_ppm:>10.0f} {n / t_enc:>13.0f} "
                      f"{n / t_ppm:>11.0f} {n / t_pipe:>16.0f} {t_ppm / t_ours_ppm:>15.2f} {t_pipe / t_ours:>15.2f} "
                      f"{len(bad):>11}", flush=True)
                for b in bad[:10]:
                    print(f"      differs from ours: {b}")
    print("\nppm:ours/cjpeg: ours(ppm) images/s over cjpeg(ppm)'s, both reading the same PPM files; png:ours/cjpeg: "
          "ours over cjpeg(png-pipe), both starting from the same PNGs (> 1: ours is faster).\nmismatches: .jpg files, "
          "over the other three methods, whose bytes differ from ours (0: all byte-identical, like for like).")


if __name__ == "__main__":
    main()
