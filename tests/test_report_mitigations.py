"""Tables and figures of the mitigation study (the paper's Tables 1 and appendix, Figures 1, 4 and 7a), from
hand-made metric and throughput files whose printed values are worked out by hand below."""

import json
import re

import pytest
from PIL import Image

from jpegstudy import audit, cli, provenance
from jpegstudy.report import figures, tables, template
from jpegstudy.report.metrics import fmt, mitigation_key, mitigation_label

from .conftest import needs
from .test_report_and_audit import compile_tables

BIG, SMALL = "resnext101_32x8d", "mobilenet_v2"  # SMALL is the AC-comparison model
PROV = {"inputs": {"weights": {"path": "w.pt", "sha256": "ab" * 32}}, "config": {},
        "git": {"commit": "0123456789abcdef", "dirty": False}, "versions": {}, "rule": "evaluate_classification",
        "wall_time_s": 1.0, "device": "cpu", "host": "h"}

# top-1 at (clean, Q=10, Q=20, Q=50); top-5 is top-1 + 15. None: no row at that quality (the AC baselines).
TOP1 = {
    BIG: {"none": (80.0, 40.0, 60.0, 75.0), "finetune": (79.5, 62.125, 70.0, 77.0),
          "offtheshelf": (80.0, 45.0, 63.0, 75.5), "ttac": (80.0, 66.0, 72.0, 78.0),
          f"transfer-{SMALL}": (80.0, 55.0, 68.0, 76.0)},
    SMALL: {"none": (70.0, 30.0, 50.0, 65.0), "finetune": (69.0, 52.0, 60.0, 67.0),
            "offtheshelf": (70.0, 36.0, 55.0, 66.0), "ttac": (70.0, 58.0, 63.0, 68.0),
            f"transfer-{BIG}": (70.0, 50.0, 60.0, 67.5),
            "arcnn-offtheshelf": (70.0, 33.0, 52.0, None), "arcnn-ttac": (70.0, 48.0, 58.0, None),
            "idcn-offtheshelf": (70.0, 34.0, 53.0, None), "idcn-ttac": (70.0, 49.0, 59.0, None)},
}
QUALITIES = (None, 10, 20, 50)
# images/s: (corrector, mode, batch size) -> rate; the figure takes the model alone, inference, largest batch
SPEED = {BIG: {(None, "inference", 1): 100.0, (None, "inference", 64): 900.0, (None, "train", 64): 300.0,
               ("qgac", "inference", 64): 500.0},
         SMALL: {(None, "inference", 64): 2000.0, (None, "inference", 1): 400.0, ("qgac", "train", 64): 250.0}}


def with_id(row):
    return {"id": provenance.row_id(row), **row}


def metric_file(root, model, mitigation, values, qualities=QUALITIES):
    rows = [with_id({"task": "classification", "model": model, "mitigation": mitigation, "dataset": "imagenet",
                     "quality": q, "top1": v, "top5": v + 15, "n_images": 1000, "provenance": PROV})
            for q, v in zip(qualities, values) if v is not None]
    path = root / "classification" / model / f"{mitigation}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "classification", "model": model, "mitigation": mitigation, "rows": rows}))
    return path


def throughput_file(root, model, speeds):
    rows = [with_id({"task": "classification", "model": model, "corrector": c, "mode": mode, "batch_size": b,
                     "images_per_s": v, "image_size": 224, "provenance": {**PROV, "rule": "throughput"}})
            for (c, mode, b), v in speeds.items()]
    path = root / "throughput" / "classification" / f"{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "classification", "model": model, "kind": "throughput", "rows": rows}))
    return path


@pytest.fixture
def study(tmp_path):
    """results/metrics of a two-model study with every mitigation; files listed in a scrambled order."""
    root = tmp_path / "metrics"
    files = {(model, m): metric_file(root, model, m, values) for model, ms in TOP1.items() for m, values in ms.items()}
    speed = [throughput_file(root, model, s) for model, s in SPEED.items()]
    rows = {r["id"]: r for p in [*files.values(), *speed] for r in json.loads(p.read_text())["rows"]}
    return {"root": root, "files": files, "all": sorted(files.values(), key=lambda p: p.name, reverse=True),
            "speed": speed, "rows": rows}


