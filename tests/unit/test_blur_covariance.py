"""The blur's covariance: drawn with each degradation, read by the covariance reader, deconvolved by the
anisotropic Wiener front end of the covariance-hinted student."""
import math

import cv2
import numpy as np
import pytest
import torch

from shared import nets
from shared.blur_estimate import (COVARIANCE_PATH, MAX_SIGMA, MIN_SIGMA, PRIOR_SIGMA, central_gray_tensor,
                                  estimate_blur, estimate_covariance, estimate_hint, hints_on_device,
                                  load_covariance_reader, load_estimator, save_covariance_reader)
from shared.degrade import (FAMILIES, Degradation, apply_kernel, blur, blur_with_covariance, draw_kernel,
                            kernel_covariance, path_kernel, quantize8)
from shared.nets.blur_estimator import BlurCovarianceNet, covariance_from_log
from shared.nets.wiener import fft_filter, gaussian_response, gaussian_response_cov, wiener_kernels
from trainer.blur_estimator import EstimatorConfig, log_cov_target, train_blur_estimator

from ..conftest import load_photo


def line_blur(img: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    path = np.linspace(-length / 2, length / 2, 64)[:, None] * np.array([math.cos(a), math.sin(a)])
    k = path_kernel(path, int(length / 2) + 2)
    return quantize8(apply_kernel(img, (k / k.sum()).astype(np.float32)))


def test_every_family_reports_its_kernels_covariance(photo):
    deg = Degradation(family="gaussian", sigma=(2, 2), defocus_radius=(3, 3), shake_length=(11, 11),
                      mix_sigma=(0.7, 0.7))
    for family in FAMILIES:
        d = Degradation(**{**deg.__dict__, "family": family})
        out, sigma, cov, drawn = blur_with_covariance(photo, d, np.random.default_rng(3))
        same, sigma_, drawn_ = blur(photo, d, np.random.default_rng(3))
        assert drawn == drawn_ == family and np.array_equal(out, same) and sigma == sigma_   # blur is this draw
        assert math.sqrt(np.trace(cov) / 2) == pytest.approx(sigma, rel=1e-6)
        if family == "clean":
            assert not cov.any()
        elif family == "gaussian":
            np.testing.assert_allclose(cov, 4 * np.eye(2))
        else:
            kernel = draw_kernel(family, d, np.random.default_rng(3))
            extra = 0.49 * np.eye(2) if family.startswith("gaussian+") else 0
            np.testing.assert_allclose(cov, kernel_covariance(kernel) + extra)


def test_the_anisotropic_front_end_deconvolves_a_directional_blur(photo):
    s = torch.tensor([0.7, 1.5, 3.0])
    iso = torch.diag_embed(torch.stack([s * s, s * s], dim=1))
    torch.testing.assert_close(gaussian_response_cov(iso), gaussian_response(s), atol=1e-6, rtol=0)
    cov = torch.tensor([[[6.0, 2.5], [2.5, 1.5]]])
    k = wiener_kernels(cov, torch.tensor([1e-2]))
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    x = torch.from_numpy(photo[:100, :90]).permute(2, 0, 1)[None]
    ours = fft_filter(x, k, axis_symmetric=False)[0].permute(1, 2, 0).numpy()
    ref = cv2.filter2D(photo[:100, :90], -1, k[0].numpy(), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    # a horizontal line blur: its own covariance's Gaussian undoes it better than the isotropic one of its σ
    sharp = photo[:256, :256]
    t = torch.from_numpy(line_blur(sharp, 11, 0)).permute(2, 0, 1)[None]
    line = torch.tensor([[[121 / 12, 0.0], [0.0, 0.1]]])
    err = {}
    round_ = torch.eye(2)[None] * float(line.diagonal(dim1=1, dim2=2).mean())   # the same σ, no direction
    for name, c in {"line": line, "isotropic": round_}.items():
        y = fft_filter(t, wiener_kernels(c, torch.tensor([3e-3])), axis_symmetric=False)[0].permute(1, 2, 0).numpy()
        err[name] = float(np.abs(y - sharp)[40:-40, 40:-40].mean())
    assert err["line"] < 0.8 * err["isotropic"]


def test_a_reader_started_from_the_estimator_reads_its_isotropic_sigma(tmp_path, photo):
    net = BlurCovarianceNet.from_estimator(load_estimator())
    img = quantize8(cv2.GaussianBlur(photo, (0, 0), 2.0))
    cov = estimate_covariance(img, net)
    np.testing.assert_allclose(cov, estimate_blur(img) ** 2 * np.eye(2), rtol=1e-4)
    abc = torch.tensor([0.3, -0.4, 1.1], dtype=torch.float64)
    log = np.array([[0.3, -0.4], [-0.4, 1.1]])
    vals, vecs = np.linalg.eigh(log)
    np.testing.assert_allclose(covariance_from_log(abc).numpy(), vecs @ np.diag(np.exp(vals)) @ vecs.T, rtol=1e-9)
    np.testing.assert_allclose(log_cov_target(covariance_from_log(abc).numpy()), abc.numpy(), rtol=1e-5)
    save_covariance_reader(tmp_path / "r.pt", net, {})
    assert torch.equal(load_covariance_reader(tmp_path / "r.pt").body[-1].weight, net.body[-1].weight)
    with pytest.raises(ValueError, match="not a Sharpen blur-covariance reader"):
        from shared.blur_estimate import ESTIMATOR_PATH
        load_covariance_reader(ESTIMATOR_PATH)
    assert np.array_equal(estimate_covariance(np.full((64, 64, 3), 0.3, np.float32), net), PRIOR_SIGMA ** 2 * np.eye(2))


@pytest.mark.parametrize("angle", [0, 45, 90, 135])
def test_the_shipped_reader_reads_a_shakes_direction(angle):
    assert COVARIANCE_PATH.is_file()
    sharp = load_photo("astronaut.png", 512)
    cov = estimate_covariance(line_blur(sharp, 11, angle))
    vals, vecs = np.linalg.eigh(cov)
    axis = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1])) % 180
    assert min(abs(axis - angle), 180 - abs(axis - angle)) < 20          # the direction of the streak
    assert vals[1] > 2 * vals[0] and MIN_SIGMA ** 2 <= vals[0] and vals[1] <= MAX_SIGMA ** 2
    iso = estimate_covariance(quantize8(cv2.GaussianBlur(sharp, (0, 0), 2.0)))
    assert np.linalg.eigvalsh(iso)[1] < 1.5 * np.linalg.eigvalsh(iso)[0]   # a Gaussian reads round


