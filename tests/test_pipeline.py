"""config/smoke.yaml through snakemake, as a user runs it: every rule, twice, in fresh folders."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from jpegstudy import audit
from jpegstudy.report.metrics import fmt

from .conftest import REPEATED, REPO, run_snakemake


def metric_values(workdir):
    out = {}
    for path in sorted((workdir / "results" / "metrics" / "classification").rglob("*.json")):
        for row in json.loads(path.read_text())["rows"]:
            out[(row["model"], row["mitigation"], row["quality"])] = (row["top1"], row["top5"], row["n_images"])
    return out


def test_smoke_study_makes_table_figure_and_metrics(smoke_runs):
    workdir = smoke_runs[0]
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    values = metric_values(workdir)
    models = list(smoke["classification"]["models"])
    assert {(m, q) for m, mitigation, q in values if mitigation == "none"} == {
        (m, q) for m in models for q in [None, *smoke["qualities"]]}
    assert {(m, mitigation) for m, mitigation, _ in values} == {
        (m, mitigation) for m in models for mitigation in ("none", "finetune", "offtheshelf", "ttac")} | {
        ("resnet18", "transfer-mobilenet_v2"), ("mobilenet_v2", "transfer-resnet18")} | {
        ("mobilenet_v2", f"{net}-{how}") for net in ("arcnn", "idcn") for how in ("offtheshelf", "ttac")} | {
        ("mobilenet_v2", "multihead-two_task")}  # the classifier of the smoke study's one multihead group
    # the quality-aware baselines are evaluated at their own quality only
    assert {q for m, mitigation, q in values if mitigation == "idcn-ttac"} == {None, 10}
    assert all(n == 30 for _, _, n in values.values())  # 10 classes x 3 val images
    for name in ("classification", "classification_top5", "ac_comparison"):
        assert (workdir / "reports" / "tables" / f"{name}.tex").exists()
    for name in ("mitigation", "transfer", "summary"):
        assert (workdir / "reports" / "figures" / f"{name}_classification.png").stat().st_size > 1000
    for ext in ("pdf", "png"):
        assert (workdir / "reports" / "figures" / f"drop_classification.{ext}").stat().st_size > 1000
    for q in smoke["qualities"]:
        manifest = json.loads((workdir / "results/data/embedded" / f"val-q{q}" / "manifest.json").read_text())
        assert manifest["source"]["quality"] == q and manifest["images"][0]["path"].endswith(".jpg")


def test_smoke_study_evaluates_every_detection_mitigation_with_coco_predictions(smoke_runs, capsys, monkeypatch):
    from pycocotools.coco import COCO

    from jpegstudy.tasks import detection_metric

    workdir = smoke_runs[0]
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    mitigations = ("none", "finetune", "offtheshelf", "ttac")
    gt = COCO(str(workdir / "results/data/scenes/val/annotations/instances_val.json"))
    rows, mask_rows = {}, {}
    # the classifier's corrector is transferred to Mask R-CNN alone (smoke.yaml's transfer_to), which is also the
    # detector of the smoke study's multihead group
    for model, iou_types, transfer in (("mask_rcnn", ("bbox", "segm"), ("transfer-mobilenet_v2", "multihead-two_task")),
                                       ("fast_rcnn", ("bbox",), ())):
        assert (workdir / "results/metrics/detection" / model / "transfer-mobilenet_v2.json").exists() == bool(transfer)
        for mitigation in mitigations + transfer:
            result = json.loads((workdir / f"results/metrics/detection/{model}/{mitigation}.json").read_text())
            assert [r["quality"] for r in result["rows"]] == [None, *smoke["qualities"]]
            predictions = workdir / "results/predictions/detection" / model / mitigation
            # (snakemake marks a folder output it made with a hidden .snakemake_timestamp)
            assert sorted(p.name for p in predictions.iterdir() if not p.name.startswith(".")) == sorted(
                ["clean.json", *(f"q{q}.json" for q in smoke["qualities"])])
            for row in result["rows"]:
                rows[row["id"]] = row
                if "segm" in iou_types:
                    mask_rows[row["id"]] = row
                assert row["task"] == "detection" and row["n_images"] == 4 and row["map"] == row["ap"]
                # the predictions file is a COCO results file: COCOeval on it gives the row's numbers again
                name = "clean" if row["quality"] is None else f"q{row['quality']}"
                results = json.loads((predictions / f"{name}.json").read_text())
                for iou_type in iou_types:
                    stats, _ = detection_metric.evaluate_map(gt, results, iou_type)
                    assert stats["AP"] == pytest.approx(row[f"{'mask_' if iou_type == 'segm' else ''}ap"], abs=1e-9)
    # Fast R-CNN scored the proposals Mask R-CNN's RPN made on the clean val scenes, at every quality
    fast = json.loads((workdir / "results/metrics/detection/fast_rcnn/none.json").read_text())
    proposals = workdir / "results/proposals/detection/mask_rcnn/val.json"
    assert {r["provenance"]["inputs"]["proposals"]["path"] for r in fast["rows"]} == {
        "results/proposals/detection/mask_rcnn/val.json"}
    assert {p["image_id"] for p in json.loads(proposals.read_text())} == set(gt.getImgIds())
    # the transferred corrector is the classifier's, trained once for classification
    transfer = json.loads((workdir / "results/metrics/detection/mask_rcnn/transfer-mobilenet_v2.json").read_text())
    assert transfer["rows"][1]["provenance"]["inputs"]["corrector"]["path"].endswith(
        "qgac/ttac/classification-mobilenet_v2.pt")
    for name, field in (("detection", "map"), ("detection_mask", "mask_ap")):
        table = workdir / "reports" / "tables" / f"{name}.tex"
        printed = re.findall(r"\\jsrec\{(\w+)/(\w+)\}\{([^}]*)\}", table.read_text())
        assert sorted(r for r, f, _ in printed if f == field) == sorted(rows if field == "map" else mask_rows)
        for row_id, printed_field, text in printed:
            assert text == fmt(rows[row_id][printed_field])
        assert audit.audit(str(table), str(workdir / "results/metrics"))
    for name in ("drop_detection", "mitigation_detection"):
        assert (workdir / "reports" / "figures" / f"{name}.png").stat().st_size > 1000
    figure = workdir / "reports/appendix/qualitative_detection_mask_rcnn.pdf"
    monkeypatch.chdir(workdir)  # the files it was drawn from are named relative to the study's folder
    assert figure.stat().st_size > 1000 and audit.audit(str(figure), str(workdir / "results/metrics"))
    # TIDE on Mask R-CNN's masks without mitigation: a row per eval set, its AP50 COCOeval's on the same predictions
    tide = json.loads((workdir / "results/metrics/tide/detection/mask_rcnn.json").read_text())
    assert tide["iou_type"] == "segm" and [r["quality"] for r in tide["rows"]] == [None, *smoke["qualities"]]
    for row in tide["rows"]:
        name = "clean" if row["quality"] is None else f"q{row['quality']}"
        results = json.loads((workdir / "results/predictions/detection/mask_rcnn/none" / f"{name}.json").read_text())
        assert row["ap"] == pytest.approx(detection_metric.evaluate_map(gt, results, "segm")[0]["AP50"], abs=0.01)
        assert set(row["main"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
        assert (workdir / "reports/appendix" / f"tide_mask_rcnn_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_numbers_equal_the_metric_rows(smoke_runs, capsys):
    workdir = smoke_runs[0]
    rows = {}
    for path in (workdir / "results" / "metrics" / "classification").rglob("*.json"):
        rows.update({r["id"]: r for r in json.loads(path.read_text())["rows"]})
    for name, field in (("classification", "top1"), ("classification_top5", "top5")):
        table = workdir / "reports" / "tables" / f"{name}.tex"
        printed = re.findall(r"\\jsrec\{(\w+)/(\w+)\}\{([^}]*)\}", table.read_text())
        # every row of every model and mitigation once, with its interval's two ends beneath it
        fields = (field, f"{field}_low", f"{field}_high")
        for name_of in fields:
            assert sorted(r for r, f, _ in printed if f == name_of) == sorted(rows)
        assert len(printed) == 3 * len(rows)
        for row_id, printed_field, text in printed:
            assert text == fmt(rows[row_id][printed_field])
        assert audit.audit(str(table), str(workdir / "results/metrics"))
        assert f"{len(printed)}/{len(printed)} numbers traced" in capsys.readouterr().out


def test_rows_carry_provenance(smoke_runs):
    path = smoke_runs[0] / "results/metrics/classification/resnet18/none.json"
    row = json.loads(path.read_text())["rows"][1]
    prov = row["provenance"]
    assert row["quality"] == 10 and prov["rule"] == "evaluate"
    assert prov["inputs"]["manifest"]["path"].endswith("val-q10/manifest.json")
    assert len(prov["inputs"]["weights"]["sha256"]) == 64
    assert prov["config"]["qualities"] == [10, 50, 90] and prov["config"]["seed"] == 0
    assert set(prov["versions"]) >= {"python", "torch", "torchvision", "pillow", "libjpeg"}
    assert prov["device"].startswith("cpu") and "commit" in prov["git"] and prov["wall_time_s"] > 0


def test_two_runs_give_identical_metrics_models_and_predictions(smoke_runs):
    first, second = smoke_runs
    repeated = metric_values(second)
    assert len({model for model, _, _ in repeated}) == 2, "the second run evaluates both classifiers"
    assert repeated == {key: value for key, value in metric_values(first).items() if key in repeated}
    # byte for byte: weights (hence every sha256 and row id), predictions, proposals and the appendix figures (the
    # metric files record each job's wall time: their values are compared above)
    for rel in REPEATED:
        if not rel.startswith("results/metrics/"):
            assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    for model in ("resnet18", "mobilenet_v2"):
        ref = f"results/models/classification/{model}/reference.pt"
        import torch

        a, b = (torch.load(w / ref, weights_only=True)["state_dict"] for w in (first, second))
        assert all(torch.equal(a[k], b[k]) for k in a)


# Made from results alone, so remade from the first run's (not the throughput rows and Figure 1: timings)
REMADE = ("reports/tables/classification.tex", "reports/tables/ac_comparison.tex", "reports/tables/detection_mask.tex",
          "reports/figures/mitigation_classification.png", "reports/figures/drop_classification.pdf",
          "reports/figures/drop_classification.png", "reports/appendix/qualitative_detection_mask_rcnn.png",
          "reports/appendix/tide_mask_rcnn_q10.png", "reports/tables/segmentation.tex",
          "reports/figures/model_segmentation_resnet18_ppm.png",
          "reports/appendix/qualitative_segmentation_resnet18_ppm.png", "reports/tables/forensics.tex",
          "reports/figures/mitigation_forensics.png", "reports/figures/model_forensics_chai.png",
          "reports/figures/forensics_spectrum.png", "reports/tables/findings.tex", "reports/tables/transfer.tex",
          "reports/figures/drop_tasks.png", "reports/figures/mitigation_tasks.pdf", "reports/figures/multihead.png",
          "reports/figures/transfer_detection.png")


def test_tables_and_figures_remade_from_the_same_results_are_the_same_bytes(smoke_copy):
    made = {rel: (smoke_copy / rel).read_bytes() for rel in REMADE}
    for rel in REMADE:
        (smoke_copy / rel).unlink()
    result = run_snakemake(smoke_copy, *REMADE)
    assert result.returncode == 0, result.stderr[-2000:]
    for rel in REMADE:
        assert (smoke_copy / rel).read_bytes() == made[rel], rel


def test_lint_passes():
    result = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "--lint"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def smoke_with(**changes):
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = config
        for p in parents:
            node = node[p]
        node[key] = value
    return config


@pytest.mark.parametrize("changes, message", [
    ({"qualities": [0, 50]}, "jpegstudy: config qualities[0]: 0 is less than the minimum of 1"),
    ({"qualities": [10, 101]}, "jpegstudy: config qualities[1]: 101 is greater than the maximum of 100"),
    ({"classification__models": {"resnet19": {"weights": "train"}}},
     "jpegstudy: config classification.models.resnet19: unknown model 'resnet19'; known: efficientnet_b3"),
    ({"datasets": {"embedded": {"kind": "embedded"}, "imnet": {"kind": "imagenet", "val": "/no/such/imagenet/val"}},
      "classification__dataset": "imnet"},
     "jpegstudy: config datasets.imnet.val: /no/such/imagenet/val does not exist"),
    ({"classification__models__resnet18__weights": "/no/such/r18.pth"},
     "jpegstudy: config classification.models.resnet18.weights: /no/such/r18.pth is neither 'train'"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, changes, message):
    result = run_snakemake(tmp_path, "-n", config=smoke_with(**changes))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "results").exists()


def test_own_checkpoint_on_own_flat_imagenet_folder(tmp_path):
    """How a user evaluates their own model on their own data: a flat val folder with a ground-truth file, used in
    place (in a path with a space), a checkpoint with its own preprocessing; replacing the checkpoint reruns."""
    import numpy as np
    import torch
    from PIL import Image

    from jpegstudy.tasks import classification

    val = tmp_path / "my imagenet" / "val"
    val.mkdir(parents=True)
    rng = np.random.default_rng(0)
    wnids = ["n01484850", "n01440764", "n01443537"] * 2
    for i, wnid in enumerate(wnids, 1):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    gt = tmp_path / "my imagenet" / "val labels.txt"
    gt.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {w}\n" for i, w in enumerate(wnids, 1)))
    torch.manual_seed(0)
    ckpt = tmp_path / "mine.pth"
    torch.save({"epoch": 90, "state_dict": classification.build("resnet18", 3).state_dict()}, ckpt)
    config = {
        "qualities": [20], "device": "cpu",
        "datasets": {"mine": {"kind": "imagenet", "val": str(val), "ground_truth": str(gt)}},
        "classification": {"dataset": "mine", "eval_batch_size": 4, "mitigations": [], "models": {"r18": {
            "arch": "resnet18", "weights": str(ckpt),
            "transform": {"resize": 36, "crop": 32, "interpolation": "bicubic", "mean": [0.5] * 3,
                          "std": [0.5] * 3}}}},
    }
    result = run_snakemake(tmp_path / "run", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "run/results/data/mine/val/manifest.json").read_text())
    assert manifest["root"] == str(val) and manifest["classes"] == ["n01440764", "n01443537", "n01484850"]
    assert [im["label"] for im in manifest["images"]] == [2, 0, 1, 2, 0, 1] and manifest["dataset"] == "mine"
    assert not list((tmp_path / "run/results/data/mine/val").glob("**/*.JPEG"))  # referenced, not copied
    ref = torch.load(tmp_path / "run/results/models/classification/r18/reference.pt", weights_only=True)
    assert ref["source"] == str(ckpt) and ref["transform"]["resize"] == 36 and ref["transform"]["mean"] == [0.5] * 3
    rows = json.loads((tmp_path / "run/results/metrics/classification/r18/none.json").read_text())["rows"]
    assert [(r["quality"], r["n_images"]) for r in rows] == [(None, 6), (20, 6)]
    assert rows[0]["provenance"]["inputs"]["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert "train" not in rows[0]["provenance"]["config"]["classification.models.r18"]  # only keys it used
    assert (tmp_path / "run/reports/tables/classification.tex").exists()
    # a new checkpoint under the same path is a new model: snakemake plans to resolve and evaluate it again
    torch.save(classification.build("resnet18", 3).state_dict(), ckpt)
    plan = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "run"), "-n"],
                          capture_output=True, text=True)
    assert re.search(r"^resolve_model +1$", plan.stdout, re.M) and re.search(r"^evaluate +\d+$", plan.stdout, re.M), \
        plan.stdout[-2000:]


def test_a_configfile_replaces_the_default_study(tmp_path):
    """`--configfile` is a whole study: the embedded study's models must not be merged into it."""
    config = smoke_with(classification__models={"vgg": {"arch": "vgg19"}}, classification__mitigations=[])
    # a classification study only (the detectors' and segmenters' backbones are gone with resnet18 and mobilenet_v2,
    # and with them the multihead group's members)
    del config["detection"], config["segmentation"], config["multihead"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "mine.yaml"),
                           quiet=False)  # config.yaml in the workdir is the smoke study
    assert result.returncode == 0, result.stderr[-2000:]
    plan = result.stdout + result.stderr
    assert "results/models/classification/vgg/reference.pt" in plan
    assert "classification/resnet18" not in plan and "classification/mobilenet_v2" not in plan


