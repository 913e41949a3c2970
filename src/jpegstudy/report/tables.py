"""LaTeX tables (booktabs) rendered with jinja2 from metric rows alone.

Every number is printed as \\jsrec{<row id>/<field>}{<value>} with metrics.fmt, so `jpegstudy audit` can trace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from jpegstudy import atomic
from jpegstudy.report import documented
from jpegstudy.report.table_html import table_html
from jpegstudy.report.metrics import (
    AC_NETWORKS,
    AC_TRAINING,
    FIELD_LABELS,
    FIELD_NAMES,
    HEADLINE,
    NETWORK_LABELS,
    TASK_SHORT_TITLES,
    TASK_TITLES,
    by_quality,
    classification_frame,
    fmt,
    mitigation_key,
    mitigation_label,
    qualities_of,
    split_ac,
    task_frames,
    throughput_frame,
)

LATEX_SPECIALS = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}
TRAINING = {"offtheshelf": "Off-the-shelf", "ttac": "Task-targeted"}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIALS.get(c, c) for c in str(text))


def latex_breakable(text) -> str:
    """Escaped, and allowed to break after _ (model names in narrow table columns; TeX breaks after - itself)."""
    return latex_escape(text).replace(r"\_", r"\_\allowbreak{}")


def environment() -> jinja2.Environment:
    # LaTeX is full of braces and percent signs, so templates use << >> and <% %> instead of jinja's defaults.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jpegstudy.report", "templates"),
        block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>", trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["latex"] = latex_escape
    env.filters["breakable"] = latex_breakable
    env.filters["basename"] = lambda path: str(path).replace("\\", "/").rsplit("/", 1)[-1]  # checkpoint paths
    return env


def task_of(df: pd.DataFrame) -> str:
    """The task of a frame's rows (rows written before tasks were recorded are classification's)."""
    return df["task"].iloc[0] if "task" in df else "classification"


def cell(row, field: str) -> str:
    return f"\\jsrec{{{row['id']}/{field}}}{{{fmt(row[field])}}}"


def _cells(rows: dict, order, field: str) -> list[str]:
    return [cell(rows[q], field) if q in rows else "--" for q in order]


def interval_cell(row, field: str) -> str:
    """The bootstrap interval a row carries for `field`, both ends traceable; empty for rows without one."""
    if f"{field}_low" not in row or pd.isna(row[f"{field}_low"]):
        return ""
    return f"\\jsci{{{cell(row, field + '_low')}}}{{{cell(row, field + '_high')}}}"


def confidence_label(df: pd.DataFrame) -> str:
    """"95\\,\\%" from the level the rows' evaluation used (their provenance), for captions."""
    levels = {row.get("config", {}).get("confidence", {}).get("level") for row in df["provenance"]} - {None}
    if len(levels) > 1:
        raise ValueError(f"{df['source'].iloc[0]}: rows with intervals at several levels ({sorted(levels)})")
    return f"{100 * levels.pop():g}\\,\\%" if levels else ""


# A task's table of its headline field is labelled tab:{task}; of another field, tab:{task}-{field}.
HEADLINE_FIELDS = tuple(HEADLINE.values())


def classification_table(metric_files, field: str = "top1", intervals: bool = True) -> str:
    """The appendix's table of one task (D.2: classification's, detection's): per model a block of rows, one per
    mitigation (in the fixed order of metrics.mitigation_key), columns clean and every quality; "--" where a
    mitigation has no row. `intervals`: a line under each row with the bootstrap interval of every number."""
    if field not in FIELD_LABELS:
        raise ValueError(f"field {field!r}: tables print one of {', '.join(FIELD_LABELS)}")
    df = classification_frame(metric_files)
    task = task_of(df)
    if field not in df:
        raise ValueError(f"{df['source'].iloc[0]}: its rows have no {field!r} (a {task} metric file)")
    qualities = qualities_of(df)
    models = []
    for name, rows in df.groupby("model", sort=False):
        blocks = sorted(rows.groupby("mitigation", sort=False), key=lambda item: mitigation_key(item[0]))
        table_rows = []
        for m, r in blocks:
            rows_by_quality = by_quality(r)
            table_rows.append({"label": mitigation_label(m), "mitigation": m,
                               "cells": _cells(rows_by_quality, [None, *qualities], field),
                               "intervals": [interval_cell(rows_by_quality[q], field) if q in rows_by_quality else ""
                                             for q in [None, *qualities]] if intervals else None})
        models.append({"name": name, "rows": table_rows})
    return environment().get_template("classification_table.tex.j2").render(
        sources=[str(p) for p in metric_files], dataset=df["dataset"].iloc[0], qualities=qualities, models=models,
        field=field, field_label=FIELD_LABELS[field], confidence_label=confidence_label(df), intervals=intervals and any(
            any(r["intervals"]) for model in models for r in model["rows"]),
        task_title=TASK_TITLES.get(task, task),
        label=f"tab:{task}" + ("" if field in HEADLINE_FIELDS else f"-{field}"))


