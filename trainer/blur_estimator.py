"""Train the blur estimator (``shared.nets.blur_estimator``) on folders of sharp photos.

Each step draws crops from the training photos (half of them first downscaled by a random factor in
[0.5, 1], so the photos' own sharpness varies) and degrades each. ``degradation="gaussian"``: a Gaussian σ
drawn log-uniformly from [0.3, 4], sometimes mild noise or JPEG, 8 bits. ``"realistic"``: a draw of
``shared.degrade.REALISTIC`` (every blur family, sensor noise, JPEG) whose target is the blur's equivalent
Gaussian σ (clean crops: 0.3). The estimator's log σ is fitted with a smooth L1 loss. Crops are made by
``workers`` processes. Validation: the whole validation photos blurred with σ = 0.5, 1, 2, 3.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.blur_estimate import (MAX_SIGMA, MIN_SIGMA, estimate_blur, estimate_covariance, load_covariance_reader,
                                  load_estimator, save_covariance_reader, save_estimator, to_gray)
from shared.degrade import (EVAL_FAMILIES, REALISTIC, degrade_with_covariance, gaussian_blur, jpeg_roundtrip,
                            quantize8)
from shared.evaluation import fit_within
from shared.nets.blur_estimator import BlurCovarianceNet, BlurEstimatorNet

from .data import list_images, load_rgb
from .loop import provenance

VAL_SIGMAS = (0.5, 1.0, 2.0, 3.0)
# the estimator reads σ up to MAX_SIGMA: train it on a slightly wider Gaussian range than the students
REALISTIC_WIDE = dataclasses.replace(REALISTIC, sigma=(MIN_SIGMA, MAX_SIGMA))
# the shakes a covariance reader sees more of with ``shake_share`` (alone, and after a Gaussian)
SHAKES = tuple(dataclasses.replace(REALISTIC_WIDE, family=f) for f in ("shake", "gaussian+shake"))


@dataclass
class EstimatorConfig:
    steps: int = 3000
    batch_size: int = 32
    crop: int = 192
    lr: float = 2e-3
    noise_prob: float = 0.2     # additive Gaussian noise, std up to 0.01
    jpeg_prob: float = 0.2      # JPEG quality 80-98 instead of plain 8-bit rounding
    max_side: int = 1024
    seed: int = 0
    degradation: str = "gaussian"   # or "realistic" (shared.degrade.REALISTIC, equivalent-σ targets)
    workers: int = 0                # DataLoader processes making the crops
    init_from: str | None = None    # start from this estimator file's weights (fine-tuning)
    target: str = "sigma"           # or "covariance": the kernel's 2 x 2 covariance (BlurCovarianceNet; realistic
                                    # degradation only), started from ``init_from`` (a σ estimator or a reader)
    shake_share: float = 0.0        # with "realistic": the chance that a crop is blurred by a shake (half of them
                                    # then a Gaussian) instead of a draw of the whole mixture (a direction to read)


def photo_split(folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """DIV2K layout: (DIV2K_train_HR files, DIV2K_valid_HR files); a plain folder is all training."""
    train, valid = [], []
    for folder in map(Path, folders):
        if (folder / "DIV2K_train_HR").is_dir():
            train += list_images(folder / "DIV2K_train_HR")
            if (folder / "DIV2K_valid_HR").is_dir():
                valid += list_images(folder / "DIV2K_valid_HR")
        else:
            train += list_images(folder)
    if not train:
        raise ValueError("no training images found in " + ", ".join(map(str, folders)))
    return train, valid


def log_cov_target(cov: np.ndarray) -> np.ndarray:
    """The reader's target for a kernel covariance: the log-covariance (a, b, c), eigenvalues kept in
    [MIN_SIGMA², MAX_SIGMA²] (a clean crop reads MIN_SIGMA² I, as the σ estimator reads it MIN_SIGMA)."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, MIN_SIGMA ** 2, MAX_SIGMA ** 2)
    log = vecs @ np.diag(np.log(vals)) @ vecs.T
    return np.array([log[0, 0], log[0, 1], log[1, 1]], np.float32)


def blurred_crop(photo: np.ndarray, cfg: EstimatorConfig, rng: np.random.Generator):
    """(gray blurred crop, log σ — or the log-covariance (a, b, c) for ``target="covariance"``): one example."""
    margin = 16  # blur a larger region, so the crop's edges see real neighbours
    side = cfg.crop + 2 * margin
    if rng.random() < 0.5:
        s = rng.uniform(0.5, 1.0)
        h, w = photo.shape[:2]
        photo = cv2.resize(photo, (max(side, round(w * s)), max(side, round(h * s))), interpolation=cv2.INTER_AREA)
    if min(photo.shape[:2]) < side:
        photo = cv2.resize(photo, None, fx=side / min(photo.shape[:2]), fy=side / min(photo.shape[:2]),
                           interpolation=cv2.INTER_CUBIC).clip(0, 1)
    h, w = photo.shape[:2]
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    k = int(rng.integers(0, 8))
    region = np.rot90(photo[y:y + side, x:x + side], k % 4)
    region = np.ascontiguousarray(region[:, ::-1] if k >= 4 else region)
    if cfg.degradation == "realistic":
        deg = REALISTIC_WIDE
        if cfg.shake_share > 0 and rng.random() < cfg.shake_share:
            deg = SHAKES[int(rng.integers(len(SHAKES)))]
        out, sigma, cov = degrade_with_covariance(region, deg, rng)
        target = log_cov_target(cov) if cfg.target == "covariance" else math.log(min(max(sigma, MIN_SIGMA), MAX_SIGMA))
        return to_gray(out[margin:-margin, margin:-margin]), target
    sigma = math.exp(rng.uniform(math.log(MIN_SIGMA), math.log(MAX_SIGMA)))
    out = gaussian_blur(region, sigma)
    if rng.random() < cfg.noise_prob:
        out = out + rng.normal(0.0, rng.uniform(0.0, 0.01), out.shape).astype(np.float32)
    out = jpeg_roundtrip(out, int(rng.integers(80, 99))) if rng.random() < cfg.jpeg_prob else quantize8(out)
    return to_gray(out[margin:-margin, margin:-margin]), math.log(sigma)


