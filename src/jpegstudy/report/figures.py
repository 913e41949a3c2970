"""Figures (seaborn/matplotlib, PDF and PNG) made from metric rows alone.

Each figure carries the ids of the rows it plots in its metadata (PDF Keywords, PNG text chunk), so
`jpegstudy audit` works on figures as on tables. Dates are left out, so identical rows give identical files.

"Drop" is the paper's measure: a clean top-1 minus the top-1 on JPEGs of one quality, in points. Figure 3 takes each
model's own clean row; the mitigation figures take the model's clean reference *without* mitigation ("none"), so
that a mitigation that costs clean accuracy (fine-tuning) is charged for it.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: rules run on machines without a display
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from jpegstudy import atomic
from jpegstudy import confidence as intervals
from jpegstudy.report.metrics import (
    BASE_MITIGATIONS,
    FIELD_NAMES,
    NETWORK_LABELS,
    classification_frame,
    inference_throughput,
    mitigation_key,
    mitigation_label,
    throughput_frame,
)

RECORDS_KEY = "jpegstudy-records"
INPUTS_KEY = "jpegstudy-inputs"  # appendix figures (images, predictions): the files they were drawn from
DEFAULTS = {"field": "top1", "width": 4.5, "height": 3.2, "dpi": 150}
# One colour and marker per mitigation, the same in every figure; transferred correctors get the rest in turn.
STYLE = {"none": ("0.45", "o"), "finetune": ("C0", "s"), "offtheshelf": ("C2", "^"), "ttac": ("C3", "D")}
TRANSFER_STYLES = [("C1", "v"), ("C4", "P"), ("C5", "X"), ("C6", "<"), ("C8", ">"), ("C9", "*")]


def drops(df: pd.DataFrame, field: str, relative_to: str = "own", confidence: dict | None = None) -> pd.DataFrame:
    """Clean metric minus the metric at each quality, per (model, mitigation): the paper's 'drop'.

    relative_to="own": the clean row of the same (model, mitigation); "none": the model's clean row without
    mitigation (every model then needs its "none" rows). Each drop lists the two row refs it is made of. With
    `confidence` (level, resamples, seed), each drop gets a paired bootstrap interval (low, high) from the two
    rows' per-image results."""
    out = []
    references = {}
    if relative_to == "none":
        for model, rows in df[df["mitigation"] == "none"].groupby("model", sort=False):
            clean = rows[rows["quality"].isna()]
            if clean.empty:
                raise ValueError(f"{rows['source'].iloc[0]}: no clean (reference) row for {model}")
            references[model] = clean.iloc[0]
    elif relative_to != "own":
        raise ValueError(f"relative_to={relative_to!r}: 'own' or 'none'")
    for (model, mitigation), rows in df.groupby(["model", "mitigation"], sort=False):
        if relative_to == "own":
            clean = rows[rows["quality"].isna()]
            if clean.empty:
                raise ValueError(f"{rows['source'].iloc[0]}: no clean (reference) row for {model}")
            ref = clean.iloc[0]
        elif model in references:
            ref = references[model]
        else:
            raise ValueError(f"{rows['source'].iloc[0]}: no 'none' metric file of {model} among the inputs (its "
                             "clean reference is what drops are measured from)")
        for _, r in rows.dropna(subset=["quality"]).iterrows():
            low, high = _drop_interval(ref, r, field, confidence) if confidence else (math.nan, math.nan)
            out.append({"model": model, "mitigation": mitigation, "quality": int(r["quality"]),
                        "drop": ref[field] - r[field], "low": low, "high": high,
                        "refs": [f"{ref['id']}/{field}", f"{r['id']}/{field}"]})
    return pd.DataFrame(out, columns=["model", "mitigation", "quality", "drop", "low", "high", "refs"])


