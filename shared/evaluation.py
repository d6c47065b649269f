"""The evaluation table: SSIM/PSNR per σ for the blurred input, classical baselines and models.

Every method sees the same inputs: each sharp image (downscaled so its longer side is at most ``max_side``)
blurred by ``shared.degrade`` with a fixed σ and saved-as-8-bit; every output is rounded to 8 bits too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .baselines import UNSHARP_GRID, WIENER_BALANCE_GRID, unsharp_mask, wiener_deconvolve
from .degrade import Degradation, degrade, quantize8
from .imageio import EXTENSIONS, read_image, to_model_input
from .inference import LoadedModel, sharpen_array
from .metrics import psnr_torch, ssim_torch


@dataclass
class Row:
    method: str
    sigma: float
    ssim: float
    psnr: float
    images: int
    seconds: float
    below_input: int = 0      # images whose SSIM is below their blurred input's


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area averaging) so the longer side is at most ``max_side``; smaller images unchanged."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def require_photo_folders(*folders: Path) -> None:
    """For the bench scripts: exit, saying how to fetch the photos, unless every folder exists."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise SystemExit(f"{folder} not found: run `sharpen train fetch-photos --out data/photos` first")


def load_images(folders: list[Path], max_side: int = 1024) -> list[tuple[str, np.ndarray]]:
    """(name, float32 RGB) for every image in ``folders``, downscaled (area) to ``max_side``."""
    out = []
    for folder in folders:
        folder = Path(folder)
        files = [folder] if folder.is_file() else sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        for f in files:
            rgb, _ = to_model_input(read_image(f))
            out.append((f.name, quantize8(fit_within(rgb, max_side))))
    if not out:
        raise ValueError("no images found in " + ", ".join(map(str, folders)))
    return out


def _per_image(outputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[list[float], list[float]]:
    s, p = [], []
    for o, t in zip(outputs, targets):
        a = torch.from_numpy(quantize8(o)).permute(2, 0, 1)[None]
        b = torch.from_numpy(t).permute(2, 0, 1)[None]
        s.append(float(ssim_torch(a, b)))
        p.append(float(psnr_torch(a, b)))
    return s, p


def _scores(outputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[float, float]:
    s, p = _per_image(outputs, targets)
    return float(np.mean(s)), float(np.mean(p))


def _grid_scores(fn, grid, blurred, sharp) -> list[tuple[float, float]]:
    """(SSIM, PSNR) of every grid setting."""
    return [_scores([fn(b, *np.atleast_1d(g)) for b in blurred], sharp) for g in grid]


ORACLE_UNSHARP = "unsharp mask, best setting for this σ"
BLIND_UNSHARP = "unsharp mask, one setting for all σ"
WIENER = "Wiener, known kernel (non-blind)"
BASELINES = (ORACLE_UNSHARP, BLIND_UNSHARP, WIENER)


def evaluate(images: list[tuple[str, np.ndarray]], sigmas: list[float], models: dict[str, LoadedModel],
             baselines: bool = True, progress=None) -> list[Row]:
    """Rows for every σ: blurred input, unsharp mask, Wiener (known kernel), then each model.

    Unsharp mask appears twice: with the grid setting that is best for each σ (an oracle: it knows the blur)
    and with the one setting that is best on average over all σ (blind, like the models). Wiener is given
    the true kernel and its best balance per σ. Each baseline's SSIM and PSNR are each the best of the grid.
    """
    rows: list[Row] = []
    sharp = [img for _, img in images]
    unsharp_by_sigma = {}
    for sigma in sigmas:
        blurred = [degrade(img, Degradation.fixed(sigma), np.random.default_rng(0))[0] for img in sharp]
        input_ssim, input_psnr = _per_image(blurred, sharp)
        rows.append(Row("blurred input", sigma, float(np.mean(input_ssim)), float(np.mean(input_psnr)), len(sharp), 0.0))
        if baselines:
            t0 = time.time()
            grid = _grid_scores(unsharp_mask, UNSHARP_GRID, blurred, sharp)
            unsharp_by_sigma[sigma] = grid
            rows.append(Row(ORACLE_UNSHARP, sigma, max(g[0] for g in grid), max(g[1] for g in grid),
                            len(sharp), time.time() - t0))
            t0 = time.time()
            grid = _grid_scores(lambda b, bal: wiener_deconvolve(b, sigma, bal), WIENER_BALANCE_GRID, blurred, sharp)
            rows.append(Row(WIENER, sigma, max(g[0] for g in grid), max(g[1] for g in grid), len(sharp),
                            time.time() - t0))
        for label, model in models.items():
            t0 = time.time()
            ssim, psnr = _per_image([sharpen_array(model, b) for b in blurred], sharp)
            below = sum(o < i for o, i in zip(ssim, input_ssim))
            rows.append(Row(label, sigma, float(np.mean(ssim)), float(np.mean(psnr)), len(sharp), time.time() - t0,
                            below))
            if progress:
                progress(label, sigma)
    if unsharp_by_sigma:  # the blind unsharp mask: one setting, chosen on the mean over σ
        mean_ssim = [np.mean([unsharp_by_sigma[s][i][0] for s in sigmas]) for i in range(len(UNSHARP_GRID))]
        mean_psnr = [np.mean([unsharp_by_sigma[s][i][1] for s in sigmas]) for i in range(len(UNSHARP_GRID))]
        i_ssim, i_psnr = int(np.argmax(mean_ssim)), int(np.argmax(mean_psnr))
        for sigma in sigmas:
            at = next(k for k, r in enumerate(rows) if r.sigma == sigma and r.method == ORACLE_UNSHARP)
            rows.insert(at + 1, Row(BLIND_UNSHARP, sigma, unsharp_by_sigma[sigma][i_ssim][0],
                                    unsharp_by_sigma[sigma][i_psnr][1], len(sharp), 0.0))
    return rows


def format_table(rows: list[Row]) -> str:
    """A plain-text table per σ with gains over the blurred input."""
    lines = []
    for sigma in sorted({r.sigma for r in rows}):
        part = [r for r in rows if r.sigma == sigma]
        base = next(r for r in part if r.method == "blurred input")
        width = max(len(r.method) for r in part)
        lines.append(f"σ = {sigma:g}  ({base.images} images)")
        lines.append(f"  {'method':<{width}}  {'SSIM':>7} {'ΔSSIM':>8}  {'PSNR':>7} {'ΔPSNR':>7}  below input")
        for r in part:
            below = "" if r.method in BASELINES or r is base else f"{r.below_input}/{r.images}"
            lines.append(f"  {r.method:<{width}}  {r.ssim:7.4f} {r.ssim - base.ssim:+8.4f}  "
                         f"{r.psnr:7.2f} {r.psnr - base.psnr:+7.2f}  {below:>11}".rstrip())
        lines.append("")
    return "\n".join(lines)
