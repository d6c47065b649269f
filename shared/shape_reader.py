"""What shape is this image's blur? Clean, Gaussian, defocus (a disk) or camera shake, read from the whole photo.

Four convolutions told only σ̂ and two noise readings cannot tell a Gaussian from a disk or a shake of the
same σ̂, so they hedge between the corrections each needs (models/README.md, session 10). The shape shows in
the photo's spectrum: a Gaussian's log power falls as f², a disk's has ripples and a floor, a shake's
depends on the direction. ``shape_features`` reads it from the central ``SIDE``² of the gray image (the radial
log-power profile, the same with the Gaussian of σ̂ and a 1/f² image divided out, and the sorted power per
orientation where that Gaussian passes 70 … 10 %), and ``ShapeReaderNet``, a small classifier fitted on
degraded training photos (``sharpen train shape-reader``), turns them and the hint into the probabilities of
``SHAPES``. Torch ops on any device: a GPU worker reads the shape where it reads σ.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from .weight_files import load_weights, save_weights

SHAPES = ("clean", "gaussian", "defocus", "shake")
READER_FORMAT = "sharpen-shape-reader/1"
READER_PATH = Path(__file__).resolve().parent.parent / "models" / "shape-reader.pt"
SIDE = 512                 # the central square whose spectrum is read
BINS = 24                  # radial bins, log-spaced over 0.01 … 0.5 cycles per pixel
SECTORS = 12               # orientations in [0, π)
N_FEATURES = 3 + 2 * BINS + SECTORS + 1
_MIN_SIDE = 64             # smaller images read as "no idea": equal probabilities


def _edges() -> torch.Tensor:
    return torch.logspace(math.log10(0.01), math.log10(0.5), BINS + 1, dtype=torch.float64)


@functools.cache
def _layout(s: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For an s x s fftshifted spectrum: the radius and angle of each frequency, its radial bin (BINS where
    outside every bin), and the window."""
    f = torch.fft.fftshift(torch.fft.fftfreq(s, dtype=torch.float64))
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    rho, ang = torch.hypot(fx, fy), torch.remainder(torch.atan2(fy, fx), math.pi)
    rbin = torch.bucketize(rho, _edges(), right=True) - 1
    rbin = torch.where((rbin >= 0) & (rbin < BINS), rbin, torch.full_like(rbin, BINS))
    win = torch.hann_window(s, periodic=False, dtype=torch.float64)
    return (rho.to(device).flatten(), ang.to(device).flatten(), rbin.to(device).flatten(),
            (win[:, None] * win[None, :]).to(device))


def _binned_mean(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """(N, n): the mean of ``values`` (N, P) per index in [0, n) (index n: left out); 0 for an empty bin."""
    sums = values.new_zeros(values.shape[0], n + 1).scatter_add_(1, index, values)
    counts = values.new_zeros(values.shape[0], n + 1).scatter_add_(1, index, torch.ones_like(values))
    return (sums / counts.clamp(min=1))[:, :n]


def shape_features(gray: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """(N, N_FEATURES) float32: the reader's input for N gray images (N, h, w) in [0, 1] of one size and their
    hints (N, 3): σ̂, noise fine, noise coarse."""
    n, h, w = gray.shape
    s = min(SIDE, h, w)
    dev = gray.device
    rho, ang, rbin, win = _layout(s, str(dev))
    g = gray[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].double()
    g = (g - g.mean(dim=(1, 2), keepdim=True)) * win
    lp = torch.log10(torch.fft.fftshift(torch.fft.fft2(g), dim=(1, 2)).abs() ** 2 + 1e-12).flatten(1)
    prof = _binned_mean(lp, rbin.expand(n, -1), BINS)
    prof = prof - prof[:, :3].mean(dim=1, keepdim=True)
    e = _edges().to(dev)
    mid = (e[:-1] * e[1:]).sqrt()
    sig = hint[:, :1].double()
    whitened = prof + (2 * math.pi * mid * sig) ** 2 * math.log10(math.e) + 2 * torch.log10(mid / mid[0])
    s_ = sig.clamp(min=0.4)
    lo = math.sqrt(-math.log(0.7)) / (2 * math.pi * s_)
    hi = (math.sqrt(-math.log(0.1)) / (2 * math.pi * s_)).clamp(max=0.45)
    band = (rho >= lo) & (rho < hi)                                            # (N, P)
    sector = (ang * (SECTORS / math.pi)).long().clamp(max=SECTORS - 1).expand(n, -1)
    sect = _binned_mean(lp, torch.where(band, sector, torch.full_like(sector, SECTORS)), SECTORS)
    sect = (sect - sect.mean(dim=1, keepdim=True)).sort(dim=1).values
    spread = sect[:, -1:] - sect[:, :1]
    return torch.cat([hint[:, :3].double(), prof, whitened, sect, spread], dim=1).float()


class ShapeReaderNet(nn.Module):
    """Standardised features → one hidden layer → the logits of ``SHAPES``."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))
        self.mlp = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, len(SHAPES)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp((feats - self.mean) / self.std)


def fit_reader(feats: torch.Tensor, labels: torch.Tensor, steps: int = 1500, seed: int = 0) -> ShapeReaderNet:
    """A reader fitted to (N, N_FEATURES) features and their SHAPES indices: full-batch AdamW with strong weight
    decay and label smoothing, so that its probabilities mean what they say on photos it was not fitted on
    (fitted to 1,344 crops of 112 training photos: 74 % right on 27 others, mean confidence 81 %; unregularised
    it was as often right but 96 % sure)."""
    torch.manual_seed(seed)
    net = ShapeReaderNet()
    net.mean.copy_(feats.mean(0))
    net.std.copy_(feats.std(0).clamp(min=1e-3))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.5)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(feats), labels, label_smoothing=0.1).backward()
        opt.step()
    return net.eval()


def save_reader(path: Path, net: ShapeReaderNet, meta: dict) -> None:
    save_weights(path, READER_FORMAT, net, meta)


def load_reader(path: Path | str = READER_PATH) -> ShapeReaderNet:
    return load_weights(path, READER_FORMAT, ShapeReaderNet(), "shape reader",
                        "fit them with `sharpen train shape-reader`")


@functools.cache
def _shipped(device: str) -> ShapeReaderNet:
    return load_reader(READER_PATH).to(device)


@torch.inference_mode()
def read_shape(gray: torch.Tensor, hint: torch.Tensor, net: ShapeReaderNet | None = None) -> torch.Tensor:
    """(N, len(SHAPES)): the probability of each blur shape for N gray images (N, h, w) and their hints (N, 3),
    on their device."""
    n, h, w = gray.shape
    if min(h, w) < _MIN_SIDE:
        return gray.new_full((n, len(SHAPES)), 1 / len(SHAPES))
    net = net or _shipped(str(gray.device))
    return torch.softmax(net(shape_features(gray.float(), hint.float())), dim=1)