def _drop_interval(clean: pd.Series, compressed: pd.Series, field: str, confidence: dict) -> tuple[float, float]:
    """The paired bootstrap interval of clean minus compressed `field`, resampling the images the rows' task keeps
    results of: classification's hits per image, detection's COCOeval records (detection_metric), segmentation's
    intersections and unions (segmentation_metric), forensics' per-image values (forensics_metric)."""
    if clean.get("task") == "forensics":
        from jpegstudy.tasks import forensics_metric

        for row in (clean, compressed):
            if not isinstance(row.get("per_image"), dict):
                raise ValueError(f"{row['source']}: row {row['id']} keeps no per-image results (rerun its evaluation)")
        return forensics_metric.drop_interval(clean["per_image"], compressed["per_image"], field, **confidence)
    if clean.get("task") == "segmentation":
        from jpegstudy.tasks import segmentation_metric

        for row in (clean, compressed):
            if not isinstance(row.get("per_image"), dict):
                raise ValueError(f"{row['source']}: row {row['id']} keeps no per-image results (rerun its evaluation)")
        return segmentation_metric.miou_drop_interval(clean["per_image"], compressed["per_image"],
                                                      **confidence)[field]
    detection = clean.get("task") == "detection"
    if detection:
        from jpegstudy.tasks import detection_metric  # pycocotools: only detection rows need it
    key = detection_metric.field_stat(field)[0] if detection else field
    for row in (clean, compressed):
        per_image = row.get("per_image")
        if not isinstance(per_image, dict) or key not in per_image:
            raise ValueError(f"{row['source']}: row {row['id']} keeps no per-image {field} results (evaluated before "
                             "they were kept: rerun its evaluation)")
    if detection:
        return detection_metric.field_drop_interval(field, clean["per_image"], compressed["per_image"], **confidence)
    return intervals.drop_interval(intervals.decode(clean["per_image"][field]),
                                   intervals.decode(compressed["per_image"][field]), **confidence)


def _band(ax, line: pd.DataFrame, color) -> None:
    """The confidence band of a line of drops, where it has one."""
    if line["low"].notna().all():
        ax.fill_between(line["quality"], line["low"], line["high"], color=color, alpha=0.15, linewidth=0)


def _params(params: dict | None, **defaults) -> dict:
    return {**DEFAULTS, **defaults, **(params or {})}


def _refs(d: pd.DataFrame) -> list[str]:
    return [ref for refs in d["refs"] for ref in refs]


def _save(fig, outputs, refs, dpi: int, inputs: dict | None = None) -> None:
    """Write `fig` to each output (.pdf/.png) with the row refs it plots in its metadata, then close it.
    `inputs` ({name: {path, sha256}}): the files a figure of no metric row was drawn from, in its metadata too."""
    refs = " ".join(sorted(set(refs)))
    shown = json.dumps(inputs, sort_keys=True) if inputs else None
    try:
        for out in outputs:
            out = Path(out)
            if out.suffix == ".pdf":
                metadata = {"Keywords": f"{RECORDS_KEY}: {refs}", "CreationDate": None, "Creator": "jpegstudy"}
                if shown:
                    metadata["Subject"] = f"{INPUTS_KEY}: {shown}"
            elif out.suffix == ".png":
                metadata = {RECORDS_KEY: refs, "Software": "jpegstudy"}
                if shown:
                    metadata[INPUTS_KEY] = shown
            else:
                raise ValueError(f"{out}: figures are written as .pdf or .png")
            with atomic.output_path(out) as tmp:
                fig.savefig(tmp, format=out.suffix[1:], dpi=dpi, metadata=metadata)
    finally:
        plt.close(fig)


def _level(params: dict) -> str:
    return f"{100 * params['confidence'].get('level', 0.95):g} %"


def _drop_label(field: str) -> str:
    return f"Drop in {FIELD_NAMES.get(field, field)} (points)"


def _definition(field: str) -> str:
    name = FIELD_NAMES.get(field, field)
    return f"drop = clean {name} without mitigation − {name} with it"


def _style(mitigation: str, transfers: list[str]) -> tuple[str, str]:
    if mitigation in STYLE:
        return STYLE[mitigation]
    return TRANSFER_STYLES[transfers.index(mitigation) % len(TRANSFER_STYLES)]