def ranked(cells: list[list[str]], values: list[list[float | None]]) -> list[list[str]]:
    """Each column's best value in bold and its second underlined, as the paper's tables mark them (every field is
    higher-is-better; ties share the mark; a column with one value gets bold only)."""
    out = [list(row) for row in cells]
    for col in range(len(cells[0]) if cells else 0):
        distinct = sorted({row[col] for row in values if row[col] is not None}, reverse=True)
        for r, row in enumerate(values):
            if row[col] is not None and row[col] == distinct[0]:
                out[r][col] = f"\\textbf{{{out[r][col]}}}"
            elif row[col] is not None and len(distinct) > 1 and row[col] == distinct[1]:
                out[r][col] = f"\\underline{{{out[r][col]}}}"
    return out


def _values(rows: dict, order, field: str) -> list[float | None]:
    """The values the cells of _cells show, rounded as printed (marks follow what a reader sees)."""
    return [round(float(rows[q][field]), 2) if q in rows else None for q in order]


AC_ALIASES = {"offtheshelf": "qgac-offtheshelf", "ttac": "qgac-ttac"}  # QGAC's own mitigation names


def _ac_correctors(df: pd.DataFrame, task: str) -> tuple[str, dict, dict | None]:
    """One task's part of Table 1: (its model, {"arcnn-ttac"...: rows by quality}, the "none" rows or None)."""
    models = list(dict.fromkeys(df["model"]))
    if len(models) != 1:
        raise ValueError(f"{df['source'].iloc[-1]}: the AC comparison is on one model of each task, these {task} "
                         f"files hold {', '.join(models)}")
    groups = {m: by_quality(rows) for m, rows in df.groupby("mitigation", sort=False)}
    correctors = {AC_ALIASES.get(m, m): rows for m, rows in groups.items() if split_ac(AC_ALIASES.get(m, m))}
    unused = sorted(set(groups) - set(AC_ALIASES) - set(correctors) - {"none"})
    if unused:
        raise ValueError(f"{df[df['mitigation'] == unused[0]]['source'].iloc[0]}: mitigation {unused[0]!r} is "
                         "not part of the AC comparison")
    if not correctors:
        raise ValueError(f"{', '.join(sorted(set(df['source'])))}: no corrector rows to compare")
    return models[0], correctors, groups.get("none")


