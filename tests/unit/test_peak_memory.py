"""A 40 MP image costs at most 2.5 float32 copies of itself above the process's baseline, in `enhance` and in
the worker (paired mode: decoded input and reference, model, write, scores), measured as the high-water mark
of resident memory (VmHWM, reset after a warm-up) in a fresh process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from ..conftest import load_photo

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 7296, 5472          # 39.9 MP
FLOAT_COPY = WIDTH * HEIGHT * 3 * 4

MEASURE = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

def measure(run):
    open("/proc/self/clear_refs", "w").write("5")   # VmHWM := VmRSS
    base = rss("VmRSS")
    run()
    return rss("VmHWM") - base

tmp = Path(sys.argv[2])
from shared.inference import load_model
from shared.cli.enhance import enhance_files
model = load_model(None, "cpu")
assert not enhance_files(model, [(tmp / "small.jpg", tmp / "out" / "small.jpg")])   # warm-up
enhance = measure(lambda: enhance_files(model, [(tmp / "big.jpg", tmp / "out" / "big.jpg")]))

from shared import migrate
from shared.config import Settings
from scheduler.enqueue import InputFile, create_batch
from worker.pipeline import WorkerContext, process_jobs
from shared.models import ImageJob
from sqlalchemy import select
settings = Settings.from_env({"STORAGE_ROOT": str(tmp / "var")})
migrate.upgrade(settings.db_url)
ctx = WorkerContext.from_settings(settings)

def batch(name):
    src = tmp / f"{name}.jpg"
    batch_id = create_batch(ctx.db, ctx.storage, [InputFile(src.name, path=src, reference=InputFile(src.name, path=tmp / f"{name}-sharp.jpg"))],
                            mode="paired")
    with ctx.db.session() as s:
        return batch_id, list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)))

_, ids = batch("small")
assert process_jobs(ctx, ids)["done"] == 1        # warm-up: SQLite, the pool, the scoring
batch_id, ids = batch("big")
counts = {}
worker = measure(lambda: counts.update(process_jobs(ctx, ids)))
with ctx.db.session() as s:
    job = s.get(ImageJob, ids[0])
print(json.dumps({"enhance": enhance, "worker": worker, "counts": counts, "ssim": job.ssim, "error": job.error}))
"""


def write_photo(path: Path, width: int, height: int, blur: float) -> None:
    """A photo at ``width`` x ``height`` (upscaled as 8-bit), blurred by ``blur`` px of the 512-px original."""
    rgb = load_photo("astronaut.png", 512)
    rgb = cv2.GaussianBlur(rgb, (0, 0), blur) if blur else rgb
    small = cv2.cvtColor(np.rint(rgb.clip(0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR),
                [cv2.IMWRITE_JPEG_QUALITY, 90])


def test_a_40_megapixel_image_needs_at_most_two_and_a_half_float_copies(tmp_path):
    for name, (w, h) in (("small", (320, 240)), ("big", (WIDTH, HEIGHT))):
        write_photo(tmp_path / f"{name}-sharp.jpg", w, h, 0)
        write_photo(tmp_path / f"{name}.jpg", w, h, 2.0)
    run = subprocess.run([sys.executable, "-c", MEASURE, str(ROOT), str(tmp_path)], capture_output=True, text=True,
                         timeout=600, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["counts"] == {"done": 1, "failed": 0, "skipped": 0} and got["error"] is None and got["ssim"] > 0.5
    assert cv2.imread(str(tmp_path / "out" / "big.jpg")).shape == (HEIGHT, WIDTH, 3)
    for path in ("enhance", "worker"):
        copies = got[path] / FLOAT_COPY
        assert copies <= 2.5, f"{path}: {got[path] / 2**20:.0f} MiB above the baseline = {copies:.2f} float copies"
