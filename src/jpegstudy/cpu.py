"""The CPU at full speed, for every job that runs a network: the allocator and the memory format.

Allocator. glibc's malloc hands every buffer above its mmap threshold (at most 32 MiB) back to the kernel when it
is freed and faults it in again, page by page, at the next forward pass: at 224 px a bare mobilenet_v2 loop spent
about half its time in the kernel. tcmalloc keeps freed memory for reuse (measured here: 19,447 page faults per image
with glibc, 28 with tcmalloc; benchmarks/eval_throughput.py prints the effect). It has to be loaded before the
process starts, so a network command re-executes itself once with it preloaded (`preload_allocator`). Where the
library is absent (scripts/system-packages installs it), the command warns once and tunes glibc instead (mallopt),
which helps for buffers under 32 MiB. JPEGSTUDY_ALLOCATOR=system keeps glibc's defaults (to measure them).
The allocator changes no number: it only decides where freed memory goes.

Memory format. channels_last (NHWC) lets oneDNN run convolutions without reordering: at 224 px, on tcmalloc, it
took a bare mobilenet_v2 loop from 67 to 92 images/s here (batch 64; 2 threads). Evaluation and throughput's
inference use it; training does not. It changes the order of floating-point sums inside a convolution: a logit
moves in its last bits (same for every run on one machine), which can only flip a near-tie. In training those bits
compound: the embedded mobilenet_v2 trained channels_last (1.5x faster) ended lower at each of three seeds (80.6,
68.8, 80.4 % val top-1 against 95.2, 76.0, 83.2), so training keeps NCHW and the trained weights stay those of
earlier runs, byte for byte.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

ALLOCATOR_ENV = "JPEGSTUDY_ALLOCATOR"
# Debian's libtcmalloc-minimal4, for the machines it is built for.
TCMALLOC = [Path(f"/usr/lib/{arch}-linux-gnu/libtcmalloc_minimal.so.4") for arch in ("x86_64", "aarch64")]
# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def tcmalloc_library() -> Path | None:
    return next((p for p in TCMALLOC if p.is_file()), None)


def allocator() -> str:
    """What this process allocates with: tcmalloc, glibc (tuned), or system (glibc defaults)."""
    if os.environ.get(ALLOCATOR_ENV) == "system":
        return "system"
    library = tcmalloc_library()
    if library is not None and str(library) in os.environ.get("LD_PRELOAD", "").split(":"):
        return "tcmalloc"
    return "glibc"


def preload_allocator(argv: list[str] | None = None) -> None:
    """Re-execute this process (same interpreter, same arguments) with tcmalloc preloaded, once; without tcmalloc,
    tune glibc in place. Call it first thing, before torch is imported."""
    if os.environ.get(ALLOCATOR_ENV) == "system" or allocator() == "tcmalloc":
        return
    library = tcmalloc_library()
    if library is None:
        print("jpegstudy: tcmalloc not found (Debian: libtcmalloc-minimal4; scripts/system-packages installs it); "
              "running on glibc's malloc, tuned", file=sys.stderr)
        tune_glibc()
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(library), env.get("LD_PRELOAD", "")) if p)
    # tcmalloc reports every allocation above 1 GiB on stderr; a large batch is not news.
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    args = argv if argv is not None else sys.orig_argv
    os.execve(sys.executable, [sys.executable, *args[1:]], env)


def tune_glibc() -> None:
    """Keep freed buffers (up to glibc's largest mmap threshold) in the heap instead of returning them."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: its own malloc, its own defaults
    libc.mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)


def fast_layout(model, device):
    """The model in the memory format its convolutions run fastest in on `device`: channels_last on the CPU, and
    on a GPU (cuDNN's NHWC kernels, what tensor cores want under autocast). Inputs need no conversion: a
    convolution with channels_last weights returns channels_last activations."""
    import torch

    if device.type in ("cpu", "cuda"):
        return model.to(memory_format=torch.channels_last)
    return model