def test_a_killed_training_job_resumes_to_the_same_weights(tmp_path):
    """Kill snakemake (and its job) mid-way through fine-tuning; run it again: it resumes after the last finished
    epoch and ends with the very weights of an uninterrupted run."""
    config = smoke_with(classification__mitigate={"epochs": 12, "batch_size": 16})
    target = "results/models/classification/resnet18/finetune.pt"
    result = run_snakemake(tmp_path, target, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    whole = (tmp_path / target).read_bytes()
    resume = tmp_path / (target + ".resume")
    assert not resume.exists()  # dropped once the output is written

    (tmp_path / target).unlink()
    job = subprocess.Popen(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "1", target],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not resume.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert resume.exists() and not (tmp_path / target).exists()

    subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--unlock"], check=True,
                   capture_output=True)
    result = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "1",
                             "--rerun-incomplete", target], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "results/logs/mitigate/finetune-classification-resnet18.log").read_text()
    done = int(re.search(r"resuming from .*: epochs 1-(\d+) already done", log).group(1))
    assert 1 <= done < 12
    assert (tmp_path / target).read_bytes() == whole
    assert not resume.exists()


def planned_rules(result) -> set[str]:
    """The rules of a dry-run plan (its 'Job stats' table), 'all' left out."""
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.strip()} - {"all"}


