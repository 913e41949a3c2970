"""The findings page (report/findings.py): the paper's three claims with the study's numbers and computed verdicts,
from hand-made metric files of two tasks whose drops are worked out by hand below; its derived numbers audited."""

import json
import re
import subprocess

import pytest

from jpegstudy import audit
from jpegstudy.report import findings, study
from jpegstudy.report.metrics import read_rows

from .conftest import REPO, needs
from .test_report_mitigations import PROV, with_id

QUALITIES = (None, 10, 20, 50)  # the lowest is 10, the moderate 50
DATASETS = {"classification": "imagenet", "detection": "coco", "segmentation": "ade20k", "forensics": "fakes"}
FIELDS = {"classification": "top1", "detection": "map", "segmentation": "miou", "forensics": "accuracy"}
# Per task, model and mitigation: the headline metric at (clean, Q=10, Q=20, Q=50). Drops are from each model's
# clean row without mitigation: classification's resnet50 at Q=10: 80 - 40 = 40 (none), 80 - 65 = 15 (fine-tuned),
# 80 - 66 = 14 (TTAC); mobilenet_v2: 35, 12, 11. Shares of clean at Q=10: 50 % each; detection's: 62.5 % and 60 %.
STUDY = {
    "classification": {
        "resnet50": {"none": (80.0, 40.0, 60.0, 76.0), "finetune": (79.0, 65.0, 70.0, 77.0),
                     "ttac": (80.0, 66.0, 72.0, 78.0)},
        "mobilenet_v2": {"none": (70.0, 35.0, 50.0, 66.5), "finetune": (69.0, 58.0, 60.0, 67.0),
                         "ttac": (70.0, 59.0, 63.0, 68.0)}},
    "detection": {
        "mask_rcnn": {"none": (40.0, 15.0, 25.0, 36.0), "finetune": (39.0, 25.0, 30.0, 37.0),
                      "ttac": (40.0, 30.0, 33.0, 38.0)},
        "faster_rcnn": {"none": (37.5, 15.0, 24.0, 34.0), "finetune": (37.0, 24.0, 29.0, 35.0),
                        "ttac": (37.5, 28.0, 31.0, 35.5)}},
}
MASK_OFFSET = -3.0  # mask_rcnn's mask mAP: its box mAP - 3; faster_rcnn has no masks


def metric_file(root, task, model, mitigation, values):
    field = FIELDS[task]
    rows = []
    for q, v in zip(QUALITIES, values):
        row = {"task": task, "model": model, "mitigation": mitigation, "dataset": DATASETS[task], "quality": q,
               field: v, "n_images": 100, "provenance": PROV}
        if task == "detection":
            row["mask_ap"] = v + MASK_OFFSET if model == "mask_rcnn" else None
        rows.append(with_id(row))
    path = root / task / model / f"{mitigation}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "model": model, "mitigation": mitigation, "rows": rows}))
    return path


def write_study(root, spec):
    return [metric_file(root, task, model, m, values) for task, models in spec.items()
            for model, ms in models.items() for m, values in ms.items()]


def changed(**edits):
    """STUDY with (task, model, mitigation) -> values replaced; edits as task__model__mitigation=values."""
    spec = json.loads(json.dumps(STUDY))
    for key, values in edits.items():
        task, model, mitigation = key.split("__")
        spec[task][model][mitigation] = values
    return spec


@pytest.fixture
def metrics(tmp_path):
    return write_study(tmp_path / "metrics", STUDY)


def rows_of(files):
    return read_rows(files)


def row_id(files, model, mitigation, quality):
    return next(r["id"] for r in rows_of(files) if (r["model"], r["mitigation"], r["quality"]) == (model, mitigation,
                                                                                                   quality))


def verdicts(tex):
    return re.findall(r"Verdict: ([a-z ]+)\.\}", tex)


def test_the_three_claims_hold_on_the_hand_made_study(metrics):
    tex = findings.findings_page(metrics)
    assert verdicts(tex) == ["supported"] * 3
    # tasks in the paper's order of complexity; instance segmentation from the detector with masks only
    titles = re.findall(r"\\textbf\{([A-Z][\w -]+)\}, ", tex)
    assert titles == ["Classification", "Object detection", "Instance segmentation"]
    assert "3 of 3 tasks pay a lot." in tex
    assert "fine-tuning mitigates the loss of 2 of 2 models" in tex and "beats fine-tuning on 2 of 2 models" in tex


