"""The embedded study's fakes: the generator is deterministic, its fakes carry the upsampling traces the spectrum
shows (the real scenes do not), and a generated set lists as a CNNDetection-layout set."""

import numpy as np
import pytest

from jpegstudy.data import fakes, forensics
from jpegstudy.data import manifest as manifests


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    images = fakes.scenes(0, "generator", 64, 32)
    generator, losses = fakes.train(images, channels=8, blocks=1, epochs=3, batch_size=16, lr=0.003, seed=0)
    path = tmp_path_factory.mktemp("gen") / "generator.pt"
    fakes.save(path, generator, {"losses": losses})
    return path, generator, losses


def test_scenes_are_deterministic_and_roles_differ():
    a, b = fakes.scenes(3, "val-real", 4, 32), fakes.scenes(3, "val-real", 4, 32)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fakes.scenes(3, "val-fake", 4, 32))


def test_training_is_deterministic_and_lowers_the_loss(trained):
    path, generator, losses = trained
    assert losses[-1] < losses[0]
    again, _ = fakes.load(path)
    images = fakes.scenes(1, "x", 4, 32)
    np.testing.assert_array_equal(fakes.generate(generator, images), fakes.generate(again, images))
    other, other_losses = fakes.train(fakes.scenes(0, "generator", 64, 32), channels=8, blocks=1, epochs=3,
                                      batch_size=16, lr=0.003, seed=0)
    assert other_losses == losses
    np.testing.assert_array_equal(fakes.generate(other, images), fakes.generate(generator, images))


def test_fakes_carry_the_upsampling_peak_reals_do_not(trained):
    _, generator, _ = trained
    reals = fakes.scenes(5, "val-real", 48, 32)
    made = fakes.generate(generator, fakes.scenes(5, "val-fake", 48, 32))
    real_peak, fake_peak = (fakes.upsampling_peak(fakes.spectrum(a)) for a in (reals, made))
    assert fake_peak > real_peak + 0.3, (real_peak, fake_peak)


def test_upsampling_peak_reads_the_nyquist_points():
    # A pure 2-pixel checkerboard has all its residual energy at (N/2, N/2): the peak stands far above the median.
    board = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(board[None, :, :, None], 3, axis=3)
    flat = np.full_like(image, 128) + np.random.default_rng(0).integers(0, 3, image.shape, dtype=np.uint8)
    assert fakes.upsampling_peak(fakes.spectrum(image)) > 5
    assert abs(fakes.upsampling_peak(fakes.spectrum(flat))) < 2


def test_refuses_odd_sizes_and_too_few_images():
    with pytest.raises(ValueError, match="33x33 px: both sides must be even"):
        fakes.train(np.zeros((4, 33, 33, 3), np.uint8), channels=4, blocks=0, epochs=1, batch_size=2, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="3 generator training images, fewer than one batch of 8"):
        fakes.train(np.zeros((3, 32, 32, 3), np.uint8), channels=4, blocks=0, epochs=1, batch_size=8, lr=1e-3, seed=0)


def test_load_refuses_another_file(tmp_path):
    import torch

    path = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match=f"{path}: not a forensics generator file"):
        fakes.load(path)


def test_write_split_lists_reals_and_fakes_with_their_peaks(trained, tmp_path):
    path, _, _ = trained
    out = tmp_path / "val"
    m = fakes.write_split(out, "val", 6, 32, 0, path, dataset="fakes")
    m.write(out / "manifest.json")
    back = manifests.read(out / "manifest.json")
    assert back.classes == forensics.CLASSES and back.labels == [0] * 6 + [1] * 6
    assert back.source["layout"] == "forensics" and back.source["encodings"] == ["lossless"]
    assert back.source["upsampling_peak"]["fake"] > back.source["upsampling_peak"]["real"]
    assert all(back.path_of(i).is_file() for i in range(12))
    assert back.source["generator_sha256"]
