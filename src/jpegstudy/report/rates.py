"""The codec study's report: each task's metric against bits per pixel, a curve per codec (with the bootstrap bands),
the bitrate each codec needs to stay within a margin of the clean metric, and the Bjøntegaard delta rate against
JPEG with the task metric in place of PSNR (codec research's habit: the average bitrate difference at equal
quality). Made from metric rows alone; the derived numbers print as \\jsrate{op}{refs}{text}, which audit.py
recomputes with these same functions.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402

from jpegstudy import atomic  # noqa: E402
from jpegstudy.report.figures import _params, _save  # noqa: E402
from jpegstudy.report.metrics import FIELD_NAMES, HEADLINE, TASK_SHORT_TITLES, read_rows  # noqa: E402

CODEC_LABELS = {"jpeg": "JPEG", "webp": "WebP", "jpeg2000": "JPEG 2000", "avif": "AVIF", "heif": "HEIF",
                "jxl": "JPEG XL", "learned": "Learned (bmshj2018)"}
MITIGATION_LABELS = {"none": "None", "finetune": "Fine-tuned on the codec", "offtheshelf": "ARCNN off the shelf",
                     "ttac": "ARCNN TTAC on the codec", "transfer": "ARCNN TTAC through JPEG"}
JPEG_PIXEL_TTAC = "ttac"  # the pixel corrector task-targeted through JPEG, on JPEG: codecs/jpeg/.../ttac.json


def curves(metric_files) -> dict:
    """{(task, model, codec, mitigation): rows sorted by bits per pixel} of the compressed sets, and
    {(task, model): the clean row} under the key "clean"."""
    out, clean = {}, {}
    for row in read_rows(metric_files):
        key = (row["task"], row["model"])
        if row["quality"] is None:
            if row["mitigation"] == "none" and row.get("codec", "jpeg") == "jpeg":
                clean[key] = row
            continue
        if row.get("bits_per_pixel") is None:
            raise ValueError(f"{row['source']}: row {row['id']} has no bits_per_pixel (evaluated before the codec "
                             "study kept rates: rerun its evaluation)")
        out.setdefault((*key, row.get("codec", "jpeg"), row["mitigation"]), []).append(row)
    return {k: sorted(v, key=lambda r: r["bits_per_pixel"]) for k, v in out.items()} | {"clean": clean}


def within_rate(clean: float, points: list[tuple[float, float]], margin: float) -> tuple[str, float]:
    """The lowest bits per pixel at which the curve (points (bpp, metric), sorted by bpp) first reaches `clean` -
    `margin`, linear in log-rate between measured points: ("at", bpp); ("le", lowest bpp) when the lowest rate
    measured is already within; ("gt", highest bpp) when no rate measured is."""
    threshold = clean - margin
    if points[0][1] >= threshold:
        return "le", points[0][0]
    for (r0, v0), (r1, v1) in zip(points, points[1:]):
        if v0 < threshold <= v1:
            t = (threshold - v0) / (v1 - v0)
            return "at", math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return "gt", points[-1][0]


def within_text(kind: str, rate: float) -> str:
    return {"at": "", "le": "$\\leq$", "gt": "$>$"}[kind] + f"{rate:.2f}"


def bd_rate(reference: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjøntegaard's average bitrate difference (%) of `test` against `reference` at equal metric, over the metric
    range both reach: log10(bpp) as a monotone piecewise cubic (PCHIP, as today's BD-rate tools use) of the metric,
    integrated; negative means fewer bits. None when the two ranges do not overlap or a curve has < 2 distinct
    metric values."""
    fits = []
    for points in (reference, test):
        by_metric = {}
        for rate, value in sorted(points, key=lambda p: (p[1], p[0])):
            by_metric.setdefault(value, rate)  # equal metrics: the lowest rate reaching it
        if len(by_metric) < 2:
            return None
        x = np.array(list(by_metric))
        fits.append((PchipInterpolator(x, np.log10(list(by_metric.values()))), x.min(), x.max()))
    low, high = max(fits[0][1], fits[1][1]), min(fits[0][2], fits[1][2])
    if high <= low:
        return None
    mean = (fits[1][0].integrate(low, high) - fits[0][0].integrate(low, high)) / (high - low)
    return (10 ** mean - 1) * 100