def test_printed_drops_are_the_hand_computed_ones(metrics):
    tex = findings.findings_page(metrics)
    clean = row_id(metrics, "resnet50", "none", None)
    drop = lambda m, q: re.search(rf"\\jsdrop\{{{clean}/top1\}}\{{{row_id(metrics, 'resnet50', m, q)}/top1\}}"
                                  r"\{([^}]*)\}", tex).group(1)
    assert (drop("none", 10), drop("finetune", 10), drop("ttac", 10)) == ("40.00", "15.00", "14.00")
    assert (drop("none", 50), drop("finetune", 50), drop("ttac", 50)) == ("4.00", "3.00", "2.00")  # Q=50: moderate
    assert not re.search(rf"/top1\}}\{{{row_id(metrics, 'resnet50', 'none', 20)}/", tex)  # Q=20 is not shown
    means = re.findall(r"\\jsmeandrop\{[0-9a-f][^}]*\}\{([^}]*)\}", tex)
    assert means[:3] == ["37.50", "13.50", "12.50"]  # classification's table: (40 + 35) / 2, (15 + 12) / 2, ...
    shares = re.findall(r"\\jsmeanrel\{[0-9a-f][^}]*\}\{([^}]*)\}", tex)
    # classification at Q=10 (50, 50 %) and Q=50 (5, 5); detection (62.5, 60; 10, 9.33); masks 25 / 37, 4 / 37
    assert shares[:6] == ["50.00", "5.00", "61.25", "9.67", f"{100 * 25 / 37:.2f}", f"{100 * 4 / 37:.2f}"]
    # TTAC's advantage: fine-tuning's drop minus TTAC's, mean over the models: (1 + 1) / 2; detection (5 + 4) / 2
    assert "TTAC's mean advantage\n\\jsmeandrop" in tex
    advantages = re.findall(r"advantage\n\\jsmeandrop\{[^}]*\}\{([^}]*)\}", tex)
    assert advantages == ["1.00", "4.50", "5.00"]


def test_claim_3_is_contradicted_when_ttac_is_far_worse(tmp_path):
    spec = changed(**{f"{task}__{model}__ttac": (ms["none"][0], ms["none"][1] + 1, 50.0, ms["none"][3])
                      for task, models in STUDY.items() for model, ms in models.items()})  # barely above none
    tex = findings.findings_page(write_study(tmp_path / "m", spec))
    assert verdicts(tex) == ["supported", "supported", "contradicted"]
    assert "TTAC approaches or beats fine-tuning on 0 of 2 models" in tex
    # why: each model's two drops and the gap, traceable
    assert re.search(r"\\texttt\{resnet50\} \(TTAC's drop \\jsdrop\{[^}]+\}\{[^}]+\}\{39.00\} against fine-tuning's "
                     r"\\jsdrop\{[^}]+\}\{[^}]+\}\{15.00\}, \\jsdrop\{[^}]+\}\{[^}]+\}\{24.00\} points\sabove\)", tex)


def test_claim_3_is_partly_supported_when_one_model_lags(tmp_path):
    spec = changed(classification__mobilenet_v2__ttac=(70.0, 55.5, 63.0, 68.0))  # 2.50 points above fine-tuning
    tex = findings.findings_page(write_study(tmp_path / "m", spec))
    assert verdicts(tex)[2] == "partly supported"
    assert "beats fine-tuning on 1 of 2 models" in tex and "\\texttt{mobilenet\\_\\allowbreak{}v2} (TTAC's drop" in tex
    spec = changed(classification__mobilenet_v2__ttac=(70.0, 56.0, 63.0, 68.0))  # exactly 2.00 points: it does
    assert verdicts(findings.findings_page(write_study(tmp_path / "n", spec)))[2] == "supported"


def test_claim_3_needs_the_advantage_to_grow_with_complexity(tmp_path):
    # detection's TTAC only as good as fine-tuning: its advantage (0) is below classification's (1)
    spec = changed(detection__mask_rcnn__ttac=(40.0, 25.0, 33.0, 38.0),
                   detection__faster_rcnn__ttac=(37.5, 24.0, 31.0, 35.5))
    tex = findings.findings_page(write_study(tmp_path / "m", spec))
    assert verdicts(tex)[2] == "partly supported"
    assert re.search(r"\{1.00\} for classification \$>\$ \\jsmeandrop\{[^}]+\}\{0.00\} for object detection "
                     r"\(\\emph\{fails\}\)", tex)


