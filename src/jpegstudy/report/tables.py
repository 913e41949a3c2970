"""LaTeX tables (booktabs) rendered with jinja2 from metric rows alone.

Every number is printed as \\jsrec{<row id>/<field>}{<value>} with metrics.fmt, so `jpegstudy audit` can trace it.
"""

from __future__ import annotations

import jinja2

from jpegstudy import atomic
from jpegstudy.report.metrics import (
    AC_NETWORKS,
    AC_TRAINING,
    FIELD_LABELS,
    NETWORK_LABELS,
    by_quality,
    classification_frame,
    fmt,
    mitigation_key,
    mitigation_label,
    qualities_of,
    split_ac,
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
    return env


def cell(row, field: str) -> str:
    return f"\\jsrec{{{row['id']}/{field}}}{{{fmt(row[field])}}}"


def _cells(rows: dict, order, field: str) -> list[str]:
    return [cell(rows[q], field) if q in rows else "--" for q in order]


def classification_table(metric_files, field: str = "top1") -> str:
    """The appendix's classification table: per model a block of rows, one per mitigation (in the fixed order of
    metrics.mitigation_key), columns clean and every quality; "--" where a mitigation has no row."""
    if field not in FIELD_LABELS:
        raise ValueError(f"field {field!r}: tables print one of {', '.join(FIELD_LABELS)}")
    df = classification_frame(metric_files)
    qualities = qualities_of(df)
    models = []
    for name, rows in df.groupby("model", sort=False):
        blocks = sorted(rows.groupby("mitigation", sort=False), key=lambda item: mitigation_key(item[0]))
        models.append({"name": name, "rows": [{"label": mitigation_label(m), "mitigation": m,
                                               "cells": _cells(by_quality(r), [None, *qualities], field)}
                                              for m, r in blocks]})
    return environment().get_template("classification_table.tex.j2").render(
        sources=[str(p) for p in metric_files], dataset=df["dataset"].iloc[0], qualities=qualities, models=models,
        field=field, field_label=FIELD_LABELS[field], label="tab:classification" + ("" if field == "top1" else
                                                                                    f"-{field}"))


def ac_comparison_table(metric_files, qualities=None, field: str = "top1") -> str:
    """The paper's Table 1: ARCNN, IDCN and QGAC, each off the shelf and task-targeted, on one model at a few
    qualities (QGAC's rows come from its offtheshelf/ttac files). A "none" file, if given, adds the model without
    correction for scale. `qualities`: the columns (default: those of the ARCNN/IDCN rows)."""
    if field not in FIELD_LABELS:
        raise ValueError(f"field {field!r}: tables print one of {', '.join(FIELD_LABELS)}")
    df = classification_frame(metric_files)
    models = list(dict.fromkeys(df["model"]))
    if len(models) != 1:
        raise ValueError(f"{df['source'].iloc[-1]}: the AC comparison is on one model, these files hold "
                         f"{', '.join(models)}")
    groups = {m: by_quality(rows) for m, rows in df.groupby("mitigation", sort=False)}
    aliases = {"offtheshelf": "qgac-offtheshelf", "ttac": "qgac-ttac"}  # QGAC's own mitigation names
    correctors = {aliases.get(m, m): rows for m, rows in groups.items() if split_ac(aliases.get(m, m))}
    unused = sorted(set(groups) - set(aliases) - set(correctors) - {"none"})
    if unused:
        raise ValueError(f"{df[df['mitigation'] == unused[0]]['source'].iloc[0]}: mitigation {unused[0]!r} is "
                         "not part of the AC comparison")
    if not correctors:
        raise ValueError(f"{', '.join(map(str, metric_files))}: no corrector rows to compare")
    if qualities is None:
        baselines = [q for m, rows in correctors.items() if not m.startswith("qgac-") for q in rows if q is not None]
        qualities = sorted(set(baselines)) or qualities_of(df)
    qualities = [int(q) for q in qualities]
    networks = []
    for network in AC_NETWORKS:
        rows = [{"training": TRAINING[how], "cells": _cells(correctors[f"{network}-{how}"], qualities, field)}
                for how in AC_TRAINING if f"{network}-{how}" in correctors]
        if rows:
            networks.append({"name": NETWORK_LABELS[network], "rows": rows})
    none = _cells(groups["none"], qualities, field) if "none" in groups else None
    return environment().get_template("ac_comparison_table.tex.j2").render(
        sources=[str(p) for p in metric_files], dataset=df["dataset"].iloc[0], model=models[0], qualities=qualities,
        networks=networks, unmitigated=none, field_label=FIELD_LABELS[field])


def write_classification_table(metric_files, out, field: str = "top1") -> None:
    atomic.write_text(out, classification_table(metric_files, field))


def write_ac_comparison_table(metric_files, out, qualities=None, field: str = "top1") -> None:
    atomic.write_text(out, ac_comparison_table(metric_files, qualities, field))
