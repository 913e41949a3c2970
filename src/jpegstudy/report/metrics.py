"""Metric rows as the report stages see them: read from metric files, each row knowing its file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

FIELD_LABELS = {"top1": "Top-1 (\\%)", "top5": "Top-5 (\\%)", "map": "Box mAP@[.5:.95] (\\%)",
                "mask_ap": "Mask mAP@[.5:.95] (\\%)", "miou": "mIoU (\\%)", "pixel_acc": "Pixel accuracy (\\%)",
                "accuracy": "Real/fake accuracy (\\%)", "ap": "AP (\\%)"}
FIELD_NAMES = {"top1": "top-1", "top5": "top-5", "map": "box mAP", "mask_ap": "mask mAP", "miou": "mIoU",
               "pixel_acc": "pixel accuracy", "accuracy": "accuracy", "ap": "AP",
               "image_accuracy": "image accuracy", "patch_accuracy": "patch accuracy"}  # plain text, for figures
# Each task's headline field: what its tables, figures and findings compare (the paper's metric of the task).
HEADLINE = {"classification": "top1", "detection": "map", "segmentation": "miou", "forensics": "accuracy"}
# What a table's caption calls each task's rows.
TASK_TITLES = {"classification": "Classification", "detection": "Detection and instance segmentation",
               "segmentation": "Semantic segmentation", "forensics": "GAN-image forensics"}
# Where a long title would not fit (a legend in two columns, a column group over two numbers).
TASK_SHORT_TITLES = {task: task.capitalize() for task in TASK_TITLES}

# The order in which every table and figure lists mitigations: the model alone, the model retrained, the
# correctors (QGAC off the shelf, task-targeted, transferred from another model), then the quality-aware baselines.
BASE_MITIGATIONS = ("none", "finetune", "offtheshelf", "ttac")
AC_NETWORKS = ("arcnn", "idcn", "qgac")
AC_TRAINING = ("offtheshelf", "ttac")
NETWORK_LABELS = {"arcnn": "ARCNN", "idcn": "IDCN", "qgac": "QGAC"}
TRAINING_LABELS = {"offtheshelf": "off-the-shelf", "ttac": "TTAC"}
LABELS = {"none": "None", "finetune": "Fine-tuned", "offtheshelf": "Off-the-shelf AC", "ttac": "TTAC"}


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
    """Every row under `metrics_dir` (metric and throughput rows alike), by row id."""
    return {row["id"]: row for row in read_rows(sorted(Path(metrics_dir).rglob("*.json")))}


def fmt(value: float) -> str:
    """How every report prints a metric: two decimals (the same function formats and audits)."""
    return f"{value:.2f}"


def split_ac(mitigation: str) -> tuple[str, str] | None:
    """("arcnn", "ttac") for "arcnn-ttac": a quality-aware baseline; None for any other mitigation."""
    network, _, training = mitigation.rpartition("-")
    return (network, training) if network in AC_NETWORKS and training in AC_TRAINING else None


def mitigation_key(mitigation: str) -> tuple:
    """Sort key giving the reports' fixed order: none, finetune, offtheshelf, ttac, transfer-* (by source),
    arcnn-*, idcn-* (off the shelf, then task-targeted), then anything else by name."""
    if mitigation in BASE_MITIGATIONS:
        return (0, BASE_MITIGATIONS.index(mitigation), "")
    if mitigation.startswith("transfer-"):
        return (1, 0, mitigation.removeprefix("transfer-"))
    if ac := split_ac(mitigation):
        return (2, AC_NETWORKS.index(ac[0]) * 2 + AC_TRAINING.index(ac[1]), "")
    return (3, 0, mitigation)


def mitigation_label(mitigation: str) -> str:
    """A mitigation's name for readers (plain text; tables escape it)."""
    if mitigation in LABELS:
        return LABELS[mitigation]
    if mitigation.startswith("transfer-"):
        return f"TTAC from {mitigation.removeprefix('transfer-')}"
    if mitigation.startswith("multihead-"):
        return f"Multi-head TTAC ({mitigation.removeprefix('multihead-')})"
    if ac := split_ac(mitigation):
        return f"{NETWORK_LABELS[ac[0]]} ({TRAINING_LABELS[ac[1]]})"
    return mitigation


