"""The paper's main-body figures across tasks (Figures 1, 3, 4 and 8), from metric rows of several tasks at once.

Each task's rows are framed and checked on their own files (metrics.classification_frame: one dataset a task), and
each task is measured in its headline metric (HEADLINE): drops of different tasks are points of different metrics,
so the panels keep tasks apart and Figure 1 says whose points they are. The drawing is figures.py's (drops, the
mitigation lines, Figure 1's frame and labels, the panel grid, _save with the row refs), applied per task.
"""

from __future__ import annotations

import textwrap

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

from jpegstudy.report import figures, metrics
from jpegstudy.report.metrics import (
    BASE_MITIGATIONS,
    FIELD_NAMES,
    HEADLINE,
    TASK_SHORT_TITLES,
    TASK_TITLES,
    mitigation_key,
    mitigation_label,
    throughput_frame,
)

# Figure 1's colour and marker of each task's points.
TASK_STYLE = {"classification": ("C0", "o"), "detection": ("C1", "s"), "segmentation": ("C2", "^"),
              "forensics": ("C4", "D")}
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # Figure 3: past ten models, colours repeat with a new marker
LEGEND_ROOM = 0.35  # inches: two rows of a small legend
DEFINITION = "drop = clean metric without mitigation − metric with it, in points of each panel's metric"


def task_frames(metric_files) -> dict[str, pd.DataFrame]:
    """metrics.task_frames, each task's rows checked to have its headline metric."""
    frames = metrics.task_frames(metric_files)
    for task, df in frames.items():
        if HEADLINE[task] not in df:
            raise ValueError(f"{df['source'].iloc[0]}: rows without {HEADLINE[task]!r}, {task}'s headline metric")
    return frames


def _unmitigated(df: pd.DataFrame) -> pd.DataFrame:
    """A task's rows without mitigation; every model among them needs some, as drops(relative_to="none") does."""
    none = df[df["mitigation"] == "none"]
    missing = df[~df["model"].isin(none["model"])]
    if not missing.empty:
        row = missing.iloc[0]
        raise ValueError(f"{row['source']}: no 'none' metric file of {row['model']} among the inputs (its clean "
                         "reference is what drops are measured from)")
    return none


def _columns(n: int) -> int:
    """Panels per row: all of them up to three, two rows of two for four, then rows of three."""
    return n if n <= 3 else 2 if n == 4 else 3


def _panels(n: int, params: dict):
    sns.set_theme(style="whitegrid", context="paper")
    ncols = _columns(n)
    fig, axes = figures.panel_grid(n, ncols, params)
    return fig, list(axes.flat[:n]), ncols


def _wrap(text: str, inches: float, per_inch: float) -> str:
    """`text` in lines of `per_inch` characters per inch of a width of `inches` (task names are long for a panel)."""
    return textwrap.fill(text, int(per_inch * inches), break_long_words=False, break_on_hyphens=False)


def _frame_panel(ax, title: str, field: str, qualities) -> None:
    """What every panel has: its title (wrapped to the panel's width), the qualities as ticks, the zero line and a
    y label naming its metric."""
    columns = ax.get_subplotspec().get_gridspec().ncols
    ax.set_title(_wrap(title, ax.figure.get_figwidth() / columns, 10), fontsize="medium")
    ax.set_xticks(sorted(qualities))
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel("JPEG quality")
    ax.set_ylabel(figures._drop_label(field))


def _suptitle(fig, text: str) -> None:
    fig.suptitle(_wrap(text, fig.get_figwidth(), 17), fontsize="x-small")


def _legend(fig, handles: dict, ncols: int) -> None:
    """The shared legend below the panels, the figure made taller by what the legend takes past the room
    figures.panel_grid leaves (two rows; Figure 3 lists every model of every task)."""
    legend = figures.shared_legend(fig, handles, ncols)
    tall = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi
    fig.set_figheight(fig.get_figheight() + max(0.0, tall - LEGEND_ROOM))


def _bands_note(d: pd.DataFrame, params: dict) -> str:
    return f"; bands: {figures._level(params)} bootstrap intervals" if d["low"].notna().all() else ""


# Figure 1


