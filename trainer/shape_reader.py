"""Fit the blur-shape reader (``shared.shape_reader``) on degraded training photos.

Each photo's central ``REGION``² crop is degraded ``reps`` times per shape of ``shared.shape_reader.SHAPES``:
clean, Gaussian σ 0.8–3.5, defocus radius 1.5–5, shake 5–15 px, each with ``REALISTIC``'s sensor noise (half
of them) and JPEG (40 %). The reader is told what a model is told (``estimate_hint``) and the crop's spectrum.
Photos of the folders' last ``holdout`` share (by name) are left out of the fit and report its accuracy.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from shared.blur_estimate import central_gray, estimate_hint
from shared.degrade import REALISTIC, degrade
from shared.inputs import training_images
from shared.shape_reader import SHAPES, fit_reader, save_reader, shape_features

from .data import load_rgb
from .loop import provenance

REGION = 640
SHAPE_DEGRADATIONS = {shape: dataclasses.replace(REALISTIC, family=shape, sigma=(0.8, 3.5),
                                                 defocus_radius=(1.5, 5.0), shake_length=(5.0, 15.0))
                      for shape in SHAPES}


def reader_examples(photos: list[np.ndarray], reps: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, N_FEATURES), labels (N,)) of ``reps`` draws per shape of each photo's central crop."""
    feats, labels = [], []
    for _ in range(reps):
        for img in photos:
            h, w = img.shape[:2]
            c = min(REGION, h, w)
            crop = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
            for label, deg in enumerate(SHAPE_DEGRADATIONS.values()):
                x, _ = degrade(crop, deg, rng)
                hint = torch.tensor([estimate_hint(x, 3)], dtype=torch.float32)
                feats.append(shape_features(torch.from_numpy(central_gray(x))[None], hint)[0])
                labels.append(label)
    return torch.stack(feats), torch.tensor(labels)


def train_shape_reader(folders: list[Path], out: Path, reps: int = 3, holdout: float = 0.2, seed: int = 0,
                       log=print) -> dict:
    """Fit the reader on the folders' photos and write it to ``out``; returns its metrics."""
    files = sorted((f for d in folders for f in training_images(Path(d))), key=lambda p: p.name)
    if len(files) < 5:
        raise ValueError(f"too few photos to fit a shape reader ({len(files)}) in " + ", ".join(map(str, folders)))
    n_check = int(len(files) * holdout)
    fit_files, check_files = files[:len(files) - n_check], files[len(files) - n_check:]
    rng = np.random.default_rng(seed)
    t0 = time.time()
    X, y = reader_examples([load_rgb(f) for f in fit_files], reps, rng)
    log(f"{len(y)} examples from {len(fit_files)} photos in {time.time() - t0:.0f} s")
    metrics: dict = {"fit_photos": len(fit_files), "examples": int(len(y))}
    if check_files:
        Xc, yc = reader_examples([load_rgb(f) for f in check_files], 1, rng)
        pred = fit_reader(X, y, seed=seed)(Xc).argmax(1)
        metrics["check_photos"] = len(check_files)
        metrics["check_accuracy"] = float((pred == yc).float().mean())
        metrics["check_confusion"] = [[int(((yc == i) & (pred == j)).sum()) for j in range(len(SHAPES))]
                                      for i in range(len(SHAPES))]
        log(f"on {len(check_files)} photos left out: {metrics['check_accuracy']:.1%} read right; "
            f"confusion (rows true {'/'.join(SHAPES)}) {metrics['check_confusion']}")
        X, y = torch.cat([X, Xc]), torch.cat([y, yc])   # the shipped reader is fitted on every photo
    net = fit_reader(X, y, seed=seed)
    metrics["fit_accuracy"] = float((net(X).argmax(1) == y).float().mean())
    save_reader(out, net, {"shapes": list(SHAPES), "reps": reps, "region": REGION, "metrics": metrics,
                           "provenance": provenance({}, [Path(d).parent for d in folders])})
    return metrics
