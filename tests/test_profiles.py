"""profiles/slurm and profiles/local are snakemake profiles that plan the study (the slurm one runs for real in
tests/test_slurm.py)."""

import re

import pytest
import yaml

from .conftest import REPO, run_snakemake


@pytest.mark.parametrize("profile", ["slurm", "local"])
def test_a_profile_plans_the_smoke_study(tmp_path, profile):
    result = run_snakemake(tmp_path, "--profile", str(REPO / "profiles" / profile), "-n", quiet=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE).group(1)) > 100


def test_the_slurm_profile_bundles_the_report_and_retries_training():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["group-components"] == ["report=1000"]
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] is True
    # every report rule is in the group the profile bundles
    rules = (REPO / "rules" / "report.smk").read_text()
    assert rules.count("\nrule ") == rules.count('group:\n        "report"') > 20


def test_the_paper_config_plans_the_whole_study_with_its_datasets_present(tmp_path):
    """benchmarks/dag_dryrun.py's stand-ins (the dataset folders and checkpoint files, empty) under tmp_path."""
    import importlib.util
    import subprocess

    spec = importlib.util.spec_from_file_location("dag_dryrun", REPO / "benchmarks" / "dag_dryrun.py")
    dryrun = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dryrun)
    config = dryrun.relocate(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), str(tmp_path / "data"))
    for key, path in dryrun.relocated(config, str(tmp_path / "data")):
        if key in dryrun.INPUT_KEYS:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work"), "--configfile",
                             str(tmp_path / "paper.yaml"), "-n"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.MULTILINE))
    # 21 models (9 classifiers, 3 detectors, 7 segmenters, 2 forensic detectors), 4 datasets at 9 qualities
    assert counts["resolve_model"] == "9" and counts["resolve_detector"] == "3" and counts["resolve_segmenter"] == "7"
    assert counts["compress"] == "36" and counts["finetune"] == "21" and counts["train_ttac"] == "21"
    assert counts["resolve_qgac"] == "1" and "train_offtheshelf_qgac" not in counts
    # the codec study: CompressAI's six published networks, 6 codecs x 6 qualities of 4 datasets, every model on every
    # codec with 5 mitigations (and the JPEG-trained pixel corrector on JPEG)
    assert counts["resolve_codec"] == "6" and "train_codec" not in counts and counts["compress_codec"] == "144"
    assert counts["evaluate_codec"] == str(21 * (6 * 5 + 1)) and counts["finetune_codec"] == str(21 * 6)
    assert int(counts["evaluate"]) > 100 and int(counts["total"]) > 300