def drop_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 3: drop in top-1 accuracy (params field: or box mAP, ...) against JPEG quality, one line
    per model."""
    params = _params(params)
    df = classification_frame(metric_files)
    d = drops(df, params["field"], confidence=params.get("confidence"))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(params["width"], params["height"]))
    sns.lineplot(data=d, x="quality", y="drop", hue="model", marker="o", ax=ax)
    for color, model in zip(sns.color_palette(n_colors=d["model"].nunique()), dict.fromkeys(d["model"])):
        _band(ax, d[d["model"] == model].sort_values("quality"), color)
    if d["low"].notna().all():
        ax.set_title(f"bands: {_level(params)} bootstrap intervals", fontsize="x-small")
    ax.set_xlabel("JPEG quality")
    ax.set_ylabel("Drop in top-1 accuracy (points)" if params["field"] == "top1" else _drop_label(params["field"]))
    ax.set_xticks(sorted(d["quality"].unique()))
    ax.axhline(0, color="0.3", linewidth=0.8)
    fig.tight_layout()
    _save(fig, outputs, _refs(d), params["dpi"])


def mitigation_drops(metric_files, field: str = "top1") -> pd.DataFrame:
    """What Figure 4 plots: the drops of none, finetune, offtheshelf and ttac from each model's clean reference
    without mitigation."""
    df = classification_frame(metric_files)
    return drops(df[df["mitigation"].isin(BASE_MITIGATIONS)], field, relative_to="none")


def mitigation_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 4: drop (the model's clean reference without mitigation minus the mitigated metric at
    each quality) against quality, one line per mitigation (none, finetune, offtheshelf, ttac): the mean over
    models, with a band from the smallest to the largest model's drop."""
    params = _params(params)
    field = params["field"]
    d = mitigation_drops(metric_files, field)
    n_models = d["model"].nunique()
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(params["width"], params["height"]))
    mitigation_lines(ax, d)
    ax.set_xlabel("JPEG quality")
    ax.set_ylabel(_drop_label(field))
    ax.set_title(_definition(field), fontsize="x-small")
    title = f"mean of {n_models} models" + (", band: min–max" if n_models > 1 else "")
    ax.legend(title=title, title_fontsize="small", fontsize="small", frameon=True)
    fig.tight_layout()
    _save(fig, outputs, _refs(d), params["dpi"])


def mitigation_lines(ax, d: pd.DataFrame) -> dict:
    """Figure 4's lines on `ax` from drops `d`: per mitigation, the mean drop over models at each quality, with a
    min–max band where there are several models; the zero line and the qualities as ticks. {label: line}."""
    n_models = d["model"].nunique()
    lines = {}
    for mitigation in sorted(d["mitigation"].unique(), key=mitigation_key):
        stats = d[d["mitigation"] == mitigation].groupby("quality")["drop"].agg(["mean", "min", "max"])
        color, marker = _style(mitigation, [])
        label = mitigation_label(mitigation)
        (lines[label],) = ax.plot(stats.index, stats["mean"], color=color, marker=marker, markersize=4,
                                  linewidth=1.2, label=label)
        if n_models > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.15, linewidth=0)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(sorted(d["quality"].unique()))
    return lines


def transfer_drops(metric_files, field: str = "top1", confidence: dict | None = None) -> pd.DataFrame:
    """What Figure 7a plots: for every model with a transfer-* file, the drops of none, ttac and transfer-* from
    its clean reference without mitigation."""
    df = classification_frame(metric_files)
    df = df[df["mitigation"].isin(["none", "ttac"]) | df["mitigation"].str.startswith("transfer-")]
    targets = list(dict.fromkeys(df[df["mitigation"].str.startswith("transfer-")]["model"]))
    if not targets:
        raise ValueError(f"{', '.join(map(str, metric_files))}: no transfer-* rows to plot")
    return drops(df[df["model"].isin(targets)], field, relative_to="none", confidence=confidence)


