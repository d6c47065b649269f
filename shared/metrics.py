"""Image quality metrics.

``ssim`` and ``psnr`` take float HWC RGB images in [0, 1] (numpy). ``ssim`` *is*
``skimage.metrics.structural_similarity(channel_axis=2, data_range=1)``; ``ssim_torch`` is a batched torch
version (NCHW, [0, 1], any device) that matches it to 1e-4 and is used to score on the GPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

_WIN = 7                  # skimage's default window (uniform, 7x7)
_K1, _K2 = 0.01, 0.03


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two HWC RGB (or HW gray) float images in [0, 1]. Range [-1, 1], 1 = identical."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(structural_similarity(a, b, channel_axis=2 if a.ndim == 3 else None, data_range=1.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1] (data range 1). Identical images give +inf."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM of two NCHW batches in [0, 1] -> tensor (N,), computed in float32 on their device.

    Same definition as skimage: 7x7 uniform window, sample covariance, K1=0.01, K2=0.03, a 3-pixel border
    excluded, mean over channels and pixels.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.float(), b.float()
    n = a.shape[1]
    # valid windows only = skimage's border crop; separable: 2 x 7 instead of 49 additions per pixel
    mean = lambda x: F.avg_pool2d(F.avg_pool2d(x, (_WIN, 1), stride=1), (1, _WIN), stride=1)  # noqa: E731
    mu_a, mu_b = mean(a), mean(b)
    cov = _WIN * _WIN / (_WIN * _WIN - 1)
    var_a = cov * (mean(a * a) - mu_a * mu_a)
    var_b = cov * (mean(b * b) - mu_b * mu_b)
    cov_ab = cov * (mean(a * b) - mu_a * mu_b)
    c1, c2 = _K1 ** 2, _K2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.reshape(s.shape[0], n, -1).mean(dim=(1, 2))


def psnr_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of two NCHW batches in [0, 1] -> tensor (N,)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))
