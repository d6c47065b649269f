"""PNG encoder settings: time and size on 1 MP photos (sharp and blurred), OpenCV's default vs the others.

    python bench/png.py [--reps 7]

The chosen setting is ``shared.imageio.PNG_PARAMS``; ratios are to OpenCV's default (zlib level 1 with the
Sub filter), medians of ``--reps`` passes that take turns.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.degrade import Degradation, degrade  # noqa: E402
from shared.imageio import PNG_PARAMS  # noqa: E402

C, S, F = cv2.IMWRITE_PNG_COMPRESSION, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_FILTER
OPTIONS = {
    "OpenCV default": [],
    "chosen (PNG_PARAMS)": PNG_PARAMS,
    "level 1, run-length, Up": [C, 1, S, cv2.IMWRITE_PNG_STRATEGY_RLE, F, cv2.IMWRITE_PNG_FILTER_UP],
    "level 1, Huffman only, Paeth": [C, 1, S, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY, F, cv2.IMWRITE_PNG_FILTER_PAETH],
    "level 0 (stored)": [C, 0],
    "level 6 (libpng's default)": [C, 6, S, cv2.IMWRITE_PNG_STRATEGY_DEFAULT],
}


def photos() -> list[np.ndarray]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    out = []
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"):
        rgb = cv2.resize(cv2.imread(str(data / name)), (1155, 866), interpolation=cv2.INTER_CUBIC)
        out.append(rgb)
        blurred = degrade(rgb.astype(np.float32) / 255, Degradation.fixed(2.0), np.random.default_rng(0))[0]
        out.append(np.rint(blurred * 255).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    images = photos()
    times = {k: [] for k in OPTIONS}
    sizes = {k: 0 for k in OPTIONS}
    for rep in range(args.reps):
        for name, params in OPTIONS.items():
            t0 = time.perf_counter()
            for img in images:
                ok, buf = cv2.imencode(".png", img, params)
                if rep == 0:
                    sizes[name] += len(buf)
            times[name].append(time.perf_counter() - t0)
    base_t, base_s = np.median(times["OpenCV default"]), sizes["OpenCV default"]
    print(f"{len(images)} photos of 1.0 MP, {args.reps} passes; medians")
    print(f"{'setting':<32} {'ms/image':>9} {'time':>6} {'MB/image':>9} {'size':>6}")
    for name in OPTIONS:
        t = np.median(times[name])
        print(f"{name:<32} {1000 * t / len(images):9.1f} {t / base_t:6.2f} {sizes[name] / len(images) / 1e6:9.2f} "
              f"{sizes[name] / base_s:6.2f}")


if __name__ == "__main__":
    main()
