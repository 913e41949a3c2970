"""The GradCAM (appendix A) and qualitative (appendix C) figures: the fixed images, maps that point where a model's
decision comes from, panel titles that are the model's own predictions, valid and reproducible files, one-line
errors on bad inputs."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from jpegstudy import audit, cli, compress, provenance
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.data import embedded
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb
from jpegstudy.report import gradcam, qualitative, samples
from jpegstudy.tasks import classification

SIZE = 32
QUALITY = 10
MODELS = ("resnet18", "mobilenet_v2")


def save_model(path, classes, seed, arch="resnet18"):
    torch.manual_seed(seed)
    model = classification.build(arch, len(classes))
    transform = classification.transform_spec(arch, "train", None, SIZE)
    classification.save_reference(path, arch=arch, build_kwargs={}, classes=classes, transform=transform,
                                  source="train", state_dict=model.state_dict())


def save_corrector(path, seed):
    torch.manual_seed(seed)
    correctors.save(path, correctors.Corrector("arcnn", {"channels": (4, 4, 4)}), source="test")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("appendix")
    val = embedded.write_split(root / "val", "val", 1, SIZE, 0)
    val.write(root / "val" / "manifest.json")
    compress.compress_split(root / "val" / "manifest.json", QUALITY, root / f"val-q{QUALITY}")
    save_model(root / "reference.pt", val.classes, 0)
    save_model(root / "finetune.pt", val.classes, 1)
    save_corrector(root / "offtheshelf.pt", 2)
    save_corrector(root / "ttac.pt", 3)
    return {"root": root, "classes": val.classes, "reference": str(root / "reference.pt"),
            "clean": str(root / "val" / "manifest.json"),
            "compressed": str(root / f"val-q{QUALITY}" / "manifest.json"),
            "mitigations": {m: str(root / f"{m}.pt") for m in samples.MITIGATIONS}}


def collect(data, mitigations=None, n=3, **kwargs):
    return samples.collect(reference=kwargs.get("reference", data["reference"]), clean=data["clean"],
                           compressed=data["compressed"],
                           mitigation_files=data["mitigations"] if mitigations is None else mitigations, samples=n)


def test_fixed_images_are_one_per_class_spread_over_the_classes():
    m = manifests.Manifest("d", "val", ".", list("abcd"), [{"path": f"{i}.png", "label": lab}
                                                            for i, lab in enumerate([0, 0, 1, 1, 2, 2, 3, 3])])
    assert samples.select(m, 1) == [0]
    assert samples.select(m, 2) == [0, 4]  # classes 0 and 2: the first image of each
    assert samples.select(m, 4) == [0, 2, 4, 6]
    assert samples.select(m, 6) == [0, 2, 4, 6, 1, 3]  # then each class's next image
    assert samples.select(m, 20) == list(range(0, 8, 2)) + list(range(1, 8, 2))  # no more than there are


class RedDetector(torch.nn.Module):
    """Class 0 is 'how red is the image', class 1 'how green': global average of two ReLU feature maps, so
    on a grey image with one red square the evidence for class 0 lies in the square and nowhere else."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]])[:, :, None, None])
        self.features = torch.nn.Sequential(conv, torch.nn.ReLU())

    def forward(self, x):
        return self.features(x).mean((2, 3))


def test_gradcam_and_guided_gradient_point_at_the_region_the_decision_depends_on():
    x = torch.full((1, 3, 32, 32), 0.5)
    x[0, :, 4:12, 20:28] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]  # a red square
    model = RedDetector().eval()
    assert model(x).argmax().item() == 0
    inside = np.zeros((32, 32), bool)
    inside[4:12, 20:28] = True
    cam = gradcam.cam_map(model, model.features[1], x, 0)
    assert cam.shape == (32, 32)
    assert cam[inside].min() > 0.9 and cam[~inside].max() < 0.1  # scaled to [0, 1]: 1 in the square, 0 outside
    g = gradcam.guided_gradient(model, x, 0)
    assert g.shape == (32, 32, 3)
    assert np.abs(g[~inside]).max() == 0 and np.abs(g[inside]).min() > 0
    # d(mean of relu(r - g - b)) / dx over the square's 8x8 of the 32x32 pixels; the green unit is off there
    assert np.allclose(g[inside], np.array([1.0, -1.0, -1.0]) / (32 * 32))


