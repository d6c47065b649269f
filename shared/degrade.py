"""The one degradation used by training and evaluation: OpenCV Gaussian blur, optional noise and JPEG, 8-bit.

Images are float32 HWC RGB in [0, 1]. A ``Degradation`` describes the random process; ``degrade`` applies one
draw of it. Training draws σ from a range; evaluation uses a fixed σ, so both run exactly this code.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradation:
    """Parameters of the blur process. A fixed σ is ``sigma=(s, s)``."""
    sigma: tuple[float, float] = (0.5, 3.0)   # Gaussian σ in pixels, drawn from this range
    sigma_skew: float = 1.0                   # σ = lo + (hi - lo)·u^skew, u uniform: >1 favours mild blur
    noise: tuple[float, float] = (0.0, 0.0)   # std of additive Gaussian noise (in [0,1] units), drawn uniformly
    noise_prob: float = 0.0                   # chance that noise is added at all
    jpeg: tuple[int, int] = (90, 100)         # JPEG quality range when re-compressing
    jpeg_prob: float = 0.0                    # chance of JPEG re-compression
    quantize: bool = True                     # round to 8 bits, as a saved blurry photo would be

    @classmethod
    def fixed(cls, sigma: float) -> "Degradation":
        return cls(sigma=(sigma, sigma))


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV Gaussian blur, kernel size chosen by OpenCV from σ, reflect-101 borders. σ <= 0 returns a copy."""
    if sigma <= 0:
        return img.copy()
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT_101)


def quantize8(img: np.ndarray) -> np.ndarray:
    """Round to the nearest of 256 levels, as writing an 8-bit file would."""
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (1..100)."""
    u8 = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode JPEG")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / 255.0


def degrade(img: np.ndarray, deg: Degradation, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Apply one random draw of ``deg`` to a float32 HWC image in [0,1]. Returns (degraded, σ used)."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    lo, hi = deg.sigma
    sigma = lo + (hi - lo) * float(rng.random()) ** deg.sigma_skew if lo != hi else float(lo)
    out = gaussian_blur(img, sigma)
    if deg.noise_prob > 0 and rng.random() < deg.noise_prob:
        std = float(rng.uniform(*deg.noise))
        out = out + rng.normal(0.0, std, out.shape).astype(np.float32)
    if deg.jpeg_prob > 0 and rng.random() < deg.jpeg_prob:
        out = jpeg_roundtrip(out, int(rng.integers(deg.jpeg[0], deg.jpeg[1] + 1)))
    elif deg.quantize:
        out = quantize8(out)
    return np.clip(out, 0.0, 1.0).astype(np.float32), sigma
