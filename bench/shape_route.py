"""Can a whole-photo reading of the blur's *shape* tell a Wiener student when to hold its correction back?

    python bench/shape_route.py [MODEL.pt] [--tune FOLDER] [--max-side 1024] [--p-gauss 0.8] [--noise-max 0.35]

1. A shape reader: spectral features of the photo's central 512² gray (the radial log power profile, the same
   with the Gaussian of σ̂ and a 1/f² image divided out, the power per orientation where that Gaussian passes
   70 … 10 %) plus the model's hint (σ̂, two noise readings), and a gradient-boosted classifier (scikit-learn)
   of clean / Gaussian / defocus / shake, fitted on three draws per family of 640² central crops of the
   training photos (σ 0.8–3.5, disk radius 1.5–5, shake 5–15 px; sensor noise on half, JPEG 70–98 on 40 %).
2. A route, simulated: a photo read as Gaussian with P ≥ ``--p-gauss``, fine noise below ``--noise-max``/255
   and 0.8 < σ̂ < 2.5 gets the model's Wiener front end alone (no correction) at the balance of
   ``ROUTE_BALANCE``; every other photo gets the model as served.

Per family on ``--tune`` (default: the tuning photos): how the photos read, and mean SSIM of the input, the
model as served, the front end at the best fixed balance of ``LAMS`` for the family (a per-family oracle, as
bench/quality.py's blind-Wiener baseline is), and the route; then photos made worse beyond the tolerance.
No method is shipped from here: it measures whether one is worth building.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.degrade import EVAL_FAMILIES, REALISTIC, degrade  # noqa: E402
from shared.evaluation import load_images  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.nets.wiener import fft_filter_bank, wiener_kernels  # noqa: E402
from shared.quality_table import degraded_set, scores, tolerance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIDE = 512                                            # the central square the spectrum is read on
EDGES = np.logspace(np.log10(0.01), np.log10(0.5), 25)   # radial bins, cycles per pixel
SECTORS = 12
SHAPES = ("clean", "gaussian", "defocus", "shake")
LAMS = 10.0 ** (-4 + 0.5 * np.arange(8))             # front-end balances scored per photo: 1e-4 … 3.2e-1
ROUTE_BALANCE = ((1.6, 1e-3), (2.5, 10 ** -3.5))     # (σ̂ below, balance): the tuning photos' best at σ = 1 and 2


def spectral_features(rgb: np.ndarray, hint: list[float]) -> np.ndarray:
    """The shape reader's input for a float HWC RGB image and its hint (σ̂, noise fine, noise coarse)."""
    sig = hint[0]
    g = cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)
    h, w = g.shape
    s = min(SIDE, h, w)
    g = g[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    win = np.hanning(s)[:, None] * np.hanning(s)[None, :]
    lp = np.log10(np.abs(np.fft.fftshift(np.fft.fft2((g - g.mean()) * win))) ** 2 + 1e-12)
    f = np.fft.fftshift(np.fft.fftfreq(s))
    fy, fx = np.meshgrid(f, f, indexing="ij")
    rho, ang = np.hypot(fx, fy), np.mod(np.arctan2(fy, fx), np.pi)

    def mean(mask):
        return lp[mask].mean() if mask.any() else 0.0
    prof = np.array([mean((rho >= a) & (rho < b)) for a, b in zip(EDGES[:-1], EDGES[1:])])
    prof = prof - prof[:3].mean()
    mid = np.sqrt(EDGES[:-1] * EDGES[1:])
    whitened = prof + (2 * np.pi * mid * sig) ** 2 * np.log10(np.e) + 2 * np.log10(mid / mid[0])
    s_ = max(sig, 0.4)
    lo, hi = np.sqrt(-np.log(0.7)) / (2 * np.pi * s_), np.sqrt(-np.log(0.1)) / (2 * np.pi * s_)
    band = (rho >= lo) & (rho < min(hi, 0.45))
    sect = np.array([mean(band & (ang >= k * np.pi / SECTORS) & (ang < (k + 1) * np.pi / SECTORS))
                     for k in range(SECTORS)])
    sect = np.sort(sect - sect.mean())
    return np.concatenate([hint, prof, whitened, sect, [sect[-1] - sect[0]]])


def fit_reader(model, photos: list[tuple[str, np.ndarray]], reps: int = 3, seed: int = 0):
    """The shape classifier, fitted on ``reps`` draws per family of the photos' 640² central crops."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(reps):
        for _name, img in photos:
            h, w = img.shape[:2]
            c = min(640, h, w)
            crop = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
            for label, shape in enumerate(SHAPES):
                deg = dataclasses.replace(REALISTIC, family=shape, sigma=(0.8, 3.5), defocus_radius=(1.5, 5.0),
                                          shake_length=(5.0, 15.0))
                x, _ = degrade(crop, deg, rng)
                X.append(spectral_features(x, model.estimate_hint(x)))
                y.append(label)
    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05).fit(np.array(X), np.array(y))


def front_end_bank(x: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The Wiener front end (``shared.nets.wiener``) of σ̂ at each balance of ``LAMS``."""
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    k = wiener_kernels(torch.full((len(LAMS),), float(sigma)), torch.tensor(LAMS, dtype=torch.float32))
    with torch.inference_mode():
        y = fft_filter_bank(t, k[None])[0].clamp(0, 1)
    return [y[m].permute(1, 2, 0).numpy() for m in range(len(LAMS))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "models" / "student-default.pt")
    ap.add_argument("--train", type=Path, default=ROOT / "data" / "photos" / "DIV2K_train_HR")
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--p-gauss", type=float, default=0.8)
    ap.add_argument("--noise-max", type=float, default=0.35, help="fine noise reading, 1/255 units")
    args = ap.parse_args()
    for folder in (args.train, args.tune):
        if not folder.is_dir():
            sys.exit(f"{folder} not found: run `sharpen train fetch-photos --out data/photos` first")
    t0 = time.time()
    model = load_model(args.model, "cpu")
    unguarded = model.without_guard()
    reader = fit_reader(model, load_images([args.train], 1024))
    print(f"shape reader fitted in {time.time() - t0:.0f} s")
    images = load_images([args.tune], args.max_side)
    print(f"{len(images)} photos of {args.tune}, longer side ≤ {args.max_side}px; read as "
          f"{'/'.join(SHAPES)}; mean SSIM (photos made worse)")
    print(f"{'family':<32} {'read as':>14} {'input':>7} {'served':>13} {'front end, best λ':>19} {'routed':>13} {'n':>3}")
    for family, deg in EVAL_FAMILIES.items():
        rows = []
        for x, (_, s) in zip(degraded_set(images, deg), images):
            hint = model.estimate_hint(x)
            out = sharpen_array(unguarded, x, hint=hint)
            served = x + model.guard_gain(hint) * (out - x)
            p = reader.predict_proba(spectral_features(x, hint)[None])[0]
            route = (p[1] >= args.p_gauss and hint[1] * 255 < args.noise_max and 0.8 < hint[0] < ROUTE_BALANCE[-1][0])
            bank = [scores(w, s)[0] for w in front_end_bank(x, hint[0])]
            lam = next(b for lim, b in ROUTE_BALANCE if hint[0] < lim) if route else None
            routed = bank[int(np.argmin(np.abs(np.log(LAMS) - np.log(lam))))] if route else scores(served, s)[0]
            rows.append([scores(x, s)[0], scores(served, s)[0], routed, *bank, int(p.argmax()), route])
        r = np.array(rows, dtype=float)
        tol = tolerance(family)
        worse = lambda col: int((col < r[:, 0] - tol).sum())  # noqa: E731
        fixed = r[:, 3:3 + len(LAMS)].mean(0)
        best = int(fixed.argmax())
        reads = "/".join(str(int((r[:, -2] == k).sum())) for k in range(len(SHAPES)))
        print(f"{family:<32} {reads:>14} {r[:, 0].mean():>7.4f} {r[:, 1].mean():>8.4f} ({worse(r[:, 1]):>2})"
              f" {fixed[best]:>8.4f} ({worse(r[:, 3 + best]):>2}) λ {LAMS[best]:.0e}"
              f" {r[:, 2].mean():>8.4f} ({worse(r[:, 2]):>2}) {int(r[:, -1].sum()):>3}", flush=True)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
