"""The report side of semantic segmentation: its mIoU table, the segmenters' reference table beside CSAIL's
documented values, the drop figure's bands, the qualitative figure's label maps, and the smoke study's pieces and
PDF section. Metric rows are scored here from label maps by segmentation_metric, as evaluation scores them."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from jpegstudy import audit, cli, compress
from jpegstudy.data import ade20k, embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.report import documented, figures, study, tables
from jpegstudy.report import qualitative_segmentation as qs
from jpegstudy.report.metrics import fmt
from jpegstudy.tasks import classification, segmentation, segmentation_metric

from .conftest import needs
from .test_report_mitigations import PROV, with_id
from .test_report_mitigations import study as mitigation_study  # noqa: F401 (a fixture)

K, N_IMAGES, SIDE = 5, 6, 8  # classes, validation images, label-map side
QUALITIES = (None, 10, 50)
MITIGATIONS = ("none", "finetune", "offtheshelf", "ttac")
# Each pixel's prediction is wrong with this probability: clean, then lower qualities worse; mitigations help.
NOISE = {None: 0.1, 50: 0.25, 10: 0.5}
HELP = {"none": 0.0, "finetune": 0.15, "offtheshelf": 0.05, "ttac": 0.12}
# The segmenters: one trained here (no documented values), one loaded from CSAIL's files (documented).
MODELS = {
    "mobilenet_c1": {"encoder": "mobilenetv2dilated", "decoder": "c1_deepsup", "backbone": "mobilenet_v2",
                     "weights": "train"},
    "r50_ppm": {"encoder": "resnet50dilated", "decoder": "ppm_deepsup",
                "weights": {"encoder": "/ckpt/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth",
                            "decoder": "/ckpt/ade20k-resnet50dilated-ppm_deepsup/decoder_epoch_20.pth"}},
}
CONFIDENCE = {"level": 0.95, "resamples": 200, "seed": 0}


def scored(truth: np.ndarray, noise: float, rng: np.random.Generator) -> dict:
    """A row's metric fields from label maps: the truth with a `noise` share of pixels relabelled at random."""
    wrong = rng.random(truth.shape) < noise
    pred = np.where(wrong, rng.integers(0, K, truth.shape), np.maximum(truth, 1) - 1)  # channel = label - 1
    counts = segmentation_metric.intersection_union(pred, truth, K)
    fields = segmentation_metric.summary(*counts)
    record = segmentation_metric.record(*counts)
    out = {"miou": fields["miou"], "pixel_acc": fields["pixel_acc"], "class_iou": fields["class_iou"]}
    for name, (low, high) in segmentation_metric.miou_interval(record, **CONFIDENCE).items():
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    return {**out, "per_image": record}


def pdf_text(path) -> str:
    """A PDF's text, its whitespace (line ends included) made single spaces."""
    return " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True).stdout.split())


def metric_file(root, model: str, mitigation: str) -> tuple:
    truth = np.random.default_rng(list(MODELS).index(model)).integers(0, K + 1, (N_IMAGES, SIDE, SIDE))  # 0: other
    rng = np.random.default_rng([list(MODELS).index(model), MITIGATIONS.index(mitigation)])
    config = {f"segmentation.models.{model}": MODELS[model], "confidence": {"level": 0.95, "resamples": 200}}
    rows = [with_id({"task": "segmentation", "model": model, "mitigation": mitigation, "dataset": "parsing",
                     "quality": q, "n_images": N_IMAGES,
                     **scored(truth, max(NOISE[q] - (HELP[mitigation] if q else 0), 0.02), rng),
                     "provenance": {**PROV, "config": config}}) for q in QUALITIES]
    path = root / "segmentation" / model / f"{mitigation}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "segmentation", "model": model, "mitigation": mitigation, "rows": rows}))
    return path, rows


