import pytest
import torch
import torchvision

from jpegstudy.tasks import classification as C

PAPER_NINE = ["resnet18", "resnet50", "resnet101", "resnext50_32x4d", "resnext101_32x8d", "vgg19", "mobilenet_v2",
              "inception_v3", "efficientnet_b3"]


def test_zoo_has_the_papers_nine_with_the_right_heads():
    assert sorted(C.ARCHITECTURES) == sorted(PAPER_NINE)
    for name in PAPER_NINE:
        model = C.build(name, 7, C.ARCHITECTURES[name].pretrained_kwargs)
        assert model.state_dict()[C.ARCHITECTURES[name].head].shape[0] == 7, name


@pytest.mark.parametrize("arch, resize, crop, interpolation", [
    ("resnet50", 256, 224, "bilinear"),      # torchvision documents resize 256, crop 224 for IMAGENET1K_V1
    ("inception_v3", 342, 299, "bilinear"),
    ("efficientnet_b3", 320, 300, "bicubic"),
])
def test_default_transforms_are_torchvisions(arch, resize, crop, interpolation):
    spec = C.transform_spec(arch, "IMAGENET1K_V1", None)
    assert (spec["resize"], spec["crop"], spec["interpolation"]) == (resize, crop, interpolation)
    assert spec["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_user_override_of_preprocessing():
    spec = C.transform_spec("resnet50", "ckpt.pt", {"resize": 160, "crop": 128, "interpolation": "bicubic",
                                                    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    from PIL import Image

    x = C.eval_transform(spec)(Image.new("RGB", (300, 200), (255, 128, 0)))
    assert x.shape == (3, 128, 128)
    assert x[:, 64, 64].tolist() == pytest.approx([2.0, (128 / 255 - 0.5) / 0.25, -2.0], abs=1e-5)


def test_unknown_model_and_weights_are_named():
    with pytest.raises(C.ModelError, match="unknown classification model 'resnet19'; known: efficientnet_b3"):
        C.architecture("resnet19")
    with pytest.raises(C.ModelError, match="no torchvision weights 'IMAGENET1K_V9'"):
        C.torchvision_weights("resnet18", "IMAGENET1K_V9")
    assert C.is_torchvision_weights("IMAGENET1K_V2") and not C.is_torchvision_weights("weights/r50.pth")


def test_checkpoint_round_trip_with_nested_ddp_state_dict(tmp_path):
    model = C.build("resnet18", 10)
    path = tmp_path / "r18.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    state_dict, kwargs = C.resolve("resnet18", str(path), [str(i) for i in range(10)])
    assert kwargs == {} and torch.equal(state_dict["fc.weight"], model.state_dict()["fc.weight"])


@pytest.mark.parametrize("saved, n_classes, message", [
    ("resnet18", 1000, r"ckpt.pth: checkpoint has 10 classes \(fc.weight \[10, 512\]\) but the dataset has 1000"),
    ("mobilenet_v2", 10, r"ckpt.pth: checkpoint does not fit resnet18: missing keys conv1.weight, bn1.weight, "
                         r"bn1.bias \(\+\d+ more\); unexpected keys features.0.0.weight"),
])
def test_misfitting_checkpoint_is_refused_saying_why(tmp_path, saved, n_classes, message):
    path = tmp_path / "ckpt.pth"
    torch.save(C.build(saved, 10).state_dict(), path)  # a 10-class checkpoint, loaded as resnet18
    with pytest.raises(C.ModelError, match=message):
        C.resolve("resnet18", str(path), [str(i) for i in range(n_classes)])


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(C.ModelError, match="notes.pth: cannot load checkpoint"):
        C.resolve("resnet18", str(path), ["a"])
    with pytest.raises(C.ModelError, match="missing.pth: checkpoint not found"):
        C.resolve("resnet18", str(tmp_path / "missing.pth"), ["a"])


def test_inception_checkpoint_keeps_torchvisions_pretrained_layout(tmp_path):
    # torchvision's pretrained Inception has the auxiliary head and rescales its input: a checkpoint saved from it
    # must be rebuilt the same way, or its outputs would silently differ.
    model = torchvision.models.inception_v3(weights=None, num_classes=5, aux_logits=True, init_weights=False,
                                            transform_input=True)
    path = tmp_path / "inc.pth"
    torch.save(model.state_dict(), path)
    state_dict, kwargs = C.resolve("inception_v3", str(path), list("abcde"))
    assert kwargs["transform_input"] is True and kwargs["aux_logits"] is True


def test_reference_file_round_trip(tmp_path):
    model = C.build("resnet18", 3).eval()
    spec = C.transform_spec("resnet18", "train", None, 32)
    C.save_reference(tmp_path / "ref.pt", arch="resnet18", build_kwargs={}, classes=["a", "b", "c"],
                     transform=spec, source="train", state_dict=model.state_dict())
    loaded, meta = C.load_reference(tmp_path / "ref.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["classes"] == ["a", "b", "c"] and meta["transform"]["crop"] == 32 and not loaded.training
    assert "builder" not in meta  # the nine's reference files are as they always were


def test_topk_on_a_hand_made_case():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.1, 0.2]])
    labels = torch.tensor([1, 2, 0])
    assert C.topk_correct(logits, labels, 1).tolist() == [True, False, False]
    assert C.topk_correct(logits, labels, 2).tolist() == [True, True, False]
    assert C.topk_correct(logits, labels, 5).tolist() == [True, True, True]  # k larger than the class count
