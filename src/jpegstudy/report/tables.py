"""LaTeX tables (booktabs) rendered with jinja2 from metric rows alone."""

from __future__ import annotations

import jinja2
import pandas as pd

from jpegstudy import atomic
from jpegstudy.report.metrics import FIELD_LABELS, fmt, frame

LATEX_SPECIALS = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}"}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIALS.get(c, c) for c in str(text))


def environment() -> jinja2.Environment:
    # LaTeX is full of braces and percent signs, so templates use << >> and <% %> instead of jinja's defaults.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jpegstudy.report", "templates"),
        block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>", trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["latex"] = latex_escape
    return env


def cell(row, field: str) -> str:
    return f"\\jsrec{{{row['id']}/{field}}}{{{fmt(row[field])}}}"


def classification_table(metric_files, fields=("top1", "top5")) -> str:
    df = frame(metric_files)
    df = df[df["mitigation"] == "none"]
    qualities = sorted(int(q) for q in df["quality"].dropna().unique())
    models = []
    for name, rows in df.groupby("model", sort=False):
        by_quality = {None if pd.isna(q) else int(q): r for q, r in zip(rows["quality"], rows.to_dict("records"))}
        if None not in by_quality:
            raise ValueError(f"{name}: no clean (reference) row in {rows['source'].iloc[0]}")
        order = [None] + qualities
        models.append({"name": name, "cells": {f: [cell(by_quality[q], f) if q in by_quality else "--"
                                                   for q in order] for f in fields}})
    return environment().get_template("classification_table.tex.j2").render(
        sources=[str(p) for p in metric_files], dataset=df["dataset"].iloc[0], qualities=qualities, models=models,
        fields=fields, field_labels=FIELD_LABELS)


def write_classification_table(metric_files, out) -> None:
    atomic.write_text(out, classification_table(metric_files))
