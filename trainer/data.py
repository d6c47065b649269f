"""Training data: folders of sharp images, random crops, degradation on the fly (``shared.degrade``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from shared import nets
from shared.blur_estimate import cached_estimator, estimate_blur, estimate_hint, estimate_noise
from shared.degrade import EVAL_FAMILIES, REALISTIC, Degradation, degrade
from shared.imageio import ImageError, read_image, to_model_input
from shared.inputs import training_images as list_images

from .config import TrainConfig

SHAPE_REGION = 512   # the side of the region a shape-hinted student's crops are degraded in and read from


def split_sources(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Resolve (train files, validation files) from the config.

    DIV2K layout: a folder holding ``DIV2K_train_HR/`` and ``DIV2K_valid_HR/`` uses them as the split.
    Otherwise ``val_data`` folders are the validation set, or the last ``val_fraction`` of each sorted folder.
    """
    train: list[Path] = []
    val: list[Path] = [p for v in cfg.val_data for p in list_images(Path(v))]
    for folder in map(Path, cfg.data):
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        if (folder / "DIV2K_train_HR").is_dir():
            train += list_images(folder / "DIV2K_train_HR")
            if not cfg.val_data and (folder / "DIV2K_valid_HR").is_dir():
                val += list_images(folder / "DIV2K_valid_HR")
            continue
        files = list_images(folder)
        if cfg.val_data:
            train += files
        else:
            n_val = max(1, round(len(files) * cfg.val_fraction)) if len(files) > 1 else 0
            train += files[: len(files) - n_val]
            val += files[len(files) - n_val:]
    if not train:
        raise ValueError("no training images found in " + ", ".join(cfg.data))
    if not val:
        raise ValueError("no validation images: give --val-data or a folder with two or more images")
    return train, val


def load_rgb(path: Path) -> np.ndarray:
    """float32 HWC RGB in [0, 1] (alpha dropped, gray replicated)."""
    rgb, _alpha = to_model_input(read_image(path))
    return rgb


class CropDataset(Dataset):
    """``patches_per_image`` random crops per image per epoch, each blurred with a fresh random σ.

    Images are decoded once and kept in memory as 16-bit RGB (DIV2K's 800 training images: about 13 GB;
    8-bit input loses nothing). Randomness comes from a generator
    seeded by (seed, epoch, index), so a resumed run draws exactly the crops it would have drawn.
    """

    def __init__(self, files: list[Path], cfg: TrainConfig):
        self.images = []
        for f in files:
            try:
                img = load_rgb(f)
            except ImageError as exc:
                raise ValueError(f"cannot train on {exc}") from exc
            if min(img.shape[:2]) < cfg.crop:
                scale = cfg.crop / min(img.shape[:2])
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC).clip(0, 1)
            self.images.append(np.rint(img * 65535).astype(np.uint16))  # half the memory of float32
        self.cfg = cfg
        self.deg = training_degradation(cfg)
        self.epoch = 0
        self.hint_size = hint_size(cfg.arch)

    def __len__(self) -> int:
        return len(self.images) * self.cfg.patches_per_image

    def __getitem__(self, index: int):
        """(blurred crop, sharp crop, σ, hint). The blur is applied to a region twice the crop's size that
        contains it (at least ``SHAPE_REGION`` pixels for a student told the blur's shape, which is read from
        the whole region as from a whole photo), so the crop's borders see real neighbours. The hint has three
        numbers (six for a shape-hinted student, nine told the covariance too): σ — the true (equivalent) σ
        times exp(N(0, hint_jitter²)) (at inference σ is read by ``shared.blur_estimate``, which errs by about
        that much on Gaussian blur), or with ``hint_source="estimate"`` that reader's own reading of the degraded
        region — and, for networks told
        three or six numbers, the noise readings of ``estimate_noise`` on the degraded region, as at inference,
        then the shape read by ``shared.shape_reader``. Unused ones are 0."""
        rng = np.random.default_rng([self.cfg.seed, self.epoch, index])
        img = self.images[index % len(self.images)]
        c = self.cfg.crop
        side = max(2 * c, SHAPE_REGION) if self.hint_size >= 6 else 2 * c
        rh, rw = min(side, img.shape[0]), min(side, img.shape[1])
        y = int(rng.integers(0, img.shape[0] - rh + 1))
        x = int(rng.integers(0, img.shape[1] - rw + 1))
        region = img[y:y + rh, x:x + rw].astype(np.float32) / 65535
        k = int(rng.integers(0, 8))  # one of the 8 flips/rotations
        region = np.rot90(region, k % 4)
        region = np.ascontiguousarray(region[:, ::-1] if k >= 4 else region)
        blurred, sigma = degrade(region, self.deg, rng)
        hint = [0.0] * max(3, self.hint_size)
        estimator = cached_estimator(self.cfg.blur_estimator)
        if self.hint_size >= 6:   # σ̂, the noise, the shape (and covariance) read from the region, as at inference
            hint = estimate_hint(blurred, self.hint_size, net=estimator)
        elif self.hint_size and self.cfg.hint_source == "estimate":
            hint[0] = estimate_blur(blurred, estimator)
        if self.hint_size and self.cfg.hint_source != "estimate":
            hint[0] = max(sigma, 0.3) * float(np.exp(self.cfg.hint_jitter * rng.standard_normal()))
        if self.hint_size == 3:
            hint[1:] = estimate_noise(blurred)
        cy, cx = crop_position(region, c, rng, self.cfg.flat_crop_prob)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a[cy:cy + c, cx:cx + c])).permute(2, 0, 1)  # noqa: E731
        return (to_t(blurred), to_t(region), torch.tensor(sigma, dtype=torch.float32),
                torch.tensor(hint, dtype=torch.float32))