@pytest.fixture
def smoke_copy(smoke_runs, tmp_path):
    """A copy of a finished smoke study (timestamps and snakemake's metadata kept) that a test may change."""
    copy = tmp_path / "study"
    shutil.copytree(smoke_runs[0], copy, symlinks=True)
    return copy


def test_study_pdf_and_every_table_answer_the_audit(smoke_runs, capsys):
    workdir = smoke_runs[0]
    assert (workdir / "reports/study.pdf").read_bytes().startswith(b"%PDF")
    for path in [*sorted((workdir / "reports/tables").glob("*.tex")), workdir / "reports/study.pdf"]:
        assert audit.audit(str(path), str(workdir / "results/metrics")), path
        summary = capsys.readouterr().out.splitlines()[-1]
        n = int(re.search(r"(\d+)/\1 numbers traced", summary).group(1))
        assert n > 0, summary


def test_one_figure_alone_plans_only_its_job(smoke_copy):
    """After a full run, a deleted figure is remade by its own job and nothing upstream."""
    (smoke_copy / "reports/figures/drop_classification.png").unlink()
    result = run_snakemake(smoke_copy, "-n", "reports/figures/drop_classification.png", quiet=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_rules(result) == {"figure_drop_classification"}, result.stdout[-3000:]
    nothing = run_snakemake(smoke_copy, "-n", "reports/figures/mitigation_classification.png", quiet=False)
    assert "Nothing to be done" in nothing.stdout + nothing.stderr


def test_a_plotting_option_reruns_only_plotting(smoke_copy):
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["report"]["figure"]["dpi"] = 80
    result = run_snakemake(smoke_copy, "-n", config=config, quiet=False)
    assert result.returncode == 0, result.stderr[-2000:]
    planned = planned_rules(result)
    assert "figure_drop_classification" in planned and "study_pdf" in planned
    assert all(r.startswith(("figure_", "appendix_")) or r == "study_pdf" for r in planned), planned


def test_study_pdf_is_ordered_as_the_paper(smoke_runs):
    """Findings first, the results across tasks (Figures 1, 3, 4, Table 1, Figure 5, Figure 7, Table 5, Figure 8),
    each task's own figures, the codec study (after the paper's sections: its closing question), then appendices
    A-F."""
    tex = (smoke_runs[0] / "reports/study.tex").read_text()
    sections = re.findall(r"^\\(section\{[^}]*\}|appendix)", tex, re.MULTILINE)
    assert sections == [f"section{{{s}}}" if s != "appendix" else s for s in (
        "Findings", "Results across tasks", "Classification", "Detection and instance segmentation",
        "Semantic segmentation", "GAN-image forensics", "Beyond JPEG", "appendix", "GradCAM", "TIDE",
        "Qualitative results", "Per-model results", "Throughput", "Provenance")]
    body = tex[tex.index(r"\section{Results across tasks}"):tex.index(r"\section{Classification}")]
    shown = re.findall(r"\\(?:includegraphics\[[^]]*\]|input)\{([\w.-]+)\}", body)
    assert shown == ["figure-summary-tasks.pdf", "figure-drop-tasks.pdf", "figure-mitigation-tasks.pdf",
                     "table-ac-comparison.tex", "example-detection.pdf", "example-segmentation.pdf",
                     "figure-transfer.pdf", "figure-transfer-detection.pdf", "figure-transfer-segmentation.pdf",
                     "table-transfer.tex", "figure-multihead.pdf"]  # the pieces' names in the build folder
    codecs = tex[tex.index(r"\section{Beyond JPEG}"):tex.index(r"\appendix")]
    assert re.findall(r"\\(?:includegraphics\[[^]]*\]|input)\{([\w.-]+)\}", codecs) == [
        "figure-bpp.pdf", "figure-bpp-mitigations.pdf", "figure-bpp-detection.pdf", "table-codecs.tex"]
