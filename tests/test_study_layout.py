"""The study PDF fits its page: no line, table or figure of reports/study.pdf is wider than the text, with the
smoke study's three qualities and with the default study's nine (every mitigation, intervals under each number)."""

import json
import re
import subprocess

from jpegstudy.report import study, tables

from .conftest import needs
from .test_report_mitigations import PROV, SPEED, TOP1, throughput_file, with_id

NINE = [10, 20, 30, 40, 50, 60, 70, 80, 90]
TOLERANCE_PT = 2.0  # what the eye cannot see; TeX reports boxes a hair too wide


def wide_study(root, qualities=NINE):
    """Metric files of a two-model study with every mitigation TOP1 lists (the AC baselines at Q=10 and 20 only)
    at every quality, each number with its interval, widest cells included (100.00 [100.00, 100.00] at top-5)."""
    files = []
    for model, mitigations in TOP1.items():
        for mitigation, (clean, *_) in mitigations.items():
            baseline = mitigation.startswith(("arcnn-", "idcn-"))
            rows = []
            for q in [None, *qualities]:
                if baseline and q not in (None, 10, 20):
                    continue
                top1 = clean if q is None else clean * (0.4 + 0.6 * q / 100) + 0.125
                rows.append(with_id({
                    "task": "classification", "model": model, "mitigation": mitigation, "dataset": "imagenet",
                    "quality": q, "top1": top1, "top1_low": top1 - 3.375, "top1_high": top1 + 3.125,
                    "top5": 100.0, "top5_low": 100.0, "top5_high": 100.0, "n_images": 1000,
                    "provenance": {**PROV, "config": {"confidence": {"level": 0.95}}}}))
            path = root / "classification" / model / f"{mitigation}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"task": "classification", "model": model, "mitigation": mitigation,
                                        "rows": rows}))
            files.append(path)
    return files


def test_overfull_boxes_are_read_from_the_log_with_their_piece():
    log = "\n".join([
        "(./study.tex", "Overfull \\hbox (0.5pt too wide) in paragraph at lines 3--4",
        "jpegstudy piece: table-classification.tex", "(./table-classification.tex",
        "Overfull \\hbox (116.60107pt too wide) in alignment at lines 30--74", " []|", ")",
        "jpegstudy piece: ", "Overfull \\hbox (3.0pt too wide) detected at line 80", "Overfull \\vbox (9.0pt too high)"])
    boxes = study.overfull_boxes(log, {"table-classification.tex": "table:classification (t.tex)"}, "s.tex")
    assert [(b.width_pt, b.where, b.piece) for b in boxes] == [
        (0.5, "in paragraph at lines 3--4", "s.tex"),
        (116.60107, "in alignment at lines 30--74", "table:classification (t.tex)"),
        (3.0, "detected at line 80", "s.tex")]
    assert str(boxes[1]) == ("overfull \\hbox, 116.601pt too wide, in alignment at lines 30--74 of "
                             "table:classification (t.tex)")


def rotated_pages(pdf):
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True).stdout
    return [int(n) for n, rot in re.findall(r"Page\s+(\d+) rot:\s+(\d+)", info) if rot != "0"]


@needs("latexmk")
@needs("pdfinfo")
def test_nine_qualities_and_every_mitigation_fit_the_page(tmp_path, capsys):
    """The default study's nine qualities with every mitigation and its intervals: the classification tables are
    wider than a portrait page, and go on landscape ones; no box of the PDF is wider than its line. The same table
    without the landscape hook (as a plain document would set it) runs off the page, and the build says where."""
    files = wide_study(tmp_path / "metrics")
    speed = [throughput_file(tmp_path / "metrics", model, s) for model, s in SPEED.items()]
    pieces = {"table:classification": ("classification", files, {}),
              "table:classification_top5": ("classification", files, {"field": "top5"}),
              "table:transfer": ("transfer", files, {}), "table:reference": ("reference", files, {}),
              "table:throughput": ("throughput", speed, {}),
              # the AC comparison's own table (two qualities) always fits: its place holds a table set apart below
              "table:ac_comparison": ("classification", files, {})}
    for key, (kind, inputs, options) in pieces.items():
        tables.write_table(kind, inputs, tmp_path / f"{key[6:]}.tex", **options)
    portrait = tmp_path / "ac_comparison.tex"  # the top-1 table, blind to the study's landscape hook
    tex = portrait.read_text()
    assert "\\csname jstablebegin\\endcsname" in tex
    portrait.write_text(tex.replace("\\csname jstablebegin\\endcsname", "").replace("{tab:classification}",
                                                                                      "{tab:portrait}"))
    assert "Q=80 & Q=90\\\\" in tex and tex.count("\\jsci{") > 100
    boxes = study.build({key: str(tmp_path / f"{key[6:]}.tex") for key in pieces}, [*files, *speed],
                        tmp_path / "study.pdf", keep_tex=str(tmp_path / "study.tex"))
    wide = [b for b in boxes if b.width_pt > TOLERANCE_PT]
    assert wide and {b.piece for b in wide} == {f"table:ac_comparison ({portrait})"}, boxes
    assert all(b.where.startswith("in alignment at lines") for b in wide)
    assert min(b.width_pt for b in wide) > 50  # Q=80 and Q=90 off the portrait page, as before landscape pages
    assert f"{tmp_path / 'study.pdf'}: overfull \\hbox, " in capsys.readouterr().err  # and the user is told
    # both classification tables (top-1 and top-5) on landscape pages, the rest upright
    rotated = rotated_pages(tmp_path / "study.pdf")
    assert 2 <= len(rotated) <= 4 and rotated == list(range(rotated[0], rotated[0] + len(rotated))), rotated


def test_smoke_study_pdf_has_no_overfull_box(smoke_runs):
    """The smoke run's study PDF (three qualities, every piece: tables, figures, appendices, provenance): its build
    reads LaTeX's log, and no box is wider than its line."""
    log = (smoke_runs[0] / "results" / "logs" / "report" / "study-pdf.log").read_text()  # what study.build printed
    summary = re.search(r"study\.pdf: (no overfull \\hbox|\d+ overfull \\hbox\(es\), the widest ([\d.]+)pt)", log)
    assert summary, log[-2000:]
    widths = [float(w) for w in re.findall(r"overfull \\hbox, ([\d.]+)pt too wide", log)]
    assert all(w <= TOLERANCE_PT for w in widths), [line for line in log.splitlines() if "overfull" in line]
