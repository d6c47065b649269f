import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from shared.degrade import Degradation, degrade, gaussian_blur, quantize8
from shared.metrics import psnr, psnr_torch, ssim, ssim_torch


def test_blur_is_opencv_gaussian(photo):
    out = gaussian_blur(photo, 2.0)
    ref = cv2.GaussianBlur(photo, (0, 0), 2.0)
    np.testing.assert_array_equal(out, ref)
    assert np.array_equal(gaussian_blur(photo, 0), photo)


def test_degrade_fixed_sigma_is_deterministic_and_8bit(photo):
    a, s = degrade(photo, Degradation.fixed(2.0), np.random.default_rng(1))
    b, _ = degrade(photo, Degradation.fixed(2.0), np.random.default_rng(2))
    assert s == 2.0 and np.array_equal(a, b)
    np.testing.assert_allclose(a * 255, np.rint(a * 255), atol=1e-3)
    assert ssim(a, photo) < 0.95


def test_degrade_range_noise_and_jpeg(photo):
    deg = Degradation(sigma=(0.5, 3.0), noise=(0.01, 0.01), noise_prob=1.0, jpeg_prob=1.0)
    sigmas = {degrade(photo, deg, np.random.default_rng(i))[1] for i in range(20)}
    assert min(sigmas) >= 0.5 and max(sigmas) <= 3.0 and len(sigmas) == 20
    out, _ = degrade(photo, deg, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_ssim_equals_skimage_and_torch_matches(photo):
    rng = np.random.default_rng(0)
    pairs = [(photo, quantize8(gaussian_blur(photo, s))) for s in (0.7, 1.5, 3.0)]
    pairs.append((photo, np.clip(photo + rng.normal(0, 0.05, photo.shape), 0, 1).astype(np.float32)))
    for a, b in pairs:
        ref = structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=2, data_range=1)
        assert abs(ssim(a, b) - ref) < 1e-12
        ta = torch.from_numpy(a).permute(2, 0, 1)[None]
        tb = torch.from_numpy(b).permute(2, 0, 1)[None]
        assert abs(float(ssim_torch(ta, tb)) - ref) < 1e-4
        assert abs(psnr(a, b) - peak_signal_noise_ratio(a, b, data_range=1)) < 1e-6
        assert abs(float(psnr_torch(ta, tb)) - psnr(a, b)) < 1e-3


def test_ssim_torch_batched_per_image(photo):
    a = torch.from_numpy(photo).permute(2, 0, 1)[None]
    b = torch.from_numpy(quantize8(gaussian_blur(photo, 2))).permute(2, 0, 1)[None]
    both = ssim_torch(torch.cat([a, a]), torch.cat([a, b]))
    assert both.shape == (2,)
    assert abs(float(both[0]) - 1.0) < 1e-9 and float(both[1]) == pytest.approx(float(ssim_torch(a, b)))
    assert psnr(photo, photo) == float("inf")


def test_scores_in_bands_of_pixels_equal_the_whole_image_scores(photo):
    from shared.metrics import score_in_bands

    sharp = np.rint(photo * 255).astype(np.uint8)
    blurred = np.rint(degrade(photo, Degradation.fixed(2.0), np.random.default_rng(0))[0] * 255).astype(np.uint8)
    a, b = (torch.from_numpy(p.astype(np.float32) / 255).permute(2, 0, 1)[None] for p in (blurred, sharp))
    whole = float(ssim_torch(a, b)), float(psnr_torch(a, b))
    assert abs(whole[0] - ssim(blurred / 255.0, sharp / 255.0)) < 1e-4
    for budget in (None, 40 * 256 * 16):       # one band; bands of 10 map rows
        for device in ("cpu", torch.device("cpu")):
            s, p = score_in_bands(blurred, sharp, device, budget=budget)
            assert abs(s - whole[0]) < 2e-6 and abs(p - whole[1]) < 1e-4
    gray = sharp[..., :1]                        # gray, 16-bit: as their float RGB
    s, p = score_in_bands((gray.astype(np.uint16) * 257), np.repeat(gray, 3, axis=2))
    assert s == pytest.approx(1.0) and p > 100
    with pytest.raises(ValueError, match="shape mismatch"):
        score_in_bands(sharp, sharp[1:])


def test_the_bench_scripts_say_how_to_fetch_missing_photos(tmp_path):
    from shared.evaluation import require_photo_folders
    require_photo_folders(tmp_path)                                    # an existing folder passes
    with pytest.raises(SystemExit, match="sharpen train fetch-photos"):
        require_photo_folders(tmp_path, tmp_path / "holdout_HR")