@pytest.fixture
def seg_study(tmp_path):
    root = tmp_path / "metrics"
    files, rows = [], {}
    for model in MODELS:
        for mitigation in MITIGATIONS:
            path, written = metric_file(root, model, mitigation)
            files.append(path)
            rows.update({r["id"]: r for r in written})
    return {"root": root, "files": files, "rows": rows,
            "none": [f for f in files if f.name == "none.json"]}


def test_segmentation_table_prints_each_rows_miou_and_audit_traces_it(seg_study, tmp_path, capsys):
    tex = tables.classification_table(seg_study["files"], field="miou")
    assert r"\label{tab:segmentation}" in tex and "Semantic segmentation on the dataset" in tex
    assert "mIoU (\\%)" in tex
    printed = re.findall(r"\\jsrec\{(\w+)/(\w+)\}\{([^}]*)\}", tex)
    assert sorted(i for i, f, _ in printed if f == "miou") == sorted(seg_study["rows"])
    for row_id, field, text in printed:
        assert text == fmt(seg_study["rows"][row_id][field])
    (tmp_path / "segmentation.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "segmentation.tex"), str(seg_study["root"]))
    assert f"{3 * len(seg_study['rows'])}/{3 * len(seg_study['rows'])} numbers traced" in capsys.readouterr().out
    # another field's table keeps its own label
    assert r"\label{tab:segmentation-pixel_acc}" in tables.classification_table(seg_study["files"], "pixel_acc")


def test_reference_table_beside_csails_documented_values(seg_study, tmp_path, capsys):
    tex = tables.reference_table(seg_study["none"])
    assert r"\label{tab:reference-segmentation}" in tex and r"\multicolumn{2}{c}{CSAIL}" in tex
    assert "mIoU & & Pixel acc. & mIoU & Pixel acc." in tex
    clean = {r["model"]: r for r in seg_study["rows"].values() if r["mitigation"] == "none" and r["quality"] is None}
    # the embedded pair trained here: measured values, "--" where CSAIL would be
    mine = clean["mobilenet_c1"]
    assert (f"\\jsrec{{{mine['id']}/pixel_acc}}{{{fmt(mine['pixel_acc'])}}} & -- & --\\\\") in tex
    assert "mobilenetv2dilated + c1\\_deepsup & \\texttt{train}" in tex
    # CSAIL's ResNet50dilated + PPM_deepsup, single scale: 41.26 mIoU, 79.73 % pixel accuracy
    assert (r"\jsdoc{csail:ade20k-resnet50dilated-ppm_deepsup:miou}{41.26} & "
            r"\jsdoc{csail:ade20k-resnet50dilated-ppm_deepsup:pixel_acc}{79.73}\\") in tex
    assert r"\texttt{encoder\_epoch\_20.pth + decoder\_epoch\_20.pth}" in tex
    ours = clean["r50_ppm"]
    assert f"\\jsci{{\\jsrec{{{ours['id']}/miou_low}}{{{fmt(ours['miou_low'])}}}}}" in tex
    (tmp_path / "ref.tex").write_text(tex)
    assert audit.audit(str(tmp_path / "ref.tex"), str(seg_study["root"]))
    # per segmenter its mIoU, the interval's two ends and its pixel accuracy; CSAIL's two of the paper pair
    assert "10/10 numbers traced" in capsys.readouterr().out
    (tmp_path / "ref.tex").write_text(tex.replace("miou}{41.26}", "miou}{41.25}"))
    assert not audit.audit(str(tmp_path / "ref.tex"), str(seg_study["root"]))
    assert "MISMATCH 41.25 printed, 41.26 documented" in capsys.readouterr().out


def test_csail_documents_the_papers_seven_pairs_and_not_the_embedded_ones():
    from jpegstudy.tasks import segmentation_models

    assert set(documented.CSAIL_ADE20K) == set(segmentation_models.PAPER)
    assert documented.csail({"encoder": "resnet18dilated", "decoder": "ppm_deepsup", "weights": "train"}) is None
    found = documented.csail({"encoder": "hrnetv2", "decoder": "c1", "weights": {"encoder": "e", "decoder": "d"}})
    assert found == {"ref": "csail:ade20k-hrnetv2-c1", "miou": 42.03, "pixel_acc": 80.77}
    assert audit.documented("csail:ade20k-hrnetv2-c1", "pixel_acc") == 80.77
    assert audit.documented("csail:ade20k-hrnetv2-c1", "top1") is None


def test_drop_figure_bands_are_segmentation_metrics_paired_intervals(seg_study, tmp_path, monkeypatch):
    drawn = {}
    save = figures._save

    def keep(fig, outputs, refs, dpi, inputs=None):
        drawn["vertices"] = [v for c in fig.axes[0].collections for path in c.get_paths() for v in path.vertices]
        save(fig, outputs, refs, dpi, inputs)

    monkeypatch.setattr(figures, "_save", keep)
    outs = [tmp_path / "drop.pdf", tmp_path / "drop.png"]
    figures.drop_figure(seg_study["none"], outs, {"field": "miou", "confidence": CONFIDENCE})
    rows = {(r["model"], r["quality"]): r for r in seg_study["rows"].values() if r["mitigation"] == "none"}
    for model in MODELS:
        for q in (10, 50):
            low, high = segmentation_metric.miou_drop_interval(rows[model, None]["per_image"],
                                                               rows[model, q]["per_image"], **CONFIDENCE)["miou"]
            # a band is fill_between's polygon: the lows left to right, then the highs back
            for end in (low, high):
                assert any(np.allclose(v, (q, end)) for v in drawn["vertices"]), (model, q, end)
            assert low <= rows[model, None]["miou"] - rows[model, q]["miou"] <= high
    refs = {f"{r['id']}/miou" for r in rows.values()}
    assert {"/".join(ref[:2]) for ref in audit.figure_refs(outs[1])} == refs


def test_palettes_are_ades_for_150_classes_and_tab10_for_the_embedded_ones():
    ade = qs.palette(150)
    assert ade.shape == (151, 3) and tuple(ade[0]) == (0, 0, 0)
    assert tuple(ade[1]) == (120, 120, 120) and tuple(ade[3]) == (6, 230, 230)  # wall, sky
    small = qs.palette(len(embedded.SEGMENTATION_CLASSES))
    tab10 = [tuple(int(round(255 * c)) for c in rgb) for rgb in qs.plt.get_cmap("tab10").colors]
    assert small.shape == (15, 3) and tuple(small[0]) == (0, 0, 0)
    assert [tuple(c) for c in small[1:11]] == tab10 and len({tuple(c) for c in small}) == 15
    label = np.array([[0, 1], [14, 3]])
    assert qs.colored(label, small).tolist() == [[[0, 0, 0], list(small[1])], [list(small[14]), list(small[3])]]
    with pytest.raises(ValueError, match="label 15 above the 14 classes"):
        qs.colored(np.array([[15]]), small)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three embedded validation scenes, their Q=10 copies and a small segmenter trained on nothing."""
    root = tmp_path_factory.mktemp("scenes")
    m = embedded.write_ade_split(root / "parsing", "val", 3, 32, seed=2)
    m.write(root / "parsing" / "manifest.json")
    compress.compress_split(root / "parsing" / "manifest.json", 10, root / "q10")
    torch.manual_seed(0)
    classifier = classification.build("mobilenet_v2", 10)
    net = segmentation.build("mobilenetv2dilated", "c1_deepsup", len(m.classes), classifier)
    for name in ("reference", "finetune"):
        segmentation.save_reference(root / f"{name}.pt", encoder="mobilenetv2dilated", decoder="c1_deepsup",
                                    classes=m.classes, image_size=32, source="test", state_dict=net.state_dict(),
                                    backbone={"arch": "mobilenet_v2", "classes": [str(i) for i in range(10)]})
    return {"root": root, "clean": str(root / "parsing" / "manifest.json"),
            "compressed": str(root / "q10" / "manifest.json"), "reference": str(root / "reference.pt"),
            "finetune": str(root / "finetune.pt")}


def test_qualitative_figure_draws_the_ground_truth_in_the_palette(scenes, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(qs, "_save", lambda fig, outputs, refs, dpi, inputs: drawn.update(fig=fig, inputs=inputs))
    qs.figure(model_name="seg", reference=scenes["reference"], clean=scenes["clean"],
              compressed=scenes["compressed"], mitigation_files={"finetune": scenes["finetune"]}, outputs=[],
              params={"samples": 2, "dpi": 50})
    axes = drawn["fig"].axes
    columns = ["jpeg", "none", "finetune", "original", "truth"]  # no corrector given: no corrector column
    assert [ax.get_title() for ax in axes[:5]] == ["JPEG Q=10", "No mitigation", "Fine-tuned segmenter",
                                                   "On the original", "Ground truth"]
    clean = manifests.read(scenes["clean"])
    colours = qs.palette(len(clean.classes))
    truths = []
    for row, i in enumerate(qs.select(len(clean.images), 2)):  # scenes 0 and 1 of 3
        truth = ade20k.load_label(clean, clean.images[i])
        truths.append(truth)
        shown = np.asarray(axes[row * len(columns) + 4].images[0].get_array())
        for y, x in ((0, 0), (5, 20), (16, 16), (31, 31), *zip(*np.nonzero(truth == 0))):
            assert tuple(shown[y, x]) == tuple(colours[truth[y, x]]), (i, y, x)
    assert any((t == 0).any() for t in truths)  # an object's edge, drawn black
    legend = {t.get_text() for t in drawn["fig"].legends[0].get_texts()}
    assert {clean.classes[k - 1] for t in truths for k in np.unique(t) if k} <= legend
    assert set(drawn["inputs"]) == {"model", "clean images", "JPEG images", "finetune"}


def test_the_qualitative_command_writes_a_segmenters_figure(scenes, tmp_path, capsys):
    out = [str(tmp_path / "q.pdf"), str(tmp_path / "q.png")]
    cli.main(["qualitative", "--task", "segmentation", "--model", "seg", "--reference", scenes["reference"],
              "--clean", scenes["clean"], "--compressed", scenes["compressed"], "--mitigation",
              f"finetune={scenes['finetune']}", "--params", json.dumps({"samples": 1, "dpi": 40}), "--out", *out])
    assert [Path(p).read_bytes()[:4] for p in out] == [b"%PDF", b"\x89PNG"]
    assert audit.audit(out[1], str(tmp_path))
    assert "4/4 of the files it was drawn from unchanged" in capsys.readouterr().out


@needs("latexmk")
def test_study_pdf_has_a_segmentation_section_whose_numbers_are_traced(seg_study, mitigation_study, tmp_path,
                                                                       capsys):
    pieces = {"table:segmentation": tmp_path / "segmentation.tex",
              "table:reference_segmentation": tmp_path / "reference_segmentation.tex",
              "figure:drop_segmentation": tmp_path / "drop_segmentation.pdf",
              "table:classification": tmp_path / "classification.tex"}  # its tables' headings come after
    tables.write_table("classification", seg_study["files"], pieces["table:segmentation"], field="miou")
    tables.write_table("reference", seg_study["none"], pieces["table:reference_segmentation"])
    figures.drop_figure(seg_study["none"], [pieces["figure:drop_segmentation"]], {"field": "miou"})
    tables.write_table("classification", mitigation_study["all"], pieces["table:classification"])
    study.build({k: str(v) for k, v in pieces.items()}, [*seg_study["files"], *mitigation_study["all"]],
                tmp_path / "study.pdf")
    text = pdf_text(tmp_path / "study.pdf")
    assert "Semantic segmentation" in text and "Drop in mIoU against JPEG quality, per segmenter" in text
    assert text.index("Semantic segmentation Each segmenter") < text.index("Per-model results")
    assert "CSAIL’s documented ADE20K validation value" in text  # the provenance of CSAIL's two numbers
    some = next(r for r in seg_study["rows"].values() if r["quality"] == 10)
    assert f"miou {some['miou']:.4f}" in text  # the provenance appendix lists segmentation rows' numbers
    capsys.readouterr()
    assert audit.audit(str(tmp_path / "study.pdf"), str(seg_study["root"]))  # both fixtures write their files there


def test_smoke_study_makes_the_segmentation_report(smoke_runs, capsys, monkeypatch):
    workdir = smoke_runs[0]
    reports = workdir / "reports"
    for name in ("segmentation", "reference_segmentation"):
        table = reports / "tables" / f"{name}.tex"
        assert audit.audit(str(table), str(workdir / "results/metrics")), table
    assert r"\label{tab:segmentation}" in (reports / "tables/segmentation.tex").read_text()
    reference = (reports / "tables/reference_segmentation.tex").read_text()
    assert reference.count("& -- & --\\\\") == 2  # both smoke segmenters are trained here
    for name in ("drop_segmentation", "mitigation_segmentation", "model_segmentation_mobilenet_c1",
                 "model_segmentation_resnet18_ppm"):
        for ext in ("pdf", "png"):
            assert (reports / "figures" / f"{name}.{ext}").stat().st_size > 1000
    monkeypatch.chdir(workdir)  # the files a qualitative figure was drawn from are named from the study's folder
    for model in ("mobilenet_c1", "resnet18_ppm"):
        figure = reports / "appendix" / f"qualitative_segmentation_{model}.png"
        assert figure.stat().st_size > 1000 and audit.audit(str(figure), "results/metrics")
    text = pdf_text(reports / "study.pdf")
    section = text[text.index("Semantic segmentation Each segmenter’s mIoU"):]
    for caption in ("Drop in mIoU against JPEG quality, per segmenter", "Drop in mIoU against JPEG quality with "
                    "each mitigation", "Reference results (appendix D.3): each segmenter",
                    "Semantic segmentation on the dataset parsing", "Label maps predicted by the segmenter",
                    "mIoU of the segmenter resnet18"):  # pdftotext drops the underscore
        assert caption in section, caption
    throughput = (reports / "tables/throughput.tex").read_text()
    assert r"\emph{Semantic segmentation}" in throughput and "resnet18\\_ppm & QGAC" in throughput


def test_throughput_rows_of_each_task_stay_apart_in_the_table_and_figure(tmp_path, monkeypatch):
    # a classifier and a segmenter both named resnet18: two rows, each under its task, two bars
    files = []
    for task, rate in (("classification", 100.0), ("segmentation", 20.0)):
        rows = [with_id({"task": task, "model": "resnet18", "corrector": corrector, "mode": "inference",
                         "batch_size": 4, "images_per_s": rate / (2 if corrector else 1), "image_size": 32,
                         "provenance": {**PROV, "rule": "throughput"}}) for corrector in (None, "qgac")]
        path = tmp_path / "throughput" / task / "resnet18.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"task": task, "model": "resnet18", "kind": "throughput", "rows": rows}))
        files.append(path)
    tex = tables.throughput_table(files)
    body = tex[tex.index(r"\toprule"):]  # each task: its name, a header of its batch sizes, its rows
    assert body.index(r"\emph{Classification}") < body.index("{100.00}") < body.index(r"\emph{Semantic segmentation}")
    assert body.index(r"\emph{Semantic segmentation}") < body.index("{20.00}") and "resnet18 & QGAC" in body
    drawn = {}
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, *a, **k: (drawn.update(fig=fig), save(fig, *a, **k)))
    figures.throughput_figure(files, [tmp_path / "speed.png"])
    ax = drawn["fig"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["resnet18 (classification)", "resnet18 (segmentation)"]
    assert {t.get_text() for t in ax.texts} == {"classification", "segmentation"}  # each task named above its bars
    assert [t.get_text() for t in drawn["fig"].legends[0].get_texts()] == ["model alone", "QGAC"]
    heights = sorted(round(p.get_height(), 2) for p in ax.patches if p.get_height() > 0)
    assert heights == [10.0, 20.0, 50.0, 100.0]
