"""The paper's main-body figures across tasks (report/across: Figures 1, 3, 4 and 8) from hand-made metric and
throughput files of three tasks, whose plotted values are worked out by hand below."""

import json
import re

import numpy as np
import pytest

from jpegstudy import audit
from jpegstudy import confidence as intervals
from jpegstudy.report import across, figures, tables
from jpegstudy.report.metrics import TASK_TITLES
from jpegstudy.tasks import forensics_metric

from .test_report_mitigations import PROV, with_id

QUALITIES = (None, 10, 50)
DATASETS = {"classification": "imagenet", "detection": "coco", "segmentation": "ade20k", "forensics": "wang"}
# headline metric at (clean, Q=10, Q=50) per task, model, mitigation; resnet18 is both a classifier and a segmenter
VALUES = {
    "classification": {
        "resnet18": {"none": (70.0, 30.0, 60.0), "finetune": (69.0, 50.0, 65.0), "offtheshelf": (70.0, 40.0, 62.0),
                     "ttac": (70.0, 55.0, 66.0), "multihead-g1": (70.0, 52.0, 64.0),
                     "multihead-g2": (70.0, 50.0, 63.0)},
        "mobilenet_v2": {"none": (72.0, 20.0, 58.0), "finetune": (71.0, 46.0, 66.0),
                         "offtheshelf": (72.0, 35.0, 60.0), "ttac": (72.0, 54.0, 67.0)}},
    "detection": {
        "faster_rcnn": {"none": (40.0, 10.0, 35.0), "finetune": (39.0, 25.0, 37.0), "offtheshelf": (40.0, 15.0, 36.0),
                        "ttac": (40.0, 28.0, 38.0), "multihead-g2": (40.0, 26.0, 37.5)},
        "mask_rcnn": {"none": (42.0, 12.0, 37.0), "finetune": (41.0, 29.0, 39.0), "offtheshelf": (42.0, 18.0, 38.0),
                      "ttac": (42.0, 31.0, 40.0)}},
    "segmentation": {
        "resnet18": {"none": (35.0, 15.0, 31.0), "finetune": (34.5, 24.0, 32.0), "offtheshelf": (35.0, 19.0, 32.0),
                     "ttac": (35.0, 26.0, 33.0), "multihead-g1": (35.0, 25.0, 32.5)}},
}
# images/s of the model alone at inference, by batch size, and one row Figure 1 must not take (train / corrector)
SPEED = {("classification", "resnet18"): {1: 300.0, 8: 1000.0}, ("classification", "mobilenet_v2"): {8: 1500.0},
         ("detection", "faster_rcnn"): {1: 12.0, 2: 20.0}, ("detection", "mask_rcnn"): {2: 15.0},
         ("segmentation", "resnet18"): {4: 50.0}}
CONFIDENCE = {"level": 0.95, "resamples": 200, "seed": 0}


def metric_file(root, task, model, mitigation, values, per_image=None):
    field = across.HEADLINE[task]
    rows = []
    for i, (q, v) in enumerate(zip(QUALITIES, values)):
        row = {"task": task, "model": model, "mitigation": mitigation, "dataset": DATASETS[task], "quality": q,
               field: v, "n_images": 100, "provenance": PROV}
        if model == "mask_rcnn":
            row["mask_ap"] = v - 3
        if per_image:
            row["per_image"] = per_image[i]
        rows.append(with_id(row))
    path = root / task / model / f"{mitigation}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "model": model, "mitigation": mitigation, "rows": rows}))
    return path