def ac_comparison_table(metric_files, qualities=None, field: str | None = None) -> str:
    """The paper's Table 1: ARCNN, IDCN and QGAC, each off the shelf and task-targeted, in front of one model of each
    task (its headline field; `field` for a one-task table) at a few qualities (QGAC's rows come from its
    offtheshelf/ttac files): a column group per task, the best corrector of each column in bold, the second
    underlined. A task's "none" file, if given, adds a row without correction for scale. `qualities`: the columns
    (default: those of the ARCNN/IDCN rows)."""
    frames = task_frames(metric_files)
    if field is not None and (field not in FIELD_LABELS or len(frames) > 1):
        raise ValueError(f"field {field!r}: a one-task table prints one of {', '.join(FIELD_LABELS)}; several "
                         "tasks print each one's headline field")
    parts = []
    for task, df in frames.items():
        model, correctors, none = _ac_correctors(df, task)
        shown = field or HEADLINE[task]
        if shown not in df:
            raise ValueError(f"{df['source'].iloc[0]}: its rows have no {shown!r} (a {task} metric file)")
        baselines = sorted({q for m, rows in correctors.items() if not m.startswith("qgac-") for q in rows
                            if q is not None})
        columns = [int(q) for q in (qualities or baselines or qualities_of(df))]
        # The column group's heading is the short title: a long one stretches its two columns apart; the caption
        # has the whole title.
        parts.append({"task": task, "title": TASK_TITLES.get(task, task), "heading": TASK_SHORT_TITLES.get(task, task),
                      "model": model, "dataset": df["dataset"].iloc[0], "field": shown,
                      "field_label": FIELD_LABELS[shown], "qualities": columns, "correctors": correctors,
                      "none": none})
    keys = [(network, how) for network in AC_NETWORKS for how in AC_TRAINING
            if any(f"{network}-{how}" in part["correctors"] for part in parts)]
    cells, values = [], []
    for network, how in keys:
        row_cells, row_values = [], []
        for part in parts:
            rows = part["correctors"].get(f"{network}-{how}", {})
            row_cells += _cells(rows, part["qualities"], part["field"])
            row_values += _values(rows, part["qualities"], part["field"])
        cells.append(row_cells)
        values.append(row_values)
    marked = ranked(cells, values)
    networks = []
    for (network, how), row in zip(keys, marked):
        if not networks or networks[-1]["key"] != network:
            networks.append({"key": network, "name": NETWORK_LABELS[network], "rows": []})
        networks[-1]["rows"].append({"training": TRAINING[how], "cells": row})
    unmitigated = None
    if any(part["none"] is not None for part in parts):
        unmitigated = [c for part in parts for c in (_cells(part["none"], part["qualities"], part["field"])
                                                     if part["none"] is not None else ["--"] * len(part["qualities"]))]
    return environment().get_template("ac_comparison_table.tex.j2").render(
        sources=[str(p) for p in metric_files], parts=parts, networks=networks, unmitigated=unmitigated)


def transfer_table(metric_files, field: str | None = None) -> str:
    """The paper's Table 5, for every task given: for every model with a transferred or multihead corrector, its
    headline field (`field` for a one-task table) at each quality without correction, with its own TTAC corrector,
    with each TTAC corrector trained on a classifier (transfer-{source}: across models, or across tasks) and with
    each multihead corrector (multihead-{group}); in each model's block the best corrector of each column in bold,
    the second underlined. Clean is left out: correctors never touch clean images."""
    frames = task_frames(metric_files)
    if field is not None and (field not in FIELD_LABELS or len(frames) > 1):
        raise ValueError(f"field {field!r}: a one-task table prints one of {', '.join(FIELD_LABELS)}; several "
                         "tasks print each one's headline field")
    blocks, qualities = [], None
    for task, df in frames.items():
        shown = field or HEADLINE[task]
        df = df[df["mitigation"].isin(["none", "ttac"]) | df["mitigation"].str.startswith(("transfer-", "multihead-"))]
        borrowed = set(df[df["mitigation"].str.startswith(("transfer-", "multihead-"))]["model"])
        qualities = qualities or qualities_of(df)
        for name in [model for model in dict.fromkeys(df["model"]) if model in borrowed]:
            ordered = sorted(df[df["model"] == name].groupby("mitigation", sort=False),
                             key=lambda item: mitigation_key(item[0]))
            correctors = [(m, by_quality(rows)) for m, rows in ordered if m != "none"]
            marked = ranked([_cells(rows, qualities, shown) for _, rows in correctors],
                            [_values(rows, qualities, shown) for _, rows in correctors])
            none = [_cells(by_quality(rows), qualities, shown) for m, rows in ordered if m == "none"]
            first_of_task = not blocks or blocks[-1]["of"] != task  # a task named on its first block only
            blocks.append({"of": task, "task": TASK_TITLES.get(task, task) if first_of_task else "",
                           "field": FIELD_NAMES[shown] if first_of_task else "", "name": name,
                           "rows": [{"corrector": "None (JPEG)", "cells": cells} for cells in none] + [
                               {"corrector": _corrector_name(m, name), "cells": cells}
                               for (m, _), cells in zip(correctors, marked)]})
    if not blocks:
        raise ValueError(f"{', '.join(map(str, metric_files))}: no transfer-* or multihead-* rows (the transfer "
                         "table compares a model's own TTAC corrector with those trained for other models)")
    return environment().get_template("transfer_table.tex.j2").render(
        sources=[str(p) for p in metric_files], qualities=qualities, blocks=blocks,
        datasets=", ".join(dict.fromkeys(df["dataset"].iloc[0] for df in frames.values())),
        grouped=len(frames) > 1)


