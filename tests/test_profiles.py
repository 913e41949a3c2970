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
