import json
import re
import subprocess

import pytest
from PIL import Image

from jpegstudy import audit, provenance
from jpegstudy.report import figures, tables
from jpegstudy.report.metrics import fmt

from .conftest import needs


def metric_file(path, model, values):
    """A metric file as evaluate writes it; values: {quality or None: (top1, top5)}."""
    rows = []
    for q, (top1, top5) in values.items():
        rows.append({"task": "classification", "model": model,
                     "mitigation": "none", "dataset": "embedded", "quality": q, "top1": top1, "top5": top5,
                     "n_images": 500, "provenance": {
                         "inputs": {"weights": {"path": "w.pt", "sha256": "ab" * 32},
                                    "manifest": {"path": "m.json", "sha256": "cd" * 32}},
                         "config": {}, "git": {"commit": "0123456789abcdef", "dirty": False}, "versions": {},
                         "rule": "evaluate_classification", "wall_time_s": 1.0, "device": "cpu", "host": "h"}})
        rows[-1] = {"id": provenance.row_id(rows[-1]), **rows[-1]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "classification", "model": model, "mitigation": "none", "rows": rows}))
    return path


@pytest.fixture
def metrics(tmp_path):
    a = metric_file(tmp_path / "m" / "resnet_50" / "none.json", "resnet_50",
                    {None: (76.13, 92.862), 10: (40.5, 60.0), 50: (70.125, 90.0)})
    b = metric_file(tmp_path / "m" / "vgg19" / "none.json", "vgg19", {None: (72.4, 90.9), 10: (30.0, 50.0),
                                                                       50: (65.0, 85.0)})
    return [a, b]


def test_table_prints_every_row_value_with_its_reference(metrics):
    rows = {r["id"]: r for m in metrics for r in json.loads(m.read_text())["rows"]}
    for field in ("top1", "top5"):  # one table each
        tex = tables.classification_table(metrics, field)
        assert r"\textbf{resnet\_50}" in tex  # escaped for LaTeX
        assert "Mitigation & Clean & Q=10 & Q=50" in tex
        printed = re.findall(r"\\jsrec\{(\w+)/(\w+)\}\{([^}]*)\}", tex)
        assert len(printed) == 2 * 3 and {f for _, f, _ in printed} == {field}
        for row_id, f, text in printed:
            assert text == fmt(rows[row_id][f])
    assert "{92.86}" in tex and "{70.12}" in tables.classification_table(metrics)  # round-half-even, 2 decimals


def test_audit_traces_every_number(metrics, tmp_path, capsys):
    out = tmp_path / "t.tex"
    tables.write_table("classification", metrics, out)
    assert audit.audit(str(out), str(tmp_path / "m"))
    text = capsys.readouterr().out
    assert "6/6 numbers traced to metric rows (0 problems)" in text
    assert "76.13 top1  classification resnet_50 none clean n=500" in text
    assert "rule=evaluate_classification commit=0123456789 weights=sha256:abababababab" in text


def test_audit_catches_edited_and_untraced_numbers(metrics, tmp_path, capsys):
    out = tmp_path / "t.tex"
    tables.write_table("classification", metrics, out)
    tex = out.read_text()
    out.write_text(tex.replace("{40.50}", "{45.50}", 1))
    assert not audit.audit(str(out), str(tmp_path / "m"))
    assert "MISMATCH 45.50 printed, 40.50" in capsys.readouterr().out


def test_audit_catches_untraced_numbers_in_the_classification_table(metrics, tmp_path, capsys):
    out = tmp_path / "t.tex"
    tables.write_table("classification", metrics, out, field="top5")
    # a number typed into the table by hand has no record
    out.write_text(re.sub(r"\\jsrec\{\w+/top5\}\{90.00\}", "90.00", out.read_text(), count=1))
    assert not audit.audit(str(out), str(tmp_path / "m"))
    assert "UNTRACED 90.00" in capsys.readouterr().out


def test_audit_catches_an_edited_metric_file(metrics, tmp_path, capsys):
    out = tmp_path / "t.tex"
    tables.write_table("classification", metrics, out)
    # someone edits a value in the metric file and the table to match: the row no longer hashes to its id
    data = json.loads(metrics[0].read_text())
    data["rows"][1]["top1"] = 45.5
    metrics[0].write_text(json.dumps(data))
    out.write_text(out.read_text().replace("{40.50}", "{45.50}", 1))
    assert not audit.audit(str(out), str(tmp_path / "m"))
    assert f"ALTERED  {data['rows'][1]['id']}/top1" in capsys.readouterr().out


def test_a_broken_metric_file_is_named(metrics, tmp_path):
    metrics[1].write_text("{not json")
    with pytest.raises(ValueError, match=r"vgg19/none.json: not a metric file \(Expecting property name"):
        tables.classification_table(metrics)


def test_figure_carries_row_refs_in_pdf_and_png(metrics, tmp_path, capsys):
    pdf, png = tmp_path / "f.pdf", tmp_path / "f.png"
    figures.drop_figure(metrics, [pdf, png], {"dpi": 50})
    with Image.open(png) as im:
        refs = im.info[figures.RECORDS_KEY].split()
    assert len(refs) == 6 and all(r.endswith("/top1") for r in refs)  # 2 models x (clean + 2 qualities)
    assert audit.audit(str(pdf), str(tmp_path / "m")) and audit.audit(str(png), str(tmp_path / "m"))
    assert "6/6 numbers traced" in capsys.readouterr().out
    figures.drop_figure(metrics, [tmp_path / "g.pdf"], {"dpi": 50})
    assert (tmp_path / "g.pdf").read_bytes() == pdf.read_bytes()  # no dates: same rows, same bytes


def test_drop_is_reference_minus_quality(metrics):
    from jpegstudy.report.metrics import frame

    d = figures.drops(frame(metrics), "top1").set_index(["model", "quality"])["drop"]
    assert d[("resnet_50", 10)] == pytest.approx(76.13 - 40.5)
    assert d[("vgg19", 50)] == pytest.approx(72.4 - 65.0)


def compile_tables(folder, *tables_tex) -> str:
    """Compile a plain article that inputs each table file (in `folder`) with pdflatex; its log. Asserts it
    compiles and that no table is wider than the text."""
    body = "".join(f"\\input{{{name}}}\\clearpage\n" for name in tables_tex)
    (folder / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs,graphicx,longtable}\n"
                                    f"\\begin{{document}}\n{body}\\end{{document}}\n")
    for _ in range(2):  # longtable settles its column widths on the second pass
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], check=False,
                           cwd=folder, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:]
    assert "Overfull \\hbox" not in r.stdout, r.stdout[-3000:]  # the tables fit the text width
    assert (folder / "doc.pdf").read_bytes().startswith(b"%PDF")
    return r.stdout


@needs("pdflatex")
def test_table_compiles_with_pdflatex(tmp_path):
    nine = {None: (100.0, 100.0), **{q: (100.0, 100.0) for q in range(10, 100, 10)}}  # the widest numbers
    metrics = [metric_file(tmp_path / "m" / f"{m}.json", m, nine) for m in ("resnext101_32x8d", "mobilenet_v2")]
    tables.write_table("classification", metrics, tmp_path / "table.tex")
    compile_tables(tmp_path, "table.tex")