def row_of(study, model, mitigation, quality):
    rows = json.loads(study["files"][(model, mitigation)].read_text())["rows"]
    return next(r for r in rows if r["quality"] == quality)


def ref(study, model, mitigation, quality, field="top1"):
    return f"{row_of(study, model, mitigation, quality)['id']}/{field}"


def jsrec(study, model, mitigation, quality, text, field="top1"):
    return f"\\jsrec{{{ref(study, model, mitigation, quality, field)}}}{{{text}}}"


def body_lines(tex):
    """The table's body rows: (label, [cells])."""
    out = []
    for line in tex.splitlines():
        if " & " in line and "jsrec" in line:
            label, *cells = (c.strip() for c in line.removesuffix("\\\\").split(" & "))
            out.append((label.removeprefix("\\raggedright "), cells))
    return out


def test_mitigations_have_a_fixed_order_and_labels():
    names = ["idcn-ttac", "transfer-b", "ttac", "arcnn-ttac", "none", "transfer-a", "idcn-offtheshelf", "finetune",
             "arcnn-offtheshelf", "offtheshelf", "multihead-x"]
    assert sorted(names, key=mitigation_key) == [
        "none", "finetune", "offtheshelf", "ttac", "transfer-a", "transfer-b", "arcnn-offtheshelf", "arcnn-ttac",
        "idcn-offtheshelf", "idcn-ttac", "multihead-x"]
    assert [mitigation_label(m) for m in ("none", "finetune", "offtheshelf", "ttac", "transfer-resnet18",
                                          "arcnn-offtheshelf", "idcn-ttac")] == [
        "None", "Fine-tuned", "Off-the-shelf AC", "TTAC", "TTAC from resnet18", "ARCNN (off-the-shelf)",
        "IDCN (TTAC)"]


def test_classification_table_has_every_mitigation_in_order(study):
    tex = tables.classification_table(study["all"])
    assert "Mitigation & Clean & Q=10 & Q=20 & Q=50\\\\" in tex
    assert tex.index(r"\textbf{resnext101\_32x8d}") < tex.index(r"\textbf{mobilenet\_v2}")  # models as they come
    lines = body_lines(tex)
    assert [label for label, _ in lines] == [
        "None", "Fine-tuned", "Off-the-shelf AC", "TTAC", r"TTAC from mobilenet\_\allowbreak{}v2",
        "None", "Fine-tuned", "Off-the-shelf AC", "TTAC", r"TTAC from resnext101\_\allowbreak{}32x8d",
        "ARCNN (off-the-shelf)", "ARCNN (TTAC)", "IDCN (off-the-shelf)", "IDCN (TTAC)"]
    # resnext's fine-tuned row: 62.125 prints 62.12 (round half to even, as fmt does)
    assert lines[1][1] == [jsrec(study, BIG, "finetune", None, "79.50"), jsrec(study, BIG, "finetune", 10, "62.12"),
                           jsrec(study, BIG, "finetune", 20, "70.00"), jsrec(study, BIG, "finetune", 50, "77.00")]
    # the AC baselines exist only at the AC-comparison qualities: -- at Q=50
    assert lines[10][1] == [jsrec(study, SMALL, "arcnn-offtheshelf", None, "70.00"),
                            jsrec(study, SMALL, "arcnn-offtheshelf", 10, "33.00"),
                            jsrec(study, SMALL, "arcnn-offtheshelf", 20, "52.00"), "--"]
    assert [cells[-1] for _, cells in lines].count("--") == 4
    assert "--" not in [c for _, cells in lines for c in cells[:-1]]
    assert lines[9][1][3] == jsrec(study, SMALL, f"transfer-{BIG}", 50, "67.50")


def test_top5_table(study):
    tex = tables.classification_table(study["all"], "top5")
    assert r"\label{tab:classification-top5}" in tex and "Top-5" in tex
    lines = body_lines(tex)
    assert lines[3][1][1] == jsrec(study, BIG, "ttac", 10, "81.00", "top5")  # 66 + 15
    assert all("/top5}" in c for _, cells in lines for c in cells if c != "--")
    with pytest.raises(ValueError, match="field 'top3'"):
        tables.classification_table(study["all"], "top3")