def test_claim_2_flips_with_fine_tuning(tmp_path):
    no_help = {f"{task}__{model}__finetune": (ms["none"][0], ms["none"][1] + 2, 50.0, ms["none"][3])
               for task, models in STUDY.items() for model, ms in models.items()}
    tex = findings.findings_page(write_study(tmp_path / "m", changed(**no_help)))
    assert verdicts(tex)[1] == "contradicted"
    # resnet50 fine-tuned drops 38, more than 75 % of 40: the numbers that decided it are shown
    assert re.search(r"\\texttt\{resnet50\} \(\\jsdrop\{[^}]+\}\{[^}]+\}\{38.00\} fine-tuned against "
                     r"\\jsdrop\{[^}]+\}\{[^}]+\}\{40.00\}\)", tex)
    one = {"classification__resnet50__finetune": no_help["classification__resnet50__finetune"]}
    assert verdicts(findings.findings_page(write_study(tmp_path / "n", changed(**one))))[1] == "partly supported"


def test_claim_1_flips_with_the_cost_and_the_order(tmp_path):
    harmless = {f"{task}__{model}__none": (ms["none"][0], ms["none"][0] - 1, ms["none"][0], ms["none"][0])
                for task, models in STUDY.items() for model, ms in models.items()}  # under 10 % of clean
    tex = findings.findings_page(write_study(tmp_path / "m", changed(**harmless)))
    assert verdicts(tex)[0] == "contradicted" and "0 of 3 tasks pay a lot." in tex and "\\emph{not} a lot" in tex
    # detection loses less than classification (in shares of clean): the order fails, the claim is partly supported
    milder = changed(detection__mask_rcnn__none=(40.0, 25.0, 30.0, 36.0),
                     detection__faster_rcnn__none=(37.5, 22.5, 28.0, 34.0))
    tex = findings.findings_page(write_study(tmp_path / "n", milder))
    assert verdicts(tex)[0] == "partly supported"
    assert re.search(r"\{50.00\}\\,\\% for classification \$>\$ \\jsmeanrel\{[^}]+\}\{38.75\}\\,\\% for object "
                     r"detection \(\\emph\{fails\}\)", tex)


def test_a_classification_study_alone_still_gets_a_page(tmp_path):
    tex = findings.findings_page(write_study(tmp_path / "m", {"classification": STUDY["classification"]}))
    assert re.findall(r"\\textbf\{([A-Z][\w -]+)\}, ", tex) == ["Classification"]
    # the comparisons across tasks cannot be made: claims 1 and 3 hold only in part, and the page says why
    assert verdicts(tex) == ["partly supported", "supported", "partly supported"]
    assert "The order across tasks is untested: it needs two tasks besides forensics, this study has 1." in tex


def test_forensics_is_reported_apart_from_the_order(tmp_path):
    spec = {**STUDY, "forensics": {"wang": {"none": (99.0, 50.0, 70.0, 90.0), "finetune": (98.0, 80.0, 85.0, 95.0),
                                            "ttac": (99.0, 81.0, 86.0, 96.0)}}}
    tex = findings.findings_page(write_study(tmp_path / "m", spec))
    assert "(a binary decision: chance is 50\\,\\%)" in tex and "(apart from the order)" in tex
    assert not re.search(r"for GAN-image forensics \(", tex)  # in no comparison of the order
    assert "4 of 4 tasks pay a lot." in tex


def test_the_moderate_quality_is_50_or_the_middle_one():
    assert findings.moderate_quality([10, 20, 30]) == 20 and findings.moderate_quality([5, 10, 50, 90]) == 50
    assert findings.moderate_quality([10]) == 10


