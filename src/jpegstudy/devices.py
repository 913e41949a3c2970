"""Which device a job runs on, and how provenance names it."""

from __future__ import annotations

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
