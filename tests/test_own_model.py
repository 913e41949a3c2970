"""Your own model: any torchvision classifier, any timm model, or a function of your own, each with its preprocessing,
its class count and checkpoint keys checked, and rebuilt from what its reference file records.

(The smoke study trains tests/user_models.py:build through every rule: tests/test_pipeline.py.)
"""

import copy
import re
import shutil

import pytest
import torch
import yaml
from snakemake.utils import validate

from jpegstudy import cli
from jpegstudy.config import ConfigError, builder_file, check_semantics
from jpegstudy.data import manifest as manifests
from jpegstudy.tasks import classification as C

from . import user_models
from .conftest import REPO

CLASSES = [f"c{i}" for i in range(5)]
USER = "tests/user_models.py:build"
USER_FILE = str(REPO / "tests" / "user_models.py")


def round_trip(tmp_path, arch, model, transform):
    """A reference file written for `model` and read back: (the rebuilt model, its metadata)."""
    C.save_reference(tmp_path / "ref.pt", arch=arch, build_kwargs={}, classes=CLASSES, transform=transform,
                     source="train", state_dict=model.state_dict())
    loaded, meta = C.load_reference(tmp_path / "ref.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    return loaded, meta


# --- timm -------------------------------------------------------------------------------------------------------------


def test_timm_model_checkpoint_round_trip_with_its_pretrained_cfg_transform(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=5)
    path = tmp_path / "timm-r18.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    spec = C.transform_spec("timm:resnet18.tv_in1k", str(path), None)
    # timm's resnet18.tv_in1k: input 224, crop_pct 0.875 -> resize floor(224 / 0.875) = 256, bilinear
    assert spec == {"resize": 256, "crop": 224, "interpolation": "bilinear",
                    "mean": pytest.approx([0.485, 0.456, 0.406]), "std": pytest.approx([0.229, 0.224, 0.225])}
    # timm's default tag (a1_in1k) crops 95 %, bicubic
    assert C.transform_spec("timm:resnet18", str(path), None)["resize"] == 235
    state_dict, kwargs = C.resolve("timm:resnet18.tv_in1k", str(path), CLASSES, crop=spec["crop"])
    assert kwargs == {} and set(state_dict) == set(model.state_dict())
    assert all(torch.equal(state_dict[k], v) for k, v in model.state_dict().items())
    assert C.head_key(model, "timm:resnet18") == "fc.weight"  # from timm's get_classifier()
    _, meta = round_trip(tmp_path, "timm:resnet18", model, spec)
    assert meta["builder"] == {"timm": timm.__version__} and meta["arch"] == "timm:resnet18"


def test_timm_checkpoint_with_the_wrong_class_count_or_keys_is_refused(tmp_path):
    import timm

    path = tmp_path / "ckpt.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=10).state_dict(), path)
    with pytest.raises(C.ModelError, match=r"^.*ckpt.pth: checkpoint has 10 classes \(fc.weight \[10, 512\]\) but "
                                           r"the dataset has 5$"):
        C.resolve("timm:resnet18", str(path), CLASSES, crop=32)
    torch.save(timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=5).state_dict(), path)
    with pytest.raises(C.ModelError, match=r"ckpt.pth: checkpoint does not fit timm:resnet18: missing keys "
                                           r"conv1.weight, layer1.0.conv1.weight, layer1.0.bn1.weight \(\+114 more\); "
                                           r"unexpected keys conv_stem.weight, blocks.0.0.conv_dw.weight, "
                                           r"blocks.0.0.bn1.weight \(\+236 more\)$"):
        C.resolve("timm:resnet18", str(path), CLASSES, crop=32)


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    model = C.build("timm:resnet18", 5)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    state_dict, _ = C.resolve("timm:resnet18", str(tmp_path / "model.safetensors"), CLASSES, crop=32)
    assert torch.equal(state_dict["fc.weight"], model.state_dict()["fc.weight"])


def test_a_timm_model_that_cannot_take_the_input_size_is_refused():
    with pytest.raises(C.ModelError, match=r"^timm:vit_tiny_patch16_224: fails on a 32x32 input \(AssertionError: "
                                           r"Input height \(32\) doesn't match model \(224\)\.\)$"):
        C.check_model("timm:vit_tiny_patch16_224", 5, 32)


# --- torchvision beyond the nine ---------------------------------------------------------------------------------------


