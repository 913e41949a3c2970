import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)

# Rules and CLI tests call `jpegstudy` and `snakemake` from the venv that runs the tests.
os.environ["PATH"] = BIN + os.pathsep + os.environ["PATH"]


def needs(tool: str):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed (.ci/run installs it)")
