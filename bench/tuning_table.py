"""Per-family SSIM / PSNR and photos made worse of model files on the *tuning* photos: for choosing between
candidate models (or checkpoints) without looking at what bench/quality.py reports. ``--tune FOLDER`` scores
another folder instead (the held-out photos, for a report once the choice is made).

    python bench/tuning_table.py [--max-side 1024] [--tune FOLDER] MODEL.pt [MODEL.pt ...]

Each model runs as it would serve (its guard included); the families are shared.degrade.EVAL_FAMILIES with
the same seeded draws as bench/quality.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.degrade import EVAL_FAMILIES  # noqa: E402
from shared.evaluation import load_images, require_photo_folders  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.quality_table import degraded_set, scores, tolerance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args()
    require_photo_folders(args.tune)
    images = load_images([args.tune], args.max_side)
    models = {p: load_model(p, "auto") for p in args.models}
    sharp = [img for _, img in images]
    means: dict[Path, list[float]] = {p: [] for p in models}
    t0 = time.time()
    print(f"{len(images)} tuning photos, longer side ≤ {args.max_side}px; SSIM / PSNR (photos made worse)")
    print(f"{'family':<32} {'input':>6}  " + "  |  ".join(p.name for p in models))
    for family, deg in EVAL_FAMILIES.items():
        inputs = degraded_set(images, deg)
        base = [scores(x, s)[0] for x, s in zip(inputs, sharp)]
        cells = []
        for path, model in models.items():
            sc = [scores(sharpen_array(model, x), s) for x, s in zip(inputs, sharp)]
            worse = sum(a[0] - b < -tolerance(family) for a, b in zip(sc, base))
            means[path].append(float(np.mean([a[0] for a in sc])))
            cells.append(f"{means[path][-1]:.4f} / {np.mean([a[1] for a in sc]):.2f} ({worse})")
        print(f"{family:<32} {np.mean(base):.4f}  " + "  |  ".join(cells) + f"   {time.time() - t0:.0f} s", flush=True)
    print(f"{'mean SSIM':<32} {'':>6}  " + "  |  ".join(f"{np.mean(v):.4f}" for v in means.values()))


if __name__ == "__main__":
    main()