def test_audit_traces_the_page_and_catches_a_tampered_drop(metrics, tmp_path, capsys):
    out = tmp_path / "findings.tex"
    findings.write_findings(metrics, out)
    root = str(tmp_path / "metrics")
    assert audit.audit(str(out), root)
    text = capsys.readouterr().out
    assert re.search(r"(\d+)/\1 numbers traced to metric rows \(0 problems\)", text)
    assert "   40.00 drop of 1 pair(s) (a - b):" in text
    tex = out.read_text()
    for pattern, forged in ((r"(\\jsdrop\{[^}]+\}\{[^}]+\}\{)40.00\}", "41.00"),
                            (r"(\\jsmeandrop\{[^}]+\}\{)37.50\}", "37.00"),
                            (r"(\\jsmeanrel\{[^}]+\}\{)50.00\}", "55.00")):
        out.write_text(re.sub(pattern, rf"\g<1>{forged}}}", tex, count=1))
        assert not audit.audit(str(out), root)
        assert f"MISMATCH {forged} printed" in capsys.readouterr().out
    # a typed number in the tabular, and a drop of a row that is not there
    out.write_text(re.sub(r"\\jsdrop\{[^}]+\}\{[^}]+\}\{40.00\}", "40.00", tex, count=1))
    assert not audit.audit(str(out), root) and "UNTRACED 40.00" in capsys.readouterr().out
    out.write_text(re.sub(r"\\jsdrop\{[0-9a-f]+/", r"\\jsdrop{0123456789ab/", tex, count=1))
    assert not audit.audit(str(out), root) and "MISSING  0123456789ab/top1" in capsys.readouterr().out


def test_an_edited_metric_file_is_caught_through_a_drop(metrics, tmp_path, capsys):
    out = tmp_path / "findings.tex"
    findings.write_findings(metrics, out)
    data = json.loads(metrics[0].read_text())
    data["rows"][1]["top1"] += 1  # resnet50 none Q=10, and every drop made of it
    metrics[0].write_text(json.dumps(data))
    assert not audit.audit(str(out), str(tmp_path / "metrics"), verbose=False)
    assert f"ALTERED  {data['rows'][1]['id']}/top1" in capsys.readouterr().out


def test_the_study_pdf_lists_the_rows_behind_each_drop(metrics, tmp_path):
    out = tmp_path / "findings.tex"
    findings.write_findings(metrics, out)
    refs, untraced = audit.table_refs(out.read_text())
    assert not untraced
    shown = {f"{i}/{f}" for i, f, _ in refs}
    assert f"{row_id(metrics, 'mobilenet_v2', 'ttac', 50)}/top1" in shown  # only inside a \jsdrop
    tex = study.render({"table:findings": str(out)}, rows_of(metrics), "t")
    records = re.search(r"\\pdfinfo\{/JpegstudyRecords \(([^)]*)\)\}", tex).group(1).split()
    assert shown <= set(records)


def test_errors_name_the_file(metrics, tmp_path):
    metrics[1].write_text("{not json")
    with pytest.raises(ValueError, match=r"classification/resnet50/finetune.json: not a metric file"):
        findings.findings_page(metrics)
    lone = metric_file(tmp_path / "other", "classification", "vgg16", "ttac", (70.0, 50.0, 60.0, 65.0))
    with pytest.raises(ValueError, match=r"vgg16/ttac.json: no 'none' rows of vgg16 among the inputs"):
        findings.findings_page([lone])
    mixed = tmp_path / "mixed.json"
    rows = [*json.loads(metrics[0].read_text())["rows"], *json.loads(metrics[-1].read_text())["rows"]]
    mixed.write_text(json.dumps({"rows": rows}))
    with pytest.raises(ValueError, match=r"mixed.json: rows of several tasks \(classification, detection\)"):
        findings.findings_page([mixed])
    with pytest.raises(ValueError, match="no metric files"):
        findings.findings_page([])


def study_macros() -> str:
    """The skeleton's definitions of the macros (study.tex.j2), to typeset the page as the study PDF does."""
    lines = (REPO / "src/jpegstudy/report/templates/study.tex.j2").read_text().splitlines()
    start = lines.index("\\makeatletter")
    return "\n".join(lines[start:lines.index("\\makeatother", start) + 1])


@needs("pdflatex")
@pytest.mark.parametrize("linked", [False, True], ids=["fallbacks", "study-macros"])
def test_the_page_typesets(tmp_path, linked):
    spec = {**STUDY, "forensics": {"wang": {"none": (99.0, 50.0, 70.0, 90.0), "finetune": (98.0, 80.0, 85.0, 95.0),
                                            "ttac": (99.0, 81.0, 86.0, 96.0)}}}
    findings.write_findings(write_study(tmp_path / "m", spec), tmp_path / "findings.tex")
    preamble = "\\usepackage{hyperref}\n" + study_macros() if linked else ""
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\n" + preamble
                                      + "\n\\begin{document}\n\\input{findings}\n\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    widths = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", r.stdout)]
    assert max(widths, default=0) < 3, r.stdout[-3000:]  # at most a hair over the line