def test_ac_comparison_table(study):
    files = [study["files"][(SMALL, m)] for m in TOP1[SMALL] if m not in ("finetune", f"transfer-{BIG}")]
    tex = tables.ac_comparison_table(files, qualities=[10, 20])
    assert "Corrector & Training & Q=10 & Q=20\\\\" in tex and r"\texttt{mobilenet\_v2}" in tex
    lines = body_lines(tex)
    assert lines == [
        ("None", ["--", jsrec(study, SMALL, "none", 10, "30.00"), jsrec(study, SMALL, "none", 20, "50.00")]),
        ("ARCNN", ["Off-the-shelf", jsrec(study, SMALL, "arcnn-offtheshelf", 10, "33.00"),
                   jsrec(study, SMALL, "arcnn-offtheshelf", 20, "52.00")]),
        ("", ["Task-targeted", jsrec(study, SMALL, "arcnn-ttac", 10, "48.00"),
              jsrec(study, SMALL, "arcnn-ttac", 20, "58.00")]),
        ("IDCN", ["Off-the-shelf", jsrec(study, SMALL, "idcn-offtheshelf", 10, "34.00"),
                  jsrec(study, SMALL, "idcn-offtheshelf", 20, "53.00")]),
        # the second best corrector of each column underlined, the best in bold
        ("", ["Task-targeted", rf"\underline{{{jsrec(study, SMALL, 'idcn-ttac', 10, '49.00')}}}",
              rf"\underline{{{jsrec(study, SMALL, 'idcn-ttac', 20, '59.00')}}}"]),
        # QGAC's rows are the study's offtheshelf / ttac files at the same qualities
        ("QGAC", ["Off-the-shelf", jsrec(study, SMALL, "offtheshelf", 10, "36.00"),
                  jsrec(study, SMALL, "offtheshelf", 20, "55.00")]),
        ("", ["Task-targeted", rf"\textbf{{{jsrec(study, SMALL, 'ttac', 10, '58.00')}}}",
              rf"\textbf{{{jsrec(study, SMALL, 'ttac', 20, '63.00')}}}"]),
    ]
    # without qualities: those of the ARCNN/IDCN files; without the none file: no None row
    assert body_lines(tables.ac_comparison_table(files[1:])) == lines[1:]
    with pytest.raises(ValueError, match=r"mobilenet_v2/finetune.json: mitigation 'finetune' is not part of"):
        tables.ac_comparison_table([*files, study["files"][(SMALL, "finetune")]])
    with pytest.raises(ValueError, match="one model of each task"):
        tables.ac_comparison_table([*files, study["files"][(BIG, "ttac")]])


def test_transfer_table(study):
    tex = tables.transfer_table(study["all"])  # the other mitigations' files are passed and left out
    assert "Model & Corrector & Q=10 & Q=20 & Q=50\\\\" in tex and r"\label{tab:transfer}" in tex

    def row(model, mitigation, corrector, first=False):  # the model's name on its first row only; Q=10, 20, 50
        return (r"\_".join(model.split("_")) if first else "",
                [corrector, *(jsrec(study, model, mitigation, q, fmt(v))
                              for q, v in zip(QUALITIES[1:], TOP1[model][mitigation][1:]))])

    def unmarked(lines):
        return [(label, [re.sub(r"^\\(?:textbf|underline)\{(.*)\}$", r"\1", c) for c in cells])
                for label, cells in lines]

    assert unmarked(body_lines(tex)) == [
        row(BIG, "none", "None (JPEG)", first=True), row(BIG, "ttac", r"resnext101\_32x8d (own)"),
        row(BIG, f"transfer-{SMALL}", r"mobilenet\_v2"),
        row(SMALL, "none", "None (JPEG)", first=True), row(SMALL, "ttac", r"mobilenet\_v2 (own)"),
        row(SMALL, f"transfer-{BIG}", r"resnext101\_32x8d"),
    ]
    # Q=10 in each model's block: its own corrector best (bold), the transferred one second (underlined)
    assert [cells[1] for _, cells in body_lines(tex)] == [
        jsrec(study, BIG, "none", 10, "40.00"), rf"\textbf{{{jsrec(study, BIG, 'ttac', 10, '66.00')}}}",
        rf"\underline{{{jsrec(study, BIG, f'transfer-{SMALL}', 10, '55.00')}}}",
        jsrec(study, SMALL, "none", 10, "30.00"), rf"\textbf{{{jsrec(study, SMALL, 'ttac', 10, '58.00')}}}",
        rf"\underline{{{jsrec(study, SMALL, f'transfer-{BIG}', 10, '50.00')}}}"]
    assert all("/top5}" in c for _, cells in body_lines(tables.transfer_table(study["all"], "top5"))
               for c in cells[1:])
    with pytest.raises(ValueError, match="no transfer-\\* or multihead-\\* rows"):
        tables.transfer_table([study["files"][(SMALL, "none")], study["files"][(SMALL, "ttac")]])


