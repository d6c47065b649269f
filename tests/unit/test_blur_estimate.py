import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shared.blur_estimate import (ESTIMATOR_PATH, MAX_SIGMA, MIN_SIGMA, PRIOR_SIGMA, estimate_blur,
                                  load_estimator, save_estimator)
from shared.cli import cli
from shared.degrade import Degradation, degrade
from shared.inference import file_sha256
from shared.nets.blur_estimator import BlurEstimatorNet
from trainer.blur_estimator import EstimatorConfig, train_blur_estimator

from ..conftest import PHOTOS, load_photo


def blurred(img, sigma):
    return degrade(img, Degradation.fixed(sigma), np.random.default_rng(0))[0]


@pytest.mark.parametrize("name", PHOTOS)
def test_grows_with_the_blur_of_a_photo(name):
    sharp = load_photo(name, 512)
    estimates = [estimate_blur(blurred(sharp, s)) for s in (0.5, 1.0, 2.0, 3.0)]
    assert estimates == sorted(estimates) and estimates[0] < estimates[-1] - 1.0
    assert all(MIN_SIGMA <= e <= MAX_SIGMA for e in estimates)


def test_flat_tiny_gray_and_tall_images():
    assert estimate_blur(np.full((64, 64, 3), 0.3, np.float32)) == PRIOR_SIGMA  # nothing to read
    assert estimate_blur(np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)) == PRIOR_SIGMA
    rgb = blurred(load_photo("astronaut.png", 256), 2.0)
    gray = rgb.mean(axis=2)
    assert estimate_blur(gray) == pytest.approx(estimate_blur(np.repeat(gray[:, :, None], 3, axis=2)), rel=1e-5)
    assert estimate_blur(gray[:, :, None]) == estimate_blur(gray)
    tall = np.tile(gray, (17, 1))  # 4352 rows: read on the central 1024
    assert estimate_blur(tall) == estimate_blur(tall[1664:2688])
    odd = gray[:251, :243]  # sides not multiples of 8
    assert MIN_SIGMA <= estimate_blur(odd) <= MAX_SIGMA


def test_save_load_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    net = BlurEstimatorNet()
    save_estimator(tmp_path / "e.pt", net, {"note": "x"})
    assert (tmp_path / "e.pt").stat().st_mode & 0o777 == 0o644 and not list(tmp_path.glob(".*.tmp"))
    back = load_estimator(tmp_path / "e.pt")
    x = torch.rand(1, 1, 64, 64)
    assert torch.equal(net.eval()(x), back(x))
    with pytest.raises(FileNotFoundError, match="sharpen train blur-estimator"):
        load_estimator(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Sharpen blur estimator"):
        load_estimator(tmp_path / "other.pt")
    assert ESTIMATOR_PATH.is_file()  # the shipped weights


def test_training_smoke(photo_folder, tmp_path):
    root = tmp_path / "div2k"  # DIV2K layout: four training photos, one validation photo
    (root / "DIV2K_valid_HR").mkdir(parents=True)
    (photo_folder / "chelsea.png").rename(root / "DIV2K_valid_HR" / "chelsea.png")
    photo_folder.rename(root / "DIV2K_train_HR")
    out = tmp_path / "est.pt"
    seen = []
    metrics = train_blur_estimator([root], out, EstimatorConfig(steps=3, batch_size=2, crop=64),
                                   progress=lambda step, loss: seen.append(step))
    assert seen == [1, 2, 3] and np.isfinite(metrics["train_loss"])
    assert {"val_rms_log", "val_rms_log_sigma1"} <= set(metrics) and np.isfinite(metrics["val_rms_log"])
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["train_files"] == ["astronaut.png", "coffee.png", "motorcycle_left.png", "rocket.png"]
    assert meta["valid_files"] == ["chelsea.png"]
    assert MIN_SIGMA <= estimate_blur(blurred(load_photo("chelsea.png", 128), 2.0), load_estimator(out)) <= MAX_SIGMA
    tuned = tmp_path / "tuned.pt"   # fine-tuning: starts from those weights and names them by sha256
    train_blur_estimator([root], tuned, EstimatorConfig(steps=2, batch_size=2, crop=64, lr=0.0, init_from=str(out),
                                                        degradation="realistic"))
    prov = torch.load(tuned, weights_only=True)["meta"]["provenance"]
    assert prov["parents"]["init_from"]["sha256"] == file_sha256(out) and prov["command"]
    assert torch.equal(load_estimator(tuned).state_dict()["body.12.weight"], load_estimator(out).state_dict()["body.12.weight"])


def test_cli_trains_and_reports(photo_folder, tmp_path):
    out = tmp_path / "est.pt"
    result = CliRunner().invoke(cli, ["train", "blur-estimator", "--data", str(photo_folder), "--out", str(out),
                                      "--steps", "2", "--batch-size", "2", "--crop", "64"])
    assert result.exit_code == 0, result.output
    assert f"blur estimator written to {out}" in result.output and out.is_file()
    result = CliRunner().invoke(cli, ["train", "blur-estimator", "--data", str(tmp_path), "--out", str(out)])
    assert result.exit_code != 0 and "no training images" in result.output


@pytest.mark.parametrize("name", ["rocket.jpg", "astronaut.png"])
def test_the_device_readings_equal_opencvs(name):
    from shared.blur_estimate import estimate_hint, estimate_noise, hints_on_device, central_gray_tensor
    from shared.degrade import quantize8

    for side, sigma in ((1200, 0.5), (256, 2.0), (40, 1.0)):   # larger than the region, smaller, tiny
        img = quantize8(blurred(load_photo(name, side), sigma))
        on_host = estimate_hint(img, 3)
        on_device = hints_on_device(central_gray_tensor(torch.from_numpy(img))[None], 3)[0].tolist()
        assert on_device == pytest.approx(on_host, rel=1e-5, abs=1e-9)
        assert estimate_noise(torch.from_numpy(img)) == pytest.approx(estimate_noise(img), rel=1e-5, abs=1e-9)
    flat = torch.full((64, 64, 3), 0.3)
    assert hints_on_device(central_gray_tensor(flat)[None], 3)[0].tolist() == [PRIOR_SIGMA, 0.0, 0.0]


def test_hints_from_pixels_are_the_float_images_on_the_cpu():
    from shared.imageio import Picture, to_model_input
    from shared.inference import estimate_hints, load_model

    model = load_model(None, "cpu")
    sharp = load_photo("coffee.png", 1300)    # larger than the region: only its centre is converted
    for pixels in (np.rint(blurred(sharp, 1.5) * 255).astype(np.uint8),
                   np.rint(blurred(sharp, 2.5).mean(axis=2, keepdims=True) * 65535).astype(np.uint16)):
        rgb, _ = to_model_input(Picture(pixels, "PNG"))
        assert estimate_hints(model, torch.from_numpy(pixels)[None])[0].tolist() == \
            pytest.approx(model.estimate_hint(rgb), rel=1e-6)
