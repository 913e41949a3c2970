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


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module of small nets: with the CPUs busy, two threads' spinning made a step 20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_snakemake(workdir, *args, config=None, quiet=True):
    workdir.mkdir(parents=True, exist_ok=True)
    if config is None:
        shutil.copy(REPO / "config" / "smoke.yaml", workdir / "config.yaml")
    else:
        # in the config's own key order: models are in config order, and a codec study takes each task's first
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # -q last: it takes optional values, so a target after it would be read as one
    return subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args,
                           *(["-q"] if quiet else [])], capture_output=True, text=True)


# What the second smoke run makes, each file compared byte for byte with the first run's: every kind of trained
# model, a few evaluations and predictions, the appendix figures drawn from models. Tables, figures and the PDF are
# functions of the results; test_pipeline remakes them from the first run's and compares those bytes instead, so the
# second run skips the evaluations that only feed them.
REPEATED = (
    "results/models/classification/resnet18/reference.pt", "results/models/classification/mobilenet_v2/reference.pt",
    "results/models/classification/mobilenet_v2/finetune.pt", "results/models/correction/qgac/offtheshelf.pt",
    "results/models/correction/qgac/multihead/two_task.pt",
    "results/metrics/classification/mobilenet_v2/multihead-two_task.json",
    "results/models/correction/qgac/ttac/classification-resnet18.pt",
    "results/models/correction/idcn/q10/ttac/classification-mobilenet_v2.pt",
    "results/metrics/classification/resnet18/none.json", "results/metrics/classification/mobilenet_v2/ttac.json",
    "results/models/detection/mask_rcnn/reference.pt", "results/models/detection/mask_rcnn/finetune.pt",
    "results/models/correction/qgac/ttac/detection-mask_rcnn.pt",
    "results/predictions/detection/mask_rcnn/ttac/q10.json", "results/proposals/detection/mask_rcnn/train.json",
    "results/models/detection/fast_rcnn/reference.pt", "results/predictions/detection/fast_rcnn/none/q10.json",
    "results/models/segmentation/resnet18_ppm/reference.pt", "results/models/segmentation/mobilenet_c1/finetune.pt",
    "results/models/correction/qgac/ttac/segmentation-resnet18_ppm.pt",
    "results/predictions/segmentation/resnet18_ppm/ttac/q10.json",
    "results/models/forensics/generator/fakes.pt", "results/models/forensics/wang/reference.pt",
    "results/models/forensics/chai/finetune.pt", "results/models/correction/qgac/ttac/forensics-chai.pt",
    "results/predictions/forensics/chai/ttac/q10.json",
    # the codec study: the learned codec's training and entropy coding, a codec set, its corrector and fine-tuning
    "results/models/codecs/learned/q1.pt", "results/data/embedded/val-learned-q1/manifest.json",
    "results/data/scenes/val-webp-q10/manifest.json",
    "results/models/correction/pixel/webp/ttac/classification-resnet18.pt",
    "results/models/classification/resnet18/finetune-learned.pt",
    "results/metrics/codecs/webp/classification/resnet18/transfer.json",
    *(f"reports/appendix/{kind}_classification_{model}.{ext}" for kind in ("gradcam", "qualitative")
      for model in ("resnet18", "mobilenet_v2") for ext in ("pdf", "png")),
)


def made_by(rel: str) -> str:
    """The target that makes a file: a predictions file is its evaluation's (the rule's output is their folder)."""
    parts = rel.split("/")
    return f"results/metrics/{'/'.join(parts[2:5])}.json" if parts[1] == "predictions" else rel


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """config/smoke.yaml run once, the whole study, in a fresh folder (shared by every test module: it takes
    minutes)."""
    workdir = tmp_path_factory.mktemp("first")
    result = run_snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def smoke_runs(smoke_run, tmp_path_factory):
    """The whole smoke study, then the REPEATED files alone in a second fresh folder."""
    workdir = tmp_path_factory.mktemp("second")
    result = run_snakemake(workdir, *sorted({made_by(rel) for rel in REPEATED}))
    assert result.returncode == 0, result.stderr[-3000:]
    return [smoke_run, workdir]
