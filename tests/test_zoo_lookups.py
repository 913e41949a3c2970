"""What torchvision says of its models, looked up once and read back (planning imports no torchvision after)."""

import importlib.metadata
import json
import sys

import pytest

from jpegstudy.errors import ModelError
from jpegstudy.tasks import zoo


def test_lookups_are_kept_per_torchvision_version_and_read_back_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = zoo.default_transform("resnet50", "IMAGENET1K_V2")
    assert spec == {"resize": 232, "crop": 224, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225]}  # torchvision's documented V2 recipe
    with pytest.raises(ModelError, match=r"^resnet50: no torchvision weights 'COCO_V1'; available: IMAGENET1K_V1"):
        zoo.default_transform("resnet50", "COCO_V1")
    assert "COCO_V1" in zoo.torchvision_weight_names("fasterrcnn_resnet50_fpn")
    record = tmp_path / ".snakemake" / "jpegstudy" / f"torchvision-{importlib.metadata.version('torchvision')}.json"
    kept = json.loads(record.read_text())
    assert kept["transform resnet50 IMAGENET1K_V2"] == {"value": spec}
    assert kept["transform resnet50 COCO_V1"]["error"].startswith("resnet50: no torchvision weights 'COCO_V1'")
    # with torchvision unimportable, the answers (and the refusal) come from the record
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert zoo.default_transform("resnet50", "IMAGENET1K_V2") == spec
    with pytest.raises(ModelError, match=r"^resnet50: no torchvision weights 'COCO_V1'"):
        zoo.default_transform("resnet50", "COCO_V1")
    assert zoo.torchvision_weight_names("fasterrcnn_resnet50_fpn") == kept["weights fasterrcnn_resnet50_fpn"]["value"]
    with pytest.raises(ImportError):  # not yet looked up: torchvision is needed
        zoo.default_transform("resnet18", "IMAGENET1K_V1")
