"""The HTML page of each LaTeX table (what snakemake's report shows): the same numbers with the same refs, the
table's caption and header, and `jpegstudy audit` on the page."""

import re
from html import unescape

import pytest

from jpegstudy import audit, cli
from jpegstudy.report import tables
from jpegstudy.report.table_html import table_html

from .test_report_mitigations import BIG, SMALL, TOP1, study  # noqa: F401 (a fixture)
from .test_study import with_intervals  # noqa: F401 (a fixture)


def written(study, tmp_path):
    """Every kind of table of the two-model study, .tex and .html side by side."""
    ac = [study["files"][(SMALL, m)] for m in TOP1[SMALL] if m not in ("finetune", f"transfer-{BIG}")]
    kinds = {"cls": ("classification", study["all"], {}), "cls5": ("classification", study["all"], {"field": "top5"}),
             "ac": ("ac-comparison", ac, {"qualities": [10, 20]}), "transfer": ("transfer", study["all"], {}),
             "speed": ("throughput", study["speed"], {})}
    for name, (kind, files, options) in kinds.items():
        tables.write_table(kind, files, tmp_path / f"{name}.tex", html=tmp_path / f"{name}.html", **options)
    return list(kinds)


def cells(page, tag):
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", page)]


def test_each_page_shows_the_numbers_of_its_table_with_their_refs(study, tmp_path, capsys):
    for name in written(study, tmp_path):
        tex, page = (tmp_path / f"{name}.tex").read_text(), (tmp_path / f"{name}.html").read_text()
        tex_refs, _ = audit.table_refs(tex)
        html_refs, untraced = audit.html_refs(page)
        assert html_refs == tex_refs and not untraced, name  # the same numbers, in the same order
        assert audit.audit(str(tmp_path / f"{name}.html"), str(study["root"]))
        n = len(tex_refs)
        assert f"{n}/{n} numbers traced to metric rows (0 problems)" in capsys.readouterr().out
        assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=" not in page  # self-contained


def test_the_page_has_the_caption_header_and_rows(study, tmp_path):
    written(study, tmp_path)
    page = (tmp_path / "cls.html").read_text()
    assert cells(page, "th") == ["Mitigation", "Clean", "Q=10", "Q=20", "Q=50"]  # the repeated longtable head: once
    assert cells(page, "caption")[0].startswith("Classification on the dataset imagenet: Top-1 (%) of each model")
    body = cells(page.split("<tbody>")[1], "td")
    # a model heading spans the table; then its rows: label and four numbers
    assert re.search(r'<td colspan="5"><b>resnext101_32x8d</b></td>', page)
    assert body[1:6] == ["None", "80.00", "40.00", "60.00", "75.00"]
    assert body.count("--") == 0 and body.count("\u2013") == 4  # the AC baselines at Q=50, as LaTeX's en dash
    transfer = (tmp_path / "transfer.html").read_text()
    assert cells(transfer, "th") == ["Model", "Corrector", "Q=10", "Q=20", "Q=50"]
    assert cells(transfer.split("<tbody>")[1], "td")[:5] == ["resnext101_32x8d", "None (JPEG)", "40.00", "60.00",
                                                             "75.00"]
    assert '<tr class="rule"><td>mobilenet_v2</td>' in transfer  # a line between the models, as \midrule draws
    speed = (tmp_path / "speed.html").read_text()
    assert cells(speed, "th") == ["Model", "Corrector", "inference, 1", "inference, 64", "train, 64"]


def test_intervals_show_under_the_numbers(with_intervals, tmp_path, capsys):
    path, rows = with_intervals
    tables.write_table("classification", [path], tmp_path / "t.tex", html=tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    low, high = rows[1]["top1_low"], rows[1]["top1_high"]
    assert f'<span class="ci">[<span data-ref="{rows[1]["id"]}/top1_low" title="{rows[1]["id"]}/top1_low">' \
           f'{low:.2f}</span>, <span data-ref="{rows[1]["id"]}/top1_high"' in page
    assert audit.audit(str(tmp_path / "t.html"), str(tmp_path / "metrics"))
    assert "9/9 numbers traced" in capsys.readouterr().out


def test_reference_page_keeps_torchvision_refs(with_intervals, tmp_path, capsys):
    path, _ = with_intervals
    tables.write_table("reference", [path], tmp_path / "ref.tex", html=tmp_path / "ref.html")
    page = (tmp_path / "ref.html").read_text()
    assert '<th colspan="3">Measured here</th><th colspan="2">torchvision</th>' in page
    assert 'data-ref="torchvision:ResNet50_Weights.IMAGENET1K_V2:acc@1"' in page
    assert audit.audit(str(tmp_path / "ref.html"), str(tmp_path / "metrics"))
    assert "6/6 numbers traced" in capsys.readouterr().out


def test_a_number_typed_into_the_page_is_untraced(study, tmp_path, capsys):
    written(study, tmp_path)
    page = (tmp_path / "ac.html").read_text()
    edited = re.sub(r'<span data-ref="[^"]+" title="[^"]+">59.00</span>', "59.00", page, count=1)
    assert edited != page
    (tmp_path / "ac.html").write_text(edited)
    assert not audit.audit(str(tmp_path / "ac.html"), str(study["root"]))
    assert "UNTRACED 59.00" in capsys.readouterr().out


def test_unknown_latex_is_an_error_not_lost_text():
    tex = "\\begin{tabular}{lr}\n\\toprule\nA & B\\\\\n\\midrule\nx & \\textsc{y}\\\\\n\\bottomrule\n\\end{tabular}"
    with pytest.raises(ValueError, match=r"\\textsc: a macro the HTML tables do not know"):
        table_html(tex, "t")
    with pytest.raises(ValueError, match="t: no tabular or longtable"):
        table_html("no table here", "t")


def test_cli_writes_the_page_beside_the_table(study, tmp_path):
    files = [str(p) for p in study["all"]]
    cli.main(["table", "--kind", "transfer", *files, "--out", str(tmp_path / "t.tex"),
              "--html", str(tmp_path / "t.html")])
    assert (tmp_path / "t.html").read_text() == table_html((tmp_path / "t.tex").read_text(), "t")