def test_guided_relu6_passes_only_positive_gradients_where_the_unit_is_active():
    x = torch.tensor([-1.0, 1.0, 3.0, 7.0], requires_grad=True)
    y = gradcam._GuidedReLU6.apply(x)
    assert y.tolist() == [0.0, 1.0, 3.0, 6.0]
    y.backward(torch.tensor([1.0, 1.0, -1.0, 1.0]))
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_gradcam_layer_is_the_last_block_at_imagenet_size_and_an_earlier_one_on_small_images():
    model = classification.build("resnet18", 10).eval()
    assert gradcam.target_layer("resnet18", model, torch.zeros(1, 3, 224, 224)) == ("layer4", 7)
    assert gradcam.target_layer("resnet18", model, torch.zeros(1, 3, 48, 48)) == ("layer2", 6)
    model = classification.build("mobilenet_v2", 10).eval()
    assert gradcam.target_layer("mobilenet_v2", model, torch.zeros(1, 3, 224, 224)) == ("features.18", 7)


def independent_predictions(data, indices: list[int]) -> list[dict[str, str]]:
    """Each image's {column: predicted class name}, worked out here without the samples module."""
    clean, jpeg_m = manifests.read(data["clean"]), manifests.read(data["compressed"])
    models = {}
    for name in ("reference", "finetune"):
        model, meta = classification.load_reference(data["reference"] if name == "reference"
                                                    else data["mitigations"]["finetune"])
        models[name] = model
    transform = classification.eval_transform(meta["transform"])
    fixes = {name: correctors.load(data["mitigations"][name])[0] for name in ("offtheshelf", "ttac")}

    def predict(image, which="reference"):
        with torch.no_grad():
            return data["classes"][models[which](transform(image)[None]).argmax().item()]

    out = []
    for index in indices:
        jpeg_bytes = jpeg_m.path_of(index).read_bytes()
        row = {"original": predict(load_rgb(clean.path_of(index))), "jpeg": predict(load_rgb(jpeg_m.path_of(index))),
               "finetune": predict(load_rgb(jpeg_m.path_of(index)), "finetune")}
        for name, corrector in fixes.items():
            [(_, batch)] = inputs.from_files([jpeg_bytes])
            with torch.no_grad():
                rgb = corrector(batch).mul(255).round().byte()[0].permute(1, 2, 0).numpy()
            row[name] = predict(Image.fromarray(np.ascontiguousarray(rgb)))
        out.append(row)
    return out


def test_qualitative_titles_are_the_models_predictions_marked_against_the_label(data):
    material = collect(data)
    grid = qualitative.draw(material, "resnet18")
    assert grid.columns == ["jpeg", "offtheshelf", "ttac", "finetune", "original"]
    assert [s.index for s in material.samples] == samples.select(manifests.read(data["clean"]), 3)
    seen = set()
    expected = independent_predictions(data, [sample.index for sample in material.samples])
    for s, sample in enumerate(material.samples):
        for c, column in enumerate(grid.columns):
            name, mark = grid.axes[s][0][c].get_title().split("\n")
            assert name == expected[s][column], (sample.index, column)
            assert mark.startswith("✓" if name == data["classes"][sample.label] else "✗")
            seen.add(name)
    assert len(seen) > 1  # the columns do not all say the same thing (the check above can tell them apart)


def test_only_the_mitigations_asked_for_are_shown(data):
    unmitigated = collect(data, {}, n=1)
    assert qualitative.draw(unmitigated, "m").columns == ["jpeg", "original"]
    assert gradcam.draw(unmitigated, "m").columns == ["original", "jpeg"]
    ttac_only = collect(data, {"ttac": data["mitigations"]["ttac"]}, n=1)
    assert [p.column for p in ttac_only.samples[0].panels] == ["original", "jpeg", "ttac"]


def run_cli(data, command, outs, mitigations=None, reference=None, samples_=1):
    mitigations = data["mitigations"] if mitigations is None else mitigations
    args = [command, "--model", "resnet18", "--reference", reference or data["reference"], "--clean", data["clean"],
            "--compressed", data["compressed"], "--params", f'{{"samples": {samples_}, "quality": {QUALITY}, '
            '"dpi": 60}', "--out", *map(str, outs)]
    if mitigations:
        args += ["--mitigation", *(f"{k}={v}" for k, v in mitigations.items())]
    cli.main(args)


