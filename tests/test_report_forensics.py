"""Forensics in the smoke study's report: the tables trace to their rows, each row's accuracy is its predictions'
again, the figures and the spectrum are made, and the study PDF has the forensics section."""

import json

import pytest

from jpegstudy import audit

from .test_report_segmentation import pdf_text


def test_smoke_study_makes_the_forensics_report(smoke_runs, monkeypatch):
    workdir = smoke_runs[0]
    reports = workdir / "reports"
    for name in ("forensics", "reference_forensics"):
        table = reports / "tables" / f"{name}.tex"
        assert audit.audit(str(table), str(workdir / "results/metrics")), table
    assert r"\label{tab:forensics}" in (reports / "tables/forensics.tex").read_text()
    for name in ("drop_forensics", "mitigation_forensics", "model_forensics_wang", "model_forensics_chai",
                 "forensics_spectrum"):
        for ext in ("pdf", "png"):
            assert (reports / "figures" / f"{name}.{ext}").stat().st_size > 1000
    monkeypatch.chdir(workdir)  # the spectrum names the manifest it was drawn from, from the study's folder
    assert audit.audit(str(reports / "figures/forensics_spectrum.png"), "results/metrics")
    text = pdf_text(reports / "study.pdf")
    section = text[text.index("GAN-image forensics Each forensic detector"):]
    for caption in ("Drop in real/fake accuracy against JPEG quality, per detector", "mean spectra of their "
                    "residuals", "Reference results (appendix D.3): each forensic detector"):
        assert caption in section, caption
    throughput = (reports / "tables/throughput.tex").read_text()
    assert r"\emph{GAN-image forensics}" in throughput


def test_forensics_rows_are_their_predictions_and_keep_per_image_results(smoke_runs):
    workdir = smoke_runs[0]
    for model, headline in (("wang", "image_accuracy"), ("chai", "patch_accuracy")):
        rows = json.loads((workdir / f"results/metrics/forensics/{model}/ttac.json").read_text())["rows"]
        for row in rows:
            label = "clean" if row["quality"] is None else f"q{row['quality']}"
            predictions = json.loads((workdir / f"results/predictions/forensics/{model}/ttac/{label}.json")
                                     .read_text())
            right = [p["fake"] == p["label"] for p in predictions]
            assert row["image_accuracy"] == pytest.approx(100 * sum(right) / len(right))
            assert row["accuracy"] == row[headline] and row["per_image"]["accuracy"] == headline
            assert row["n_images"] == len(predictions) == 8
            if model == "chai":
                assert row["patch_accuracy"] == pytest.approx(100 * sum(p["patches_right"] for p in predictions) / 8,
                                                      abs=1e-3)
            else:
                assert "patch_accuracy" not in row
