"""Confidence intervals in tables and figures, the reference and throughput appendices, and the study PDF with
every number linked to its provenance record."""

import json
import subprocess

import pytest
from PIL import Image

from jpegstudy import audit, confidence, provenance
from jpegstudy.report import figures, study, tables

from .conftest import needs
from .test_report_and_audit import compile_tables
from .test_report_mitigations import PROV, study as mitigation_study, with_id  # noqa: F401 (a fixture)

# each image's top-1 result: 20 images, the same order at every quality
PER_IMAGE = {None: "11111111111111111110", 10: "11001100110011001100", 50: "11111111111111001100"}


def row_with_intervals(model, quality, per_image, config=None):
    bits = confidence.decode(per_image)
    low, high = confidence.accuracy_interval(bits, resamples=500)
    return with_id({"task": "classification", "model": model, "mitigation": "none", "dataset": "imagenet",
                    "quality": quality, "top1": 100 * bits.mean(), "top1_low": low, "top1_high": high,
                    "top5": 100.0, "top5_low": 100.0, "top5_high": 100.0, "n_images": len(bits),
                    "per_image": {"top1": per_image, "top5": "1" * len(bits)},
                    "provenance": {**PROV, "config": config or {"confidence": {"level": 0.95}}}})


@pytest.fixture
def with_intervals(tmp_path):
    config = {"confidence": {"level": 0.95}, "classification.models.r50": {"arch": "resnet50",
                                                                            "weights": "IMAGENET1K_V2"}}
    rows = [row_with_intervals("r50", q, bits, config) for q, bits in PER_IMAGE.items()]
    path = tmp_path / "metrics" / "classification" / "r50" / "none.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"task": "classification", "model": "r50", "mitigation": "none", "rows": rows}))
    return path, rows