@pytest.mark.parametrize("command", ["gradcam", "qualitative"])
def test_files_are_valid_pdf_and_png_and_identical_when_made_again(data, tmp_path, command):
    made = []
    for run in ("a", "b"):
        outs = [tmp_path / run / f"{command}.pdf", tmp_path / run / f"{command}.png"]
        run_cli(data, command, outs)
        made.append([p.read_bytes() for p in outs])
    (pdf, png), again = made
    assert pdf.startswith(b"%PDF-") and b"CreationDate" not in pdf
    with Image.open(tmp_path / "a" / f"{command}.png") as im:
        im.load()
        rows = 2 if command == "gradcam" else 1
        assert im.size[0] > 5 * 60 and im.size[1] > rows * 60  # five columns of panels over an inch wide at 60 dpi
    assert [pdf, png] == again


def test_audit_checks_the_files_an_appendix_figure_was_drawn_from(data, tmp_path, capsys):
    ttac = tmp_path / "ttac (copy).pt"  # parentheses: escaped in the PDF's info string
    shutil.copy(data["mitigations"]["ttac"], ttac)
    outs = [tmp_path / "q.pdf", tmp_path / "q.png"]
    run_cli(data, "qualitative", outs, {**data["mitigations"], "ttac": str(ttac)})
    for out in outs:
        assert audit.figure_inputs(out) == provenance.file_inputs({
            "model": data["reference"], "clean images": data["clean"], "JPEG images": data["compressed"],
            **data["mitigations"], "ttac": str(ttac)})
        assert audit.audit(str(out))
        assert f"{out}: shows no metric numbers; 6/6 of the files it was drawn from unchanged (0 problems)" in \
            capsys.readouterr().out
    ttac.write_bytes(ttac.read_bytes() + b"x")
    for out in outs:
        assert not audit.audit(str(out))
        assert f"CHANGED  ttac: {ttac} is no longer the file drawn from" in capsys.readouterr().out


def test_bad_files_end_in_one_line_naming_the_file(data, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a corrector")
    other = tmp_path / "other-classes.pt"
    save_model(other, data["classes"][:5], 0)
    cases = [
        ({"ttac": str(tmp_path / "missing.pt")}, None, "missing.pt: no such file (the ttac corrector)"),
        ({"offtheshelf": str(junk)}, None, "junk.pt: cannot load corrector"),
        ({"finetune": str(other)}, None, "other-classes.pt: its classes differ"),
        ({}, str(other), "its classes differ from those"),
        ({"transfer": str(junk)}, None, "mitigation 'transfer'"),
    ]
    for command, mitigations, reference, message in [("qualitative", *case) for case in cases] + [
            ("gradcam", *cases[0])]:
        with pytest.raises(SystemExit) as e:
            run_cli(data, command, [tmp_path / "x.png"], mitigations, reference)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and err.startswith(f"jpegstudy {command}: error:"), err
        assert not (tmp_path / "x.png").exists()


def test_a_compressed_set_of_other_images_is_refused(data, tmp_path):
    m = manifests.read(data["compressed"])
    shuffled = dataclasses.replace(m, root=str(m.root_dir), images=m.images[1:] + m.images[:1])
    shuffled.write(tmp_path / "manifest.json")
    with pytest.raises(ValueError, match="labels differ image by image"):
        samples.collect(reference=data["reference"], clean=data["clean"], compressed=str(tmp_path / "manifest.json"),
                        mitigation_files={}, samples=1)


def test_the_smoke_study_makes_both_appendices_for_every_model_the_same_each_time(smoke_runs):
    first, second = smoke_runs
    for model in MODELS:
        for kind in ("gradcam", "qualitative"):
            for ext in ("pdf", "png"):
                name = f"reports/appendix/{kind}_classification_{model}.{ext}"
                data = (first / name).read_bytes()
                assert data[:4] == (b"%PDF" if ext == "pdf" else b"\x89PNG"), name
                assert data == (second / name).read_bytes(), name
