"""How blurred is this image? The Gaussian blur σ of a whole image, in pixels, read by a small network.

A four-convolution student sees ~19 pixels and cannot tell a mildly blurred photo of a sharp edge from a
sharper photo of a soft one, so a blind student hedges: it under-sharpens σ=1 and over-sharpens σ=0.5. One
number read from the whole image settles much of that. ``BlurEstimatorNet`` (shared/nets/blur_estimator.py)
reads it from the image's central region of at most 1024 x 1024 pixels; the weights ship in
``models/blur-estimator.pt`` (trained by ``sharpen train blur-estimator``). An image with too few edges to
read (flat, tiny) gets ``PRIOR_SIGMA``.
"""
from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from .nets.blur_estimator import BlurEstimatorNet
from .storage import atomic_write

ESTIMATOR_FORMAT = "sharpen-blur-estimator/1"
ESTIMATOR_PATH = Path(__file__).resolve().parent.parent / "models" / "blur-estimator.pt"
PRIOR_SIGMA = 1.5        # returned when the image has too few edges to read (flat, tiny)
MIN_SIGMA, MAX_SIGMA = 0.3, 4.0   # the range the estimator was trained on
REGION = 1024            # larger images are read on their central REGION x REGION pixels
_MIN_SIDE = 16
_MIN_EDGES = 20


def save_estimator(path: Path, net: BlurEstimatorNet, meta: dict) -> None:
    """Write the estimator's weights and ``meta`` atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save({"format": ESTIMATOR_FORMAT, "state_dict": net.state_dict(), "meta": meta}, buf)
    atomic_write(Path(path), buf.getvalue(), mode=0o644)


def load_estimator(path: Path | str = ESTIMATOR_PATH) -> BlurEstimatorNet:
    """The estimator network from ``path``, on the CPU, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"blur estimator weights not found: {path} (train them with "
                                "`sharpen train blur-estimator`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != ESTIMATOR_FORMAT:
        raise ValueError(f"{path} is not a Sharpen blur estimator file (expected format {ESTIMATOR_FORMAT})")
    net = BlurEstimatorNet()
    net.load_state_dict(payload["state_dict"])
    return net.eval()


@functools.cache
def _shipped(device: str) -> BlurEstimatorNet:
    return load_estimator(ESTIMATOR_PATH).to(device).to(memory_format=torch.channels_last)  # ~1.6x on CPU


def to_gray(rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(rgb, dtype=np.float32)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(img.reshape(img.shape[:2]))


def central_region(gray: np.ndarray, side: int = REGION, multiple: int = BlurEstimatorNet.multiple) -> np.ndarray:
    """The central part of ``gray`` at most ``side`` pixels square, its sides cut to a multiple of ``multiple``."""
    h, w = gray.shape
    th, tw = min(h, side) // multiple * multiple, min(w, side) // multiple * multiple
    y, x = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(gray[y:y + th, x:x + tw])


def central_gray(rgb, side: int = REGION) -> np.ndarray:
    """The central region (at most ``side``² pixels) of the image's gray, float32 on the host. A tensor
    (HWC RGB or HW, on any device) is converted and cut on its device, so only the region is copied."""
    if not torch.is_tensor(rgb):
        return central_region(to_gray(rgb), side, 1)
    t = rgb.detach().float()
    if t.ndim == 3 and t.shape[2] == 3:
        t = t[..., 0] * 0.299 + t[..., 1] * 0.587 + t[..., 2] * 0.114   # OpenCV's RGB2GRAY weights
    h, w = t.shape[:2]
    t = t.reshape(h, w)
    y, x = (h - min(h, side)) // 2, (w - min(w, side)) // 2
    return np.ascontiguousarray(t[y:y + side, x:x + side].cpu().numpy())


def _has_edges(gray: np.ndarray) -> bool:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    return int(np.count_nonzero(gx * gx + gy * gy >= 0.05 ** 2)) >= _MIN_EDGES


_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _noise_at(gray: np.ndarray) -> float:
    """Immerkær's noise std estimate of an (H, W) float gray image, over its flatter half (least gradient)."""
    if min(gray.shape) < 8:
        return 0.0
    lap = np.abs(cv2.filter2D(gray, cv2.CV_32F, _LAPLACE)[1:-1, 1:-1])
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1]
    grad = (gx * gx + gy * gy).ravel()
    flat = lap.ravel()[grad <= np.partition(grad, grad.size // 2)[grad.size // 2]]
    return float(math.sqrt(math.pi / 2) / 6 * flat.mean())


def estimate_noise(rgb) -> tuple[float, float]:
    """(fine, coarse) noise std of the gray image ([0, 1] units; white RGB noise of std s reads ≈ 0.67·s) of a
    float HWC RGB / HW gray image (numpy or tensor).

    Fine: Immerkær's estimate on the central ``REGION``² gray pixels; coarse: the same after 2 x 2 averaging
    (times 2, so white noise reads alike at both scales). JPEG removes the finest noise and leaves blotches:
    the coarse reading sees them. The flatter half of the pixels (least gradient) is used, so edges and
    texture read as little noise on a blurred photo. (Only the gray central region leaves the device.)"""
    gray = central_gray(rgb)
    gray = np.ascontiguousarray(gray, dtype=np.float32)
    fine = _noise_at(gray)
    if min(gray.shape) < 16:
        return fine, fine
    h2, w2 = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    half = cv2.resize(gray[:h2, :w2], (w2 // 2, h2 // 2), interpolation=cv2.INTER_AREA)
    return fine, 2 * _noise_at(half)


def estimate_hint(rgb: np.ndarray, size: int, device: torch.device | str = "cpu") -> list[float]:
    """What a hinted network is told about a float HWC RGB image: [σ] (size 1) or [σ, noise fine, noise
    coarse] (size 3)."""
    gray = central_gray(rgb)   # only this leaves the device
    sigma = estimate_blur(gray, device=device)
    return [sigma] if size == 1 else [sigma, *estimate_noise(gray)]


@torch.inference_mode()
def estimate_blur(rgb, net: BlurEstimatorNet | None = None, device: torch.device | str = "cpu") -> float:
    """Blur σ (pixels, in [MIN_SIGMA, MAX_SIGMA], or PRIOR_SIGMA) of a float HWC RGB or HW gray image in [0, 1]
    (numpy, or a tensor on any device: see ``central_gray``).

    The shipped estimator runs on ``device`` (the sharpening model's: a GPU worker reads σ on its GPU), or
    pass ``net``."""
    gray = central_gray(rgb)
    if min(gray.shape) < _MIN_SIDE:
        return PRIOR_SIGMA
    region = central_region(gray)
    if not _has_edges(region):
        return PRIOR_SIGMA
    net = net or _shipped(str(device))
    x = torch.from_numpy(region)[None, None].to(next(net.parameters()).device)
    log_sigma = float(net(x)[0])
    return float(np.clip(np.exp(log_sigma), MIN_SIGMA, MAX_SIGMA))
