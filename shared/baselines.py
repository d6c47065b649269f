"""Classical sharpening baselines the models are measured against. Images: float32 HWC RGB in [0, 1]."""
from __future__ import annotations

import cv2
import numpy as np
from skimage.restoration import wiener

# Parameter grids: the evaluation reports the best setting per σ (an oracle, so a strong baseline).
UNSHARP_GRID = [(s, a) for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0) for a in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)]
WIENER_BALANCE_GRID = (1e-3, 3e-3, 1e-2, 3e-2)


def unsharp_mask(img: np.ndarray, radius_sigma: float, amount: float) -> np.ndarray:
    """OpenCV unsharp mask: img + amount · (img − GaussianBlur(img, σ))."""
    blurred = cv2.GaussianBlur(img, (0, 0), radius_sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(img + amount * (img - blurred), 0.0, 1.0)


def gaussian_psf(sigma: float) -> np.ndarray:
    """The 2-D kernel ``shared.degrade.gaussian_blur`` applies (OpenCV's own kernel and size)."""
    k = cv2.getGaussianKernel(int(round(sigma * 8 + 1)) | 1, sigma, cv2.CV_64F)  # OpenCV's size for float
    return k @ k.T


def wiener_deconvolve(img: np.ndarray, sigma: float, balance: float) -> np.ndarray:
    """Non-blind Wiener deconvolution with the known Gaussian kernel, reflect-padded against edge ringing."""
    return wiener_deconvolve_psf(img, gaussian_psf(sigma), balance)


def wiener_deconvolve_psf(img: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution with the kernel ``psf`` (centred, odd sides), reflect-padded."""
    pad = 2 * max(psf.shape)
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        ch = np.pad(img[:, :, c].astype(np.float64), pad, mode="reflect")
        res = wiener(ch, psf, balance, clip=False)
        out[:, :, c] = res[pad:-pad, pad:-pad]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
