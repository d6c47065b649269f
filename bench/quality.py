"""The quality table per degradation family: the default model against the classical methods it must beat.

    python bench/quality.py [--holdout DIR] [--tune DIR] [--max-side 1024] [--family NAME ...]
                            [--model LABEL=FILE ...] [--json FILE]

Families: ``shared.degrade.EVAL_FAMILIES`` (unblurred; Gaussian σ = 0.5, 1, 2, 3; defocus r = 3; an 11-px
shake; Gaussian 1.5 + mild sensor noise + JPEG 90). Photos: the held-out split written by
``sharpen train fetch-photos`` (``data/photos/holdout_HR``, never trained or tuned on); the classical
baselines' settings are chosen per family on the tuning split (``data/photos/DIV2K_valid_HR``). Every method
sees the same 8-bit degraded inputs; Δ columns are gains over them measured in this run. See
``shared/quality_table.py`` for the columns (photos made worse, the worst photo, grain).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.degrade import EVAL_FAMILIES  # noqa: E402
from shared.evaluation import load_images, require_photo_folders  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.quality_table import baseline_methods, family_table, format_family_table, tune_baselines  # noqa: E402

MODELS = {
    "DEFAULT (models/student-default.pt)": "models/student-default.pt",
    "bank student, its teacher (variants/s2d-wbank-guarded.pt)": "models/variants/s2d-wbank-guarded.pt",
    "zero-correction Wiener (variants/s2d-wiener-guarded.pt)": "models/variants/s2d-wiener-guarded.pt",
    "issue-time default (variants/s2d-hint-jitter.pt)": "models/variants/s2d-hint-jitter.pt",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--holdout", type=Path, default=ROOT / "data" / "photos" / "holdout_HR")
    ap.add_argument("--tune", type=Path, default=ROOT / "data" / "photos" / "DIV2K_valid_HR")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--tune-max-side", type=int, default=None, help="tune the baselines at this size (default: --max-side)")
    ap.add_argument("--family", action="append", choices=list(EVAL_FAMILIES), help="(default: all)")
    ap.add_argument("--model", action="append", default=None, metavar="LABEL=FILE",
                    help="models to score (default: the shipped default and the previous one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--tuned", type=Path, default=None,
                    help="reuse the baselines' tuned settings from this JSON file (written there when missing)")
    args = ap.parse_args()
    require_photo_folders(args.holdout, args.tune)
    families = {k: EVAL_FAMILIES[k] for k in (args.family or EVAL_FAMILIES)}
    specs = dict(m.split("=", 1) for m in args.model) if args.model else MODELS
    models = {}
    for label, rel in specs.items():
        path = ROOT / rel if not Path(rel).is_absolute() else Path(rel)
        if path.is_file():
            models[label] = load_model(path, "auto")
        else:
            print(f"(skipped {label}: {rel} not found)")
    t0 = time.time()
    if args.tuned and args.tuned.is_file():
        tuned = {f: {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}
                 for f, t in json.loads(args.tuned.read_text()).items()}
        print(f"baseline settings from {args.tuned}")
    else:
        tune = load_images([args.tune], args.tune_max_side or args.max_side)
        tuned = tune_baselines(tune, families, progress=lambda f, t: print(f"tuned on {len(tune)} photos: {f}: {t}",
                                                                           flush=True))
        if args.tuned:
            args.tuned.write_text(json.dumps(tuned, indent=1))
    methods = baseline_methods(tuned)
    for label, model in models.items():
        methods[label] = lambda x, _family, m=model: sharpen_array(m, x)
    holdout = load_images([args.holdout], args.max_side)
    print(f"{len(holdout)} held-out photos from {args.holdout}, longer side ≤ {args.max_side}px", flush=True)
    rows = family_table(holdout, methods, families,
                        progress=lambda r: print(f"  {r.family}: {r.method} {r.ssim:.4f} ({time.time() - t0:.0f} s)",
                                                 flush=True))
    print()
    print(format_family_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"tuned": tuned, "rows": [asdict(r) for r in rows]}, indent=1, default=str))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