class _Crops(torch.utils.data.Dataset):
    """Crop ``i`` of the run: photo and degradation drawn from a generator seeded by (seed, i)."""

    def __init__(self, photos: list[np.ndarray], cfg: EstimatorConfig):
        self.photos, self.cfg = photos, cfg

    def __len__(self) -> int:
        return self.cfg.steps * self.cfg.batch_size

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.cfg.seed, i])
        gray, target = blurred_crop(self.photos[int(rng.integers(len(self.photos)))], self.cfg, rng)
        return torch.from_numpy(gray)[None], torch.as_tensor(target, dtype=torch.float32)


def validate(net: BlurEstimatorNet, photos: list[np.ndarray]) -> dict:
    """RMS error of log σ over the validation photos, overall and per σ."""
    net.eval()
    errors = np.array([[math.log(estimate_blur(quantize8(gaussian_blur(p, s)), net) / s) for s in VAL_SIGMAS]
                       for p in photos])
    net.train()
    out = {"val_rms_log": float(np.sqrt((errors ** 2).mean()))}
    out.update({f"val_rms_log_sigma{s:g}": float(np.sqrt((errors[:, i] ** 2).mean())) for i, s in enumerate(VAL_SIGMAS)})
    return out


VAL_COVARIANCE_FAMILIES = ("gaussian σ=2", "defocus r=3", "shake 11 px")


def validate_covariance(net: BlurCovarianceNet, photos: list[np.ndarray]) -> dict:
    """RMS error of the log-covariance (Frobenius) over the validation photos, per family of
    ``VAL_COVARIANCE_FAMILIES`` (each photo its own seeded draw), and the median error of the shake's axis."""
    net.eval()
    out, axis = {}, []
    for name in VAL_COVARIANCE_FAMILIES:
        errors = []
        for i, p in enumerate(photos):
            x, _sigma, cov = degrade_with_covariance(p, EVAL_FAMILIES[name], np.random.default_rng(i))
            est = estimate_covariance(x, net)
            d = log_cov_target(est) - log_cov_target(cov)
            errors.append(d[0] ** 2 + 2 * d[1] ** 2 + d[2] ** 2)
            if name.startswith("shake"):
                axes = [np.linalg.eigh(c)[1][:, 1] for c in (est, cov)]
                axis.append(math.degrees(math.acos(min(1.0, abs(float(axes[0] @ axes[1]))))))
        out[f"val_rms_logcov_{name.split()[0]}"] = float(np.sqrt(np.mean(errors)))
    out["val_shake_axis_error_deg_median"] = float(np.median(axis))
    net.train()
    return out


def _start(cfg: EstimatorConfig) -> nn.Module:
    if cfg.target != "covariance":
        return load_estimator(cfg.init_from) if cfg.init_from else BlurEstimatorNet()
    if cfg.degradation != "realistic":
        raise ValueError("a covariance reader is trained on --degradation realistic (Gaussian blur has no direction)")
    if not cfg.init_from:
        return BlurCovarianceNet()
    try:
        return load_covariance_reader(cfg.init_from)
    except ValueError:
        return BlurCovarianceNet.from_estimator(load_estimator(cfg.init_from))


def train_blur_estimator(folders: list[Path], out: Path, cfg: EstimatorConfig, progress=None) -> dict:
    """Train from scratch for ``cfg.steps`` steps and write the weights to ``out``; returns the final metrics."""
    if cfg.target not in ("sigma", "covariance"):
        raise ValueError(f"unknown target {cfg.target!r}: sigma or covariance")
    train_files, valid_files = photo_split(folders)
    train = [fit_within(load_rgb(f), cfg.max_side) for f in train_files]
    valid = [fit_within(load_rgb(f), cfg.max_side) for f in valid_files]
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = _start(cfg).train().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if cfg.steps >= 50:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    else:  # too short for a schedule (smoke runs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
    t0 = time.time()
    crops = torch.utils.data.DataLoader(_Crops(train, cfg), batch_size=cfg.batch_size, num_workers=cfg.workers)
    # (a, b, c) of a log-covariance: b counts twice in the matrix's Frobenius norm
    weights = torch.tensor([1.0, 2.0, 1.0], device=device) if cfg.target == "covariance" else None
    for step, (xs, ys) in enumerate(crops, start=1):
        if weights is None:
            loss = F.smooth_l1_loss(net(xs.to(device)), ys.to(device), beta=0.1)
        else:
            loss = (F.smooth_l1_loss(net(xs.to(device)), ys.to(device), beta=0.1, reduction="none") * weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress(step, loss.item())
    metrics = {"steps": cfg.steps, "train_loss": loss.item(), "minutes": (time.time() - t0) / 60}
    net = net.cpu()
    if valid:
        metrics.update(validate_covariance(net, valid) if cfg.target == "covariance" else validate(net, valid))
    save = save_covariance_reader if cfg.target == "covariance" else save_estimator
    save(out, net, {"config": asdict(cfg), "train_files": [f.name for f in train_files],
                              "valid_files": [f.name for f in valid_files], "metrics": metrics,
                              "provenance": provenance({"init_from": cfg.init_from}, folders)})
    return metrics

