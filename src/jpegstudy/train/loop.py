"""Resumable epochs, shared by every training job of the mitigations.

After each epoch the job writes a checkpoint (the modules', optimizer's and scheduler's states) beside its output
(paths.resume). A job killed mid-way and run again starts after the last finished epoch and ends with the very
weights an uninterrupted run gives: every random choice of an epoch (order, augmentation, JPEG qualities, dropout)
comes from generators seeded with (seed, epoch), so nothing but those states has to be carried over.
A checkpoint made with other settings (its fingerprint differs) is ignored, not resumed from.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import torch

from jpegstudy import atomic
from jpegstudy.paths import resume as resume_path


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def run_epochs(out: str | Path, *, epochs: int, seed: int, settings: dict, states: dict,
               epoch_fn: Callable[[int, torch.Generator], str]) -> None:
    """Run `epoch_fn(epoch, generator)` for every epoch not yet done; `states` maps names to objects with
    state_dict()/load_state_dict() (modules, optimizers, schedulers); epoch_fn returns a line to print."""
    path = Path(resume_path(str(out)))
    key = fingerprint(settings)
    start = 0
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == key:
            for name, obj in states.items():
                obj.load_state_dict(saved["states"][name])
            start = saved["epoch"] + 1
            print(f"resuming from {path}: epochs 1-{start} already done", flush=True)
        else:
            print(f"ignoring {path}: it was made with other settings", flush=True)
    for epoch in range(start, epochs):
        torch.manual_seed(epoch_seed(seed, epoch))  # dropout and torchvision's random transforms
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        line = epoch_fn(epoch, generator)
        buf = io.BytesIO()
        torch.save({"fingerprint": key, "epoch": epoch,
                    "states": {name: obj.state_dict() for name, obj in states.items()}}, buf)
        atomic.write_bytes(path, buf.getvalue())
        print(f"epoch {epoch + 1}/{epochs}: {line}", flush=True)


def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule) -> float:
    """One optimisation step on `loss` (the scheduler stepped once per batch); the loss's value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def finish(out: str | Path) -> None:
    """Drop the resume checkpoint once the job's output is written."""
    Path(resume_path(str(out))).unlink(missing_ok=True)


def cosine(optimizer: torch.optim.Optimizer, steps: int, lr_min: float):
    """Cosine annealing from the optimizer's lr to lr_min over `steps` steps (stepped once per batch)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=lr_min)
