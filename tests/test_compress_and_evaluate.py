import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from jpegstudy import compress, evaluate, jpeg
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import load_rgb
from jpegstudy.tasks import classification


def noisy(size=(24, 16), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def make_split(root, files):
    """A manifest over `files` ({relative name: writer(path)}), labels by order, two classes."""
    images = []
    for i, (name, write) in enumerate(files.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write(root / name)
        images.append({"path": name, "label": i % 2})
    m = manifests.Manifest("toy", "val", str(root), ["a", "b"], images)
    m.write(root / "manifest.json")
    return root / "manifest.json"


def good_files():
    def rgba(p):
        a = np.zeros((16, 16, 4), np.uint8)
        a[:, :8] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent
        Image.fromarray(a, "RGBA").save(p)

    return {
        "a/png.png": lambda p: Image.fromarray(noisy()).save(p),
        "b/gray.jpg": lambda p: Image.fromarray(noisy()[..., 0]).save(p, quality=95),
        "a/cmyk.jpg": lambda p: Image.fromarray(noisy()).convert("CMYK").save(p, quality=95),
        "b/rgba.png": rgba,
    }


def test_compress_split_writes_full_resolution_jpegs_with_hashes(tmp_path):
    src = make_split(tmp_path / "src", good_files())
    out = compress.compress_split(src, 30, tmp_path / "q30")
    assert [im["path"] for im in out.images] == ["a/png.jpg", "b/gray.jpg", "a/cmyk.jpg", "b/rgba.jpg"]
    assert out.source["quality"] == 30 and out.split == "val-q30"
    back = manifests.read(tmp_path / "q30" / "manifest.json")
    for i, im in enumerate(back.images):
        data = back.path_of(i).read_bytes()
        original = load_rgb(manifests.read(src).path_of(i))
        assert data == jpeg.compress(original, 30)  # the codec's bytes, of the original at its own size
        assert Image.open(back.path_of(i)).size == original.size
        import hashlib

        assert im["sha256"] == hashlib.sha256(data).hexdigest()
    # transparency is composited onto white, as a viewer shows it
    rgba = np.asarray(jpeg.decode(back.path_of(3).read_bytes())).astype(int)
    assert np.abs(rgba[8, 13] - 255).max() <= 3 and rgba[8, 2, 0] > 200 and rgba[8, 2, 1] < 40


@pytest.mark.parametrize("name, write, reason", [
    ("b/cut.jpg", lambda p: p.write_bytes(jpeg.compress(Image.fromarray(noisy((64, 64))), 90)[:700]),
     "cannot decode image (image file is truncated"),
    ("b/empty.jpg", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    ("b/notes.jpg", lambda p: p.write_text("not an image"), "not an image Pillow can read"),
])
def test_bad_image_fails_naming_it_and_writes_nothing(tmp_path, name, write, reason):
    src = make_split(tmp_path / "src", {**good_files(), name: write})
    out = tmp_path / "results" / "val-q10" / "manifest.json"
    r = subprocess.run(["jpegstudy", "compress", "--manifest", str(src), "--quality", "10", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"jpegstudy compress: error: {tmp_path / 'src' / name}: {reason}")
    assert list((tmp_path / "results").iterdir()) == []  # no folder, no temporary left behind


@pytest.mark.parametrize("quality", ["0", "101", "ten"])
def test_bad_quality_on_the_command_line(tmp_path, quality):
    src = make_split(tmp_path / "src", {"a/x.png": lambda p: Image.fromarray(noisy()).save(p)})
    r = subprocess.run(["jpegstudy", "compress", "--manifest", str(src), "--quality", quality,
                        "--out", str(tmp_path / "q" / "manifest.json")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == (f"jpegstudy compress: error: JPEG quality must be an integer in [1, 100], "
                        f"got '{quality}'\n")
    assert not (tmp_path / "q").exists()


def test_recompressing_replaces_the_previous_output(tmp_path):
    src = make_split(tmp_path / "src", {"a/x.png": lambda p: Image.fromarray(noisy()).save(p)})
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "stale.jpg").write_bytes(b"old")
    compress.compress_split(src, 50, tmp_path / "q", workers=2)
    assert sorted(p.name for p in (tmp_path / "q").rglob("*") if p.is_file()) == ["manifest.json", "x.jpg"]


def test_evaluation_equals_a_hand_loop_over_the_files(tmp_path):
    files = {f"{'ab'[i % 2]}/{i}.png": (lambda i: lambda p: Image.fromarray(noisy(seed=i)).save(p))(i)
             for i in range(6)}
    src = make_split(tmp_path / "src", files)
    q10 = tmp_path / "q10" / "manifest.json"
    compress.compress_split(src, 10, q10.parent)
    torch.manual_seed(0)
    model = classification.build("resnet18", 2).eval()
    spec = classification.transform_spec("resnet18", "train", {"resize": 20, "crop": 16}, 16)
    classification.save_reference(tmp_path / "ref.pt", arch="resnet18", build_kwargs={}, classes=["a", "b"],
                                  transform=spec, source="train", state_dict=model.state_dict())
    result = evaluate.evaluate(model_name="r18", reference=str(tmp_path / "ref.pt"), clean=str(src),
                               compressed={10: str(q10)}, params={"seed": 0}, rule="test", batch_size=4, workers=0,
                               device="cpu")
    transform = classification.eval_transform(spec)
    for row, path in zip(result["rows"], [src, q10]):
        m = manifests.read(path)
        with torch.no_grad():
            preds = [model(transform(load_rgb(m.path_of(i)))[None]).argmax().item() for i in range(6)]
        right = [p == im["label"] for p, im in zip(preds, m.images)]
        assert row["top1"] == pytest.approx(100 * sum(right) / 6) and row["top5"] == 100.0 and row["n_images"] == 6
        # each image's result, in manifest order, and an interval around the accuracy (all right: no spread)
        assert row["per_image"] == {"top1": "".join("1" if r else "0" for r in right), "top5": "111111"}
        assert row["top1_low"] <= row["top1"] <= row["top1_high"]
        assert row["top5_low"] == row["top5_high"] == 100.0
    assert [r["quality"] for r in result["rows"]] == [None, 10]
    assert len({r["id"] for r in result["rows"]}) == 2
    json.dumps(result)  # the metric file is plain JSON


def test_evaluation_refuses_a_dataset_with_other_classes(tmp_path):
    src = make_split(tmp_path / "src", {"a/x.png": lambda p: Image.fromarray(noisy()).save(p)})
    model = classification.build("resnet18", 3)
    spec = classification.transform_spec("resnet18", "train", None, 16)
    classification.save_reference(tmp_path / "ref.pt", arch="resnet18", build_kwargs={}, classes=["a", "b", "c"],
                                  transform=spec, source="train", state_dict=model.state_dict())
    with pytest.raises(ValueError, match="its classes differ from those .*ref.pt was trained on"):
        evaluate.evaluate(model_name="r18", reference=str(tmp_path / "ref.pt"), clean=str(src), compressed={},
                          params={}, rule="test", batch_size=4, workers=0, device="cpu")


def test_sixteen_bit_grayscale_keeps_its_levels(tmp_path):
    levels = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)  # 0 .. 65280
    Image.fromarray(levels).save(tmp_path / "deep.png")
    rgb = np.asarray(load_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (16, 16, 3) and rgb[0, 0].tolist() == [0, 0, 0] and rgb[8, 0].tolist() == [128] * 3


def test_cuda_without_a_gpu_is_one_line():
    from jpegstudy.devices import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=r"^device 'cuda': torch sees no CUDA GPU here \(use device: auto or cpu\)$"):
        pick_device("cuda")


def test_an_image_changed_after_listing_is_refused(tmp_path):
    src = make_split(tmp_path / "src", {"a/x.png": lambda p: Image.fromarray(noisy()).save(p)})
    compress.compress_split(src, 50, tmp_path / "q50")
    q = manifests.read(tmp_path / "q50" / "manifest.json")
    loaded = load_rgb(q.path_of(0), q.images[0]["sha256"])  # unchanged: fine
    assert loaded.size == (24, 16)
    q.path_of(0).write_bytes(jpeg.compress(Image.fromarray(noisy(seed=1)), 50))
    from jpegstudy.data.loader import ManifestDataset

    with pytest.raises(ValueError, match=r"^\S+/q50/a/x.jpg: its sha256 differs from the manifest's; the file changed"):
        ManifestDataset(q, lambda im: im)[0]


def seven_images(root):
    return make_split(root, {f"{'ab'[i % 2]}/{i}.png": (lambda p, i=i: Image.fromarray(noisy(seed=i)).save(p))
                             for i in range(7)})


@pytest.mark.parametrize("threads", [1, 3])
def test_prefetched_batches_are_dataloaders_tensors(tmp_path, threads):
    from jpegstudy.data.loader import ManifestDataset, loader

    m = manifests.read(seven_images(tmp_path))
    transform = classification.eval_transform({"resize": 12, "crop": 12, "interpolation": "bilinear",
                                               "mean": [0.5] * 3, "std": [0.25] * 3})
    expected = list(torch.utils.data.DataLoader(ManifestDataset(m, transform), batch_size=3))
    got = list(loader(m, transform, 3, threads=threads))
    assert [len(y) for _, y in got] == [3, 3, 1]
    for (x, y), (x0, y0) in zip(got, expected, strict=True):
        assert torch.equal(x, x0) and x.dtype == torch.float32
        assert y.tolist() == y0.tolist()


def test_a_bad_file_fails_when_its_batch_is_reached_naming_it(tmp_path):
    from jpegstudy.data.loader import loader

    m = manifests.read(seven_images(tmp_path))
    m.path_of(4).write_bytes(b"")
    batches = loader(m, lambda im: torch.tensor(im.size), 2, threads=2)
    assert next(batches)[0].tolist() == [[24, 16], [24, 16]]  # images 0-1: the broken one is ahead of them
    next(batches)
    with pytest.raises(ValueError, match=r"^\S+/a/4.png: empty file \(0 bytes\)$"):
        next(batches)


def test_a_coco_split_compresses_with_its_ids_and_ground_truth(tmp_path):
    """Compressed COCO copies keep each image's id and size, and reach the original annotations from their folder,
    also once the whole results folder is moved."""
    from jpegstudy.data import coco, embedded

    root = tmp_path / "results" / "coco"
    m = embedded.write_coco_split(root, "val", 3, 32, seed=0, manifest_dir=root / "val")
    m.write(root / "val" / "manifest.json")
    compress.compress_split(root / "val" / "manifest.json", 10, root / "val-q10")
    moved = tmp_path / "elsewhere"
    (tmp_path / "results").rename(moved)
    q = manifests.read(moved / "coco" / "val-q10" / "manifest.json")
    assert [(e["path"], e["id"], e["width"], e["height"]) for e in q.images] == [
        (f"{i:012d}.jpg", i, 32, 32) for i in (1, 2, 3)]
    assert q.source["annotations"] == "../annotations/instances_val.json"
    assert q.source["category_ids"] == list(range(1, 11)) and q.source["quality"] == 10
    original = coco.load_annotations(manifests.read(moved / "coco" / "val" / "manifest.json"))
    assert coco.load_annotations(q).dataset["annotations"] == original.dataset["annotations"]


def test_half_precision_evaluation_runs_under_autocast_and_is_recorded(tmp_path, monkeypatch):
    """bf16 is the GPU's fast path; the CPU runs the same branch (torch.autocast on the CPU)."""
    files = {f"{'ab'[i % 2]}/{i}.png": (lambda i: lambda p: Image.fromarray(noisy(seed=i)).save(p))(i)
             for i in range(6)}
    src = make_split(tmp_path / "src", files)
    torch.manual_seed(0)
    model = classification.build("resnet18", 2).eval()
    spec = classification.transform_spec("resnet18", "train", {"resize": 20, "crop": 16}, 16)
    classification.save_reference(tmp_path / "ref.pt", arch="resnet18", build_kwargs={}, classes=["a", "b"],
                                  transform=spec, source="train", state_dict=model.state_dict())
    dtypes = []
    original = classification.score

    def score(model, manifest, batches, device, confidence=None):
        model.fc.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        return original(model, manifest, batches, device, confidence)

    monkeypatch.setattr(classification, "score", score)  # the classifier's logits, as score sees them
    rows = {p: evaluate.evaluate(model_name="r18", reference=str(tmp_path / "ref.pt"), clean=str(src),
                                 compressed={}, params={"precision": p}, rule="test", batch_size=4, workers=0,
                                 device="cpu")["rows"][0] for p in ("fp32", "bf16")}
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16] * 2  # two batches each
    assert rows["bf16"]["provenance"]["config"]["precision"] == "bf16" and rows["bf16"]["id"] != rows["fp32"]["id"]
    assert rows["bf16"]["n_images"] == 6
    from jpegstudy.devices import autocast

    with pytest.raises(ValueError, match=r"^precision 'fp8': one of fp32, bf16, fp16$"):
        autocast(torch.device("cpu"), "fp8")


def test_batches_for_a_gpu_are_pinned_and_the_cpu_keeps_pageable_memory(tmp_path):
    from jpegstudy.data.loader import loader
    from jpegstudy.devices import pin_memory

    assert not pin_memory(torch.device("cpu")) and pin_memory(torch.device("cuda"))
    src = make_split(tmp_path / "src", {"a/x.png": lambda p: Image.fromarray(noisy()).save(p)})
    batches = loader(manifests.read(src), classification.eval_transform(
        classification.transform_spec("resnet18", "train", None, 16)), 1, workers=1, pin_memory=False)
    assert batches.pin_memory is False and batches.num_workers == 1
    if torch.cuda.is_available():
        x, _ = next(iter(loader(manifests.read(src), classification.eval_transform(
            classification.transform_spec("resnet18", "train", None, 16)), 1, workers=1, pin_memory=True)))
        assert x.is_pinned()
