"""config/smoke.yaml through a real Slurm: a one-node cluster on this machine (tests/slurm_cluster.py), every job
submitted with sbatch by snakemake's slurm executor with profiles/slurm, polled with squeue; the outputs are the
local run's, byte for byte.

Slow (each of the ~150 jobs starts its own Python and imports torch, without the job server): `make test-slurm`
runs it, and .ci/run after the default suite.
"""

import json
import re
import subprocess

import pytest
import yaml

from . import slurm_cluster
from .conftest import REPEATED, REPO, run_snakemake
from .test_pipeline import REMADE, metric_values

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(slurm_cluster.missing() is not None, reason=str(slurm_cluster.missing()))]

# What the test cluster needs beyond the profile: no job accounting here, so no account and squeue for status
# (sacct answers nothing, ../shared/notes/slurm.md); quick polls, as jobs take seconds.
CLUSTER_OPTIONS = ("--profile", str(REPO / "profiles" / "slurm"), "--slurm-no-account", "--slurm-status-command",
                   "squeue", "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                   "--slurm-keep-successful-logs")  # the plugin deletes a finished job's log folder otherwise


def all_metric_values(workdir):
    """Every metric row by (file, quality): its values and its inputs' paths and sha256, without ids and the rest of
    the provenance (hosts and wall times differ between the runs). Not the throughput files: they are timings."""
    out = {}
    for path in sorted((workdir / "results" / "metrics").rglob("*.json")):
        if "throughput" in path.relative_to(workdir).parts:
            continue
        result = json.loads(path.read_text())
        for row in result.get("rows", []):
            values = {k: v for k, v in row.items() if k not in ("id", "provenance")}
            inputs = row.get("provenance", {}).get("inputs", {})
            out[(str(path.relative_to(workdir)), row.get("quality"))] = (values, inputs)
    return out


def test_the_smoke_study_on_slurm_gives_the_local_runs_outputs(smoke_run, tmp_path_factory):
    local = smoke_run
    work = tmp_path_factory.mktemp("slurm-study")
    with slurm_cluster.cluster(tmp_path_factory.mktemp("slurm-daemons")):
        result = run_snakemake(work, *CLUSTER_OPTIONS, "--verbose", quiet=False)  # verbose: the sbatch calls
        jobs = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
    log = result.stdout + result.stderr
    (work / "snakemake-slurm.log").write_text(log)  # kept with the study for a look after a failure
    assert result.returncode == 0, log[-6000:]
    assert jobs.strip() == "", f"jobs left in the queue:\n{jobs}"
    # every job but `all` went through sbatch, the report's tables and figures as one group job; no retries
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    calls = re.findall(r"sbatch call: (.*)", log)
    planned = int(re.search(r"^total\s+(\d+)", log, re.MULTILINE).group(1))
    assert len(submitted) == len(set(submitted)) == len(calls) and 0.5 * planned < len(submitted) < planned - 1
    assert "Trying to restart" not in log
    # (the plugin names a group job's log folder group_{group}_{its rules})
    assert len([c for c in calls if "/slurm_logs/group_report_" in c]) == 1, [c for c in calls if "group_" in c]
    assert len([p for p in (work / ".snakemake/slurm_logs").iterdir() if p.name.startswith("group_")]) == 1
    # each sbatch asked for what the config gives its kind: the schema's default, 2000 MB for 60 minutes, no GPU
    assert all(re.search(r" --mem 2000\b", c) and re.search(r" -t 60\b", c) and "--gpus" not in c
               for c in calls if "group_report" not in c), calls[:3]
    assert not (work / ".snakemake/log/jpegstudy-job-server.log").exists(), "jobs must not run in the job server"
    # the same numbers, made from the same files
    assert all_metric_values(work) == all_metric_values(local)
    assert metric_values(work) == metric_values(local)
    for rel in [*REPEATED, *REMADE]:
        if not rel.startswith("results/metrics/"):
            assert (work / rel).read_bytes() == (local / rel).read_bytes(), rel
    smoke = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    assert (work / "reports" / "study.pdf").read_bytes()[:5] == b"%PDF-" and smoke["qualities"] == [10, 50, 90]
