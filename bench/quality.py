"""The quality table: SSIM/PSNR per σ for baselines, the original preset, our students and the teacher.

    python bench/quality.py [--data DIR ...] [--sigma 1,2,3] [--max-side 1024]

Default data: the validation photos written by ``sharpen train fetch-photos`` (never trained on), else the
scikit-image sample photos. Every method sees the same blurred 8-bit inputs; "Δ" columns are gains over the
blurred input measured in this same process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from shared.blur_estimate import ESTIMATOR_PATH, estimate_blur  # noqa: E402
from shared.degrade import Degradation, degrade  # noqa: E402
from shared.evaluation import evaluate, format_table, load_images  # noqa: E402
from shared.inference import load_model  # noqa: E402

# label -> model file (relative to the repo); missing files are skipped with a note
MODELS = {
    "student-seed, original preset": "models/variants/seed-original.pt",
    "student-s2d, no teacher": "models/variants/s2d-plain.pt",
    "student (full-res residual), distilled": "models/variants/residual-distill.pt",
    "student-dilated, distilled": "models/variants/dilated-distill.pt",
    "student-s2d-dilated, distilled": "models/variants/s2d-dilated-distill.pt",
    "student-s2d, distilled": "models/variants/s2d-distill.pt",
    "student-s2d-hint, no teacher (L1)": "models/variants/s2d-hint.pt",
    "DEFAULT student (models/student-default.pt)": "models/student-default.pt",
    "teacher (ResNet18 U-Net)": "models/teacher.pt",
}


def default_data() -> list[Path]:
    valid = ROOT / "data" / "photos" / "DIV2K_valid_HR"
    if valid.is_dir():
        return [valid]
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / n for n in ("chelsea.png", "motorcycle_right.png", "coffee.png", "astronaut.png")]


def estimator_table(images, sigmas: list[float]) -> str:
    """How well the blur estimator reads σ on these images: mean reading and RMS error of log σ."""
    lines = [f"blur estimate ({ESTIMATOR_PATH.relative_to(ROOT)}), the hinted students' hint:"]
    for sigma in sigmas:
        reads = np.array([estimate_blur(degrade(img, Degradation.fixed(sigma), np.random.default_rng(0))[0])
                          for _, img in images])
        rms = float(np.sqrt(np.mean(np.log(reads / sigma) ** 2)))
        lines.append(f"  σ = {sigma:g}: read {' '.join(f'{r:.2f}' for r in reads)}  (RMS error of log σ {rms:.3f})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", type=Path, default=None)
    ap.add_argument("--sigma", default="1,2,3")
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args()
    data = args.data or default_data()
    images = load_images(data, args.max_side)
    models = {}
    for label, rel in MODELS.items():
        path = ROOT / rel
        if path.is_file():
            models[label] = load_model(path, "auto")
        else:
            print(f"(skipped {label}: {rel} not found)")
    print(f"{len(images)} images from {', '.join(map(str, data))}, longer side ≤ {args.max_side}px")
    t0 = time.time()
    sigmas = [float(s) for s in args.sigma.split(",")]
    rows = evaluate(images, sigmas, models)
    print(format_table(rows))
    print(estimator_table(images, sigmas))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