def test_audit_traces_every_number_of_every_table(study, tmp_path, capsys):
    ac = [study["files"][(SMALL, m)] for m in TOP1[SMALL] if m not in ("finetune", f"transfer-{BIG}")]
    tables.write_table("classification", study["all"], tmp_path / "cls.tex")
    tables.write_table("classification", study["all"], tmp_path / "cls5.tex", field="top5")
    tables.write_table("ac-comparison", ac, tmp_path / "ac.tex", qualities=[10, 20])
    tables.write_table("transfer", study["all"], tmp_path / "transfer.tex")
    n = 5 * 4 + 5 * 4 + 4 * 3  # resnext: 5 mitigations x 4 columns; mobilenet: the same + 4 baselines x 3
    for name, count in (("cls.tex", n), ("cls5.tex", n), ("ac.tex", 7 * 2), ("transfer.tex", 2 * 3 * 3)):
        assert audit.audit(str(tmp_path / name), str(study["root"]))
        assert f"{count}/{count} numbers traced to metric rows (0 problems)" in capsys.readouterr().out
    # a hand-typed number in the AC table is caught
    text = (tmp_path / "ac.tex").read_text()
    (tmp_path / "ac.tex").write_text(text.replace(jsrec(study, SMALL, "idcn-ttac", 20, "59.00"), "59.00"))
    assert not audit.audit(str(tmp_path / "ac.tex"), str(study["root"]))
    assert "UNTRACED 59.00" in capsys.readouterr().out


def test_cli_writes_the_tables(study, tmp_path):
    files = [str(p) for p in study["all"]]
    cli.main(["table", *files, "--out", str(tmp_path / "a.tex")])
    cli.main(["table", *files, "--field", "top5", "--out", str(tmp_path / "b.tex")])
    ac = [str(study["files"][(SMALL, m)]) for m in ("none", "offtheshelf", "ttac", "arcnn-ttac")]
    cli.main(["table", "--kind", "ac-comparison", *ac, "--params", '{"qualities": [10]}', "--out",
              str(tmp_path / "c.tex")])
    assert (tmp_path / "a.tex").read_text() == tables.classification_table(study["all"])
    assert (tmp_path / "b.tex").read_text() == tables.classification_table(study["all"], "top5")
    assert "Corrector & Training & Q=10\\\\" in (tmp_path / "c.tex").read_text()
    cli.main(["table", "--kind", "transfer", *files, "--field", "top5", "--out", str(tmp_path / "d.tex")])
    assert (tmp_path / "d.tex").read_text() == tables.transfer_table(study["all"], "top5")


def test_templates_are_found_for_the_rules():
    assert template("classification_table.tex.j2").endswith("report/templates/classification_table.tex.j2")
    with pytest.raises(FileNotFoundError, match="nope.tex.j2"):
        template("nope.tex.j2")