def _corrector_name(mitigation: str, model: str) -> str:
    if mitigation == "ttac":
        return f"{model} (own)"
    if mitigation.startswith("multihead-"):
        return f"multihead {mitigation.removeprefix('multihead-')}"
    return mitigation.removeprefix("transfer-")


def documented_accuracy(model_config: dict, model: str) -> dict | None:
    """torchvision's documented ImageNet-1K accuracies of the weights a model was loaded with, as
    {"ref": "torchvision:<Enum>.<NAME>", "acc@1": ..., "acc@5": ...}; None for weights trained here or a checkpoint."""
    from jpegstudy.tasks import classification

    weights = model_config.get("weights")
    if weights is None or not classification.is_torchvision_weights(weights):
        return None
    member = classification.torchvision_weights(model_config.get("arch", model), weights)
    metrics = member.meta.get("_metrics", {}).get("ImageNet-1K")
    if metrics is None:
        return None
    return {"ref": f"torchvision:{type(member).__name__}.{member.name}", **metrics}


def documented_cell(found: dict | None, key: str) -> str:
    if found is None:
        return "--"
    return f"\\jsdoc{{{found['ref']}:{key}}}{{{fmt(found[key])}}}"


def documented_map(model_config: dict, model: str) -> dict | None:
    """torchvision's documented COCO-val2017 box (and mask) mAP of a detector's weights, as documented_accuracy
    gives them; None for weights trained here or a checkpoint."""
    import torchvision

    arch, weights = model_config.get("arch", model), model_config.get("weights")
    try:
        member = torchvision.models.get_model_weights(arch)[weights]
    except (ValueError, KeyError):
        return None
    metrics = member.meta.get("_metrics", {}).get("COCO-val2017")
    return None if metrics is None else {"ref": f"torchvision:{type(member).__name__}.{member.name}", **metrics}


def documented_segmentation(model_config: dict, model: str) -> dict | None:
    """CSAIL's documented ADE20K mIoU and pixel accuracy of a segmenter's pair (report/documented), as
    documented_accuracy gives torchvision's; None for a pair trained here."""
    return documented.csail(model_config)


@dataclass(frozen=True)
class Reference:
    """What a task's reference table shows: the two fields measured and their headings, the two documented keys,
    who documents them and what they are, what the task calls a model, and the lookup of a model's documented
    values (its config -> {"ref", key: value} or None)."""
    fields: tuple[str, str]
    heads: tuple[str, str]
    keys: tuple[str, str]
    by: str
    what: str
    noun: str
    lookup: object


REFERENCE_COLUMNS = {
    "classification": Reference(("top1", "top5"), ("Top-1", "Top-5"), ("acc@1", "acc@5"), "torchvision",
                                "ImageNet-1K accuracies", "model", documented_accuracy),
    "detection": Reference(("map", "mask_ap"), ("Box mAP", "Mask mAP"), ("box_map", "mask_map"), "torchvision",
                           "COCO-val2017 mAP", "detector", documented_map),
    "segmentation": Reference(("miou", "pixel_acc"), ("mIoU", "Pixel acc."), documented.CSAIL_FIELDS, "CSAIL",
                              "ADE20K validation mIoU and pixel accuracy (single-scale test)", "segmenter",
                              documented_segmentation),
    # No documented values: the authors' published figures are on their own test sets, not a set this study has.
    "forensics": Reference(("accuracy", "ap"), ("Accuracy", "AP"), (), None, None, "forensic detector", None),
}


def weights_shown(config: dict) -> str:
    """A model's weights as the reference table names them: train, a torchvision weights name, a file's name; a
    segmenter's CSAIL pair of files, both."""
    weights = config.get("weights", "?")
    if isinstance(weights, dict):
        # encoder first (provenance stores config keys sorted)
        files = [weights[part] for part in ("encoder", "decoder") if part in weights]
        return " + ".join(str(path).replace("\\", "/").rsplit("/", 1)[-1] for path in files)
    return str(weights)