def transfer_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 7a: for each model with a transferred corrector, the drop (clean reference without
    mitigation minus mitigated) against quality with its own TTAC corrector, with each other model's TTAC
    corrector (transfer-{source}), and without mitigation for scale. One panel per target model."""
    params = _params(params)
    field = params["field"]
    d = transfer_drops(metric_files, field, params.get("confidence"))
    targets = list(dict.fromkeys(d["model"]))
    transfers = sorted({m for m in d["mitigation"] if m.startswith("transfer-")}, key=mitigation_key)
    ncols = min(len(targets), 3)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = panel_grid(len(targets), ncols, params, sharex=True, sharey=True)
    handles = {}
    for ax, model in zip(axes.flat, targets):
        rows = d[d["model"] == model]
        for mitigation in sorted(rows["mitigation"].unique(), key=mitigation_key):
            line = rows[rows["mitigation"] == mitigation].sort_values("quality")
            color, marker = _style(mitigation, transfers)
            label = "Own TTAC" if mitigation == "ttac" else mitigation_label(mitigation)
            (handles[label],) = ax.plot(line["quality"], line["drop"], color=color, marker=marker, markersize=4,
                                        linewidth=1.2, linestyle="--" if mitigation == "none" else "-",
                                        label=label)
            _band(ax, line, color)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_title(model, fontsize="medium")
        ax.set_xticks(sorted(d["quality"].unique()))
    for ax in axes[-1]:
        ax.set_xlabel("JPEG quality")
    for ax in axes[:, 0]:
        ax.set_ylabel(_drop_label(field))
    bands = f"; bands: {_level(params)} bootstrap intervals" if d["low"].notna().all() else ""
    # wrapped to the figure's width (~16 x-small characters an inch): one panel's is narrow
    fig.suptitle(textwrap.fill(_definition(field) + bands, int(16 * fig.get_figwidth())), fontsize="x-small")
    shared_legend(fig, handles, ncols)
    _save(fig, outputs, _refs(d), params["dpi"])


def panel_grid(n: int, ncols: int, params: dict, **share):
    """A figure of `n` panels in rows of `ncols` (constrained layout, so a legend fits below), the panels past `n`
    hidden; `share`: subplots' sharex/sharey."""
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained", **share,
                             figsize=(max(params["width"], 0.62 * params["width"] * ncols),
                                      0.8 * params["height"] * nrows + 0.45))
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def shared_legend(fig, handles: dict, ncols: int):
    """One legend ({label: artist}) below the panels of a figure of `ncols` columns; the legend."""
    return fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                      ncols=min(len(handles), 4 if ncols >= 3 else 2), fontsize="small", frameon=False)


def summary_points(metric_files, throughput_files, quality: int = 10, field: str = "top1") -> pd.DataFrame:
    """What Figure 1 plots: per model, x (drop after fine-tuning at `quality`), y (drop after TTAC), speed (the
    model's inference images/s alone, largest batch size) and the refs of the rows they come from."""
    return points_of(classification_frame(metric_files), throughput_frame(throughput_files), quality, field)


def points_of(df: pd.DataFrame, speed: pd.DataFrame, quality: int, field: str) -> pd.DataFrame:
    """summary_points of framed rows: `df` one task's metric rows, `speed` its throughput rows."""
    d = drops(df[df["mitigation"].isin(["none", "finetune", "ttac"])], field, relative_to="none")
    points = []
    for model in dict.fromkeys(df["model"]):
        point = {"model": model, "refs": []}
        for mitigation, axis in (("finetune", "x"), ("ttac", "y")):
            hit = d[(d["model"] == model) & (d["mitigation"] == mitigation) & (d["quality"] == quality)]
            if hit.empty:
                files = df[(df["model"] == model) & (df["mitigation"] == mitigation)]["source"]
                if files.empty:
                    raise ValueError(f"no {mitigation} metric file of {model} among the inputs")
                raise ValueError(f"{files.iloc[0]}: no {mitigation} row of {model} at quality {quality}")
            point[axis] = hit["drop"].iloc[0]
            point["refs"] += hit["refs"].iloc[0]
        row = inference_throughput(speed, model)
        point["speed"] = row["images_per_s"]
        point["refs"].append(f"{row['id']}/images_per_s")
        points.append(point)
    return pd.DataFrame(points)