@needs("pdflatex")
def test_tables_fit_the_page(tmp_path):
    """Widest numbers (100.00), nine qualities, long model names, enough models to span pages."""
    root = tmp_path / "m"
    q9 = (None, *range(10, 100, 10))
    names = ["resnext101_32x8d", "efficientnet_b3", "a_very_long_model_name_without_breaks", "mobilenet_v2",
             "resnet18", "resnet50", "resnet101", "vgg19", "inception_v3"]
    files = []
    for model in names:
        for m in ("none", "finetune", "offtheshelf", "ttac", "transfer-resnext101_32x8d", "transfer-mobilenet_v2"):
            files.append(metric_file(root, model, m, (100.0,) * 10, q9))
    for m in ("arcnn-offtheshelf", "arcnn-ttac", "idcn-offtheshelf", "idcn-ttac"):
        files.append(metric_file(root, "mobilenet_v2", m, (100.0, 100.0, 100.0), (None, 10, 20)))
    tables.write_table("classification", files, tmp_path / "cls.tex")
    tables.write_table("classification", files, tmp_path / "cls5.tex", field="top5")
    ac = [f for f in files if f.parent.name == "mobilenet_v2" and not f.stem.startswith(("transfer-", "finetune"))]
    tables.write_table("ac-comparison", ac, tmp_path / "ac.tex", qualities=[10, 20])
    # few qualities: a narrower table, the mitigation column at most 13em
    few = [metric_file(tmp_path / "few", m, x, (100.0, 100.0, 100.0), (None, 10, 90))
           for m in names[:2] for x in ("none", "ttac", "transfer-mobilenet_v2")]
    tables.write_table("classification", few, tmp_path / "few.tex")
    tables.write_table("transfer", files, tmp_path / "transfer.tex")
    log = compile_tables(tmp_path, "cls.tex", "cls5.tex", "ac.tex", "few.tex", "transfer.tex")
    pages = int(re.search(r"Output written on doc.pdf \((\d+) pages?", log).group(1))
    assert pages >= 7  # two long tables of several pages each, Table 1, the short table, Table 5


def test_figures_carry_the_refs_they_plot(study, tmp_path, capsys):
    files, root = study["all"], str(study["root"])
    base = [f for (_, m), f in study["files"].items() if m in ("none", "finetune", "offtheshelf", "ttac")]
    figures.mitigation_figure(base, [tmp_path / "mit.pdf", tmp_path / "mit.png"], {"dpi": 60})
    expected = {ref(study, model, "none", None) for model in TOP1} | {
        ref(study, model, m, q) for model in TOP1 for m in ("none", "finetune", "offtheshelf", "ttac")
        for q in (10, 20, 50)}
    with Image.open(tmp_path / "mit.png") as im:
        assert set(im.info[figures.RECORDS_KEY].split()) == expected  # 2 clean + 2 x 4 x 3
    assert len(expected) == 26

    transfer = [f for (_, m), f in study["files"].items() if m in ("none", "ttac") or m.startswith("transfer-")]
    figures.transfer_figure(transfer, [tmp_path / "tr.pdf", tmp_path / "tr.png"], {"dpi": 60})
    with Image.open(tmp_path / "tr.png") as im:
        refs = set(im.info[figures.RECORDS_KEY].split())
    assert ref(study, SMALL, f"transfer-{BIG}", 50) in refs and ref(study, BIG, "ttac", 10) in refs
    assert len(refs) == 2 * (1 + 3 * 3)  # per model: clean + (none, ttac, transfer) x 3 qualities

    figures.summary_figure(files, study["speed"], [tmp_path / "sum.pdf", tmp_path / "sum.png"], {"dpi": 60})
    speed = {r["model"]: r["id"] for r in study["rows"].values()
             if r.get("images_per_s") in (900.0, 2000.0)}  # alone, inference, batch 64
    with Image.open(tmp_path / "sum.png") as im:
        refs = set(im.info[figures.RECORDS_KEY].split())
    assert refs == {ref(study, model, m, q) for model in TOP1 for m, q in (("none", None), ("finetune", 10),
                                                                           ("ttac", 10))} | {
        f"{speed[BIG]}/images_per_s", f"{speed[SMALL]}/images_per_s"}

    for name in ("mit", "tr", "sum"):
        for ext in ("pdf", "png"):
            # verbose=False: audit's per-row description expects metric rows, not throughput rows
            assert audit.audit(str(tmp_path / f"{name}.{ext}"), root, verbose=False)
    out = capsys.readouterr().out
    assert "26/26 numbers traced" in out and "20/20 numbers traced" in out and "8/8 numbers traced" in out


