import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

# Rules and CLI tests call `jpegstudy` and `snakemake` from the venv that runs the tests.
os.environ["PATH"] = BIN + os.pathsep + os.environ["PATH"]


def needs(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed (.ci/run installs it)")


def run_snakemake(workdir, *args, config=None, quiet=True):
    workdir.mkdir(parents=True, exist_ok=True)
    if config is None:
        shutil.copy(REPO / "config" / "smoke.yaml", workdir / "config.yaml")
    else:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # -q last: it takes optional values, so a target after it would be read as one
    return subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args,
                           *(["-q"] if quiet else [])], capture_output=True, text=True)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """config/smoke.yaml run twice, each in a fresh folder (shared by every test module: it takes minutes)."""
    runs = []
    for name in ("first", "second"):
        workdir = tmp_path_factory.mktemp(name)
        result = run_snakemake(workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(workdir)
    return runs