def test_torchvision_architecture_outside_the_nine(tmp_path):
    arch = "torchvision:squeezenet1_1"  # a convolutional classifier: no Linear head
    assert C.transform_spec(arch, "IMAGENET1K_V1", None)["crop"] == 224
    assert C.default_weights(arch) == "IMAGENET1K_V1"
    torch.manual_seed(0)
    model = C.build(arch, 5)
    assert C.head_key(model, arch) == "classifier.1.weight"
    C.check_output(model, arch, 5, 64)
    path = tmp_path / "sq.pth"
    torch.save(model.state_dict(), path)
    state_dict, kwargs = C.resolve(arch, str(path), CLASSES, crop=64)
    assert kwargs == {} and torch.equal(state_dict["classifier.1.weight"], model.state_dict()["classifier.1.weight"])
    with pytest.raises(C.ModelError, match=r"sq.pth: checkpoint has 5 classes \(classifier.1.weight \[5, 512, 1, 1\]\) "
                                           r"but the dataset has 3$"):
        C.resolve(arch, str(path), CLASSES[:3], crop=64)
    C.save_reference(tmp_path / "ref.pt", arch=arch, build_kwargs={}, classes=CLASSES, transform={}, source=str(path),
                     state_dict=state_dict)
    loaded, meta = C.load_reference(tmp_path / "ref.pt")
    assert "builder" not in meta and torch.equal(loaded.state_dict()["classifier.1.weight"],
                                                 model.state_dict()["classifier.1.weight"])
    # the nine keep their bare names; torchvision:resnet18 is the same model
    assert C.parse_arch("torchvision:resnet18").known is C.ARCHITECTURES["resnet18"]


def test_googlenet_checkpoint_saved_from_torchvisions_pretrained_layout(tmp_path):
    import torchvision

    model = torchvision.models.googlenet(weights=None, num_classes=5, aux_logits=False, transform_input=True,
                                         init_weights=False)
    torch.save(model.state_dict(), tmp_path / "g.pth")
    _, kwargs = C.resolve("torchvision:googlenet", str(tmp_path / "g.pth"), CLASSES, crop=64)
    assert kwargs == {"transform_input": True, "aux_logits": False, "init_weights": False}


# --- a function of your own ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [USER, "tests.user_models:build", USER_FILE + ":build"])
def test_user_builder_in_every_spelling(tmp_path, arch):
    b = C.parse_arch(arch)
    assert (b.kind, b.name, b.file) == ("function", "build", USER_FILE)
    assert builder_file(arch) == [USER_FILE]  # a rule input: editing it rebuilds the model
    torch.manual_seed(0)
    model = C.build(arch, 5)
    assert type(model).__name__ == "TinyNet" and C.head_key(model, arch) == "classifier.weight"
    C.check_model(arch, 5, 32)
    assert C.feature_blocks(model) == ["features.0", "features.1", "features.2"]
    spec = C.transform_spec(arch, "train", None, 32)
    _, meta = round_trip(tmp_path, arch, model, spec)
    assert meta["builder"]["file"] == USER_FILE and meta["builder"]["function"] == "build"
    assert len(meta["builder"]["sha256"]) == 64


