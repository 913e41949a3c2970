"""Metric rows as the report stages see them: read from metric files, each row knowing its file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

FIELD_LABELS = {"top1": "Top-1 (\\%)", "top5": "Top-5 (\\%)"}


def read_rows(paths) -> list[dict]:
    rows = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a metric file ({e.msg} at line {e.lineno})") from None
        if not isinstance(result, dict) or "rows" not in result:
            raise ValueError(f"{path}: not a metric file (no 'rows')")
        for row in result["rows"]:
            rows.append({**row, "source": str(path)})
    return rows


def frame(paths) -> pd.DataFrame:
    """One line per (model, mitigation, quality); quality is None for the clean reference."""
    return pd.DataFrame(read_rows(paths))


def index(metrics_dir: str | Path) -> dict[str, dict]:
    """Every row under `metrics_dir`, by row id."""
    return {row["id"]: row for row in read_rows(sorted(Path(metrics_dir).rglob("*.json")))}


def fmt(value: float) -> str:
    """How every report prints a metric: two decimals (the same function formats and audits)."""
    return f"{value:.2f}"
