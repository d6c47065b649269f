"""Where a Wiener student's network helps and where it costs: per family, on the *tuning* photos, the model
as served, its network unguarded, its Wiener front end alone, blind Wiener (σ̂) at each balance, and two
per-photo oracles (the best balance for each photo; the better of front end and network for each photo).

    python bench/front_end_gap.py [--max-side 1024] [MODEL.pt]

Mean SSIM per family (the same seeded degradations as bench/quality.py). The oracles are no method: they say
how far choosing per photo could go — a balance chooser cannot beat "oracle balance", a switch between the
front end and the network cannot beat "oracle fe|net".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.baselines import wiener_deconvolve  # noqa: E402
from shared.degrade import EVAL_FAMILIES  # noqa: E402
from shared.evaluation import load_images, require_photo_folders  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.quality_table import BALANCE_GRID, degraded_set, scores  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def front_end_alone(model, x: np.ndarray, hint: list[float]) -> np.ndarray:
    """The model's Wiener front end on a float HWC image: what its zero-correction twin would output."""
    t = torch.from_numpy(x).permute(2, 0, 1)[None].to(model.device)
    h = torch.tensor([hint], device=model.device)
    with torch.inference_mode():
        y = model.net.front(t, model.net.front_blur(h), h[:, 1], h[:, 2])
    return y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "models" / "student-default.pt")
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args()
    require_photo_folders(args.tune)
    model = load_model(args.model, "auto")
    if getattr(model.net, "front", None) is None:
        sys.exit(f"{args.model} has no Wiener front end")
    images = load_images([args.tune], args.max_side)
    sharp = [img for _, img in images]
    unguarded = model.without_guard()
    cols = ["input", "served", "network", "front end"] + [f"W {b:g}" for b in BALANCE_GRID] + \
           ["W tuned", "oracle balance", "oracle fe|net"]
    print(f"{len(images)} tuning photos, longer side ≤ {args.max_side}px, {args.model.name}; mean SSIM")
    print(f"{'family':<32}" + "".join(f"{c:>15}" for c in cols))
    for family, deg in EVAL_FAMILIES.items():
        rows = []
        for x, s in zip(degraded_set(images, deg), sharp):
            hint = model.estimate_hint(x)
            out = sharpen_array(unguarded, x, hint=hint)
            served = x + model.guard_gain(hint) * (out - x)     # what the guard serves, without a second pass
            net, fe = scores(out, s)[0], scores(front_end_alone(model, x, hint), s)[0]
            wiener = [scores(wiener_deconvolve(x, hint[0], b), s)[0] for b in BALANCE_GRID]
            rows.append([scores(x, s)[0], scores(served, s)[0], net, fe, *wiener, max(wiener), max(fe, net)])
        r = np.array(rows)
        w = r[:, 4:4 + len(BALANCE_GRID)].mean(0)
        means = [*r[:, :4].mean(0), *w, w.max(), r[:, -2].mean(), r[:, -1].mean()]
        print(f"{family:<32}" + "".join(f"{m:>15.4f}" for m in means), flush=True)


if __name__ == "__main__":
    main()
