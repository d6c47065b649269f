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
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from .nets.blur_estimator import BlurCovarianceNet, BlurEstimatorNet, covariance_from_log
from .shape_reader import read_shape
from .weight_files import load_weights, save_weights

ESTIMATOR_FORMAT = "sharpen-blur-estimator/1"
COVARIANCE_FORMAT = "sharpen-blur-covariance/1"
ESTIMATOR_PATH = Path(__file__).resolve().parent.parent / "models" / "blur-estimator.pt"
COVARIANCE_PATH = ESTIMATOR_PATH.with_name("blur-covariance.pt")
PRIOR_SIGMA = 1.5        # returned when the image has too few edges to read (flat, tiny)
MIN_SIGMA, MAX_SIGMA = 0.3, 4.0   # the range the estimator was trained on
REGION = 1024            # larger images are read on their central REGION x REGION pixels
_MIN_SIDE = 16
_MIN_EDGES = 20


def save_estimator(path: Path, net: BlurEstimatorNet, meta: dict) -> None:
    """Write the estimator's weights and ``meta`` atomically (temporary file, then rename)."""
    save_weights(path, ESTIMATOR_FORMAT, net, meta)


def load_estimator(path: Path | str = ESTIMATOR_PATH) -> BlurEstimatorNet:
    """The estimator network from ``path``, on the CPU, in eval mode."""
    return load_weights(path, ESTIMATOR_FORMAT, BlurEstimatorNet(), "blur estimator",
                        "train them with `sharpen train blur-estimator`")


def save_covariance_reader(path: Path, net: BlurCovarianceNet, meta: dict) -> None:
    save_weights(path, COVARIANCE_FORMAT, net, meta)


def load_covariance_reader(path: Path | str) -> BlurCovarianceNet:
    """The blur-covariance reader in ``path`` (``sharpen train blur-estimator --target covariance``)."""
    return load_weights(path, COVARIANCE_FORMAT, BlurCovarianceNet(), "blur-covariance reader",
                        "train them with `sharpen train blur-estimator --target covariance`")


@functools.cache
def _shipped_covariance(device: str) -> BlurCovarianceNet:
    return load_covariance_reader(COVARIANCE_PATH).to(device)


def _read_covariance(net: BlurCovarianceNet, region: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2): the covariances ``net`` reads on gray regions (N, 1, h, w), eigenvalues kept in
    [MIN_SIGMA², MAX_SIGMA²]."""
    vals, vecs = torch.linalg.eigh(covariance_from_log(net(region).double()))
    vals = vals.clamp(MIN_SIGMA ** 2, MAX_SIGMA ** 2)
    return (vecs @ torch.diag_embed(vals) @ vecs.transpose(-1, -2)).float()


@torch.inference_mode()
def estimate_covariance(rgb, net: BlurCovarianceNet | None = None) -> np.ndarray:
    """The blur kernel's 2 × 2 covariance (x, y; pixels²) of a float HWC RGB or HW gray image in [0, 1], read
    by ``net`` (or the shipped reader, ``models/blur-covariance.pt``) on its central region. An image with too
    few edges reads PRIOR_SIGMA² I."""
    region = _readable_region(central_gray(rgb))
    if region is None:
        return PRIOR_SIGMA ** 2 * np.eye(2)
    net = net or _shipped_covariance("cpu")
    x = torch.from_numpy(region)[None, None].to(next(net.parameters()).device)
    return _read_covariance(net, x)[0].double().cpu().numpy()


@functools.cache
def cached_estimator(path: str | None) -> BlurEstimatorNet | None:
    """The estimator in ``path``, loaded once per process (None: None, i.e. the shipped one)."""
    return load_estimator(path) if path else None


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
    """The central region (at most ``side``² pixels) of the image's gray, float32 on the host."""
    if not torch.is_tensor(rgb):
        return central_region(to_gray(rgb), side, 1)
    return np.ascontiguousarray(central_gray_tensor(rgb, side).cpu().numpy())


def central_gray_tensor(rgb: torch.Tensor, side: int = REGION) -> torch.Tensor:
    """``central_gray`` of a float tensor (HWC RGB, HW1 or HW gray), cut and converted on its device (only the
    region is converted): (h, w) float32."""
    t = rgb.detach()
    if t.ndim == 3:
        h, w = t.shape[:2]
    else:
        h, w = t.shape
    y, x = (h - min(h, side)) // 2, (w - min(w, side)) // 2
    t = t[y:y + side, x:x + side].float()
    if t.ndim == 3 and t.shape[2] == 3:
        return rgb_to_gray(t)
    return t.reshape(t.shape[0], t.shape[1])