def test_figures_are_byte_identical_across_runs(study, tmp_path):
    files = study["all"]
    for run in ("a", "b"):
        cli.main(["figure", "--kind", "mitigation", *map(str, files), "--params", '{"dpi": 50}', "--out",
                  str(tmp_path / f"mit-{run}.pdf"), str(tmp_path / f"mit-{run}.png")])
        cli.main(["figure", "--kind", "transfer", *map(str, files), "--params", '{"dpi": 50}', "--out",
                  str(tmp_path / f"tr-{run}.pdf"), str(tmp_path / f"tr-{run}.png")])
        cli.main(["figure", "--kind", "summary", *map(str, files), "--throughput", *map(str, study["speed"]),
                  "--params", '{"dpi": 50}', "--out", str(tmp_path / f"sum-{run}.pdf"),
                  str(tmp_path / f"sum-{run}.png")])
    for name in ("mit", "tr", "sum"):
        for ext in ("pdf", "png"):
            a, b = (tmp_path / f"{name}-{run}.{ext}" for run in ("a", "b"))
            assert a.read_bytes() == b.read_bytes(), (name, ext)


def test_drops_are_measured_from_the_unmitigated_clean_reference(study):
    d = figures.mitigation_drops(study["all"]).set_index(["model", "mitigation", "quality"])["drop"]
    assert d[(BIG, "finetune", 10)] == pytest.approx(80.0 - 62.125)  # not the fine-tuned model's own 79.5
    assert d[(SMALL, "ttac", 20)] == pytest.approx(70.0 - 63.0)
    assert set(d.index.get_level_values("mitigation")) == {"none", "finetune", "offtheshelf", "ttac"}
    t = figures.transfer_drops(study["all"]).set_index(["model", "mitigation", "quality"])["drop"]
    assert t[(SMALL, f"transfer-{BIG}", 50)] == pytest.approx(70.0 - 67.5)
    assert t[(BIG, f"transfer-{SMALL}", 10)] == pytest.approx(80.0 - 55.0)
    p = figures.summary_points(study["all"], study["speed"], quality=10).set_index("model")
    assert p.loc[BIG, ["x", "y", "speed"]].tolist() == pytest.approx([80.0 - 62.125, 80.0 - 66.0, 900.0])
    assert p.loc[SMALL, ["x", "y", "speed"]].tolist() == pytest.approx([70.0 - 52.0, 70.0 - 58.0, 2000.0])


def test_a_missing_clean_row_names_the_file(study, tmp_path):
    path = study["files"][(BIG, "none")]
    data = json.loads(path.read_text())
    data["rows"] = [r for r in data["rows"] if r["quality"] is not None]
    path.write_text(json.dumps(data))
    calls = [lambda: tables.classification_table(study["all"]),
             lambda: figures.mitigation_figure(study["all"], [tmp_path / "f.png"]),
             lambda: figures.transfer_figure(study["all"], [tmp_path / "f.png"]),
             lambda: figures.summary_figure(study["all"], study["speed"], [tmp_path / "f.png"]),
             lambda: figures.drop_figure([path], [tmp_path / "f.png"])]
    for call in calls:
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == f"{path}: no clean (reference) row (quality null) for {BIG} / none"
    assert not (tmp_path / "f.png").exists()


def test_missing_inputs_of_a_figure_are_named(study, tmp_path):
    no_none = [f for (model, m), f in study["files"].items() if not (model == SMALL and m == "none")]
    with pytest.raises(ValueError, match=rf"{SMALL}/finetune.json: no 'none' metric file of {SMALL}"):
        figures.mitigation_drops(no_none)
    with pytest.raises(ValueError, match=rf"{BIG}/finetune.json: no finetune row of {BIG} at quality 30$"):
        figures.summary_points(study["all"], study["speed"], quality=30)
    with pytest.raises(ValueError, match=rf"^no ttac metric file of {BIG} among the inputs$"):
        figures.summary_points([f for f in study["all"] if f != study["files"][(BIG, "ttac")]], study["speed"])
    throughput_file(study["root"], SMALL, {(None, "train", 64): 1.0})
    with pytest.raises(ValueError, match=rf"{SMALL}.json: no inference throughput row of {SMALL} alone"):
        figures.summary_points(study["all"], study["speed"])
    with pytest.raises(ValueError, match="give the throughput files"):
        cli.cmd_figure(cli.parser().parse_args(["figure", "--kind", "summary", "x.json", "--out", "f.png"]))


def test_every_value_printed_is_fmt_of_its_row(study):
    tex = tables.classification_table(study["all"]) + tables.classification_table(study["all"], "top5")
    for row_id, field, text in re.findall(r"\\jsrec\{(\w+)/(\w+)\}\{([^}]*)\}", tex):
        assert text == fmt(study["rows"][row_id][field])
