"""Which device a job runs on, how provenance names it, and the settings a GPU wants (autocast, pinned memory)."""

from __future__ import annotations

import contextlib
import platform

import torch

from jpegstudy import cpu


def pick_device(name: str) -> torch.device:
    """`auto` takes the GPU when torch sees one; anything else is a torch device string (cpu, cuda:1)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: torch sees no CUDA GPU here (use device: auto or cpu)")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {cpu.allocator()}"


# Evaluation's precisions: fp32, or torch.autocast to bf16 / fp16 (matmuls and convolutions in half precision,
# reductions and the metric's inputs in fp32). The paper's numbers are fp32; a half precision is for GPU throughput
# and is recorded in every row's provenance (its config).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str):
    """The context a model's forward runs in at `precision` on `device` (nothing changes for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=PRECISIONS[precision])


def pin_memory(device: torch.device | str) -> bool:
    """Whether batches should be built in page-locked memory: only a GPU copies from it (asynchronously)."""
    return torch.device(device).type == "cuda"