def summary_tasks_points(metric_files, throughput_files, quality: int = 10) -> pd.DataFrame:
    """What Figure 1 across tasks plots: per (task, model), x (drop at `quality` after fine-tuning), y (after
    TTAC), both in the task's headline metric (field), speed (inference images/s alone) and the refs behind them."""
    speed = throughput_frame(throughput_files)
    if "task" not in speed:
        speed["task"] = None
    speed["task"] = speed["task"].fillna("classification")  # as throughput_figure reads rows without a task
    points = []
    for task, df in task_frames(metric_files).items():
        rows = speed[speed["task"] == task]
        if rows.empty:
            raise ValueError(f"{', '.join(map(str, throughput_files))}: no throughput rows of {task} (Figure 1 sizes "
                             "each model's point by its inference images/s)")
        p = figures.points_of(df, rows, quality, HEADLINE[task])
        points.append(p.assign(task=task, field=HEADLINE[task]))
    return pd.concat(points, ignore_index=True)[["task", "model", "field", "x", "y", "speed", "refs"]]


def summary_tasks_figure(metric_files, throughput_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 1: one point per model of every task, x its drop at Q=quality (default 10) after
    fine-tuning, y after TTAC (from its clean reference without mitigation, in its task's headline metric), a
    marker per task, area proportional to the model's inference images/s; below the diagonal, TTAC wins."""
    params = figures._params(params, quality=10)
    quality = int(params["quality"])
    p = summary_tasks_points(metric_files, throughput_files, quality)
    fastest = p["speed"].max()
    sizes = [figures._area(v, fastest) for v in p["speed"]]
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(params["width"], params["width"] + 0.5))
    diagonal = figures._diagonal(ax, p)
    handles = {}
    for task, rows in p.groupby("task", sort=False):
        color, marker = TASK_STYLE[task]
        ax.scatter(rows["x"], rows["y"], s=[sizes[i] for i in rows.index], color=color, marker=marker, alpha=0.75,
                   edgecolors="0.2", linewidths=0.5, zorder=2)
        label = f"{TASK_SHORT_TITLES[task]} ({FIELD_NAMES[HEADLINE[task]]})"  # two legend columns fit the width
        handles[label] = Line2D([], [], color=color, marker=marker, linestyle="", markersize=7, alpha=0.75,
                                markeredgecolor="0.2", markeredgewidth=0.5)
    ax.set_xlabel(f"Drop at Q={quality} after fine-tuning (points)")
    ax.set_ylabel(f"Drop at Q={quality} after TTAC (points)")
    ax.set_title("drop = clean metric without mitigation − metric with it,\nin points of each task's headline metric",
                 fontsize="x-small")
    sizes_legend = figures._size_legend(ax, fastest)
    tasks = fig.legend(handles.values(), handles.keys(), loc="lower center", ncols=min(len(handles), 2),
                       fontsize="x-small", frameon=False)
    # tight_layout, as figures.summary_figure: one pass, and the names are placed where the points then stay
    # (constrained layout settles over two draws, moving the square axes); the task legend's band kept free below
    below = tasks.get_window_extent(fig.canvas.get_renderer()).height / fig.bbox.height
    fig.tight_layout(rect=(0, below, 1, 1))
    figures._place_labels(fig, ax, p, sizes, obstacles=(diagonal, sizes_legend))
    figures._save(fig, outputs, [ref for refs in p["refs"] for ref in refs], params["dpi"])


# Figure 3


def drop_tasks_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 3: a panel per task, the drop without mitigation (the model's clean metric minus its
    metric at each JPEG quality, headline metric) against quality, one line per model; with params "confidence",
    each drop's paired bootstrap interval as a band."""
    params = figures._params(params)
    frames = task_frames(metric_files)
    d = {task: figures.drops(_unmitigated(df), HEADLINE[task], confidence=params.get("confidence"))
         for task, df in frames.items()}
    fig, axes, ncols = _panels(len(d), params)
    named = _model_labels(d)
    handles = {}
    for ax, (task, drops) in zip(axes, d.items()):
        for model in dict.fromkeys(drops["model"]):
            label = named[task, model]
            color, marker = f"C{len(handles) % 10}", MODEL_MARKERS[len(handles) // 10 % len(MODEL_MARKERS)]
            line = drops[drops["model"] == model].sort_values("quality")
            (handles[label],) = ax.plot(line["quality"], line["drop"], color=color, marker=marker, markersize=4,
                                        linewidth=1.2, label=label)
            figures._band(ax, line, color)
        _frame_panel(ax, TASK_TITLES[task], HEADLINE[task], drops["quality"].unique())
    every = pd.concat(d.values())
    _suptitle(fig, "drop = clean metric − metric at each quality, without mitigation" + _bands_note(every, params))
    _legend(fig, handles, ncols)
    figures._save(fig, outputs, figures._refs(every), params["dpi"])


def _model_labels(d: dict) -> dict:
    """{(task, model): legend label}: the model's name, with its task where two tasks share the name."""
    tasks: dict[str, list[str]] = {}
    for task, drops in d.items():
        for model in dict.fromkeys(drops["model"]):
            tasks.setdefault(model, []).append(task)
    return {(task, model): model if len(ts) == 1 else f"{model} ({task})" for model, ts in tasks.items() for task in ts}


# Figure 4


def mitigation_tasks_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 4: a panel per task, the drop (the model's clean reference without mitigation minus
    the mitigated metric) against quality for none, finetune, offtheshelf and ttac, as figures.mitigation_figure
    draws them: the mean over the task's models, a band from the smallest to the largest model's drop."""
    params = figures._params(params)
    d = {task: figures.drops(df[df["mitigation"].isin(BASE_MITIGATIONS)], HEADLINE[task], relative_to="none")
         for task, df in task_frames(metric_files).items()}
    fig, axes, ncols = _panels(len(d), params)
    handles = {}
    for ax, (task, drops) in zip(axes, d.items()):
        handles.update(figures.mitigation_lines(ax, drops))
        n = drops["model"].nunique()
        # a no-break space: a wrapped title keeps "(1 model)" on one line
        _frame_panel(ax, f"{TASK_TITLES[task]} ({n}\u00a0model{'s' * (n > 1)})", HEADLINE[task],
                     drops["quality"].unique())
    order = [label for label in map(mitigation_label, BASE_MITIGATIONS) if label in handles]
    _suptitle(fig, DEFINITION + "; lines: mean over the task's models, bands: min–max")
    _legend(fig, {label: handles[label] for label in order}, ncols)
    figures._save(fig, outputs, figures._refs(pd.concat(d.values())), params["dpi"])


# Figure 8


def multihead_drops(metric_files, confidence: dict | None = None) -> pd.DataFrame:
    """What Figure 8 plots: for every member model of a multihead group (a model with multihead-* rows), the
    drops without mitigation, with its own TTAC and with each multihead corrector, from its clean reference
    without mitigation, in its task's headline metric (column field)."""
    out = []
    for task, df in task_frames(metric_files).items():
        heads = df[df["mitigation"].str.startswith("multihead-")]
        for model, rows in heads.groupby("model", sort=False):
            if not (df[df["model"] == model]["mitigation"] == "ttac").any():
                raise ValueError(f"{rows['source'].iloc[0]}: no ttac metric file of {model} among the inputs "
                                 "(Figure 8 sets each multihead corrector beside the model's own)")
        keep = df["model"].isin(heads["model"]) & (df["mitigation"].isin(["none", "ttac"])
                                                   | df["mitigation"].str.startswith("multihead-"))
        if keep.any():
            d = figures.drops(df[keep], HEADLINE[task], relative_to="none", confidence=confidence)
            out.append(d.assign(task=task, field=HEADLINE[task]))
    if not out:
        raise ValueError(f"{', '.join(map(str, metric_files))}: no multihead-* rows to plot")
    return pd.concat(out, ignore_index=True)


def multihead_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 8: a panel per member model of the multihead groups ("task: model"), its drop against
    quality without mitigation, with its own TTAC corrector and with each multihead corrector (multihead-{name}),
    all from its clean reference without mitigation; with params "confidence", bootstrap bands."""
    params = figures._params(params)
    d = multihead_drops(metric_files, params.get("confidence"))
    members = list(dict.fromkeys(zip(d["task"], d["model"])))
    heads = sorted({m for m in d["mitigation"] if m.startswith("multihead-")}, key=mitigation_key)
    fig, axes, ncols = _panels(len(members), params)
    handles = {}
    for ax, (task, model) in zip(axes, members):
        rows = d[(d["task"] == task) & (d["model"] == model)]
        for mitigation in sorted(rows["mitigation"].unique(), key=mitigation_key):
            line = rows[rows["mitigation"] == mitigation].sort_values("quality")
            color, marker = figures._style(mitigation, heads)
            label = "Own TTAC" if mitigation == "ttac" else mitigation_label(mitigation)
            (handles[label],) = ax.plot(line["quality"], line["drop"], color=color, marker=marker, markersize=4,
                                        linewidth=1.2, linestyle="--" if mitigation == "none" else "-",
                                        label=label)
            figures._band(ax, line, color)
        _frame_panel(ax, f"{task}: {model}", rows["field"].iloc[0], rows["quality"].unique())
    order = ["None", "Own TTAC", *(mitigation_label(m) for m in heads)]
    _suptitle(fig, DEFINITION + _bands_note(d, params))
    _legend(fig, {label: handles[label] for label in order if label in handles}, ncols)
    figures._save(fig, outputs, figures._refs(d), params["dpi"])