def bd_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def _points(rows: list[dict], field: str) -> list[tuple[float, float]]:
    return [(r["bits_per_pixel"], r[field]) for r in rows]


def rate_op(op: str, rows: list[dict], field: str) -> str:
    """The text of a \\jsrate: op "within:<margin>" (rows: the clean row, then the curve's) or "bdrate:<n>" (the
    first n rows JPEG's curve, the rest the codec's); what the table prints and the audit recomputes."""
    kind, _, arg = op.partition(":")
    if kind == "within":
        return within_text(*within_rate(rows[0][field], _points(rows[1:], field), float(arg)))
    n = int(arg)
    return bd_text(bd_rate(_points(rows[:n], field), _points(rows[n:], field)))


def jsrate(op: str, rows: list[dict], field: str) -> str:
    refs = ",".join(f"{r['id']}/{field}" for r in rows)
    return f"\\jsrate{{{op}}}{{{refs}}}{{{rate_op(op, rows, field)}}}"


def codec_order(codecs) -> list[str]:
    return sorted(set(codecs), key=lambda c: (list(CODEC_LABELS).index(c) if c in CODEC_LABELS else 99, c))


def table(metric_files, out, params: dict) -> None:
    """Per task model and codec (JPEG first): the bits per pixel it needs to stay within `within` points of the
    clean metric, and its BD-rate against JPEG, both without mitigation."""
    c = curves(metric_files)
    margin = params.get("within", 1.0)
    lines = []
    for (task, model), clean in c["clean"].items():
        field = HEADLINE[task]
        jpeg = c.get((task, model, "jpeg", "none"))
        if not jpeg:
            continue
        for codec in codec_order(k[2] for k in c if k != "clean" and k[:2] == (task, model) and k[3] == "none"):
            rows = c[(task, model, codec, "none")]
            within = jsrate(f"within:{margin:g}", [clean, *rows], field)
            bd = "--" if codec == "jpeg" else jsrate(f"bdrate:{len(jpeg)}", [*jpeg, *rows], field)
            name = model.replace("_", "\\_")
            lines.append(f"{TASK_SHORT_TITLES[task]} & {name} & "
                         f"{CODEC_LABELS.get(codec, codec)} & {FIELD_NAMES[field]} & {within} & {bd} \\\\")
    body = "\n".join(lines)
    text = f"""% Generated by jpegstudy (report/rates.py): the codec study's bitrates. \\jsrate: see jpegstudy audit.
\\begin{{table}}[H]
\\centering
\\small
\\begin{{tabular}}{{llllrr}}
\\toprule
Task & Model & Codec & Metric & bpp, {margin:g} pt & BD-rate (\\%) \\\\
\\midrule
{body}
\\bottomrule
\\end{{tabular}}
\\caption{{Beyond JPEG: the bits per pixel (bpp) each codec needs to stay within {margin:g} point(s) of the clean
metric (interpolated in log-rate between the measured qualities; $\\leq$: already at the lowest rate measured;
$>$: not even at the highest), and its Bj\\o{{}}ntegaard delta rate against JPEG at equal task metric (PCHIP fits
of log-rate over the metric range both reach; negative: fewer bits than JPEG; n/a: the ranges do not overlap).
No mitigation.}}
\\label{{tab:codecs}}
\\end{{table}}
"""
    atomic.write_text(out, text)