def classification_frame(paths) -> pd.DataFrame:
    """The rows of one task's metric files (classification's, or detection's), checked: each (model, mitigation) has exactly one clean row
    (quality null) and at most one row per quality, and all come from one dataset. `quality` is a float column
    (NaN for the clean reference); a ValueError names the file at fault."""
    paths = [str(p) for p in paths]
    return checked_frame(pd.DataFrame(read_rows(paths)), paths)


def checked_frame(df: pd.DataFrame, paths: list[str]) -> pd.DataFrame:
    """classification_frame's checks on rows already read from `paths`."""
    if df.empty:
        raise ValueError(f"no metric rows in {', '.join(paths) or 'no files'}")
    for column in ("model", "mitigation", "quality", "dataset"):
        if column not in df:
            raise ValueError(f"{df['source'].iloc[0]}: rows without {column!r}: not a task's metric file")
    for (model, mitigation), rows in df.groupby(["model", "mitigation"], sort=False):
        source = rows["source"].iloc[0]
        n_clean = int(rows["quality"].isna().sum())
        if n_clean != 1:
            what = "no clean (reference) row" if n_clean == 0 else f"{n_clean} clean (reference) rows"
            raise ValueError(f"{source}: {what} (quality null) for {model} / {mitigation}")
        qualities = rows["quality"].dropna()
        if qualities.duplicated().any():
            raise ValueError(f"{source}: more than one row for {model} / {mitigation} at quality "
                             f"{int(qualities[qualities.duplicated()].iloc[0])}")
    datasets = list(dict.fromkeys(df["dataset"]))
    if len(datasets) > 1:
        first = df[df["dataset"] == datasets[1]]["source"].iloc[0]
        raise ValueError(f"{first}: rows on dataset {datasets[1]!r}, others on {datasets[0]!r}: one report, "
                         "one dataset")
    return df


def task_rows(paths) -> dict[str, list[dict]]:
    """Metric files' rows by the task of their rows, in the reports' task order (HEADLINE's), each file read once;
    rows written before tasks were recorded are classification's. A file of no rows, of several tasks or of an
    unknown task is refused."""
    found: dict[str, list[dict]] = {}
    for path in map(str, paths):
        rows = read_rows([path])
        tasks = {row.get("task") or "classification" for row in rows}
        if not tasks:
            raise ValueError(f"{path}: no metric rows")
        if len(tasks) > 1:
            raise ValueError(f"{path}: rows of several tasks ({', '.join(sorted(tasks))}) in one metric file")
        (task,) = tasks
        if task not in HEADLINE:
            raise ValueError(f"{path}: rows of task {task!r}, which has no headline metric (tasks: "
                             f"{', '.join(HEADLINE)})")
        found.setdefault(task, []).extend(rows)
    if not found:
        raise ValueError("no metric files")
    return {task: found[task] for task in HEADLINE if task in found}


def task_frames(paths) -> dict[str, pd.DataFrame]:
    """{task: its rows} in the reports' task order, each task's rows checked as classification_frame checks them."""
    return {task: checked_frame(pd.DataFrame(rows), sorted({r["source"] for r in rows}))
            for task, rows in task_rows(paths).items()}


def by_quality(rows: pd.DataFrame) -> dict:
    """{None (clean) or int quality: row dict} of one (model, mitigation)."""
    return {None if pd.isna(q) else int(q): r for q, r in zip(rows["quality"], rows.to_dict("records"))}


def qualities_of(df: pd.DataFrame) -> list[int]:
    return sorted(int(q) for q in df["quality"].dropna().unique())


def throughput_frame(paths) -> pd.DataFrame:
    """Throughput rows (Appendix E): model, corrector (None: the model alone), mode, batch_size, images_per_s."""
    df = frame(paths)
    if df.empty:
        raise ValueError(f"no throughput rows in {', '.join(map(str, paths)) or 'no files'}")
    for column in ("model", "corrector", "mode", "batch_size", "images_per_s"):
        if column not in df:
            raise ValueError(f"{df['source'].iloc[0]}: rows without {column!r}: not a throughput file")
    return df


def inference_throughput(df: pd.DataFrame, model: str) -> dict:
    """The row of `model` alone (no corrector) at inference with the largest batch size measured."""
    rows = df[(df["model"] == model) & df["corrector"].isna() & (df["mode"] == "inference")]
    if rows.empty:
        where = ", ".join(sorted(set(df[df["model"] == model]["source"]) or set(df["source"])))
        raise ValueError(f"{where}: no inference throughput row of {model} alone (corrector null)")
    return rows.sort_values("batch_size", kind="stable").iloc[-1].to_dict()