FLAT_CANDIDATES = 4


def crop_position(region: np.ndarray, c: int, rng: np.random.Generator, flat_prob: float) -> tuple[int, int]:
    """Top-left corner of a ``c``-pixel crop of ``region`` (H×W×3, sharp): uniform, or with chance ``flat_prob``
    the flattest (least mean absolute gradient of the gray) of ``FLAT_CANDIDATES`` uniform positions. With
    ``flat_prob`` 0 it draws from ``rng`` exactly as the uniform crop always has, so the shipped runs replay."""
    h, w = region.shape[:2]
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    if flat_prob <= 0 or rng.random() >= flat_prob:
        return y, x
    ys = [y, *rng.integers(0, h - c + 1, size=FLAT_CANDIDATES - 1)]
    xs = [x, *rng.integers(0, w - c + 1, size=FLAT_CANDIDATES - 1)]
    gray = region.mean(axis=2)
    gy, gx = np.abs(np.diff(gray, axis=0)), np.abs(np.diff(gray, axis=1))
    busy = [gy[y:y + c - 1, x:x + c].mean() + gx[y:y + c, x:x + c - 1].mean() for y, x in zip(ys, xs)]
    i = int(np.argmin(busy))
    return int(ys[i]), int(xs[i])


def hint_size(arch: str) -> int:
    """How many numbers the network ``arch`` is told per image (0, 1, 3 or 6)."""
    spec = nets.STUDENTS.get(arch)
    if spec is not None:
        return spec.hint_size
    return 3 if arch == "teacher-wiener" else 0


def training_degradation(cfg: TrainConfig) -> Degradation:
    if cfg.degradation == "realistic":
        return REALISTIC
    if cfg.degradation != "gaussian":
        raise ValueError(f"unknown degradation {cfg.degradation!r}: use gaussian or realistic")
    return Degradation(sigma=(cfg.sigma_min, cfg.sigma_max), sigma_skew=cfg.sigma_skew,
                       noise=(0.0, cfg.noise_max), noise_prob=cfg.noise_prob, jpeg_prob=cfg.jpeg_prob)


def centre_crop(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    th, tw = min(h, max_side), min(w, max_side)
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


def validation_degradations(cfg: TrainConfig) -> dict[str, Degradation]:
    """label -> fixed degradation: Gaussian ``val_sigmas`` (labels "1", "2", ...), and for realistic
    training the other evaluation families of ``shared.degrade.EVAL_FAMILIES`` as well."""
    out = {f"{s:g}": Degradation.fixed(s) for s in cfg.val_sigmas}
    if cfg.degradation == "realistic":
        out.update({k: v for k, v in EVAL_FAMILIES.items() if not k.startswith("gaussian σ")})
    return out


def validation_set(files: list[Path], cfg: TrainConfig) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Fixed validation pairs: (name, label, degraded, sharp) for every file and validation degradation."""
    pairs = []
    for i, f in enumerate(files):
        sharp = centre_crop(load_rgb(f), cfg.val_max_side)
        for label, deg in validation_degradations(cfg).items():
            blurred, _ = degrade(sharp, deg, np.random.default_rng(i))
            pairs.append((f.name, label, blurred, sharp))
    return pairs
