"""The degradation families, the noise reading, the grain measure and the Wiener front end."""
import math

import cv2
import numpy as np
import pytest
import torch

from shared import nets
from shared.blur_estimate import estimate_noise
from shared.degrade import (EVAL_FAMILIES, FAMILIES, REALISTIC, Degradation, blur, degrade, disk_kernel,
                            draw_kernel, jpeg_roundtrip, kernel_sigma, quantize8, sensor_noise, shake_kernel)
from shared.nets.wiener import fft_filter, fft_filter_bank, wiener_kernels
from shared.quality_table import grain, tolerance


def test_kernels_sum_to_one_and_have_their_spread():
    for r in (2.0, 3.0, 5.0):
        k = disk_kernel(r)
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and k.shape[0] % 2 == 1
        assert kernel_sigma(k) == pytest.approx(r / 2, rel=0.15)  # a uniform disk: σ = r/2 (soft edge adds)
    rng = np.random.default_rng(0)
    for length in (3.0, 11.0, 15.0):
        k = shake_kernel(length, rng)
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        assert 0.1 * length < kernel_sigma(k) < 0.6 * length
    g = cv2.getGaussianKernel(25, 2.0) @ cv2.getGaussianKernel(25, 2.0).T
    assert kernel_sigma(g) == pytest.approx(2.0, rel=0.01)


def test_every_family_blurs_and_reports_its_equivalent_sigma(photo):
    rng = np.random.default_rng(1)
    for family in FAMILIES:
        out, sigma, drawn = blur(photo, Degradation(family=family, sigma=(2, 2), defocus_radius=(3, 3)), rng)
        assert drawn == family and out.shape == photo.shape
        if family == "clean":
            assert sigma == 0 and np.array_equal(out, photo)
        else:
            assert sigma > 0.5 and np.abs(out - photo).mean() > 0.005
            assert out.mean() == pytest.approx(photo.mean(), abs=0.01)   # blur keeps brightness
    drawn = {blur(photo[:64, :64], REALISTIC, np.random.default_rng(i))[2] for i in range(60)}
    assert drawn == set(FAMILIES)                                          # the mixture draws every family
    with pytest.raises(ValueError, match="unknown blur family"):
        blur(photo, Degradation(family="motion"), rng)


def test_draw_kernel_is_the_kernel_the_evaluation_blurs_with():
    deg = EVAL_FAMILIES["shake 11 px"]
    k = draw_kernel(deg.family, deg, np.random.default_rng(7))
    impulse = np.zeros((64, 64, 3), np.float32)
    impulse[32, 32] = 1.0
    out = blur(impulse, deg, np.random.default_rng(7))[0][..., 0]     # the same seeded draw as degraded_set's
    n = k.shape[0] // 2
    assert np.allclose(out[32 - n:33 + n, 32 - n:33 + n], k, atol=1e-6) and out.sum() == pytest.approx(1.0, abs=1e-4)


def test_sensor_noise_statistics():
    rng = np.random.default_rng(0)
    for level in (0.2, 0.5, 0.9):
        flat = np.full((256, 256, 3), level, np.float32)
        noisy = sensor_noise(flat, 4e-4, 0.005, rng)
        assert noisy.mean() == pytest.approx(level, abs=1e-3)
        assert noisy.std() == pytest.approx(math.sqrt(4e-4 * level + 0.005 ** 2), rel=0.03)


def test_jpeg_is_applied_and_outputs_are_8bit(photo):
    deg = Degradation(sigma=(1.5, 1.5), jpeg=(60, 60), jpeg_prob=1.0)
    out, _ = degrade(photo, deg, np.random.default_rng(0))
    plain, _ = degrade(photo, Degradation.fixed(1.5), np.random.default_rng(0))
    assert np.array_equal(out, jpeg_roundtrip(plain, 60))
    assert not np.array_equal(out, plain)
    np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-3)
    for name, d in EVAL_FAMILIES.items():   # every evaluation family is deterministic per seed
        a, _ = degrade(photo, d, np.random.default_rng(3))
        b, _ = degrade(photo, d, np.random.default_rng(3))
        assert np.array_equal(a, b), name


def test_noise_reading_follows_the_noise(photo):
    smooth = cv2.GaussianBlur(photo, (0, 0), 3)
    quiet = estimate_noise(quantize8(smooth))
    gray_std = math.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2)   # per-channel noise as seen in the gray image
    for std in (0.01, 0.02):
        noisy = quantize8(smooth + np.random.default_rng(0).normal(0, std, smooth.shape).astype(np.float32))
        fine, coarse = estimate_noise(noisy)
        assert fine == pytest.approx(gray_std * std, rel=0.2) and coarse == pytest.approx(gray_std * std, rel=0.3)
        assert fine > 3 * quiet[0]
    assert estimate_noise(torch.from_numpy(smooth)) == pytest.approx(estimate_noise(smooth), rel=1e-5)


