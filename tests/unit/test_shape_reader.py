"""The reader of the blur's shape (``shared.shape_reader``) and the six-number hint it adds."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shared.blur_estimate import estimate_hint, hints_on_device, rgb_to_gray
from shared.cli import cli
from shared.degrade import Degradation, degrade
from shared.shape_reader import (N_FEATURES, READER_PATH, SHAPES, ShapeReaderNet, fit_reader, load_reader,
                                 read_shape, save_reader, shape_features)

from ..conftest import PHOTOS, load_photo

GAUSSIAN = Degradation.fixed(2.0)
DISK = Degradation(family="defocus", defocus_radius=(4.0, 4.0))


def reading(rgb: np.ndarray) -> list[float]:
    return estimate_hint(rgb, 6)


@pytest.mark.parametrize("name", PHOTOS[:3])
def test_the_shipped_reader_tells_a_gaussian_from_a_disk(name):
    sharp = load_photo(name, 512)
    gauss = reading(degrade(sharp, GAUSSIAN, np.random.default_rng(0))[0])
    disk = reading(degrade(sharp, DISK, np.random.default_rng(0))[0])
    assert gauss[3] > gauss[4] and disk[4] > disk[3]          # P(Gaussian) against P(defocus)
    for hint in (gauss, disk):
        assert all(0 <= p <= 1 for p in hint[3:]) and sum(hint[3:]) <= 1 + 1e-6   # clean is the rest


def test_the_device_reading_is_the_hosts_and_tiny_images_read_as_unknown():
    rgb = degrade(load_photo("coffee.png", 400), DISK, np.random.default_rng(1))[0]
    host = torch.tensor(estimate_hint(rgb, 6))
    device = hints_on_device(rgb_to_gray(torch.from_numpy(rgb))[None], 6)[0]
    assert torch.allclose(host, device, atol=1e-5)
    assert estimate_hint(rgb, 3) == pytest.approx(host[:3].tolist(), abs=1e-6)   # the first three are unchanged
    tiny = read_shape(torch.rand(2, 40, 40), torch.tensor([[1.0, 0.0, 0.0]] * 2))
    assert torch.equal(tiny, torch.full((2, len(SHAPES)), 1 / len(SHAPES)))


def test_features_see_direction_and_the_fit_learns_separable_shapes(tmp_path):
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.random((1, 256, 256), dtype=np.float32))
    hint = torch.tensor([[1.0, 0.0, 0.0]])
    streak = torch.from_numpy(np.ascontiguousarray(
        np.apply_along_axis(lambda r: np.convolve(r, np.ones(9) / 9, "same"), 2, noise.numpy()), np.float32))
    f_noise, f_streak = shape_features(noise, hint)[0], shape_features(streak, hint)[0]
    assert f_noise.shape == (N_FEATURES,)
    assert f_streak[-1] > f_noise[-1] + 1        # a one-directional blur spreads the power per orientation
    X = torch.cat([torch.randn(40, N_FEATURES) + 3 * torch.eye(N_FEATURES)[k] for k in range(len(SHAPES))])
    y = torch.arange(len(SHAPES)).repeat_interleave(40)
    net = fit_reader(X, y, steps=200)
    assert (net(X).argmax(1) == y).float().mean() > 0.95
    save_reader(tmp_path / "r.pt", net, {"note": "x"})
    assert torch.equal(load_reader(tmp_path / "r.pt")(X), net(X))
    with pytest.raises(FileNotFoundError, match="sharpen train shape-reader"):
        load_reader(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Sharpen shape reader"):
        load_reader(tmp_path / "other.pt")
    assert isinstance(load_reader(READER_PATH), ShapeReaderNet)


def test_cli_fits_a_reader_and_reports_it(photo_folder, tmp_path):
    out = tmp_path / "reader.pt"
    result = CliRunner().invoke(cli, ["train", "shape-reader", "--data", str(photo_folder), "--out", str(out),
                                      "--reps", "1"])
    assert result.exit_code == 0, result.output
    assert "read right" in result.output and out.is_file()
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["metrics"]["fit_photos"] == 4 and meta["metrics"]["check_photos"] == 1
    assert meta["provenance"]["command"]
    result = CliRunner().invoke(cli, ["train", "shape-reader", "--data", str(tmp_path / "nowhere"), "--out",
                                      str(out)])
    assert result.exit_code != 0