_GRAY_WEIGHTS = [float(np.float32(w)) for w in (0.299, 0.587, 0.114)]


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(…, 3) float32 RGB → (…) gray, bit for bit as ``cv2.cvtColor(RGB2GRAY)`` computes it (G first, then
    fused multiply-adds of R and B: emulated in float64 and rounded to float32 after each step), so the
    readings below match OpenCV's on the same pixels."""
    wr, wg, wb = _GRAY_WEIGHTS
    r, g, b = (rgb[..., i].double() for i in range(3))
    x = (g * wg).float().double()
    x = (r * wr + x).float().double()
    return (b * wb + x).float()


def _has_edges(gray: np.ndarray) -> bool:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    return int(np.count_nonzero(gx * gx + gy * gy >= 0.05 ** 2)) >= _MIN_EDGES


def _readable_region(gray: np.ndarray) -> np.ndarray | None:
    """The estimators' input from a gray central region: its ``central_region``, or None when it is too small
    or has too few edges to read a blur from (the estimates are then the prior)."""
    if min(gray.shape) < _MIN_SIDE:
        return None
    region = central_region(gray)
    return region if _has_edges(region) else None


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
    texture read as little noise on a blurred photo. A tensor is read with torch ops on its device
    (``noise_on_device``); numpy with OpenCV."""
    if torch.is_tensor(rgb):
        fine, coarse = noise_on_device(central_gray_tensor(rgb)[None])[0].tolist()
        return fine, coarse
    gray = central_gray(rgb)
    gray = np.ascontiguousarray(gray, dtype=np.float32)
    fine = _noise_at(gray)
    if min(gray.shape) < 16:
        return fine, fine
    h2, w2 = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    half = cv2.resize(gray[:h2, :w2], (w2 // 2, h2 // 2), interpolation=cv2.INTER_AREA)
    return fine, 2 * _noise_at(half)


def estimate_hint(rgb, size: int, device: torch.device | str = "cpu",
                  net: BlurEstimatorNet | None = None) -> list[float]:
    """What a hinted network is told about a float HWC RGB image: [σ] (size 1), [σ, noise fine, noise
    coarse] (size 3), those and the probabilities that the blur is Gaussian, defocus or shake (size 6:
    ``shared.shape_reader``), and the blur's covariance cxx, cxy, cyy (size 9: ``estimate_covariance``). A
    tensor is read on its own device (``hints_on_device``), numpy on the host with the estimator (``net``, or
    the shipped one) on ``device``."""
    if torch.is_tensor(rgb):
        return hints_on_device(central_gray_tensor(rgb)[None], size, net)[0].tolist()
    gray = central_gray(rgb)
    sigma = estimate_blur(gray, net, device=device)
    if size == 1:
        return [sigma]
    hint = [sigma, *estimate_noise(gray)]
    if size >= 6:
        hint += _shape(torch.from_numpy(gray)[None], torch.tensor([hint]))[0].tolist()
    if size == 9:
        cov = estimate_covariance(gray)
        hint += [float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])]
    return hint


def _shape(gray: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """(N, 3): the probabilities of a Gaussian, defocus and shake blur (``shared.shape_reader``; clean is the rest)."""
    return read_shape(gray, hint)[:, 1:]


@torch.inference_mode()
def estimate_blur(rgb, net: BlurEstimatorNet | None = None, device: torch.device | str = "cpu") -> float:
    """Blur σ (pixels, in [MIN_SIGMA, MAX_SIGMA], or PRIOR_SIGMA) of a float HWC RGB or HW gray image in [0, 1]
    (numpy, or a tensor, read on its device by ``blur_on_device``).

    The shipped estimator runs on ``device`` (the sharpening model's: a GPU worker reads σ on its GPU), or
    pass ``net``."""
    if torch.is_tensor(rgb):
        return float(blur_on_device(central_gray_tensor(rgb)[None], net)[0])
    region = _readable_region(central_gray(rgb))
    if region is None:
        return PRIOR_SIGMA
    net = net or _shipped(str(device))
    x = torch.from_numpy(region)[None, None].to(next(net.parameters()).device)
    log_sigma = float(net(x)[0])
    return float(np.clip(np.exp(log_sigma), MIN_SIGMA, MAX_SIGMA))



# ------------------------------------------------------------------ the same readings, on the device
# Torch ops on a batch of gray central regions (N, h, w) on any device: no copy to the host, no sync (the
# caller reads the (N, k) result once). They match the OpenCV readings above to float rounding.

def _sobel2(gray: torch.Tensor, pad: bool) -> torch.Tensor:
    """gx² + gy² of OpenCV's 3 x 3 Sobel of (N, h, w), separable and in OpenCV's order of operations (the
    flatter half below depends on ties); ``pad``: OpenCV's default border (reflect 101), else only the valid
    part ((h-2, w-2))."""
    p = torch.nn.functional.pad(gray[:, None], (1, 1, 1, 1), mode="reflect")[:, 0] if pad else gray
    d = p[:, :, 2:] - p[:, :, :-2]                          # row filter [-1, 0, 1]
    gx = d[:, 1:-1] * 2 + (d[:, :-2] + d[:, 2:])            # column filter [1, 2, 1]
    r = p[:, :, 1:-1] * 2 + (p[:, :, :-2] + p[:, :, 2:])    # row filter [1, 2, 1]
    gy = r[:, 2:] - r[:, :-2]                               # column filter [-1, 0, 1]
    return gx * gx + gy * gy


def _laplace(gray: torch.Tensor) -> torch.Tensor:
    """|``_LAPLACE``| correlated with (N, h, w), the valid part (h-2, w-2)."""
    r = gray[:, :, :-2] - gray[:, :, 1:-1] * 2 + gray[:, :, 2:]
    return (r[:, :-2] - r[:, 1:-1] * 2 + r[:, 2:]).abs()


def _noise_at_t(gray: torch.Tensor) -> torch.Tensor:
    """``_noise_at`` of each (h, w) image of (N, h, w): (N,)."""
    n, h, w = gray.shape
    if min(h, w) < 8:
        return gray.new_zeros(n)
    lap = _laplace(gray).flatten(1)
    grad = _sobel2(gray, pad=False).flatten(1)
    median = grad.kthvalue(grad.shape[1] // 2 + 1, dim=1).values   # np.partition's element size // 2
    flat = grad <= median[:, None]
    mean = (lap * flat).sum(1, dtype=torch.float64) / flat.sum(1)
    return (math.sqrt(math.pi / 2) / 6 * mean).float()


def noise_on_device(gray: torch.Tensor) -> torch.Tensor:
    """(N, 2): ``estimate_noise`` (fine, coarse) of N gray central regions (N, h, w), on their device."""
    gray = gray.float()
    fine = _noise_at_t(gray)
    h, w = gray.shape[1:]
    if min(h, w) < 16:
        return torch.stack([fine, fine], dim=1)
    g = gray[:, :h // 2 * 2, :w // 2 * 2]
    half = ((g[:, 0::2, 0::2] + g[:, 0::2, 1::2]) + (g[:, 1::2, 0::2] + g[:, 1::2, 1::2])) * 0.25  # INTER_AREA's order
    return torch.stack([fine, 2 * _noise_at_t(half)], dim=1)


def _region_on_device(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimators' input from N gray central regions (N, h, w) of at least ``_MIN_SIDE`` pixels: the
    central part cut as ``central_region`` cuts it (N, h', w'), and whether each has enough edges to read (N,)."""
    m = BlurEstimatorNet.multiple
    h, w = gray.shape[1:]
    th, tw = min(h, REGION) // m * m, min(w, REGION) // m * m
    y, x = (h - th) // 2, (w - tw) // 2
    region = gray[:, y:y + th, x:x + tw]
    return region, (_sobel2(region, pad=True) >= 0.05 ** 2).flatten(1).sum(1) >= _MIN_EDGES


@torch.inference_mode()
def blur_on_device(gray: torch.Tensor, net: BlurEstimatorNet | None = None) -> torch.Tensor:
    """(N,): ``estimate_blur`` of N gray central regions (N, h, w), on their device (the shipped estimator is
    loaded there once)."""
    gray = gray.float()
    if min(gray.shape[1:]) < _MIN_SIDE:
        return gray.new_full((gray.shape[0],), PRIOR_SIGMA)
    region, edges = _region_on_device(gray)
    net = net or _shipped(str(gray.device))
    sigma = net(region[:, None].contiguous(memory_format=torch.channels_last)).exp().clamp(MIN_SIGMA, MAX_SIGMA)
    return torch.where(edges, sigma.float(), torch.full_like(sigma.float(), PRIOR_SIGMA))


def hints_on_device(gray: torch.Tensor, size: int, net: BlurEstimatorNet | None = None) -> torch.Tensor:
    """(N, size): what a hinted network is told (``estimate_hint``) about N images from their gray central
    regions (N, h, w), computed on their device."""
    sigma = blur_on_device(gray, net)[:, None]
    if size == 1:
        return sigma
    hint = torch.cat([sigma, noise_on_device(gray)], dim=1)
    if size >= 6:
        hint = torch.cat([hint, _shape(gray, hint)], dim=1)
    if size == 9:
        cov = covariance_on_device(gray)
        hint = torch.cat([hint, cov[:, 0], cov[:, 1, 1:]], dim=1)
    return hint


@torch.inference_mode()
def covariance_on_device(gray: torch.Tensor, net: BlurCovarianceNet | None = None) -> torch.Tensor:
    """(N, 2, 2): ``estimate_covariance`` of N gray central regions (N, h, w), on their device."""
    gray = gray.float()
    prior = torch.eye(2, device=gray.device).expand(gray.shape[0], 2, 2) * PRIOR_SIGMA ** 2
    if min(gray.shape[1:]) < _MIN_SIDE:
        return prior.clone()
    region, edges = _region_on_device(gray)
    cov = _read_covariance(net or _shipped_covariance(str(gray.device)), region[:, None])
    return torch.where(edges[:, None, None], cov, prior)