def test_grain_on_a_flat_image_with_noise():
    flat = np.full((128, 128, 3), 0.4, np.float32)
    assert grain(flat, flat) == 0.0
    k = cv2.getGaussianKernel(9, 1.0)
    k2 = k @ k.T
    delta = np.zeros_like(k2)
    delta[4, 4] = 1
    expected_ratio = math.sqrt(((delta - k2) ** 2).sum())   # RMS of high-passed white noise / its std
    for std in (0.005, 0.02):
        noise = np.random.default_rng(0).normal(0, std, (128, 128, 1)).astype(np.float32)
        out = flat + np.repeat(noise, 3, axis=2)                 # gray noise: the gray high-pass sees all of it
        assert grain(out, flat) == pytest.approx(255 * std * expected_ratio, rel=0.1)
    textured = np.random.default_rng(1).random((128, 128, 3)).astype(np.float32)
    assert math.isnan(grain(textured, textured))               # nothing flat: nothing to measure
    assert tolerance("gaussian σ=2") == 0.002 and tolerance("defocus r=3") == 0.005


def test_fft_filter_equals_spatial_filtering_with_reflected_borders(photo):
    k = wiener_kernels(torch.tensor([1.5]), torch.tensor([1e-2]))
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    x = torch.from_numpy(photo[:100, :90]).permute(2, 0, 1)[None]
    ours = fft_filter(x, k)[0].permute(1, 2, 0).numpy()
    ref = cv2.filter2D(photo[:100, :90], -1, k[0].numpy(), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_a_bank_filters_each_image_with_its_own_kernels():
    """Several images, several kernels each, a non-square image (the transposed spectra): spatial filtering."""
    x = torch.rand(2, 3, 70, 123, generator=torch.Generator().manual_seed(0))
    k = wiener_kernels(torch.tensor([1.0, 2.5, 3.0, 0.6]), torch.tensor([1e-3, 1e-2, 3e-3, 1e-1])).reshape(2, 2, 65, 65)
    bank = fft_filter_bank(x, k)
    for i in range(2):
        for m in range(2):
            ref = cv2.filter2D(x[i].permute(1, 2, 0).numpy(), -1, k[i, m].numpy(), borderType=cv2.BORDER_REFLECT_101)
            np.testing.assert_allclose(bank[i, m].permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_wiener_front_end_undoes_gaussian_blur_and_the_untrained_student_is_it(photo):
    blurred = quantize8(cv2.GaussianBlur(photo, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101))
    x = torch.from_numpy(blurred).permute(2, 0, 1)[None]
    k = wiener_kernels(torch.tensor([2.0]), torch.tensor([3e-3]))
    restored = fft_filter(x, k)[0].permute(1, 2, 0).numpy()
    err = lambda a: float(np.abs(a - photo)[16:-16, 16:-16].mean())  # noqa: E731
    assert err(restored) < 0.8 * err(blurred)
    net = nets.build("student-s2d-wiener").eval()
    hint = torch.tensor([[2.0, 0.001, 0.002]])
    with torch.no_grad():
        front = net.front(x, hint[:, 0], hint[:, 1], hint[:, 2])
        assert torch.equal(net(x, hint), front)                  # zero-initialised correction
        assert not torch.equal(net(x, torch.tensor([[2.0, 0.02, 0.02]])), front)  # more noise: gentler filter


def test_baselines_are_tuned_per_family_on_the_tuning_photos():
    from shared.quality_table import BALANCE_GRID, UNSHARP_GRID, baseline_methods, tune_baselines
    from tests.conftest import load_photo

    images = [(n, load_photo(n, 64)) for n in ("astronaut.png", "coffee.png")]
    families = {k: EVAL_FAMILIES[k] for k in ("gaussian σ=2", "defocus r=3")}
    tuned = tune_baselines(images, families)
    assert tuned["gaussian σ=2"]["unsharp"] in UNSHARP_GRID and tuned["defocus r=3"]["blind_wiener"] in BALANCE_GRID
    assert "wiener" in tuned["gaussian σ=2"] and "wiener" not in tuned["defocus r=3"]  # known σ: Gaussian only
    methods = baseline_methods(tuned)
    x = images[0][1]
    assert methods["Wiener, known σ (tuned)"](x, "defocus r=3") is None
    assert methods["blind Wiener (σ̂, tuned balance)"](x, "gaussian σ=2").shape == x.shape
