"""Image quality metrics.

``ssim`` and ``psnr`` take float HWC RGB images in [0, 1] (numpy). ``ssim`` *is*
``skimage.metrics.structural_similarity(channel_axis=2, data_range=1)``; ``ssim_torch`` is a batched torch
version (NCHW, [0, 1], any device) that matches it to 1e-4 and is used to score on the GPU.
``score_in_bands`` computes the same SSIM and PSNR from 8/16-bit pixels a band of rows at a time, so a large
image is scored in bounded memory.
"""
from __future__ import annotations

import cv2
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
    s = _ssim_map(a.float(), b.float())
    return s.reshape(s.shape[0], a.shape[1], -1).mean(dim=(1, 2))


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of each valid 7 x 7 window: (N, C, H-6, W-6)."""
    # valid windows only = skimage's border crop; separable: 2 x 7 instead of 49 additions per pixel
    mean = lambda x: F.avg_pool2d(F.avg_pool2d(x, (_WIN, 1), stride=1), (1, _WIN), stride=1)  # noqa: E731
    mu_a, mu_b = mean(a), mean(b)
    cov = _WIN * _WIN / (_WIN * _WIN - 1)
    var_a = cov * (mean(a * a) - mu_a * mu_a)
    var_b = cov * (mean(b * b) - mu_b * mu_b)
    cov_ab = cov * (mean(a * b) - mu_a * mu_b)
    c1, c2 = _K1 ** 2, _K2 ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def psnr_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of two NCHW batches in [0, 1] -> tensor (N,)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


SSIM_BYTES_PER_PIXEL = 256     # float maps SSIM holds per pixel of a band (3 channels, ~16 maps), rounded up


def _colors(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(h, w, C) pixels (uint8/uint16, or float in [0, 1]) → (h, w, c) float32 on ``device``, as
    ``to_model_input`` converts them: RGB, or gray as one channel (SSIM and PSNR of three equal channels are
    those of one), alpha dropped."""
    t = pixels.to(device, non_blocking=True)
    t = t[..., :3] if t.shape[-1] >= 3 else t[..., :1]
    return t.float() / float(torch.iinfo(pixels.dtype).max) if not pixels.dtype.is_floating_point else t.float()


def _ssim_sum_opencv(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the SSIM map over the valid 7 x 7 windows of two (h, w, c) float32 images: OpenCV's box filter
    (sums in double), ~5x faster than ``ssim_torch`` on the CPU, equal to it to 1e-6."""
    box = lambda m: cv2.boxFilter(m, -1, (_WIN, _WIN), borderType=cv2.BORDER_REFLECT)[3:-3, 3:-3]  # noqa: E731
    mu_a, mu_b = box(a), box(b)
    cov = _WIN * _WIN / (_WIN * _WIN - 1)
    var_a = cov * (box(a * a) - mu_a * mu_a)
    var_b = cov * (box(b * b) - mu_b * mu_b)
    cov_ab = cov * (box(a * b) - mu_a * mu_b)
    c1, c2 = _K1 ** 2, _K2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.sum(dtype=np.float64))


def score_in_bands(a, b, device: torch.device | str = "cpu", budget: int | None = None) -> tuple[float, float]:
    """(SSIM, PSNR) of two (H, W, C) images, uint8/uint16 pixels or float in [0, 1] (numpy or tensors on any
    device), as ``ssim_torch`` / ``psnr_torch`` of their float RGB: computed on ``device`` (OpenCV's box filter
    on the CPU) in bands of rows that fit ``budget`` bytes (each band reads the 6 rows below it that its
    7 x 7 windows need; default: half a float copy of the image, 64-256 MiB), summed in float64."""
    a = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
    b = torch.from_numpy(np.ascontiguousarray(b)) if isinstance(b, np.ndarray) else b
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    device = torch.device(device)
    h, w = a.shape[:2]
    if h < _WIN or w < _WIN:
        raise ValueError(f"an image of {w}x{h} pixels is smaller than SSIM's {_WIN}x{_WIN} window")
    budget = budget or int(min(256 << 20, max(64 << 20, 6 * h * w)))
    rows = max(1, budget // (SSIM_BYTES_PER_PIXEL * w) - (_WIN - 1))
    ssim_sum = squared = torch.zeros((), dtype=torch.float64, device=device)   # summed on the device: no wait
    channels = 1
    for r0 in range(0, h - _WIN + 1, rows):        # rows of the SSIM map (valid windows)
        r1 = min(r0 + rows, h - _WIN + 1)
        x, y = _colors(a[r0:r1 + _WIN - 1], device), _colors(b[r0:r1 + _WIN - 1], device)
        if x.shape[-1] != y.shape[-1]:             # gray against colour: compare as RGB
            x, y = x.expand(-1, -1, 3), y.expand(-1, -1, 3)
        channels = x.shape[-1]
        if device.type == "cpu":
            ssim_sum = ssim_sum + _ssim_sum_opencv(np.ascontiguousarray(x.numpy()), np.ascontiguousarray(y.numpy()))
        else:
            ssim_sum = ssim_sum + _ssim_map(x.permute(2, 0, 1)[None], y.permute(2, 0, 1)[None]).sum(dtype=torch.float64)
        top = 0 if r0 == 0 else _WIN - 1         # rows already counted in PSNR by the band above
        squared = squared + ((x[top:] - y[top:]) ** 2).sum(dtype=torch.float64)
    ssim_value = float(ssim_sum) / (channels * (h - _WIN + 1) * (w - _WIN + 1))
    mse = float(squared) / (channels * h * w)
    return ssim_value, 10.0 * float(np.log10(1.0 / max(mse, 1e-12)))