def test_nine_number_hints_agree_on_host_and_device():
    img = line_blur(load_photo("rocket.jpg", 400), 9, 30)
    on_host = estimate_hint(img, 9)
    on_device = hints_on_device(central_gray_tensor(torch.from_numpy(img))[None], 9)[0].tolist()
    assert len(on_host) == 9 and on_device == pytest.approx(on_host, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(np.array(on_host[6:]), estimate_covariance(img)[[0, 0, 1], [0, 1, 1]], rtol=1e-5)


def test_the_covariance_student_is_the_shape_student_on_a_round_blur(photo):
    shape, cov = nets.build("student-s2d-wbank-shape"), nets.build("student-s2d-wbank-shape-cov")
    torch.manual_seed(0)
    for p in shape.parameters():
        p.data.normal_(0, 0.01)
    cov.load_state_dict(shape.state_dict())           # the same weights: only the front end's kernel differs
    x = torch.from_numpy(photo[:128, :128]).permute(2, 0, 1)[None]
    hint = torch.tensor([[2.0, 0.001, 0.002, 0.5, 0.2, 0.3, 4.0, 0.0, 4.0]])
    for mode in (False, True):
        shape.train(mode), cov.train(mode)
        with torch.set_grad_enabled(mode):
            torch.testing.assert_close(cov(x, hint), shape(x, hint[:, :6]), atol=1e-5, rtol=0)
    streak = hint.clone()
    streak[0, 6:] = torch.tensor([7.0, 2.0, 1.0])
    with torch.no_grad():
        assert not torch.allclose(cov.eval()(x, streak), cov(x, hint), atol=1e-3)


def test_covariance_training_smoke(photo_folder, tmp_path):
    root = tmp_path / "div2k"
    (root / "DIV2K_valid_HR").mkdir(parents=True)
    (photo_folder / "chelsea.png").rename(root / "DIV2K_valid_HR" / "chelsea.png")
    photo_folder.rename(root / "DIV2K_train_HR")
    out = tmp_path / "cov.pt"
    from shared.blur_estimate import ESTIMATOR_PATH
    metrics = train_blur_estimator([root], out, EstimatorConfig(steps=2, batch_size=2, crop=64, target="covariance",
                                                                degradation="realistic", init_from=str(ESTIMATOR_PATH)))
    assert {"val_rms_logcov_shake", "val_shake_axis_error_deg_median"} <= set(metrics)
    assert load_covariance_reader(out)(torch.rand(1, 1, 64, 64)).shape == (1, 3)
    with pytest.raises(ValueError, match="realistic"):
        train_blur_estimator([root], out, EstimatorConfig(steps=1, target="covariance"))