def throughput_file(root, task, model, rates):
    rows = [with_id({"task": task, "model": model, "corrector": None, "mode": "inference", "batch_size": b,
                     "images_per_s": v, "image_size": 32, "provenance": {**PROV, "rule": "throughput"}})
            for b, v in rates.items()]
    rows += [with_id({"task": task, "model": model, "corrector": c, "mode": mode, "batch_size": 64,
                      "images_per_s": 1e6, "image_size": 32, "provenance": {**PROV, "rule": "throughput"}})
             for c, mode in ((None, "train"), ("qgac", "inference"))]
    path = root / "throughput" / task / f"{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "model": model, "kind": "throughput", "rows": rows}))
    return path


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "metrics"
    files = {(task, model, m): metric_file(root, task, model, m, v)
             for task, models in VALUES.items() for model, ms in models.items() for m, v in ms.items()}
    speed = {key: throughput_file(root, *key, rates) for key, rates in SPEED.items()}
    rows = {}
    for path in [*files.values(), *speed.values()]:
        for r in json.loads(path.read_text())["rows"]:
            rows[r["id"]] = r
    return {"root": root, "files": files, "speed": speed, "rows": rows,
            "all": sorted(files.values(), key=lambda p: (p.name, str(p)), reverse=True)}  # tasks interleaved


@pytest.fixture
def drawn(monkeypatch):
    """The figure each call draws, kept past _save."""
    kept = {}
    save = figures._save

    def keep(fig, outputs, refs, dpi, inputs=None):
        kept["fig"] = fig
        save(fig, outputs, refs, dpi, inputs)

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def ref(study, task, model, mitigation, quality):
    rows = json.loads(study["files"][task, model, mitigation].read_text())["rows"]
    return f"{next(r for r in rows if r['quality'] == quality)['id']}/{across.HEADLINE[task]}"


def speed_ref(study, task, model):
    rate = max(SPEED[task, model].items())[1]  # the largest batch size's
    row = next(r for r in json.loads(study["speed"][task, model].read_text())["rows"]
               if r["images_per_s"] == rate and r["corrector"] is None and r["mode"] == "inference")
    return f"{row['id']}/images_per_s"


def refs_of(path):
    return {f"{row_id}/{field}" for row_id, field, _ in audit.figure_refs(path)}


def panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def titles(axes):
    """The panels' titles as one line each (they wrap to the panel's width)."""
    return [" ".join(ax.get_title().split()) for ax in axes]


def lines(ax):
    """{label: [(quality, drop), ...]} of a panel's labelled lines."""
    return {ln.get_label(): [tuple(map(float, xy)) for xy in ln.get_xydata()] for ln in ax.lines
            if not ln.get_label().startswith("_")}