def test_user_checkpoint_needs_its_transform_and_fits_by_keys(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(user_models.build(5).state_dict(), path)
    with pytest.raises(C.ModelError, match=r"^tests/user_models.py:build: a model of your own documents no "
                                           r"preprocessing, so its transform must be given: interpolation, mean, std "
                                           r"missing$"):
        C.transform_spec(USER, str(path), {"resize": 36, "crop": 32})
    spec = C.transform_spec(USER, str(path), {"resize": 36, "crop": 32, "interpolation": "bicubic",
                                               "mean": [0.5] * 3, "std": [0.5] * 3})
    assert spec["resize"] == 36
    C.resolve(USER, str(path), CLASSES, crop=32)
    with pytest.raises(C.ModelError, match=r"mine.pth: checkpoint does not fit tests/user_models.py:build_wide: "
                                           r"features.0.0.weight has shape \[8, 3, 3, 3\], the architecture "
                                           r"\[16, 3, 3, 3\]$"):
        C.resolve("tests/user_models.py:build_wide", str(path), CLASSES, crop=32)
    with pytest.raises(C.ModelError, match=r"mine.pth: checkpoint has 5 classes \(classifier.weight \[5, 32\]\) but "
                                           r"the dataset has 4$"):
        C.resolve(USER, str(path), CLASSES[:4], crop=32)


@pytest.mark.parametrize("function, message", [
    ("build_ignoring_num_classes", "tests/user_models.py:build_ignoring_num_classes: outputs 1000 logits but the "
                                   "dataset has 5 classes (does it pass num_classes on to its classifier?)"),
    ("build_not_a_module", "tests/user_models.py:build_not_a_module: build_not_a_module(num_classes=5) returned "
                           "dict, not a torch.nn.Module"),
])
def test_a_builder_that_does_not_fit_is_refused(function, message):
    with pytest.raises(C.ModelError) as e:
        C.check_model(f"tests/user_models.py:{function}", 5, 32)
    assert str(e.value) == message


def test_a_failing_user_file_is_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("import nothing_of_that_name\ndef build(num_classes):\n    pass\n")
    with pytest.raises(C.ModelError) as e:
        C.build("broken.py:build", 5)
    assert str(e.value) == (f"broken.py:build: importing {tmp_path / 'broken.py'} failed (ModuleNotFoundError: "
                            f"No module named 'nothing_of_that_name')")
    (tmp_path / "raising.py").write_text("def build(num_classes):\n    raise ValueError('no width given')\n")
    with pytest.raises(C.ModelError) as e:
        C.build("raising.py:build", 5)
    assert str(e.value) == "raising.py:build: build(num_classes=5) failed (ValueError: no width given)"


def test_reference_rebuilds_from_the_recorded_file_anywhere_and_refuses_it_changed(tmp_path, monkeypatch):
    mine = tmp_path / "models" / "mine.py"
    mine.parent.mkdir()
    shutil.copy(USER_FILE, mine)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = C.build("models/mine.py:build", 5)
    round_trip(tmp_path, "models/mine.py:build", model, {})
    monkeypatch.chdir(mine.parent)  # a job elsewhere: the recorded absolute path still finds it
    C.load_reference(tmp_path / "ref.pt")
    mine.write_text(mine.read_text() + "\n# edited\n")
    with pytest.raises(C.ModelError, match=re.escape(f"ref.pt: its model was built by {mine}, which has changed "
                                                     f"since (sha256 ")):
        C.load_reference(tmp_path / "ref.pt")


def test_resolve_model_command_with_a_user_function(tmp_path):
    manifests.Manifest("mine", "val", str(tmp_path), CLASSES, []).write(tmp_path / "manifest.json")
    torch.save(user_models.build(5).state_dict(), tmp_path / "mine.pth")
    transform = '{"resize": 36, "crop": 32, "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}'
    cli.main(["resolve-model", "--arch", USER, "--weights", str(tmp_path / "mine.pth"), "--classes-from",
              str(tmp_path / "manifest.json"), "--transform", transform, "--out", str(tmp_path / "ref.pt")])
    model, meta = C.load_reference(tmp_path / "ref.pt")
    assert meta["transform"]["crop"] == 32 and meta["builder"]["file"] == USER_FILE
    assert meta["source_sha256"] and type(model).__name__ == "TinyNet"


# --- bad spellings ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch, message", [
    ("resnet19", "unknown model 'resnet19'; known: efficientnet_b3, inception_v3, mobilenet_v2, resnet101, resnet18, "
                 "resnet50, resnext101_32x8d, resnext50_32x4d, vgg19, or torchvision:NAME, timm:NAME, "
                 "package.module:function or path/to/file.py:function"),
    ("convnext_tiny", "unknown model 'convnext_tiny'; known: efficientnet_b3, inception_v3, mobilenet_v2, resnet101, "
                      "resnet18, resnet50, resnext101_32x8d, resnext50_32x4d, vgg19, or torchvision:NAME, timm:NAME, "
                      "package.module:function or path/to/file.py:function (did you mean torchvision:convnext_tiny?)"),
    ("torchvision:resnet19", "torchvision:resnet19: torchvision has no classification model 'resnet19'; close: "
                             "resnet18, resnet152, resnet101 (torchvision.models.list_models(module=torchvision.models))"),
    ("torchvision:fasterrcnn_resnet50_fpn", "torchvision:fasterrcnn_resnet50_fpn: torchvision has no classification "
                                            "model 'fasterrcnn_resnet50_fpn' (torchvision.models.list_models("
                                            "module=torchvision.models))"),
    ("timm:resnet19", "timm:resnet19: timm has no model 'resnet19'; close: resnet18, resnet61q, resnet51q "
                      "(timm.list_models(), timm 1.0.31)"),
    ("timm:resnet18.in22k", "timm:resnet18.in22k: timm's resnet18 has no pretrained tag 'in22k' (tags: a1_in1k, "
                            "a2_in1k, a3_in1k, fb_ssl_yfcc100m_ft_in1k, fb_swsl_ig1b_ft_in1k, gluon_in1k, tv_in1k)"),
    ("tests/user_models.py:nothere", f"tests/user_models.py:nothere: {USER_FILE} defines no 'nothere'"),
    ("tests.user_models:nothere", f"tests.user_models:nothere: {USER_FILE} defines no 'nothere'"),
    ("mypkg.models:build", "mypkg.models:build: cannot import mypkg.models (not installed, nor found in {cwd})"),
    ("nofile.py:build", "nofile.py:build: nofile.py: no such file (looked in {cwd})"),
    ("mypkg.models.build", "unknown model 'mypkg.models.build'; known: efficientnet_b3, inception_v3, mobilenet_v2, "
                           "resnet101, resnet18, resnet50, resnext101_32x8d, resnext50_32x4d, vgg19, or "
                           "torchvision:NAME, timm:NAME, package.module:function or path/to/file.py:function"),
])
def test_bad_spellings_are_refused_in_one_line(arch, message, monkeypatch):
    monkeypatch.chdir(REPO)  # the working directory is the checkout: one place to look
    with pytest.raises(C.ModelError) as e:
        C.parse_arch(arch)
    assert str(e.value) == message.format(cwd=REPO)