def reference_table(metric_files) -> str:
    """Appendix D.3: each model's clean metrics (top-1 and top-5; box and mask mAP; mIoU and pixel accuracy), the
    first with its interval, without mitigation, beside the documented values of the weights it was loaded with
    (torchvision's; CSAIL's for a segmenter's pair), where they are documented."""
    df = classification_frame(metric_files)
    df = df[df["mitigation"] == "none"]
    if df.empty:
        raise ValueError(f"{', '.join(map(str, metric_files))}: no 'none' rows (the reference table is the models "
                         "without mitigation)")
    task = task_of(df)
    ref = REFERENCE_COLUMNS[task]
    (first, second), keys = ref.fields, ref.keys
    models = []
    for name, rows in df.groupby("model", sort=False):
        clean = by_quality(rows)[None]
        config = clean["provenance"]["config"].get(f"{task}.models.{name}", {})
        measured = cell(clean, second) if pd.notna(clean.get(second)) else "--"  # a detector without masks
        cells = [cell(clean, first), interval_cell(clean, first), measured]
        if ref.lookup is not None:
            found = ref.lookup(config, name)
            shown = found if found is not None and keys[1] in found else None
            cells += [documented_cell(found, keys[0]), documented_cell(shown, keys[1])]
        models.append({"name": name, "arch": _arch(config, name), "weights": weights_shown(config), "cells": cells})
    return environment().get_template("reference_table.tex.j2").render(
        sources=[str(p) for p in metric_files], dataset=df["dataset"].iloc[0], models=models,
        confidence_label=confidence_label(df), heads=ref.heads, documented_what=ref.what, documented_by=ref.by,
        interval_of=FIELD_NAMES[first], noun=ref.noun,
        label="tab:reference" if task == "classification" else f"tab:reference-{task}")


def _arch(config: dict, name: str) -> str:
    """A model's architecture: its arch, a segmenter's encoder + decoder, a forensic detector's name."""
    if "encoder" in config:
        return f"{config['encoder']} + {config.get('decoder', '?')}"
    if "detector" in config:
        return config["detector"]
    return config.get("arch", name)


def throughput_table(throughput_files) -> str:
    """Appendix E: images/s of each model alone and with each corrector, for inference and training, at each
    batch size measured. Each task's rows have their own header of the batch sizes it measured: one set of columns
    over every task's batch sizes (1, 8, 16, 32, 64, twice) was mostly dashes and ran off the page."""
    df = throughput_frame(throughput_files)
    tasks = df["task"].fillna("classification") if "task" in df else pd.Series("classification", index=df.index)
    columns_of = {task: sorted({(mode, int(b)) for mode, b in zip(group["mode"], group["batch_size"])},
                               key=lambda c: (c[0] != "inference", c[1])) for task, group in df.groupby(tasks)}
    width = max(len(columns) for columns in columns_of.values())
    rows = []
    for (task, model, corrector), group in df.groupby([tasks, "model", df["corrector"].fillna("")], sort=False):
        found = {(r["mode"], int(r["batch_size"])): r for r in group.to_dict("records")}
        columns = columns_of[task]
        rows.append({"task": TASK_TITLES.get(task, task), "model": model, "columns": columns,
                     "corrector": NETWORK_LABELS.get(corrector, corrector) or "--",
                     "cells": [cell(found[c], "images_per_s") if c in found else "--" for c in columns]
                     + [""] * (width - len(columns))})
    return environment().get_template("throughput_table.tex.j2").render(
        sources=[str(p) for p in throughput_files], width=width, rows=rows,
        grouped=len({r["task"] for r in rows}) > 1, devices=sorted({row["device"] for row in df["provenance"]}))


def write_table(kind: str, files, out, html=None, **options) -> None:
    """One of the report's tables to `out` (atomically), and its HTML page to `html` if given."""
    render = {"classification": classification_table, "ac-comparison": ac_comparison_table,
              "reference": reference_table, "throughput": throughput_table, "transfer": transfer_table}[kind]
    tex = render(files, **options)
    page = table_html(tex, Path(out).stem) if html else None
    atomic.write_text(out, tex)
    if html:
        atomic.write_text(html, page)
