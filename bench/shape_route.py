"""Can a whole-photo reading of the blur's *shape* tell a Wiener student when to hold its correction back?

    python bench/shape_route.py [MODEL.pt] [--tune FOLDER] [--max-side 1024] [--p-gauss 0.8] [--noise-max 0.35]

1. The shape reader (``shared.shape_reader``, ``models/shape-reader.pt``): the probabilities of clean /
   Gaussian / defocus / shake read from the spectrum of the photo's central 512² gray and the hint. (Session 11
   measured this route with a gradient-boosted classifier of the same features; the shipped reader replaced it.)
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
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.blur_estimate import estimate_hint  # noqa: E402
from shared.degrade import EVAL_FAMILIES  # noqa: E402
from shared.evaluation import load_images, require_photo_folders  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.nets.wiener import fft_filter_bank, wiener_kernels  # noqa: E402
from shared.quality_table import degraded_set, scores, tolerance  # noqa: E402
from shared.shape_reader import SHAPES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAMS = 10.0 ** (-4 + 0.5 * np.arange(8))             # front-end balances scored per photo: 1e-4 … 3.2e-1
ROUTE_BALANCE = ((1.6, 1e-3), (2.5, 10 ** -3.5))     # (σ̂ below, balance): the tuning photos' best at σ = 1 and 2


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
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--p-gauss", type=float, default=0.8)
    ap.add_argument("--noise-max", type=float, default=0.35, help="fine noise reading, 1/255 units")
    args = ap.parse_args()
    require_photo_folders(args.tune)
    t0 = time.time()
    model = load_model(args.model, "cpu")
    unguarded = model.without_guard()
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
            shape = estimate_hint(x, 6)[3:]
            p = np.array([1 - sum(shape), *shape])
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
