"""The findings page: the paper's three headline claims, each beside this study's numbers and a verdict that a
stated rule decides from them (templates/findings.tex.j2, a piece the study PDF inputs like a table).

Every number on the page can be audited: a metric value is \\jsrec, a drop
\\jsdrop{<clean row>/<f>}{<row>/<f>}{<a - b>}, a mean of drops \\jsmeandrop{<a>/<f>-<b>/<f>,...}{<mean>}, a mean drop
as a share of clean \\jsmeanrel; derived() computes them here and in `jpegstudy audit`. Verdicts are decided
on the numbers as printed (two decimals), so a reader can redo each one from the page."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from jpegstudy import atomic
from jpegstudy.report.metrics import by_quality, fmt, qualities_of, task_frames
from jpegstudy.report.tables import cell, environment

MITIGATIONS = ("none", "finetune", "ttac")
SUPPORTED, PARTLY, CONTRADICTED, UNTESTED = "supported", "partly supported", "contradicted", "untested"

# The rules' thresholds (printed with the rules, so the page says what decided each verdict).
HEAVY_SHARE = 10.0  # claim 1: "a lot" at the lowest quality, the mean drop as a % of clean
MODERATE_SHARE = 1.0  # claim 1: and at the moderate quality
RECOVERED = 0.25  # claim 2: fine-tuning mitigates when it removes at least this share of a model's drop
APPROACH = 2.0  # claim 3: TTAC approaches fine-tuning when its drop is at most this many points above

DERIVED = ("drop", "meandrop", "meanrel")


def derived(op: str, pairs) -> float:
    """A number derived from pairs (a, b) of metric values, as the findings page prints it and `jpegstudy audit`
    recomputes it (one function for both): "drop" a - b of one pair, "meandrop" the mean of a - b, "meanrel" the mean
    of 100 (a - b) / a (a drop as a share of the clean value a; NaN where a is 0)."""
    pairs = list(pairs)
    if op not in DERIVED or not pairs or (op == "drop" and len(pairs) != 1):
        raise ValueError(f"{op}: a derived number is one of {', '.join(DERIVED)} of at least one pair (a drop: one)")
    if op == "meanrel":
        terms = [100 * (a - b) / a if a else float("nan") for a, b in pairs]
    else:
        terms = [a - b for a, b in pairs]
    return sum(terms) / len(terms)


@dataclass(frozen=True)
class Unit:
    """A task as the claims see it: one task's rows and the field read (detection gives two: box and mask), its
    name in a sentence and the name of the metric."""
    task: str
    field: str
    name: str
    metric: str
    binary: bool = False  # forensics: a real/fake decision, outside the order of complexity
    optional: bool = False  # mask mAP: only Mask R-CNN's rows have it

    @property
    def title(self) -> str:
        return self.name[0].upper() + self.name[1:]


# The paper's order of complexity, which claims 1 and 3 compare tasks along.
UNITS = (Unit("classification", "top1", "classification", "top-1 accuracy"),
         Unit("detection", "map", "object detection", "box mAP"),
         Unit("detection", "mask_ap", "instance segmentation", "mask mAP", optional=True),
         Unit("segmentation", "miou", "semantic segmentation", "mIoU"),
         Unit("forensics", "accuracy", "GAN-image forensics", "real/fake accuracy", binary=True))


@dataclass(frozen=True)
class Drop:
    """Row a's field minus row b's (a drop: a is the clean row), printed as \\jsdrop."""
    a: dict
    b: dict
    field: str

    @property
    def value(self) -> float:
        return derived("drop", [(self.a[self.field], self.b[self.field])])

    @property
    def shown(self) -> float:
        return float(fmt(self.value))

    @property
    def tex(self) -> str:
        return f"\\jsdrop{{{self.a['id']}/{self.field}}}{{{self.b['id']}/{self.field}}}{{{fmt(self.value)}}}"


@dataclass(frozen=True)
class Mean:
    """The mean of drops ("meandrop") or of drops as a % of clean ("meanrel"), printed as \\jsmeandrop/\\jsmeanrel."""
    op: str
    drops: tuple

    @property
    def value(self) -> float:
        return derived(self.op, [(d.a[d.field], d.b[d.field]) for d in self.drops])

    @property
    def shown(self) -> float:
        return float(fmt(self.value))

    @property
    def tex(self) -> str:
        pairs = ",".join(f"{d.a['id']}/{d.field}-{d.b['id']}/{d.field}" for d in self.drops)
        return f"\\js{self.op}{{{pairs}}}{{{fmt(self.value)}}}"


def mean(op: str, drops) -> Mean | None:
    """None where no drop is given; a share of clean leaves out the models whose clean value is 0 (a share of
    nothing is undefined), and is None when no model is left."""
    drops = tuple(d for d in drops if d is not None and (op != "meanrel" or d.a[d.field] != 0))
    return Mean(op, drops) if drops else None


def tex(number) -> str:
    return "--" if number is None else number.tex


@dataclass
class ModelDrops:
    name: str
    clean: dict  # the model's clean row without mitigation: every drop is measured from it (as Figure 4)
    drops: dict  # (mitigation, quality) -> Drop


@dataclass
class UnitResult:
    unit: Unit
    dataset: str
    qualities: list  # the lowest quality evaluated, then the moderate one (unless they are one)
    models: list = field(default_factory=list)

    @property
    def low(self) -> int:
        return self.qualities[0]

    @property
    def moderate(self) -> int | None:
        return self.qualities[1] if len(self.qualities) > 1 else None

    def drops(self, mitigation: str, quality: int) -> list:
        return [m.drops.get((mitigation, quality)) for m in self.models]


def moderate_quality(qualities: list[int]) -> int:
    """Q=50 where evaluated (the paper's moderate compression), else the middle quality."""
    return 50 if 50 in qualities else qualities[len(qualities) // 2]


def _has(row: dict, name: str) -> bool:
    return pd.notna(row.get(name))


def unit_result(df: pd.DataFrame, unit: Unit) -> UnitResult | None:
    """A unit's drops per model; None for an optional field no model has (detectors without masks)."""
    qualities = qualities_of(df)
    if not qualities:
        raise ValueError(f"{df['source'].iloc[0]}: no compressed rows (every quality null): nothing drops")
    shown = list(dict.fromkeys([qualities[0], moderate_quality(qualities)]))
    result = UnitResult(unit, df["dataset"].iloc[0], shown)
    for name, rows in df.groupby("model", sort=False):
        found = {m: by_quality(r) for m, r in rows.groupby("mitigation", sort=False) if m in MITIGATIONS}
        if "none" not in found:
            raise ValueError(f"{rows['source'].iloc[0]}: no 'none' rows of {name} among the inputs (its clean row "
                             "without mitigation is what every drop is measured from)")
        clean = found["none"][None]
        if not _has(clean, unit.field):
            if unit.optional:
                continue
            raise ValueError(f"{clean['source']}: {name}'s clean row has no {unit.field!r}")
        drops = {(m, q): Drop(clean, by_q[q], unit.field) for m, by_q in found.items() for q in shown
                 if q in by_q and _has(by_q[q], unit.field)}
        result.models.append(ModelDrops(name, clean, drops))
    return result if result.models else None


def unit_results(metric_files) -> list[UnitResult]:
    if not metric_files:
        raise ValueError("no metric files: the findings page needs the metric files of the study")
    frames = task_frames(metric_files)
    out = []
    for unit in UNITS:
        if unit.task in frames:
            found = unit_result(frames[unit.task], unit)
            out += [found] if found else []
    return out


def verdict_of(holds: list[bool]) -> str:
    """A verdict from per-model checks: all hold, some, none; untested without any."""
    if not holds:
        return UNTESTED
    return SUPPORTED if all(holds) else CONTRADICTED if not any(holds) else PARTLY


def counted(checks: list[dict]) -> dict:
    """A task's per-model checks, how many hold, those that fail (the page shows their numbers) and the verdict."""
    holds = [c["holds"] for c in checks]
    return {"checks": checks, "n_holds": sum(holds), "fails": [c for c in checks if not c["holds"]],
            "verdict": verdict_of(holds)}


def order_steps(items: list[dict], key: str) -> list[dict]:
    """Consecutive tasks of the order of complexity (forensics left out) and whether `key` does not decrease."""
    ordered = [item for item in items if not item["unit"].binary and item[key] is not None]
    return [{"a": a, "b": b, "holds": a[key].shown <= b[key].shown} for a, b in zip(ordered, ordered[1:])]


def claim1(units: list[UnitResult]) -> dict:
    """Compression costs every task a lot (mean drop without mitigation at least HEAVY_SHARE % of clean at the
    lowest quality, MODERATE_SHARE % at the moderate one), the more complex the task the more (the share at the
    lowest quality does not decrease along UNITS)."""
    items = []
    for u in units:
        low = mean("meanrel", u.drops("none", u.low))
        moderate = mean("meanrel", u.drops("none", u.moderate)) if u.moderate else None
        costly = low is not None and low.shown >= HEAVY_SHARE and (u.moderate is None or (
            moderate is not None and moderate.shown >= MODERATE_SHARE))
        items.append({"unit": u.unit, "result": u, "low": low, "moderate": moderate, "costly": costly})
    steps = order_steps(items, "low")
    n_costly = sum(item["costly"] for item in items)
    if n_costly == 0:
        verdict = CONTRADICTED
    elif n_costly == len(items) and steps and all(s["holds"] for s in steps):
        verdict = SUPPORTED
    else:
        verdict = PARTLY
    return {"verdict": verdict, "tasks": items, "steps": steps, "n_costly": n_costly}


def claim2(units: list[UnitResult]) -> dict:
    """Fine-tuning mitigates: for each model with fine-tuned rows, its drop at the lowest quality is at most
    (1 - RECOVERED) of the drop without mitigation."""
    items = []
    for u in units:
        checks = []
        for m in u.models:
            none, tuned = m.drops.get(("none", u.low)), m.drops.get(("finetune", u.low))
            if none is not None and tuned is not None:
                checks.append({"model": m.name, "none": none, "finetune": tuned,
                               "holds": tuned.shown <= (1 - RECOVERED) * none.shown})
        items.append({**counted(checks), "unit": u.unit, "result": u,
                      "none": mean("meandrop", [c["none"] for c in checks]),
                      "finetune": mean("meandrop", [c["finetune"] for c in checks])})
    return {"verdict": combined([item["verdict"] for item in items]), "tasks": items}


def combined(verdicts: list[str]) -> str:
    """The claim's verdict from its tasks': every tested task's the same, else partly supported."""
    tested = [v for v in verdicts if v != UNTESTED]
    if not tested:
        return UNTESTED
    return tested[0] if len(set(tested)) == 1 else PARTLY


def claim3(units: list[UnitResult]) -> dict:
    """TTAC approaches or beats fine-tuning: for each model with both, TTAC's drop at the lowest quality is at most
    APPROACH points above fine-tuning's; more so for complex tasks: TTAC's mean advantage (fine-tuning's drop minus
    TTAC's) does not decrease along UNITS."""
    items = []
    for u in units:
        checks = []
        for m in u.models:
            tuned, ttac = m.drops.get(("finetune", u.low)), m.drops.get(("ttac", u.low))
            if tuned is not None and ttac is not None:
                gap = Drop(tuned.b, ttac.b, u.unit.field)  # TTAC's drop minus fine-tuning's
                checks.append({"model": m.name, "finetune": tuned, "ttac": ttac, "gap": gap,
                               "holds": gap.shown <= APPROACH})
        advantage = mean("meandrop", [Drop(c["ttac"].b, c["finetune"].b, u.unit.field) for c in checks])
        items.append({**counted(checks), "unit": u.unit, "result": u, "advantage": advantage})
    steps = order_steps(items, "advantage")
    holds = [c["holds"] for item in items for c in item["checks"]]
    if not holds:
        verdict = UNTESTED
    elif not any(holds):
        verdict = CONTRADICTED
    elif all(holds) and steps and all(s["holds"] for s in steps):
        verdict = SUPPORTED
    else:
        verdict = PARTLY
    return {"verdict": verdict, "tasks": items, "steps": steps}


def table_of(u: UnitResult) -> dict:
    """A unit's compact table: per model its clean value and the drops at each quality shown, then their means."""
    columns = [(m, q) for q in u.qualities for m in MITIGATIONS]
    return {"models": [{"name": m.name, "clean": cell(m.clean, u.unit.field),
                        "cells": [tex(m.drops.get(c)) for c in columns]} for m in u.models],
            "means": [tex(mean("meandrop", u.drops(*c))) for c in columns]}


def findings_page(metric_files) -> str:
    """The findings page (LaTeX) of a study's metric files, of any of its tasks (at least one)."""
    metric_files = [str(p) for p in metric_files]
    units = unit_results(metric_files)
    if not units:
        raise ValueError(f"{', '.join(metric_files)}: no rows the claims can read")
    return environment().get_template("findings.tex.j2").render(
        sources=metric_files, units=[{"result": u, "table": table_of(u)} for u in units],
        claim1=claim1(units), claim2=claim2(units), claim3=claim3(units), tex=tex, heavy=f"{HEAVY_SHARE:g}",
        moderate=f"{MODERATE_SHARE:g}", recovered=f"{100 * RECOVERED:g}",
        kept=f"{100 * (1 - RECOVERED):g}", approach=fmt(APPROACH),
        n_ordered=sum(not u.unit.binary for u in units))


def write_findings(metric_files, out) -> None:
    """The findings page to `out`, atomically."""
    atomic.write_text(out, findings_page(metric_files))
