"""What a shake kernel would buy if it were read right: Wiener deconvolution of the tuning photos' shake family
with each photo's own seeded kernel, with a line along that kernel's principal axis (its spread along and
Gaussian across), with the anisotropic Gaussian of its covariance, and with the isotropic Gaussian of the
blur estimator's σ̂ (blind Wiener). Each row at its best balance; the first three are oracles (bounds, not
methods), blind Wiener is the baseline a learned kernel reader must clear. ``--covariance-reader FILE`` adds
two blind rows: the Gaussian and the line of the covariance that reader reads, and ``--family`` measures
another evaluation family (a reader must not lose on a Gaussian or a disk what it gains on a shake).

    python bench/shake_ceiling.py [--tune FOLDER] [--max-side 1024] [--covariance-reader FILE] [--family NAME]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.baselines import gaussian_psf, wiener_deconvolve_psf  # noqa: E402
from shared.blur_estimate import estimate_blur, estimate_covariance, load_covariance_reader  # noqa: E402
from shared.degrade import EVAL_FAMILIES, draw_kernel, kernel_covariance, path_kernel  # noqa: E402
from shared.evaluation import load_images, require_photo_folders  # noqa: E402
from shared.quality_table import degraded_set, scores  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAMILY = "shake 11 px"
BALANCES = (3e-3, 1e-2, 3e-2, 1e-1)


def line_kernel(cov: np.ndarray) -> np.ndarray:
    """A straight line along ``cov``'s principal axis with its variance (length √(12 λ)), Gaussian across."""
    (minor, major), axes = np.linalg.eigh(cov)
    length = np.sqrt(12 * max(major, 1e-2))
    path = np.linspace(-length / 2, length / 2, 64)[:, None] * axes[:, 1]
    k = cv2.GaussianBlur(path_kernel(path, int(np.ceil(length / 2)) + 3), (0, 0), float(np.sqrt(max(minor, 0.05))))
    return k / k.sum()


def gaussian_kernel(cov: np.ndarray, n: int = 12) -> np.ndarray:
    """The anisotropic Gaussian of covariance ``cov``, (2n + 1)² weights."""
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
    p = np.linalg.inv(cov + 1e-2 * np.eye(2))
    k = np.exp(-0.5 * (p[0, 0] * xx ** 2 + 2 * p[0, 1] * xx * yy + p[1, 1] * yy ** 2))
    return k / k.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--covariance-reader", type=Path, default=None)
    ap.add_argument("--family", default=FAMILY, choices=sorted(EVAL_FAMILIES))
    args = ap.parse_args()
    require_photo_folders(args.tune)
    images = load_images([args.tune], args.max_side)
    deg = EVAL_FAMILIES[args.family]
    inputs = degraded_set(images, deg)
    sharp = [img for _, img in images]
    psfs = {}
    if deg.family in ("shake", "defocus"):
        kernels = [draw_kernel(deg.family, deg, np.random.default_rng(i)) for i in range(len(images))]
        psfs = {
            "the true kernel": kernels,
            "a line of its axis and spread": [line_kernel(kernel_covariance(k)) for k in kernels],
            "the Gaussian of its covariance": [gaussian_kernel(kernel_covariance(k)) for k in kernels],
        }
    psfs["blind Wiener (σ̂, isotropic)"] = [gaussian_psf(estimate_blur(x)) for x in inputs]
    if args.covariance_reader:
        reader = load_covariance_reader(args.covariance_reader)
        read = [estimate_covariance(x, reader) for x in inputs]
        psfs["the Gaussian of the read covariance"] = [gaussian_kernel(c) for c in read]
        psfs["a line of the read covariance"] = [line_kernel(c) for c in read]
    print(f"{args.family}, {len(images)} photos of {args.tune.name}: input "
          f"{np.mean([scores(x, s)[0] for x, s in zip(inputs, sharp)]):.4f} SSIM")
    print(f"{'Wiener kernel':<34} " + " ".join(f"{b:>8.0e}" for b in BALANCES))
    for name, ks in psfs.items():
        row = [np.mean([scores(wiener_deconvolve_psf(x, k, b), s)[0] for x, k, s in zip(inputs, ks, sharp)])
               for b in BALANCES]
        print(f"{name:<34} " + " ".join(f"{v:8.4f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