def legend_texts(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def drop(task, model, mitigation, quality, reference="none"):
    clean = VALUES[task][model][reference][0]
    return clean - VALUES[task][model][mitigation][QUALITIES.index(quality)]


def test_figure1_points_are_each_tasks_models_with_their_own_speed(study):
    p = across.summary_tasks_points(study["all"], list(study["speed"].values()), quality=10)
    assert list(zip(p["task"], p["model"])) == [
        ("classification", "resnet18"), ("classification", "mobilenet_v2"), ("detection", "mask_rcnn"),
        ("detection", "faster_rcnn"), ("segmentation", "resnet18")]  # tasks in the reports' order, models as they come
    got = {(t, m): (x, y, s) for t, m, x, y, s in zip(p["task"], p["model"], p["x"], p["y"], p["speed"])}
    assert got == {("classification", "resnet18"): (70 - 50, 70 - 55, 1000.0),  # fine-tuned 69 clean: not used
                   ("classification", "mobilenet_v2"): (72 - 46, 72 - 54, 1500.0),
                   ("detection", "faster_rcnn"): (40 - 25, 40 - 28, 20.0),
                   ("detection", "mask_rcnn"): (42 - 29, 42 - 31, 15.0),
                   ("segmentation", "resnet18"): (35 - 24, 35 - 26, 50.0)}  # the segmenter's speed, not the 1000/s
    assert list(p["field"]) == ["top1", "top1", "map", "map", "miou"]
    seg = p.iloc[4]["refs"]
    assert seg == [ref(study, "segmentation", "resnet18", "none", None), ref(study, "segmentation", "resnet18",
                   "finetune", 10), ref(study, "segmentation", "resnet18", "none", None),
                   ref(study, "segmentation", "resnet18", "ttac", 10), speed_ref(study, "segmentation", "resnet18")]


def test_figure1_draws_a_marker_per_task_and_carries_its_refs(study, tmp_path, drawn, capsys):
    outs = [tmp_path / "sum.pdf", tmp_path / "sum.png"]
    across.summary_tasks_figure(study["all"], list(study["speed"].values()), outs, {"dpi": 60})
    expected = {ref(study, t, m, mit, q) for (t, m) in SPEED for mit, q in (("none", None), ("finetune", 10),
                                                                            ("ttac", 10))}
    expected |= {speed_ref(study, *key) for key in SPEED}
    assert len(expected) == 5 * 3 + 5
    for out in outs:
        assert refs_of(out) == expected
        assert audit.audit(str(out), str(study["root"]), verbose=False)
    assert "20/20 numbers traced" in capsys.readouterr().out
    ax = drawn["fig"].axes[0]
    offsets = [[tuple(map(float, xy)) for xy in c.get_offsets()] for c in ax.collections if len(c.get_offsets())]
    assert offsets == [[(20, 15), (26, 18)], [(13, 11), (15, 12)], [(11, 9)]]  # one scatter per task
    assert legend_texts(drawn["fig"]) == ["Classification (top-1)", "Detection (box mAP)", "Segmentation (mIoU)"]
    assert {t.get_text() for t in ax.texts} == {"y = x", "resnet18", "mobilenet_v2", "faster_rcnn", "mask_rcnn"}
    assert "points of each task's headline metric" in ax.get_title()
    again = [tmp_path / "again.pdf", tmp_path / "again.png"]
    across.summary_tasks_figure(study["all"], list(study["speed"].values()), again, {"dpi": 60})
    assert [a.read_bytes() for a in outs] == [b.read_bytes() for b in again]


def test_figure3_has_a_panel_per_task_with_each_models_drop(study, tmp_path, drawn):
    outs = [tmp_path / "drop.pdf", tmp_path / "drop.png"]
    across.drop_tasks_figure(study["all"], outs, {"dpi": 60})
    axes = panels(drawn["fig"])
    assert titles(axes) == [TASK_TITLES[t] for t in VALUES]
    assert [ax.get_ylabel() for ax in axes] == ["Drop in top-1 (points)", "Drop in box mAP (points)",
                                                "Drop in mIoU (points)"]
    for ax, (task, models) in zip(axes, VALUES.items()):
        named = {m: f"{m} ({task})" if m == "resnet18" else m for m in models}  # a classifier's and a segmenter's
        assert lines(ax) == {named[m]: [(q, drop(task, m, "none", q)) for q in (10, 50)] for m in models}
    assert legend_texts(drawn["fig"]) == ["resnet18 (classification)", "mobilenet_v2", "mask_rcnn", "faster_rcnn",
                                          "resnet18 (segmentation)"]
    expected = {ref(study, t, m, "none", q) for t, models in VALUES.items() for m in models for q in QUALITIES}
    assert len(expected) == 15
    for out in outs:
        assert refs_of(out) == expected


def bits(n_right, n=20):
    return intervals.encode([i < n_right for i in range(n)])


def test_figure3_bands_are_each_tasks_paired_intervals(tmp_path, drawn):
    # a classifier keeps hits per image, a forensic detector its per-image decisions and the field it heads with
    right = {None: 18, 10: 9, 50: 15}
    cls = [{"top1": bits(right[q])} for q in QUALITIES]
    forensic = [{"label": [0, 1] * 10, "score": [0.5] * 20, "image_accuracy": bits(right[q] - 2),
                 "accuracy": "image_accuracy"} for q in QUALITIES]
    files = [metric_file(tmp_path, "classification", "resnet18", "none", [5 * right[q] for q in QUALITIES], cls),
             metric_file(tmp_path, "forensics", "wang", "none", [5 * (right[q] - 2) for q in QUALITIES], forensic)]
    across.drop_tasks_figure(files, [tmp_path / "bands.png"], {"dpi": 60, "confidence": CONFIDENCE})
    axes = panels(drawn["fig"])
    assert titles(axes) == ["Classification", "GAN-image forensics"]
    assert axes[1].get_ylabel() == "Drop in accuracy (points)"
    assert "bands: 95 % bootstrap intervals" in " ".join(drawn["fig"].get_suptitle().split())
    for ax, per_image in zip(axes, (cls, forensic)):
        vertices = [v for c in ax.collections for path in c.get_paths() for v in path.vertices]
        for q in (10, 50):
            clean, compressed = per_image[0], per_image[QUALITIES.index(q)]
            if "top1" in clean:
                low, high = intervals.drop_interval(intervals.decode(clean["top1"]),
                                                    intervals.decode(compressed["top1"]), **CONFIDENCE)
            else:
                low, high = forensics_metric.drop_interval(clean, compressed, "accuracy", **CONFIDENCE)
            assert low < high
            for end in (low, high):  # fill_between's polygon: the lows left to right, the highs back
                assert any(np.allclose(v, (q, end)) for v in vertices), (ax.get_title(), q, end)


def test_figure4_has_each_tasks_mean_and_band_of_each_mitigation(study, tmp_path, drawn):
    outs = [tmp_path / "mit.pdf", tmp_path / "mit.png"]
    across.mitigation_tasks_figure(study["all"], outs, {"dpi": 60})
    axes = panels(drawn["fig"])
    assert titles(axes) == ["Classification (2 models)", "Detection and instance segmentation (2 models)",
                            "Semantic segmentation (1 model)"]
    assert legend_texts(drawn["fig"]) == ["None", "Fine-tuned", "Off-the-shelf AC", "TTAC"]  # no multihead
    det = lines(axes[1])
    # mean over the detectors of the drop from each one's clean reference without mitigation
    assert det["Fine-tuned"] == [(10, (15 + 13) / 2), (50, (3 + 3) / 2)]
    assert det["TTAC"] == [(10, (12 + 11) / 2), (50, (2 + 2) / 2)]
    band = [v for c in axes[1].collections for path in c.get_paths() for v in path.vertices]
    assert any(np.allclose(v, (10, 13)) for v in band) and any(np.allclose(v, (10, 15)) for v in band)  # min, max
    assert lines(axes[2])["Fine-tuned"] == [(10, 35 - 24), (50, 35 - 32)]
    assert not [c for c in axes[2].collections if len(c.get_paths())]  # one segmenter: no band
    expected = {ref(study, t, m, mit, q) for t, models in VALUES.items() for m in models
                for mit in ("none", "finetune", "offtheshelf", "ttac") for q in (10, 50)}
    expected |= {ref(study, t, m, "none", None) for t, models in VALUES.items() for m in models}
    assert len(expected) == 5 * (4 * 2 + 1)
    for out in outs:
        assert refs_of(out) == expected


def test_figure8_has_a_panel_per_member_with_own_and_multihead_ttac(study, tmp_path, drawn):
    outs = [tmp_path / "mh.pdf", tmp_path / "mh.png"]
    across.multihead_figure(study["all"], outs, {"dpi": 60})
    axes = panels(drawn["fig"])
    assert titles(axes) == ["classification: resnet18", "detection: faster_rcnn",
                                               "segmentation: resnet18"]
    assert [ax.get_ylabel() for ax in axes] == ["Drop in top-1 (points)", "Drop in box mAP (points)",
                                                "Drop in mIoU (points)"]
    assert legend_texts(drawn["fig"]) == ["None", "Own TTAC", "Multi-head TTAC (g1)", "Multi-head TTAC (g2)"]
    members = [("classification", "resnet18", ("none", "ttac", "multihead-g1", "multihead-g2")),
               ("detection", "faster_rcnn", ("none", "ttac", "multihead-g2")),
               ("segmentation", "resnet18", ("none", "ttac", "multihead-g1"))]
    labels = {"none": "None", "ttac": "Own TTAC", "multihead-g1": "Multi-head TTAC (g1)",
              "multihead-g2": "Multi-head TTAC (g2)"}
    expected = set()
    for ax, (task, model, mitigations) in zip(axes, members):
        assert lines(ax) == {labels[m]: [(q, drop(task, model, m, q)) for q in (10, 50)] for m in mitigations}
        expected |= {ref(study, task, model, m, q) for m in mitigations for q in (10, 50)}
        expected.add(ref(study, task, model, "none", None))
    assert len(expected) == 9 + 7 + 7
    for out in outs:
        assert refs_of(out) == expected


def test_four_tasks_wrap_into_two_rows(study, tmp_path, drawn):
    files = [*study["all"], metric_file(tmp_path, "forensics", "wang", "none", (90.0, 60.0, 85.0))]
    across.drop_tasks_figure(files, [tmp_path / "four.png"], {"dpi": 60})
    axes = panels(drawn["fig"])
    assert len(drawn["fig"].axes) == 4 and [ax.get_subplotspec().rowspan.start for ax in axes] == [0, 0, 1, 1]
    assert titles(axes)[3] == "GAN-image forensics" and lines(axes[3]) == {"wang": [(10, 30), (50, 5)]}


def test_bad_inputs_name_the_file(study, tmp_path):
    speed = list(study["speed"].values())
    no_seg_none = [f for f in study["all"] if f != study["files"]["segmentation", "resnet18", "none"]]
    for call in (lambda: across.drop_tasks_figure(no_seg_none, [tmp_path / "f.png"]),
                 lambda: across.mitigation_tasks_figure(no_seg_none, [tmp_path / "f.png"]),
                 lambda: across.summary_tasks_figure(no_seg_none, speed, [tmp_path / "f.png"]),
                 lambda: across.multihead_figure(no_seg_none, [tmp_path / "f.png"])):
        with pytest.raises(ValueError, match=r"segmentation/resnet18/\w+.json: no 'none' metric file of resnet18 "):
            call()
    assert not (tmp_path / "f.png").exists()
    with pytest.raises(ValueError, match=r"segmentation/resnet18.json: no inference throughput row of resnet18 alone"):
        across.summary_tasks_points(study["all"], [*speed[:-1], throughput_file(tmp_path / "t", "segmentation",
                                                                                "resnet18", {})])
    with pytest.raises(ValueError, match=r"mask_rcnn.json: no throughput rows of segmentation \(Figure 1"):
        across.summary_tasks_points(study["all"], speed[:-1])
    no_ttac = [f for f in study["all"] if f != study["files"]["detection", "faster_rcnn", "ttac"]]
    with pytest.raises(ValueError, match=r"faster_rcnn/multihead-g2.json: no ttac metric file of faster_rcnn "):
        across.multihead_figure(no_ttac, [tmp_path / "f.png"])
    with pytest.raises(ValueError, match=r"no multihead-\* rows to plot$"):
        across.multihead_drops([f for f in study["all"] if "multihead" not in f.name])
    finetuned = study["files"]["detection", "faster_rcnn", "finetune"]
    data = json.loads(finetuned.read_text())
    finetuned.write_text(json.dumps({**data, "rows": [r for r in data["rows"] if r["quality"] != 10]}))
    with pytest.raises(ValueError, match=r"detection/faster_rcnn/finetune.json: no finetune row of faster_rcnn at "
                                         "quality 10$"):
        across.summary_tasks_points(study["all"], speed, quality=10)
    assert len(across.summary_tasks_points(study["all"], speed, quality=50)) == 5


def test_rows_a_figure_cannot_place_name_their_file(study, tmp_path):
    def rewrite(name, change):
        path = tmp_path / name
        data = json.loads(study["files"]["detection", "mask_rcnn", "none"].read_text())
        data["rows"] = [change(dict(r)) for r in data["rows"]]
        path.write_text(json.dumps(data))
        return path

    # rows without a task are classification's (written before tasks were recorded): these have no top-1
    cases = {"untasked.json": (lambda r: {k: v for k, v in r.items() if k != "task"},
                               "rows without 'top1', classification's headline metric"),
             "mixed.json": (lambda r: {**r, "task": "segmentation" if r["quality"] == 10 else r["task"]},
                            r"rows of several tasks \(detection, segmentation\)"),
             "other.json": (lambda r: {**r, "task": "captioning"}, "rows of task 'captioning', which has no "),
             "nomap.json": (lambda r: {k: v for k, v in r.items() if k != "map"}, "rows without 'map', detection's")}
    for name, (change, message) in cases.items():
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            across.task_frames([rewrite(name, change)])
    (tmp_path / "empty.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="empty.json: no metric rows$"):
        across.task_frames([tmp_path / "empty.json"])


def test_table_5_covers_every_task_with_its_borrowed_correctors_marked(study):
    """Table 5 across tasks (tables.transfer_table): a block per model with a multihead corrector, each task named on
    its first block in its headline metric; in each block and column the best corrector bold, the second
    underlined (Q=10: own TTAC best everywhere here, then the better multihead group)."""
    from jpegstudy.report import tables

    tex = tables.transfer_table(list(study["files"].values()))
    lines = [line.removesuffix("\\\\").split(" & ") for line in tex.splitlines() if " & " in line and "jsrec" in line]
    assert [cells[:3] for cells in lines] == [
        ["Classification (top-1)", "resnet18", "None (JPEG)"], ["", "", r"resnet18 (own)"],
        ["", "", r"multihead g1"], ["", "", r"multihead g2"],
        ["Detection and instance segmentation (box mAP)", r"faster\_rcnn", "None (JPEG)"],
        ["", "", r"faster\_rcnn (own)"], ["", "", "multihead g2"],
        ["Semantic segmentation (mIoU)", "resnet18", "None (JPEG)"], ["", "", "resnet18 (own)"],
        ["", "", "multihead g1"]]
    q10 = [cells[3] for cells in lines]
    marks = [c.split("{")[0] if not c.startswith("\\jsrec") else "" for c in q10]
    assert marks == ["", "\\textbf", "\\underline", "", "", "\\textbf", "\\underline", "", "\\textbf", "\\underline"]
    assert [c.rsplit("{", 1)[1].rstrip("}") for c in q10] == [
        "30.00", "55.00", "52.00", "50.00", "10.00", "28.00", "26.00", "15.00", "26.00", "25.00"]
    with pytest.raises(ValueError, match="several tasks print each one's headline field"):
        tables.transfer_table(list(study["files"].values()), field="top1")


def test_throughput_table_gives_each_task_a_header_of_its_own_batch_sizes(tmp_path):
    """Appendix E: one set of columns over every task's batch sizes was mostly dashes and ran off the page; each
    task now has its own header, and the table is as wide as the task with the most columns."""
    files = [throughput_file(tmp_path, "classification", "resnet18", {1: 300.0, 8: 1000.0}),
             throughput_file(tmp_path, "detection", "faster_rcnn", {1: 12.0, 2: 20.0})]
    tex = re.sub(r"\\jsrec\{[0-9a-f]+/images_per_s\}\{([^}]*)\}", r"\1", tables.throughput_table(files))
    assert r"\begin{tabular}{llrrrr}" in tex
    lines = [line.strip() for line in tex.splitlines()]
    classification = lines.index(r"\multicolumn{6}{@{}l}{\emph{Classification}}\\")
    detection = lines.index(r"\multicolumn{6}{@{}l}{\emph{Detection and instance segmentation}}\\")
    assert lines[classification + 1] == r"Model & Corrector & inference, 1 & inference, 8 & inference, 64 & train, 64\\"
    assert lines[detection + 1] == r"Model & Corrector & inference, 1 & inference, 2 & inference, 64 & train, 64\\"
    assert r"resnet18 & -- & 300.00 & 1000.00 & -- & 1000000.00\\" in lines
    assert r"resnet18 & QGAC & -- & -- & 1000000.00 & --\\" in lines
    assert r"faster\_rcnn & -- & 12.00 & 20.00 & -- & 1000000.00\\" in lines
