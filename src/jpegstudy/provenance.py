"""The provenance record attached to every metric row (DESIGN.md §4), and row ids.

A record says what produced a number: the sha256 of every input file, the config keys the job used, the code's git
commit (and whether its tree was dirty), the library versions (libjpeg's included), the rule, its wall time and the
device. Tables print each number as \\jsrec{<row id>/<field>}{<text>}, so `jpegstudy audit` can walk back from any
printed number to its row and this record.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
from pathlib import Path

import PIL
import torch
import torchvision

from jpegstudy import __version__, atomic, jpeg


def git_state(path: Path | None = None) -> dict:
    """Commit and dirty flag of the repository holding the code (None outside a git checkout)."""
    where = str(path or Path(__file__).resolve().parent)

    def git(*args) -> str | None:
        try:
            out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # Untracked files count too: a new module the code imports changes what ran. results/ etc. are git-ignored.
    return {"commit": commit, "dirty": bool(git("status", "--porcelain"))}


def versions() -> dict:
    return {"jpegstudy": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "pillow": PIL.__version__, "libjpeg": jpeg.libjpeg_version()}


def file_inputs(paths: dict[str, str | Path]) -> dict:
    return {name: {"path": str(p), "sha256": atomic.sha256_file(p)} for name, p in paths.items()}


def record(*, inputs: dict, params: dict, rule: str, wall_time_s: float, device: str, git: dict) -> dict:
    return {"inputs": inputs, "config": params, "git": git, "versions": versions(), "rule": rule,
            "wall_time_s": round(wall_time_s, 3), "device": device, "host": socket.gethostname()}


def row_id(row: dict) -> str:
    """A short id that changes whenever the row's values or anything in its provenance change."""
    content = {k: v for k, v in row.items() if k not in ("id", "source")}  # source: where a report read it
    # wall time and host vary between identical runs; they are not part of what the number *is*
    prov = {k: v for k, v in content.get("provenance", {}).items() if k not in ("wall_time_s", "host")}
    content["provenance"] = prov
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
