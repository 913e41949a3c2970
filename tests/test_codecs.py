"""The codec study's pieces: codecs as plug-ins, their eval sets' bits per pixel, the learned codec, the on-the-fly
degradations, codec evaluation rows, the rate functions and their audit, and the one-line errors."""

import hashlib
import importlib.util
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from jpegstudy import atomic, audit, codec_study, codecs, compress, evaluate, jpeg, provenance
from jpegstudy.codecs import learned
from jpegstudy.correction import corrector as correctors
from jpegstudy.correction import inputs
from jpegstudy.data import manifest as manifests
from jpegstudy.data.images import decode_rgb, load_rgb
from jpegstudy.report import rates

from .test_compress_and_evaluate import make_split, noisy

PILLOW_OTHERS = ("webp", "jpeg2000", "avif", "heif", "jxl")


def smooth(size=(40, 24), seed=0):
    """A textured image a codec can do something with (noise is incompressible)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 5, y * 7, (x + y) * 3], -1) % 256
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def split(tmp_path, n=4):
    files = {f"c{i % 2}/im{i}.png": (lambda p, i=i: Image.fromarray(smooth(seed=i)).save(p)) for i in range(n)}
    return make_split(tmp_path / "src", files)


def test_jpeg_codec_is_the_study_jpeg_byte_for_byte_and_its_set_keeps_its_name(tmp_path):
    src = split(tmp_path)
    image = load_rgb(manifests.read(src).path_of(0))
    assert codecs.get("jpeg").encode(image, 30) == jpeg.compress(image, 30)
    out = compress.compress_split(src, 30, tmp_path / "val-q30")
    assert out.split == "val-q30" and [im["path"] for im in out.images][0] == "c0/im0.jpg"
    assert out.source["codec"] == f"{jpeg.libjpeg_version()}, IJG quality 30, 4:2:0, baseline tables"
    for i, im in enumerate(out.images):
        data = (tmp_path / "val-q30" / im["path"]).read_bytes()
        assert data == jpeg.compress(load_rgb(manifests.read(src).path_of(i)), 30)
        assert im["bytes"] == len(data) and im["bits_per_pixel"] == len(data) * 8 / (40 * 24)
    assert out.source["bits_per_pixel"] == pytest.approx(np.mean([im["bits_per_pixel"] for im in out.images]))


@pytest.mark.parametrize("name", PILLOW_OTHERS)
def test_each_pillow_codec_writes_its_own_format_with_its_rate(tmp_path, name):
    src = split(tmp_path)
    codec = codecs.get(name)
    low, high = codec.quality_range
    q_low, q_high = (22, 40) if name == "jpeg2000" else (10, 90)
    out = compress.compress_split(src, q_low, tmp_path / "low", codec=name)
    high_set = compress.compress_split(src, q_high, tmp_path / "high", codec=name)
    assert out.split == f"val-{name}-q{q_low}" and out.source["codec_name"] == name
    assert out.source["encoder"]["library"] and out.source["encoder"]["options"]
    for i, im in enumerate(out.images):
        path = tmp_path / "low" / im["path"]
        assert path.suffix == codec.suffix
        data = path.read_bytes()
        assert im["sha256"] == hashlib.sha256(data).hexdigest()
        assert im["bits_per_pixel"] == len(data) * 8 / (40 * 24)
        with Image.open(io.BytesIO(data)) as probe:  # a real file of that format, at full resolution
            assert probe.format == codec.pillow_format and probe.size == (40, 24)
        decoded = np.asarray(decode_rgb(data, path)).astype(float)  # HEIF/JPEG XL: plug-ins registered on need
        psnr = 10 * np.log10(255 ** 2 / np.mean((decoded - smooth(seed=i)) ** 2))
        assert psnr > 15
    # a higher quality costs more bits
    assert high_set.source["bits_per_pixel"] > out.source["bits_per_pixel"]


def test_quality_outside_a_codecs_range_and_unknown_codec_are_one_line_errors():
    with pytest.raises(codecs.CodecError, match=r"^webp quality must be an integer in \[0, 100\] \(libwebp quality\)"
                                                r", got 101$"):
        codecs.get("webp").check_quality(101)
    with pytest.raises(codecs.CodecError, match=r"^jpeg2000 quality must be an integer in \[10, 80\]"):
        codecs.get("jpeg2000").encode(Image.new("RGB", (8, 8)), 5)
    with pytest.raises(codecs.CodecError, match="^unknown codec 'bpg'; known: jpeg, webp, jpeg2000, avif, heif, "
                                                "jxl, learned$"):
        codecs.get("bpg")


def test_a_missing_codec_library_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("pillow_jxl", "compressai")
                        else real(name, *a))
    assert codecs.missing_library("jxl") == ("codec jxl: the package pillow-jxl-plugin is not installed "
                                             "(pip install pillow-jxl-plugin)")
    assert codecs.missing_library("learned") == ("codec learned: the package compressai is not installed "
                                                 "(pip install compressai)")
    config = {"qualities": [10], "codecs": {"formats": {"jxl": {"qualities": [10, 50], "train_range": [10, 50]}}}}
    with pytest.raises(codec_study.CodecConfigError, match="^config codecs.formats.jxl: codec jxl: the package "
                                                           "pillow-jxl-plugin is not installed"):
        codec_study.check(config)


@pytest.mark.parametrize("formats, message", [
    ({"bpg": {"qualities": [1, 2], "train_range": [1, 2]}}, "config codecs.formats.bpg: unknown codec 'bpg'; known: "
                                                            "webp, jpeg2000, avif, heif, jxl, learned"),
    ({"webp": {"qualities": [10, 120], "train_range": [10, 90]}},
     "config codecs.formats.webp.qualities: 120 is outside webp's quality range [0, 100]"),
    ({"learned": {"qualities": [1, 9], "train_range": [1, 3], "train": {}}},
     "config codecs.formats.learned.qualities: 9 is outside learned's quality range [1, 8]"),
    ({"jpeg": {"qualities": [10, 20], "train_range": [10, 20]}},
     "config codecs.formats.jpeg: JPEG is the study's own codec; its qualities are the top-level qualities"),
    ({"learned": {"qualities": [1, 2], "train_range": [1, 2], "weights": {"1": "/no/such.pth.tar"}}},
     "config codecs.formats.learned.weights: no published network for quality 2"),
])
def test_bad_codec_config_is_refused_naming_the_key(formats, message):
    with pytest.raises(codec_study.CodecConfigError) as e:
        codec_study.check({"qualities": [10], "codecs": {"formats": formats}})
    assert str(e.value) == message


def test_a_bad_codec_config_stops_snakemake_before_any_job(tmp_path):
    import subprocess
    import sys

    from .conftest import REPO

    bad = tmp_path / "bad.yaml"
    text = (REPO / "config" / "smoke.yaml").read_text().replace("webp: {qualities: [10, 80]",
                                                                "webp: {qualities: [10, 180]")
    bad.write_text(text)
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(bad), "-n", "--quiet"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "jpegstudy: config codecs.formats.webp.qualities: 180 is outside webp's quality range [0, 100]" in out.stderr
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def learned_nets(tmp_path_factory):
    """The learned codec at two qualities, trained one epoch on a few images (tiny)."""
    root = tmp_path_factory.mktemp("learned")
    files = {f"c{i % 2}/im{i}.png": (lambda p, i=i: Image.fromarray(smooth((32, 32), seed=i)).save(p))
             for i in range(8)}
    train = manifests.read(make_split(root / "train", files))
    torch.manual_seed(0)
    nets = {}
    for q in (1, 6):
        learned.train_learned(train, quality=q, n=8, m=8, epochs=1, batch_size=4, lr=0.003, seed=0,
                              out=root / f"q{q}.pt")
        nets[q] = str(root / f"q{q}.pt")
    return nets


def test_learned_codec_file_roundtrips_deterministically_and_counts_every_byte(tmp_path, learned_nets):
    codec = codecs.get("learned", learned_nets)
    image = Image.fromarray(smooth((40, 24)))
    data = codec.encode(image, 1)
    assert data == codecs.get("learned", learned_nets).encode(image, 1)  # deterministic (entropy tables fixed)
    assert data[:4] == (40).to_bytes(2, "big") + (24).to_bytes(2, "big")
    decoded = codec.decode_at(data, 1)
    assert decoded.size == (40, 24) and decoded.mode == "RGB"
    with pytest.raises(codecs.CodecError, match=r"no network for quality 3 \(have \[1, 6\]\)"):
        codec.encode(image, 3)
    src = split(tmp_path)
    out = compress.compress_split(src, 1, tmp_path / "val-learned-q1", codec="learned", codec_weights=learned_nets)
    entry = out.images[0]
    assert entry["path"] == "c0/im0.png" and entry["bitstream"] == "c0/im0.cai"
    stream = (tmp_path / "val-learned-q1" / entry["bitstream"]).read_bytes()
    assert entry["bits_per_pixel"] == len(stream) * 8 / (40 * 24)
    assert entry["bitstream_sha256"] == hashlib.sha256(stream).hexdigest()
    png = np.asarray(load_rgb(tmp_path / "val-learned-q1" / entry["path"], entry["sha256"]))
    assert np.array_equal(png, np.asarray(codec.decode_at(stream, 1)))  # what models read is the codec's decode
    assert out.source["encoder"]["networks"] == {q: atomic.sha256_file(p) for q, p in sorted(learned_nets.items())}


def test_published_compressai_weights_load_and_a_wrong_file_is_one_line(tmp_path):
    model = learned.build(8, 12)
    torch.save(model.state_dict(), tmp_path / "bmshj2018-factorized-prior-3.pth.tar")  # the zoo's file layout
    learned.resolve_published(str(tmp_path / "bmshj2018-factorized-prior-3.pth.tar"), 3, tmp_path / "q3.pt")
    loaded, meta = learned.load(tmp_path / "q3.pt")
    assert (loaded.N, loaded.M, meta["quality"], meta["lambda"]) == (8, 12, 3, 0.0067)
    assert codecs.get("learned", {3: str(tmp_path / "q3.pt")}).encode(Image.fromarray(smooth()), 3)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: not a bmshj2018-factorized state_dict"):
        learned.resolve_published(str(tmp_path / "other.pth"), 3, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_a_codec_degradation_is_that_codecs_decode_drawn_in_its_range():
    images = torch.from_numpy(np.stack([smooth(seed=i) for i in range(3)])).permute(0, 3, 1, 2)
    webp = inputs.Degradation(codecs.get("webp"), (10, 30), "webp")
    qualities = webp.qualities(3, torch.Generator().manual_seed(0))
    assert qualities == webp.qualities(3, torch.Generator().manual_seed(0)) and all(10 <= q <= 30 for q in qualities)
    batch = webp.batch(images, qualities)
    assert batch.coefficients is None
    for image, q, got in zip(images, qualities, batch.rgb):
        want = np.asarray(codecs.get("webp").roundtrip(Image.fromarray(image.permute(1, 2, 0).numpy()), q))
        assert torch.equal((got * 255).round().byte().permute(1, 2, 0), torch.from_numpy(want.copy()))
    assert webp.settings()["codec"] == "webp" and webp.settings()["quality_range"] == [10, 30]
    assert inputs.Degradation(None, (10, 90)).settings() == {}  # the paper's JPEG: recorded as before
    # the learned codec draws among the qualities it has networks for, each of them
    drawn = inputs.Degradation(codecs.get("webp"), (1, 8), "learned", (1, 6)).qualities(
        20, torch.Generator().manual_seed(0))
    assert set(drawn) == {1, 6} and len(drawn) == 20
    arcnn = correctors.Corrector("arcnn", {"channels": (4, 4, 4)})
    assert arcnn(batch).shape == batch.rgb.shape
    with pytest.raises(ValueError, match="qgac reads JPEG coefficients"):
        correctors.Corrector("qgac", {"luma_channels": 4, "chroma_channels": 4, "luma_blocks": 1},
                             stats=jpeg.FrequencyStats.compute([images[0]]))(batch)


def test_evaluation_on_a_codec_set_records_codec_and_rate(tmp_path, one_thread):
    from jpegstudy.tasks import classification

    src = split(tmp_path)
    torch.manual_seed(0)
    model = classification.build("resnet18", 2).eval()
    spec = classification.transform_spec("resnet18", "train", {"resize": 20, "crop": 16}, 16)
    reference = tmp_path / "ref.pt"
    classification.save_reference(reference, arch="resnet18", build_kwargs={}, classes=["a", "b"], transform=spec,
                                  source="train", state_dict=model.state_dict())
    webp = {q: compress.compress_split(src, q, tmp_path / f"webp{q}", codec="webp") for q in (10, 80)}
    corrector = correctors.Corrector("arcnn", {"channels": (4, 4, 4)})
    correctors.save(tmp_path / "arcnn.pt", corrector, source="train")
    result = evaluate.evaluate(model_name="m", reference=str(reference), clean=str(src),
                               compressed={q: str(tmp_path / f"webp{q}" / "manifest.json") for q in webp},
                               params={}, rule="evaluate_codec", batch_size=4, workers=0, codec="webp",
                               clean_set=False, mitigation="offtheshelf",
                               corrector_files={None: str(tmp_path / "arcnn.pt")})
    assert [r["quality"] for r in result["rows"]] == [10, 80] and result["codec"] == "webp"
    for row in result["rows"]:
        assert row["codec"] == "webp"
        assert row["bits_per_pixel"] == webp[row["quality"]].source["bits_per_pixel"]
        assert row["provenance"]["config"]["encoder"]["options"] == {"method": 4, "lossless": False, "exact": False}
    with pytest.raises(ValueError, match="a webp set, not avif"):
        evaluate.evaluate(model_name="m", reference=str(reference), clean=str(src),
                          compressed={10: str(tmp_path / "webp10" / "manifest.json")}, params={}, rule="e",
                          batch_size=4, workers=0, codec="avif", clean_set=False)


def test_within_rate_by_hand():
    points = [(0.5, 60.0), (1.0, 80.0), (2.0, 90.0)]
    # 89 is between 80 (1 bpp) and 90 (2 bpp): 9/10 of the way in log-rate, 2**0.9 bpp
    kind, rate = rates.within_rate(90.0, points, 1.0)
    assert kind == "at" and rate == pytest.approx(2 ** 0.9)
    assert rates.within_text(kind, rate) == "1.87"
    assert rates.within_rate(61.0, points, 1.0) == ("le", 0.5)
    assert rates.within_text(*rates.within_rate(95.0, points, 1.0)) == "$>$2.00"


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_fifty_percent():
    reference = [(0.5, 60.0), (1.0, 75.0), (2.0, 85.0), (4.0, 90.0)]
    half = [(r / 2, v) for r, v in reference]
    assert rates.bd_rate(reference, half) == pytest.approx(-50.0)
    assert rates.bd_rate(half, reference) == pytest.approx(100.0)
    assert rates.bd_rate(reference, [(1.0, 10.0), (2.0, 20.0)]) is None  # no metric range in common
    assert rates.bd_text(-50.0) == "-50.0" and rates.bd_text(None) == "n/a"


def _row(task, codec, quality, bpp, value):
    row = {"task": task, "model": "m", "mitigation": "none", "dataset": "d", "codec": codec, "quality": quality,
           "bits_per_pixel": bpp, "top1": value, "top1_low": value - 1, "top1_high": value + 1, "n_images": 10}
    return {"id": provenance.row_id(row), **row}


def test_bitrate_table_is_audited_and_an_edited_rate_is_caught(tmp_path, capsys):
    metrics = tmp_path / "metrics"
    jpeg_rows = [_row("classification", "jpeg", None, None, 90.0)] + [
        _row("classification", "jpeg", q, r, v) for q, r, v in ((10, 1.0, 70.0), (50, 2.0, 85.0), (90, 4.0, 89.5))]
    webp_rows = [_row("classification", "webp", q, r / 2, v) for q, r, v in ((10, 1.0, 70.0), (50, 2.0, 85.0),
                                                                             (90, 4.0, 89.5))]
    (metrics / "classification" / "m").mkdir(parents=True)
    (metrics / "codecs" / "webp" / "classification" / "m").mkdir(parents=True)
    none = metrics / "classification" / "m" / "none.json"
    none.write_text(json.dumps({"rows": jpeg_rows}))
    (metrics / "codecs" / "webp" / "classification" / "m" / "none.json").write_text(json.dumps({"rows": webp_rows}))
    table = tmp_path / "codecs.tex"
    rates.table([none, metrics / "codecs" / "webp" / "classification" / "m" / "none.json"], table, {"within": 1.0})
    text = table.read_text()
    # 89 (clean 90 - 1) lies 4/4.5 of the way from (2 bpp, 85) to (4 bpp, 89.5) in log-rate: 2**(1 + 8/9) bpp
    assert f"{{{2 ** (1 + 8 / 9):.2f}}}" == "{3.70}" and "{3.70}" in text and "{1.85}" in text and "{-50.0}" in text
    assert audit.audit(str(table), str(metrics), verbose=False)
    table.write_text(text.replace("{-50.0}", "{-40.0}"))
    assert not audit.audit(str(table), str(metrics), verbose=False)
    assert "MISMATCH -40.0 printed, -50.0 is the rate|bdrate:3" in capsys.readouterr().out


def test_rate_figures_list_every_row_they_plot(tmp_path):
    rows = [_row("classification", "jpeg", None, None, 90.0), _row("classification", "jpeg", 10, 1.0, 70.0),
            _row("classification", "jpeg", 50, 2.0, 85.0)]
    webp = [_row("classification", "webp", 10, 0.4, 72.0), _row("classification", "webp", 50, 1.1, 88.0)]
    files = []
    for name, content in (("none", rows), ("webp", webp)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"rows": content}))
    out = [tmp_path / "bpp.pdf", tmp_path / "bpp.png"]
    rates.rate_figure(files, out, {"confidence": {"level": 0.95}})
    refs = {f"{r}" for r, _f, _ in audit.figure_refs(out[1])}
    assert refs == {r["id"] for r in rows + webp}
    assert audit.audit(str(out[0]), str(tmp_path), verbose=False)