def smoke():
    return yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def with_model(config, model):
    """The smoke study's classification with one model, its defaults filled in (as snakemake's validate does
    before the checks); without its detectors and segmenters, whose backbones are classifiers no longer there, and
    its multihead groups, whose members they were."""
    config = copy.deepcopy(config)
    config.pop("detection", None)
    config.pop("segmentation", None)
    config.pop("multihead", None)
    config["classification"]["models"] = {"mine": model}
    config["classification"]["mitigations"] = []
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


@pytest.mark.parametrize("model, message", [
    ({"arch": "timm:resnet19"}, "config classification.models.mine.arch: timm:resnet19: timm has no model 'resnet19'"),
    ({"arch": "timm:resnet18", "weights": "IMAGENET1K_V1"},
     "config classification.models.mine.weights: IMAGENET1K_V1 is a torchvision weights name, and timm:resnet18 is "
     "not a torchvision model (nothing downloads its weights): give a checkpoint file"),
    ({"arch": "torchvision:convnext_tiny", "weights": "IMAGENET1K_V9"},
     "config classification.models.mine.weights: torchvision:convnext_tiny: no torchvision weights 'IMAGENET1K_V9'; "
     "available: IMAGENET1K_V1"),
    ({"arch": USER, "weights": "{ckpt}", "transform": {"crop": 32}},
     "config classification.models.mine.transform: tests/user_models.py:build: a model of your own documents no "
     "preprocessing, so its transform must be given: resize, interpolation, mean, std missing"),
    ({"arch": "tests/user_models.py:nothere"},
     f"config classification.models.mine.arch: tests/user_models.py:nothere: {USER_FILE} defines no 'nothere'"),
])
def test_config_names_the_key_and_value(tmp_path, model, message):
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"")
    model = {k: v.format(ckpt=ckpt) if isinstance(v, str) else v for k, v in model.items()}
    with pytest.raises(ConfigError) as e:
        check_semantics(with_model(smoke(), model))
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_config_accepts_every_spelling(tmp_path):
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"")
    full = {"resize": 36, "crop": 32, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}
    for model in ({"arch": "torchvision:convnext_tiny"}, {"arch": "timm:resnet18"}, {"arch": USER},
                  {"arch": "tests.user_models:build", "weights": str(ckpt), "transform": full},
                  {"arch": "timm:resnet18.tv_in1k", "weights": str(ckpt)},
                  {"arch": "torchvision:convnext_tiny", "weights": "DEFAULT"}):
        check_semantics(with_model(smoke(), model))


# --- through the smoke study --------------------------------------------------------------------------------------------


def test_a_model_of_ones_own_runs_through_the_smoke_study(request):
    """config/smoke.yaml trains a function of tests/user_models.py (no extra run: the pipeline tests' own two)."""
    import json

    own = {name: m for name, m in smoke()["classification"]["models"].items()
           if m.get("arch", "").startswith("tests/user_models.py:")}
    assert own, "config/smoke.yaml must train a model of one's own: this is the only test that runs one end to end"
    first, second = request.getfixturevalue("smoke_runs")
    for name, config in own.items():
        ref = f"results/models/classification/{name}/reference.pt"
        assert (first / ref).read_bytes() == (second / ref).read_bytes()
        model, meta = C.load_reference(first / ref)
        assert meta["arch"] == config["arch"] and meta["builder"]["file"] == USER_FILE
        assert meta["builder"]["function"] == config["arch"].rpartition(":")[2]
        assert C.load_reference(first / f"results/models/classification/{name}/finetune.pt")[1]["builder"] == \
            meta["builder"]
        rows = json.loads((first / f"results/metrics/classification/{name}/ttac.json").read_text())["rows"]
        assert [r["quality"] for r in rows] == [None, *smoke()["qualities"]]
        assert rows[0]["provenance"]["config"][f"classification.models.{name}"]["arch"] == config["arch"]
        for kind in ("gradcam", "qualitative"):
            assert (first / f"reports/appendix/{kind}_classification_{name}.png").stat().st_size > 1000
        assert (first / f"results/metrics/throughput/classification/{name}.json").exists()
