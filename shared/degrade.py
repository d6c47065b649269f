"""The one degradation used by training and evaluation: blur, sensor noise, 8 bits, JPEG.

Images are float32 HWC RGB in [0, 1]. A ``Degradation`` describes a random process; ``degrade`` applies one
draw of it and returns the degraded image with the blur's *equivalent Gaussian σ* (the root-mean-square
spread of its kernel along one axis: σ for a Gaussian, r/2 for a disk of radius r), the number the blur
estimator reads and the hinted networks are told. Training draws from ranges; evaluation fixes every value,
so both run exactly this code.

Blur families (``family``):
- ``gaussian``: OpenCV Gaussian blur, σ from ``sigma`` (the original project's degradation).
- ``defocus``: a disk of radius r from ``defocus_radius`` with an anti-aliased (one-pixel soft) edge.
- ``shake``: camera shake, a random smooth trajectory of length L px from ``shake_length`` (``shake_kernel``).
- ``gaussian+defocus``, ``gaussian+shake``: the disk or trajectory, then a Gaussian (lens softness).
- ``clean``: no blur.
- ``mixed``: one of the above per draw, with the probabilities in ``MIXED``.

Then, in a camera's order: Poisson–Gaussian sensor noise (variance ``shot``·x + ``read``², per channel,
with probability ``noise_prob``), rounding to 8 bits, and JPEG at a quality from ``jpeg`` with probability
``jpeg_prob`` (OpenCV's encoder, 4:2:0 chroma).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FAMILIES = ("gaussian", "defocus", "shake", "gaussian+defocus", "gaussian+shake", "clean")
# The training mixture: mostly Gaussian and defocus (what "soft" photos are), some shake, some clean inputs
# (a sharpener must leave a sharp photo alone).
MIXED = {"gaussian": 0.38, "defocus": 0.2, "shake": 0.14, "gaussian+defocus": 0.1, "gaussian+shake": 0.06,
         "clean": 0.12}


@dataclass(frozen=True)
class Degradation:
    """Parameters of the degradation. A fixed value is a range ``(v, v)``."""
    family: str = "gaussian"                  # one of FAMILIES or "mixed"
    sigma: tuple[float, float] = (0.5, 3.0)   # Gaussian σ in pixels (in mixtures too)
    sigma_skew: float = 1.0                   # σ = lo + (hi - lo)·u^skew, u uniform: >1 favours mild blur
    defocus_radius: tuple[float, float] = (1.0, 5.0)   # disk radius, pixels
    shake_length: tuple[float, float] = (3.0, 15.0)    # trajectory length, pixels
    mix_sigma: tuple[float, float] = (0.3, 1.2)        # the Gaussian added in the mixtures
    noise: tuple[float, float] = (0.0, 0.0)   # read-noise std (signal-independent), [0, 1] units
    shot: tuple[float, float] = (0.0, 0.0)    # shot-noise gain: variance grows by shot·x
    noise_prob: float = 0.0                   # chance that sensor noise is added at all
    jpeg: tuple[int, int] = (90, 100)         # JPEG quality range when re-compressing
    jpeg_prob: float = 0.0                    # chance of JPEG compression
    quantize: bool = True                     # round to 8 bits, as a saved photo would be

    @classmethod
    def fixed(cls, sigma: float) -> "Degradation":
        """Clean 8-bit Gaussian blur of σ (the original project's evaluation)."""
        return cls(sigma=(sigma, sigma))


# --- kernels ---------------------------------------------------------------------------------------------

def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV Gaussian blur, kernel size chosen by OpenCV from σ, reflect-101 borders. σ <= 0 returns a copy."""
    if sigma <= 0:
        return img.copy()
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT_101)


def disk_kernel(radius: float) -> np.ndarray:
    """A defocus disk of ``radius`` px whose edge falls off linearly over one pixel; sums to 1."""
    n = int(math.ceil(radius + 0.5))
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
    k = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0).astype(np.float64)
    return (k / k.sum()).astype(np.float32)


def shake_kernel(length: float, rng: np.random.Generator, points: int = 64) -> np.ndarray:
    """Camera shake: a random smooth 2-D trajectory (velocity doing a random walk with inertia) scaled to
    ``length`` px of path, drawn with bilinear weights; sums to 1."""
    angle = rng.uniform(0, 2 * math.pi)
    vel = np.array([math.cos(angle), math.sin(angle)])
    pos = [np.zeros(2)]
    for _ in range(points - 1):
        vel = 0.8 * vel + 0.6 * rng.normal(size=2)
        pos.append(pos[-1] + vel)
    path = np.array(pos)
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1).sum()
    path = (path - path.mean(0)) * (length / max(seg, 1e-9))
    n = int(math.ceil(np.abs(path).max())) + 1
    k = path_kernel(path, n)
    return (k / k.sum()).astype(np.float32)


def path_kernel(path: np.ndarray, n: int) -> np.ndarray:
    """A (2n + 1)² float64 kernel with the points ``path`` ((P, 2) x, y about the centre, |x|, |y| < n) drawn
    in it with bilinear weights, one unit each (not normalised)."""
    k = np.zeros((2 * n + 1, 2 * n + 1), np.float64)
    for x, y in path + n:
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        k[y0, x0] += (1 - fx) * (1 - fy)
        k[y0, x0 + 1] += fx * (1 - fy)
        k[y0 + 1, x0] += (1 - fx) * fy
        k[y0 + 1, x0 + 1] += fx * fy
    return k


def kernel_covariance(kernel: np.ndarray) -> np.ndarray:
    """2 × 2 covariance (x, y) of a blur kernel's weights about their centre."""
    k = np.asarray(kernel, np.float64)
    k = k / k.sum()
    yy, xx = np.mgrid[:k.shape[0], :k.shape[1]]
    dx, dy = xx - (k * xx).sum(), yy - (k * yy).sum()
    return np.array([[(k * dx ** 2).sum(), (k * dx * dy).sum()], [(k * dx * dy).sum(), (k * dy ** 2).sum()]])


def kernel_sigma(kernel: np.ndarray) -> float:
    """Equivalent Gaussian σ of a blur kernel: sqrt of the mean of its two axial variances."""
    return float(math.sqrt(np.trace(kernel_covariance(kernel)) / 2))


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with ``kernel`` (reflect-101 borders, as the Gaussian blur)."""
    return cv2.filter2D(img, -1, cv2.flip(kernel, -1), borderType=cv2.BORDER_REFLECT_101)


# --- noise and compression -------------------------------------------------------------------------------

def quantize8(img: np.ndarray) -> np.ndarray:
    """Round to the nearest of 256 levels, as writing an 8-bit file would."""
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (1..100)."""
    u8 = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    if u8.ndim == 2:
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode JPEG")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / 255.0


def sensor_noise(img: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson–Gaussian noise, Gaussian-approximated: per pixel std sqrt(shot·x + read²)."""
    std = np.sqrt(np.clip(img, 0, 1) * shot + read * read).astype(np.float32)
    return img + std * rng.standard_normal(img.shape, dtype=np.float32)


# --- one draw ----------------------------------------------------------------------------------------------

def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def draw_kernel(family: str, deg: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The kernel of a defocus or shake family (or its Gaussian mixture) drawn from ``rng``, as ``blur`` draws it."""
    if family.endswith("defocus"):
        return disk_kernel(_uniform(rng, deg.defocus_radius))
    return shake_kernel(_uniform(rng, deg.shake_length), rng)


def blur(img: np.ndarray, deg: Degradation, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """The blur step alone: (blurred, equivalent σ, family drawn)."""
    out, sigma, _cov, family = blur_with_covariance(img, deg, rng)
    return out, sigma, family


def blur_with_covariance(img: np.ndarray, deg: Degradation,
                         rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray, str]:
    """``blur``, also returning the blur kernel's 2 × 2 covariance (x, y): what the blur-covariance reader
    (``shared.blur_estimate.estimate_covariance``) learns to read. σ² I for a Gaussian, 0 for clean."""
    family = deg.family
    if family == "mixed":
        names = list(MIXED)
        family = names[int(rng.choice(len(names), p=np.array(list(MIXED.values())) / sum(MIXED.values())))]
    if family not in FAMILIES:
        raise ValueError(f"unknown blur family {family!r}; choose one of: {', '.join(FAMILIES)}, mixed")
    if family == "clean":
        return img.copy(), 0.0, np.zeros((2, 2)), family
    if family == "gaussian":
        lo, hi = deg.sigma
        sigma = lo + (hi - lo) * float(rng.random()) ** deg.sigma_skew if lo != hi else float(lo)
        return gaussian_blur(img, sigma), sigma, sigma * sigma * np.eye(2), family
    kernel = draw_kernel(family, deg, rng)
    out = apply_kernel(img, kernel)
    var = kernel_sigma(kernel) ** 2
    cov = kernel_covariance(kernel)
    if family.startswith("gaussian+"):
        s = _uniform(rng, deg.mix_sigma)
        out = gaussian_blur(out, s)
        var += s * s
        cov = cov + s * s * np.eye(2)
    return out, math.sqrt(var), cov, family


def degrade(img: np.ndarray, deg: Degradation, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Apply one random draw of ``deg`` to a float32 HWC image in [0,1]. Returns (degraded, equivalent σ)."""
    out, sigma, _cov = degrade_with_covariance(img, deg, rng)
    return out, sigma


def degrade_with_covariance(img: np.ndarray, deg: Degradation,
                            rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """``degrade``, also returning the blur kernel's covariance (``blur_with_covariance``)."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    out, sigma, cov, _family = blur_with_covariance(img, deg, rng)
    if deg.noise_prob > 0 and rng.random() < deg.noise_prob:
        out = sensor_noise(out, _uniform(rng, deg.shot), _uniform(rng, deg.noise), rng)
    if deg.jpeg_prob > 0 and rng.random() < deg.jpeg_prob:
        out = jpeg_roundtrip(out, int(rng.integers(deg.jpeg[0], deg.jpeg[1] + 1)))
    elif deg.quantize:
        out = quantize8(out)
    return np.clip(out, 0.0, 1.0).astype(np.float32), sigma, cov


# The distribution the shipped models are trained on (``--degradation realistic``): every family, σ up to
# 3.5, sensor noise on half of the crops (read std up to 0.012, shot gain up to 4e-4: std ≈ 0.016 at
# mid-gray, a low-ISO camera file), JPEG 70–98 on 40 % of them (so 30 % are clean 8-bit).
REALISTIC = Degradation(family="mixed", sigma=(0.3, 3.5), noise=(0.0, 0.012), shot=(0.0, 4e-4), noise_prob=0.5,
                        jpeg=(70, 98), jpeg_prob=0.4)

# The evaluation families of bench/quality.py: name -> fixed degradation (one draw per photo, seeded).
MILD_NOISE = dict(noise=(0.005, 0.005), shot=(2e-4, 2e-4), noise_prob=1.0)
EVAL_FAMILIES: dict[str, Degradation] = {
    "unblurred": Degradation(family="clean"),
    **{f"gaussian σ={s:g}": Degradation.fixed(s) for s in (0.5, 1.0, 2.0, 3.0)},
    "defocus r=3": Degradation(family="defocus", defocus_radius=(3.0, 3.0)),
    "shake 11 px": Degradation(family="shake", shake_length=(11.0, 11.0)),
    "gaussian 1.5 + noise + JPEG 90": Degradation(sigma=(1.5, 1.5), jpeg=(90, 90), jpeg_prob=1.0, **MILD_NOISE),
}
