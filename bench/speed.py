"""Megapixels per second of the default student, the previous default and the teacher, end to end.

    python bench/speed.py [--student models/student-default.pt] [--previous models/variants/s2d-hint-jitter.pt]
                          [--teacher models/teacher.pt] [--size 1024[,2048,...]] [--device cpu|cuda|all]
                          [--seconds 10] [--rounds 5]

All run in this process on the same 8-bit image, already on the device, through
``shared.inference.sharpen_pixels`` as the worker calls it (the degradation read from the pixels on the
device, any front end, whole or tiled as the memory budget decides, channels_last, fp16 autocast on CUDA,
rounded back to 8 bits), timed in turn ``--rounds`` times (the ratio is the median of the rounds' ratios), so
the ratios are honest and robust to a noisy machine. Untrained networks of the
same architecture are used when a file is missing (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import nets  # noqa: E402
from shared.inference import DEFAULT_MODEL, LoadedModel, load_model, sharpen_pixels  # noqa: E402
from trainer.config import PRESETS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def get_model(path: Path, arch: str, device: torch.device) -> LoadedModel:
    if path.is_file():
        return load_model(path, device)
    net = nets.build(arch).to(device).eval().to(memory_format=torch.channels_last)
    return LoadedModel(net=net, arch=arch, meta={}, sha256="untrained", path=path, device=device)


def blurred_photo(size: int) -> torch.Tensor:
    """scikit-image's astronaut at size x size, Gaussian-blurred (σ = 2), as 8-bit HWC pixels: an input every
    model works on (a random image reads as sharp, and a guarded model would return it untouched)."""
    import cv2
    import skimage.data

    from shared.degrade import Degradation, degrade

    rgb = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC)
    import numpy as np

    img, _ = degrade(rgb.astype("float32") / 255, Degradation.fixed(2.0), np.random.default_rng(0))
    return torch.from_numpy(np.rint(img * 255).astype(np.uint8))


def megapixels_per_second(model: LoadedModel, px: torch.Tensor, seconds: float, warm_up: bool = True) -> float:
    for _ in range(2 if warm_up else 0):
        sharpen_pixels(model, px)  # warm-up (allocations, kernel choice, the estimator loaded on the device)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < seconds:
        sharpen_pixels(model, px)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        runs += 1
    return runs * px.shape[0] * px.shape[1] / 1e6 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--previous", type=Path, default=ROOT / "models" / "variants" / "s2d-hint-jitter.pt")
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--teacher", type=Path, default=ROOT / "models" / "teacher.pt")
    ap.add_argument("--size", default="1024", help="square test image sides, pixels, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="minimum timing per model and size, all rounds")
    ap.add_argument("--rounds", type=int, default=5, help="the models are timed in turn this many times: medians")
    args = ap.parse_args()
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device == "cuda" or (args.device == "all" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    sizes = [int(v) for v in args.size.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; 8-bit pixels on the device in and out")
    print(f"{'device':<8} {'size':>6} {'model':<32} {'MP/s':>8} {'s/MP':>8}")
    for dev in devices:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        student = get_model(args.student, PRESETS["realistic"]["arch"], dev)
        previous = get_model(args.previous, "student-s2d-hint", dev)
        teacher = get_model(args.teacher, "teacher", dev)
        for size in sizes:
            px = blurred_photo(size).to(dev)
            models = {student.arch + " (default)": student, previous.arch + " (previous)": previous,
                      teacher.arch: teacher}
            rounds = {label: [] for label in models}
            for i in range(args.rounds):   # in turn, so a machine that speeds up or slows down affects all alike
                for label, model in models.items():
                    rounds[label].append(megapixels_per_second(model, px, args.seconds / args.rounds, i == 0))
            for label, rates in rounds.items():
                r = statistics.median(rates)
                print(f"{dev.type:<8} {size:>6} {label:<32} {r:8.2f} {1 / r:8.3f}", flush=True)
            s, p, t = rounds.values()
            ratio = statistics.median(a / b for a, b in zip(s, p))
            print(f"{dev.type:<8} {size:>6} default/previous {ratio:.2f}x (rounds: "
                  f"{' '.join(f'{a / b:.2f}' for a, b in zip(s, p))}), default/teacher "
                  f"{statistics.median(s) / statistics.median(t):.1f}x  ({name})")


if __name__ == "__main__":
    main()