def _log_rate_axis(ax) -> None:
    """Bits per pixel on a log axis (call after plotting), ticks at 1, 2 and 5 of each decade printed plainly (0.2, 1,
    5); a range narrower than two of those gets three ticks spread over it, at two significant digits."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [m * 10.0 ** e for e in range(-3, 4) for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    if len(ticks) < 2:
        ticks = [float(f"{t:.2g}") for t in np.geomspace(low, high, 5)[1:-1]]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _band(ax, xs, low, high, color) -> None:
    if all(v is not None for v in (*low, *high)):
        ax.fill_between(xs, low, high, color=color, alpha=0.15, linewidth=0)


def _refs(rows) -> list[str]:
    return [f"{r['id']}/{f}" for r in rows for f in (HEADLINE[r["task"]], "bits_per_pixel")]


def rate_figure(metric_files, outputs, params: dict | None = None) -> None:
    """One task's metric against bits per pixel (log axis), a panel per model, a curve per codec without mitigation,
    each with its bootstrap band; the clean metric dashed."""
    params = _params(params)
    c = curves(metric_files)
    models = list(c["clean"])
    codecs = codec_order(k[2] for k in c if k != "clean" and k[3] == "none")
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(models), figsize=(params["width"] * (1 + 0.6 * (len(models) - 1)),
                                                      params["height"]), squeeze=False)
    refs = []
    colors = dict(zip(codecs, sns.color_palette(n_colors=len(codecs))))
    for ax, (task, model) in zip(axes[0], models):
        field = HEADLINE[task]
        clean = c["clean"][(task, model)]
        refs.append(f"{clean['id']}/{field}")
        for codec in codecs:
            rows = c.get((task, model, codec, "none"))
            if not rows:
                continue
            xs = [r["bits_per_pixel"] for r in rows]
            ax.plot(xs, [r[field] for r in rows], marker="o", color=colors[codec], label=CODEC_LABELS.get(codec, codec))
            _band(ax, xs, [r.get(f"{field}_low") for r in rows], [r.get(f"{field}_high") for r in rows], colors[codec])
            refs += _refs(rows)
        ax.axhline(clean[field], color="0.3", linestyle="--", linewidth=0.8, label="clean")
        _log_rate_axis(ax)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(f"{FIELD_NAMES[field]} (%)")
        ax.set_title(f"{model} ({params['confidence'].get('level', 0.95) * 100:g} % bootstrap bands)",
                     fontsize="small")
    axes[0][0].legend(fontsize="x-small")
    fig.tight_layout()
    _save(fig, outputs, refs, params["dpi"])


def rate_mitigation_figure(metric_files, outputs, params: dict | None = None) -> None:
    """One task model's metric against bits per pixel with each mitigation, a panel per codec (JPEG's: without
    mitigation and the pixel corrector task-targeted through JPEG)."""
    params = _params(params)
    c = curves(metric_files)
    (task, model), clean = next(iter(c["clean"].items()))
    field = HEADLINE[task]
    codecs = codec_order(k[2] for k in c if k != "clean" and k[:2] == (task, model))
    sns.set_theme(style="whitegrid", context="paper")
    ncols = min(3, len(codecs))
    nrows = math.ceil(len(codecs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(params["width"] * 1.5, params["height"] * 0.75 * nrows),
                             squeeze=False, sharey=True)
    mitigations = list(MITIGATION_LABELS)
    colors = dict(zip(mitigations, sns.color_palette(n_colors=len(mitigations))))
    refs, handles = [f"{clean['id']}/{field}"], {}
    for ax, codec in zip(axes.flat, codecs):
        for m in mitigations:
            rows = c.get((task, model, codec, m))
            if not rows:
                continue
            label = MITIGATION_LABELS[m] if codec != "jpeg" or m != JPEG_PIXEL_TTAC else MITIGATION_LABELS["transfer"]
            xs = [r["bits_per_pixel"] for r in rows]
            color = colors["transfer" if codec == "jpeg" and m == JPEG_PIXEL_TTAC else m]
            (line,) = ax.plot(xs, [r[field] for r in rows], marker="o", markersize=3, color=color, label=label)
            handles.setdefault(label, line)
            refs += _refs(rows)
        ax.axhline(clean[field], color="0.3", linestyle="--", linewidth=0.8)
        _log_rate_axis(ax)
        ax.set_title(CODEC_LABELS.get(codec, codec), fontsize="small")
        ax.set_xlabel("bits per pixel", fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes.flat[len(codecs):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(f"{FIELD_NAMES[field]} (%)")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncols=3, fontsize="x-small", frameon=False)
    fig.suptitle(f"{model}: mitigations on each codec (dashed: clean)", fontsize="small")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, outputs, refs, params["dpi"])
