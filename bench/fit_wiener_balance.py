"""Grid-fit the Wiener front end's balance λ = a + b·n_fine² + c·n_coarse² on the tuning photos.

    python bench/fit_wiener_balance.py [--tune data/photos/DIV2K_valid_HR] [--every 2] [--max-side 1024]

Prints, per (a, b, c), the mean SSIM gain over the degraded input of every evaluation family and its mean
(the shipped default's (5e-4, 0.01, 0.001) came from the first rows of this grid: the run was stopped after
the a = 5e-4 rows for time; see models/README.md). Then write the model with
``sharpen train wiener --balance a,b,c``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from shared.blur_estimate import estimate_hint  # noqa: E402
from shared.degrade import EVAL_FAMILIES  # noqa: E402
from shared.evaluation import load_images  # noqa: E402
from shared.nets.wiener import fft_filter, wiener_kernels  # noqa: E402
from shared.quality_table import degraded_set, scores  # noqa: E402

FAMILIES = ["gaussian σ=1", "gaussian σ=2", "gaussian σ=3", "defocus r=3", "shake 11 px",
            "gaussian 1.5 + noise + JPEG 90", "unblurred"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--every", type=int, default=2, help="use every N-th tuning photo")
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args()
    images = load_images([args.tune], args.max_side)[::args.every]
    cases = []
    for family in FAMILIES:
        for x, (_, sharp) in zip(degraded_set(images, EVAL_FAMILIES[family]), images):
            cases.append((family, x, sharp, estimate_hint(x, 3), scores(x, sharp)[0]))
    for a, b, c in itertools.product((5e-4, 1e-3, 2e-3), (0, 1e-2, 3e-2), (0, 1e-3, 3e-3)):
        gains: dict[str, list[float]] = {}
        for family, x, sharp, hint, base in cases:
            lam = a + b * (hint[1] * 255) ** 2 + c * (hint[2] * 255) ** 2
            k = wiener_kernels(torch.tensor([hint[0]]), torch.tensor([lam]))
            out = fft_filter(torch.from_numpy(x).permute(2, 0, 1)[None], k)[0].permute(1, 2, 0).numpy()
            gains.setdefault(family, []).append(scores(out.clip(0, 1), sharp)[0] - base)
        means = {f: float(np.mean(v)) for f, v in gains.items()}
        print(a, b, c, f"{np.mean(list(means.values())):+.4f}", {f: round(v, 4) for f, v in means.items()},
              flush=True)


if __name__ == "__main__":
    main()