def test_table_prints_each_interval_traceably(with_intervals, tmp_path, capsys):
    path, rows = with_intervals
    tex = tables.classification_table([path])
    for row in rows:  # the interval line: both ends are records of the row
        low, high = row["top1_low"], row["top1_high"]
        assert f"\\jsci{{\\jsrec{{{row['id']}/top1_low}}{{{low:.2f}}}}}{{\\jsrec{{{row['id']}/top1_high}}" \
               f"{{{high:.2f}}}}}" in tex
    assert "95\\,\\% bootstrap confidence intervals" in tex
    assert "\\jsci{" not in tables.classification_table([path], intervals=False)
    (tmp_path / "t.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "t.tex"), str(tmp_path / "metrics"))
    assert "9/9 numbers traced" in capsys.readouterr().out  # 3 values + 3 x 2 interval ends
    compile_tables(tmp_path, "t.tex")


def test_drop_bands_are_paired_bootstrap_intervals(with_intervals):
    path, rows = with_intervals
    d = figures.drops(figures.classification_frame([path]), "top1",
                      confidence={"level": 0.9, "resamples": 500, "seed": 4})
    at10 = d[d["quality"] == 10].iloc[0]
    expected = confidence.drop_interval(confidence.decode(PER_IMAGE[None]), confidence.decode(PER_IMAGE[10]),
                                        level=0.9, resamples=500, seed=4)
    assert at10["drop"] == pytest.approx(95.0 - 50.0) and (at10["low"], at10["high"]) == expected
    assert expected[0] < 45.0 < expected[1]


def test_drop_bands_need_per_image_results(mitigation_study):
    df = figures.classification_frame(mitigation_study["all"])
    with pytest.raises(ValueError, match="keeps no per-image top1 results"):
        figures.drops(df, "top1", confidence={"resamples": 100})


def test_reference_table_beside_torchvision_documented_values(with_intervals, tmp_path, capsys):
    path, rows = with_intervals
    tex = tables.reference_table([path])
    # torchvision documents 80.858 / 95.434 for ResNet50_Weights.IMAGENET1K_V2
    assert r"\jsdoc{torchvision:ResNet50_Weights.IMAGENET1K_V2:acc@1}{80.86}" in tex
    assert r"\jsdoc{torchvision:ResNet50_Weights.IMAGENET1K_V2:acc@5}{95.43}" in tex
    assert f"\\jsrec{{{rows[0]['id']}/top1}}{{95.00}}" in tex
    (tmp_path / "ref.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "ref.tex"), str(tmp_path / "metrics"))
    assert "6/6 numbers traced" in capsys.readouterr().out
    (tmp_path / "ref.tex").write_text(tex.replace("acc@1}{80.86}", "acc@1}{81.86}"))
    assert not audit.audit(str(tmp_path / "ref.tex"), str(tmp_path / "metrics"))
    assert "MISMATCH 81.86 printed, 80.86 documented by torchvision:ResNet50_Weights.IMAGENET1K_V2" in \
        capsys.readouterr().out
    compile_tables(tmp_path, "ref.tex")


def test_throughput_table_and_figure(mitigation_study, tmp_path, capsys):
    tex = tables.throughput_table(mitigation_study["speed"])
    assert "Model & Corrector & inference, 1 & inference, 64 & train, 64" in tex
    big_alone = json.loads(mitigation_study["speed"][0].read_text())["rows"][1]  # inference, batch 64: 900
    assert f"\\jsrec{{{big_alone['id']}/images_per_s}}{{900.00}}" in tex
    (tmp_path / "speed.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "speed.tex"), str(mitigation_study["root"]))
    assert "7/7 numbers traced" in capsys.readouterr().out
    outputs = [tmp_path / "speed.png", tmp_path / "speed.pdf"]
    figures.throughput_figure(mitigation_study["speed"], outputs)
    with Image.open(outputs[0]) as im:
        plotted = set(im.info[figures.RECORDS_KEY].split())
    # the largest batch of each (model, mode): every row but the batch-1 ones
    largest = {f"{r['id']}/images_per_s" for p in mitigation_study["speed"] for r in json.loads(p.read_text())["rows"]
               if r["batch_size"] == 64}
    assert plotted == largest


def test_model_figure_plots_one_model_with_bands(with_intervals, tmp_path):
    path, rows = with_intervals
    out = tmp_path / "m.png"
    figures.model_figure([path], [out], {"confidence": {"level": 0.95}})
    with Image.open(out) as im:
        plotted = set(im.info[figures.RECORDS_KEY].split())
    assert plotted == {f"{r['id']}/{f}" for r in rows for f in ("top1", "top1_low", "top1_high")}


def test_a_study_pdf_must_know_every_row_it_shows(mitigation_study, tmp_path):
    tables_tex = tmp_path / "cls.tex"
    tables.write_table("classification", mitigation_study["all"], tables_tex)
    with pytest.raises(ValueError, match="are shown but not among the metric files given"):
        study.render({"table:classification": str(tables_tex)}, [], "t")
    (tmp_path / "hand.tex").write_text("\\begin{tabular}{ll}\nx & 12.5\\\\\n\\end{tabular}\n")
    with pytest.raises(ValueError, match="hand.tex: numbers without a record \\(12.5\\)"):
        study.render({"table:hand": str(tmp_path / "hand.tex")}, [], "t")


@needs("latexmk")
@needs("pdfinfo")
def test_study_pdf_links_every_number_to_its_record(mitigation_study, tmp_path, capsys):
    files, root = mitigation_study["all"], mitigation_study["root"]
    pieces = {"table:classification": tmp_path / "cls.tex", "table:throughput": tmp_path / "speed.tex",
              "figure:mitigation": tmp_path / "fig4.pdf"}
    tables.write_table("classification", files, pieces["table:classification"])
    tables.write_table("throughput", mitigation_study["speed"], pieces["table:throughput"])
    figures.mitigation_figure(files, [pieces["figure:mitigation"]])
    pieces = {k: str(v) for k, v in pieces.items()}
    metric_files = [*files, *mitigation_study["speed"]]
    study.build(pieces, metric_files, tmp_path / "study.pdf")
    study.build(pieces, metric_files, tmp_path / "again.pdf")
    assert (tmp_path / "study.pdf").read_bytes() == (tmp_path / "again.pdf").read_bytes()  # reproducible
    # every row shown has an anchor (a named destination) that the numbers link to
    dests = subprocess.run(["pdfinfo", "-dests", str(tmp_path / "study.pdf")], capture_output=True, text=True).stdout
    shown = {ref.split("/")[0] for ref in audit.figure_refs(tmp_path / "study.pdf") for ref in ["/".join(ref[:2])]}
    assert len(shown) == len(mitigation_study["rows"])  # all metric and throughput rows
    assert all(f"rec:{row_id}" in dests for row_id in shown)
    text = subprocess.run(["pdftotext", str(tmp_path / "study.pdf"), "-"], capture_output=True, text=True).stdout
    assert all(row_id in text for row_id in shown)  # listed in the provenance appendix
    assert "ab" * 32 in text  # the weights' sha256
    assert audit.audit(str(tmp_path / "study.pdf"), str(root))
    capsys.readouterr()
    some = sorted(shown)[0]
    assert audit.audit(some, str(root))
    assert f'"id": "{some}"' in capsys.readouterr().out


def test_a_crowded_model_figure_puts_its_legend_below_the_axes(with_intervals, tmp_path, monkeypatch):
    """Past 6 legend entries (a line per mitigation and the clean line) the legend covered the curves: it goes
    below the axes, three columns, the figure taller by its rows; a sparse figure keeps it in the corner."""
    path, rows = with_intervals
    files = [path]
    for mitigation in ("finetune", "offtheshelf", "ttac", "transfer-resnet18", "multihead-g1"):
        moved = []
        for row in rows:
            row = {k: v for k, v in row.items() if k != "id"} | {"mitigation": mitigation}
            moved.append({"id": provenance.row_id(row), **row})
        files.append(path.with_name(f"{mitigation}.json"))
        files[-1].write_text(json.dumps({"task": "classification", "model": "r50", "mitigation": mitigation,
                                         "rows": moved}))
    drawn = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k)))
    height = figures._params(None)["height"]
    figures.model_figure(files, [tmp_path / "crowded.png"], {"confidence": {"level": 0.95}})
    figures.model_figure(files[:2], [tmp_path / "sparse.png"], {"confidence": {"level": 0.95}})
    crowded, sparse = drawn
    assert crowded.axes[0].get_legend() is None and len(crowded.legends) == 1
    assert len(crowded.legends[0].get_texts()) == 7  # six mitigations and the clean line: 3 rows of 3
    assert crowded.get_size_inches()[1] == pytest.approx(height + 3 * 0.17)
    assert sparse.axes[0].get_legend() is not None and not sparse.legends
    assert sparse.get_size_inches()[1] == pytest.approx(height)