def _nice(value: float) -> float:
    """`value` rounded to one significant digit (size-legend entries)."""
    if value <= 0:
        return 0.0
    step = 10 ** math.floor(math.log10(value))
    return round(value / step) * step


def _place_labels(fig, ax, points: pd.DataFrame, sizes, obstacles=()) -> None:
    """Name each point beside it, on the first side (right, left, above, below, diagonals) where the name
    overlaps no point, no name placed before and none of the `obstacles` (artists), and stays inside the axes;
    deterministic."""
    renderer = fig.canvas.get_renderer()
    to_px = fig.dpi / 72
    frame = ax.get_window_extent(renderer)
    centers = ax.transData.transform(points[["x", "y"]].to_numpy())
    radii = [math.sqrt(s) / 2 for s in sizes]  # scatter sizes are areas in points^2
    taken = [(cx - r * to_px, cy - r * to_px, cx + r * to_px, cy + r * to_px) for (cx, cy), r in zip(centers, radii)]
    taken += [(e.x0, e.y0, e.x1, e.y1) for e in (artist.get_window_extent(renderer) for artist in obstacles)]

    def overlap(a, b) -> float:
        w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for (_, pt), radius in zip(points.iterrows(), radii):
        gap = radius + 2
        best = None
        for dx, dy, ha, va in ((gap, 0, "left", "center"), (-gap, 0, "right", "center"),
                               (0, gap, "center", "bottom"), (0, -gap, "center", "top"),
                               (gap * 0.7, gap * 0.7, "left", "bottom"), (-gap * 0.7, gap * 0.7, "right", "bottom"),
                               (gap * 0.7, -gap * 0.7, "left", "top"), (-gap * 0.7, -gap * 0.7, "right", "top")):
            label = ax.annotate(pt["model"], (pt["x"], pt["y"]), xytext=(dx, dy), textcoords="offset points",
                                ha=ha, va=va, fontsize="x-small", zorder=3)
            e = label.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            outside = (e.width * e.height - overlap(box, (frame.x0, frame.y0, frame.x1, frame.y1)))
            cost = sum(overlap(box, t) for t in taken) + 10 * outside
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _area(speed: float, fastest: float) -> float:
    """A Figure 1 point's area (points^2) for a model of `speed` images/s, the fastest model's `fastest`."""
    return 20 + 380 * speed / fastest if fastest > 0 else 100.0


def _diagonal(ax, p: pd.DataFrame):
    """Figure 1's square frame around the points `p` (x, y) with the diagonal y = x; its label, an artist the
    points' names keep clear of."""
    low, high = min(p["x"].min(), p["y"].min()), max(p["x"].max(), p["y"].max())
    pad = 0.15 * (high - low) or 1.0
    low, high = low - pad, high + pad
    ax.plot([low, high], [low, high], color="0.5", linewidth=0.8, linestyle="--", zorder=1)
    at = low + 0.88 * (high - low)
    label = ax.annotate("y = x", (at, at), xytext=(-5, 5), textcoords="offset points", ha="center", va="center",
                        fontsize="x-small", color="0.4", rotation=45)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    return label


def _size_legend(ax, fastest: float):
    """Figure 1's legend of point areas (a quarter, half and all of the fastest model's images/s), upper left."""
    legend = sorted({_nice(fastest * f) for f in (0.25, 0.5, 1.0)} - {0.0})
    handles = [ax.scatter([], [], s=_area(v, fastest), color="0.7", edgecolors="0.2", linewidths=0.5)
               for v in legend]
    return ax.legend(handles, [f"{v:,.0f}" for v in legend], title="inference images/s", title_fontsize="x-small",
                     fontsize="x-small", loc="upper left", labelspacing=1.2, borderpad=0.8, frameon=True)


