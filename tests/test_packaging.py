import re
import tomllib

import yaml

from .conftest import REPO


def test_conda_env_and_pyproject_pin_the_same_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "jpegstudy.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .." in pip  # the env installs jpegstudy itself, whose command every rule calls
    pip = [r for r in pip if r != "-e .."]

    def pins(reqs):
        return {re.split("==", r)[0].lower(): r.split("==")[1] for r in reqs}

    assert all("==" in r for r in project), "every dependency is pinned"
    # mit-semseg is installed by the Makefile without its requirements (opencv-python would replace headless cv2)
    makefile = (REPO / "Makefile").read_text()
    semseg = re.search(r"^MIT_SEMSEG := (\S+)$", makefile, re.M).group(1)
    # so is compressai (it pins numpy<2)
    compressai = re.search(r"^COMPRESSAI := (\S+)$", makefile, re.M).group(1)
    assert pins(project) | pins([semseg, compressai]) == pins(pip)
    assert pins(project)["torch"] == "2.14.1" and pins(project)["torchvision"] == "0.29.1"
