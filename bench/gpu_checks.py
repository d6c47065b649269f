"""Checks of the CUDA-only code paths (run by bench/gpu.sh; the CPU tests cannot reach them).

    python bench/gpu_checks.py

The degradation read on the GPU equals the CPU's, sharpened pixels match the CPU's (fp16 convolutions:
within a couple of levels), a batch equals its images alone, tiles equal the whole image, JPEG decoded and
encoded by nvJPEG matches Pillow/OpenCV, banded scores match, the worker processes a paired chunk of PNG and
JPEG files on the GPU, and a device-side assert is recognised as a sticky error. Prints one line per check
and exits 1 when one fails.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.degrade import Degradation, degrade  # noqa: E402
from shared.inference import estimate_hints, load_model, sharpen_pixels  # noqa: E402

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def photo(w: int, h: int, sigma: float = 2.0, seed: int = 0) -> np.ndarray:
    import cv2
    import skimage.data

    rgb = cv2.resize(skimage.data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    return np.rint(degrade(rgb, Degradation.fixed(sigma), np.random.default_rng(seed))[0] * 255).astype(np.uint8)


def levels(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    d = (a.cpu().int() - b.cpu().int()).abs()
    return int(d.max()), float(d.float().mean())


def model_checks(cuda: torch.device) -> None:
    from shared.tiled import bytes_per_pixel, choose_tile

    for path in (None, ROOT / "models" / "variants" / "s2d-hint-jitter.pt"):
        gpu, cpu = load_model(path, cuda), load_model(path, "cpu")
        px = photo(1155, 866)
        hg = estimate_hints(gpu, torch.from_numpy(px)[None].to(cuda)).cpu()
        hc = estimate_hints(cpu, torch.from_numpy(px)[None])
        check(f"{gpu.arch}: hints on the GPU = CPU", torch.allclose(hg, hc, rtol=1e-4, atol=1e-7), f"{hg} vs {hc}")
        og = sharpen_pixels(gpu, torch.from_numpy(px).to(cuda))
        oc = sharpen_pixels(cpu, px)
        mx, mean = levels(og, oc)
        check(f"{gpu.arch}: GPU pixels = CPU pixels", mx <= 3 and mean < 0.05, f"max {mx} levels, mean {mean:.4f}")
        batch = torch.from_numpy(np.stack([photo(640, 480, s, i) for i, s in enumerate((1.0, 2.0, 3.0, 1.5))])).to(cuda)
        both = sharpen_pixels(gpu, batch)
        worst = max(levels(both[i], sharpen_pixels(gpu, batch[i]))[0] for i in range(4))
        check(f"{gpu.arch}: a batch of 4 = each alone", worst <= 1, f"max {worst} levels")
        mx, _ = levels(sharpen_pixels(gpu, torch.from_numpy(px).to(cuda), tile=200), og)
        check(f"{gpu.arch}: 200-px tiles = whole", mx <= 1, f"max {mx} levels")
        print(f"     {gpu.arch}: {bytes_per_pixel(gpu):.0f} B/px measured; 100 MP goes "
              f"{'whole' if choose_tile(gpu, 1, 10000, 10000) is None else 'in tiles'}")


def codec_checks(cuda: torch.device) -> None:
    from PIL import Image

    from shared.device_codec import decode_jpeg_on, encode_jpeg_on_device
    from shared.imageio import decode_image
    from shared.metrics import score_in_bands

    px = photo(1000, 700)
    buf = io.BytesIO()
    img = Image.fromarray(px)
    exif = img.getexif()
    exif[274] = 6   # rotated: the decoder must turn it
    icc = b"\0" * 128 + b"fake-profile"
    img.save(buf, "JPEG", quality=92, exif=exif, icc_profile=icc)
    data = buf.getvalue()
    host = decode_image(data, "x.jpg")
    dev = decode_jpeg_on(cuda, data, "x.jpg", 100_000_000)
    check("nvJPEG decodes a JPEG", dev is not None and dev[0].is_cuda)
    if dev is not None:
        same_shape = tuple(dev[0].shape) == host.pixels.shape
        mx, mean = levels(dev[0], torch.from_numpy(host.pixels)) if same_shape else (-1, -1)
        check("nvJPEG = Pillow (orientation applied, profile kept)", same_shape and mean < 1.5 and dev[1] == icc,
              f"shape {tuple(dev[0].shape)} vs {host.pixels.shape}, max {mx}, mean {mean:.3f}")
        encoded = encode_jpeg_on_device(dev[0], icc)
        back = decode_image(encoded, "y.jpg")
        _, mean = levels(torch.from_numpy(back.pixels), dev[0])
        check("nvJPEG encodes at quality 95 with the profile", back.icc == icc and mean < 2.0, f"mean {mean:.3f}")
    a, b = torch.from_numpy(px), torch.from_numpy(photo(1000, 700, 0.5))
    sg, sc = score_in_bands(a.to(cuda), b.to(cuda), cuda), score_in_bands(a, b)
    check("SSIM/PSNR on the GPU = CPU", abs(sg[0] - sc[0]) < 1e-5 and abs(sg[1] - sc[1]) < 1e-3, f"{sg} vs {sc}")


def worker_check() -> None:
    import cv2
    from sqlalchemy import select

    from scheduler.enqueue import InputFile, create_batch
    from shared import migrate
    from shared.config import Settings
    from shared.models import DONE, ImageJob
    from worker.pipeline import WorkerContext, process_jobs

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = []
        for i in range(6):
            ext = ".jpg" if i % 2 else ".png"
            sharp, blurry = photo(800, 600, 0.0, i), photo(800, 600, 2.0, i)
            cv2.imwrite(str(tmp / f"s{i}{ext}"), sharp[..., ::-1])
            cv2.imwrite(str(tmp / f"b{i}{ext}"), blurry[..., ::-1])
            inputs.append(InputFile(f"b{i}{ext}", path=tmp / f"b{i}{ext}", reference=InputFile(f"b{i}{ext}", path=tmp / f"s{i}{ext}")))
        settings = Settings.from_env({"STORAGE_ROOT": str(tmp / "var"), "SHARPEN_DEVICE": "cuda"})
        migrate.upgrade(settings.db_url)
        ctx = WorkerContext.from_settings(settings)
        batch_id = create_batch(ctx.db, ctx.storage, inputs, mode="paired")
        with ctx.db.session() as s:
            ids = list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)))
        t0 = time.perf_counter()
        counts = process_jobs(ctx, ids)
        with ctx.db.session() as s:
            jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id)))
        good = all(j.status == DONE and j.ssim > j.input_ssim for j in jobs)
        check("the worker sharpens and scores a paired chunk of PNG and JPEG on the GPU",
              counts == {"done": 6, "failed": 0, "skipped": 0} and good,
              f"{counts} in {time.perf_counter() - t0:.2f} s; {ctx.clock.line()}")


STICKY = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from worker.faults import is_sticky, is_worker_fault
x = torch.zeros(3, device="cuda")
try:
    x[torch.tensor([5], device="cuda")] = 1.0
    torch.cuda.synchronize()
except RuntimeError as exc:
    first = exc
try:
    torch.ones(2, device="cuda").sum().item()
    later = "later CUDA calls work"
except RuntimeError as exc:
    later = "later CUDA calls fail too"
print(is_sticky(first), is_worker_fault(first), later, str(first).splitlines()[0])
"""


def sticky_check() -> None:
    run = subprocess.run([sys.executable, "-c", STICKY, str(ROOT)], capture_output=True, text=True, timeout=120)
    out = run.stdout.strip()
    check("a device-side assert is a sticky worker fault", out.startswith("True True"), out or run.stderr[-500:])


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    cuda = torch.device("cuda")
    for part in (lambda: model_checks(cuda), lambda: codec_checks(cuda), worker_check, sticky_check):
        try:
            part()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other checks
            check(getattr(part, "__name__", "check"), False, f"{exc.__class__.__name__}: {exc}")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