def summary_figure(metric_files, throughput_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 1: one point per model, x the drop at quality `quality` (default 10) after fine-tuning,
    y the drop after TTAC (both from the model's clean reference without mitigation), point area proportional to
    the model's inference throughput (alone, largest batch size measured), and the diagonal y = x: below it,
    TTAC beats fine-tuning."""
    params = _params(params, quality=10)
    p = summary_points(metric_files, throughput_files, int(params["quality"]), params["field"])
    field, quality = params["field"], int(params["quality"])
    fastest = p["speed"].max()
    sizes = [_area(v, fastest) for v in p["speed"]]
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(params["width"], params["width"]))
    diagonal = _diagonal(ax, p)
    ax.scatter(p["x"], p["y"], s=sizes, c=[f"C{i % 10}" for i in range(len(p))], alpha=0.75, edgecolors="0.2",
               linewidths=0.5, zorder=2)
    name = FIELD_NAMES.get(field, field)
    ax.set_xlabel(f"Drop in {name} at Q={quality}, fine-tuned (points)")
    ax.set_ylabel(f"Drop in {name} at Q={quality}, TTAC (points)")
    ax.set_title(_definition(field), fontsize="x-small")
    sizes_legend = _size_legend(ax, fastest)
    fig.tight_layout()
    _place_labels(fig, ax, p, sizes, obstacles=(diagonal, sizes_legend))
    _save(fig, outputs, [ref for refs in p["refs"] for ref in refs], params["dpi"])


def model_figure(metric_files, outputs, params: dict | None = None) -> None:
    """Appendix D.1: one model's metric against JPEG quality, one line per mitigation, each with the bootstrap
    interval its rows carry as a band; the clean reference (the model alone) as a dashed line with its own band."""
    params = _params(params)
    field = params["field"]
    df = classification_frame(metric_files)
    models = list(dict.fromkeys(df["model"]))
    if len(models) != 1:
        raise ValueError(f"{df['source'].iloc[-1]}: a per-model figure plots one model, these files hold "
                         f"{', '.join(models)}")
    mitigations = sorted(df["mitigation"].unique(), key=mitigation_key)
    transfers = [m for m in mitigations if m not in STYLE]
    name = FIELD_NAMES.get(field, field)
    has_bands = {f"{field}_low", f"{field}_high"} <= set(df.columns)
    sns.set_theme(style="whitegrid", context="paper")
    # Up to 6 entries (a line per mitigation, and the clean line) the legend fits in a corner; more (a study's
    # transfer, quality-aware and multihead correctors) covered the curves, so they go below the axes, the figure
    # taller by their rows.
    outside = len(mitigations) + 1 > 6
    legend_rows = -(-(len(mitigations) + 1) // 3)
    fig, ax = plt.subplots(figsize=(params["width"], params["height"] + (0.17 * legend_rows if outside else 0)),
                           layout="constrained")
    refs = []
    for mitigation in mitigations:
        rows = df[df["mitigation"] == mitigation]
        line = rows.dropna(subset=["quality"]).sort_values("quality")
        color, marker = _style(mitigation, transfers)
        ax.plot(line["quality"], line[field], color=color, marker=marker, markersize=4, linewidth=1.2,
                label=mitigation_label(mitigation))
        if has_bands:
            ax.fill_between(line["quality"], line[f"{field}_low"], line[f"{field}_high"], color=color, alpha=0.12,
                            linewidth=0)
        refs += [f"{i}/{f}" for i in line["id"] for f in (field, *((f"{field}_low", f"{field}_high") * has_bands))]
        if mitigation == "none":
            clean = rows[rows["quality"].isna()].iloc[0]
            ax.axhline(clean[field], color="0.3", linewidth=0.8, linestyle="--", label=f"clean ({clean[field]:.2f})")
            if has_bands:
                ax.axhspan(clean[f"{field}_low"], clean[f"{field}_high"], color="0.3", alpha=0.08, linewidth=0)
            refs += [f"{clean['id']}/{f}" for f in (field, *((f"{field}_low", f"{field}_high") * has_bands))]
    ax.set_xticks(sorted(df["quality"].dropna().unique()))
    ax.set_xlabel("JPEG quality")
    ax.set_ylabel(f"{name} accuracy (%)" if field in ("top1", "top5") else f"{name} (%)")
    ax.set_title(f"{models[0]}" + (f"; bands: {_level(params)} bootstrap intervals" if has_bands else ""),
                 fontsize="small")
    if outside:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="x-small",
                   frameon=False)
    else:
        ax.legend(fontsize="x-small", ncols=2, loc="lower right", frameon=True)
    _save(fig, outputs, refs, params["dpi"])


def throughput_figure(throughput_files, outputs, params: dict | None = None) -> None:
    """Appendix E (the paper's Figure 19): images/s of each model alone and with each corrector in front, at the
    largest batch size measured; one panel for inference, one for training (fine-tuning the model alone, TTAC
    steps with a corrector)."""
    params = _params(params)
    df = throughput_frame(throughput_files)
    df["task"] = df["task"].fillna("classification") if "task" in df else "classification"
    largest = df.groupby(["task", "model", "mode"])["batch_size"].transform("max")
    d = df[df["batch_size"] == largest].copy()
    d["corrector"] = d["corrector"].map(lambda c: NETWORK_LABELS.get(c, c) if isinstance(c, str) else "model alone")
    d["label"] = _model_labels(d)
    models = list(dict.fromkeys(d["label"]))
    modes = [m for m in ("inference", "train") if m in set(d["mode"])]  # the modes throughput rows are timed in
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(modes), squeeze=False, figsize=(params["width"] * (0.7 + 0.3 * len(modes)),
                                                                   params["height"]), layout="constrained")
    order = ["model alone", *sorted(set(d["corrector"]) - {"model alone"})]
    for ax, mode in zip(axes[0], modes):
        rows = d[d["mode"] == mode]
        sns.barplot(data=rows, x="label", y="images_per_s", hue="corrector", hue_order=order, order=models, ax=ax,
                    legend=ax is axes[0][0])
        batch = ", ".join(str(b) for b in sorted(rows["batch_size"].unique()))
        ax.set_title(f"{'training' if mode == 'train' else mode} (batch {batch})", fontsize="small", pad=12)
        ax.set_xlabel("")
        ax.set_ylabel("images/s")
        ax.tick_params(axis="x", labelrotation=30)  # several tasks' model names side by side
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        _task_spans(ax, d.drop_duplicates("label").set_index("label").loc[models, "task"].tolist())
    legend = axes[0][0].get_legend()
    if legend is not None:  # below the panels: inside, it hid the tallest bars
        handles, labels = axes[0][0].get_legend_handles_labels()
        legend.remove()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="x-small",
                   frameon=False)
    _save(fig, outputs, [f"{i}/images_per_s" for i in d["id"]], params["dpi"])


def _model_labels(d: pd.DataFrame) -> list[str]:
    """Each row's model as the throughput figure names it: its name, with its task where two tasks share it."""
    shared = d.groupby("model")["task"].nunique()
    return [f"{m} ({t})" if shared[m] > 1 else m for m, t in zip(d["model"], d["task"])]


def _task_spans(ax, tasks: list[str]) -> None:
    """With several tasks' models side by side (`tasks`: each bar group's, in order), a dotted line between tasks
    and each task's name above its models."""
    spans = []
    for x, task in enumerate(tasks):
        if spans and spans[-1][0] == task:
            spans[-1][2] = x
        else:
            spans.append([task, x, x])
    if len(spans) < 2:
        return
    top = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for k, (task, first, last) in enumerate(spans):
        if k:
            ax.axvline(first - 0.5, color="0.4", linewidth=0.7, linestyle=":")
        ax.text((first + last) / 2, 1.01, task, transform=top, ha="center", va="bottom", fontsize="x-small",
                color="0.3")
