"""Sharpen many images with the model kept busy: decode ahead and encode behind on a thread pool.

The main thread runs the model; a pool of threads (sized to the cores: OpenCV, Pillow and zlib release the
GIL) decodes the next images and encodes and writes the finished ones meanwhile. Same-size images that are
decoded by the time the model is free go through it as one batch when the model is on a GPU. Images stay
8/16-bit (``shared.inference.sharpen_pixels``); on CUDA they are copied to the device from pinned memory
without waiting, and a JPEG can be decoded and encoded there (``shared.device_codec``).

What an image is and where it goes is a ``Job`` (``sharpen enhance``: a file; the worker: a claimed
``ImageJob`` row). ``threads=0`` is the serial path: decode, model, encode, one image after another.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .device_codec import encode_jpeg_on_device, encodes_on_device
from .imageio import ImageError, Picture, format_for_path, write_encoded, write_image
from .inference import LoadedModel, estimate_hints, load_model, sharpen_pixels
from .tiled import fits_whole

log = logging.getLogger(__name__)
STAGES = ("decode", "estimate", "model", "score", "encode", "database")
SMALL_TILE = 256  # the second try of an image that ran the GPU out of memory


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(device: torch.device) -> int:
    """Decoding and encoding threads beside a model on ``device``: one per core beside a GPU; half the cores
    beside a model on the CPU, which needs them too (on 2 cores, 1 thread was 5-7 % faster than none or 2)."""
    cores = usable_cores()
    return cores if device.type == "cuda" else max(1, cores // 2)


class StageClock:
    """Seconds spent per stage (summed over threads), thread-safe."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.images = 0
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] += seconds

    def count_image(self) -> None:
        with self._lock:
            self.images += 1

    def line(self) -> str:
        """e.g. ``decode 0.21 s, estimate 0.05 s, model 1.30 s, …`` (every stage, in pipeline order)."""
        return ", ".join(f"{s} {self.seconds.get(s, 0.0):.3f} s" for s in STAGES)


@dataclass
class Frame:
    """A decoded image: pixels (H, W, C) uint8/uint16 as a tensor (host, pinned for a GPU model, or on the
    GPU itself), the format and colour profile it came with; ``extra``: what the job keeps beside it."""
    pixels: torch.Tensor
    format: str
    icc: bytes | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        """Images that can share one forward pass."""
        return tuple(self.pixels.shape), self.pixels.dtype, self.pixels.device


class Job:
    """One image's way through: ``decode`` and ``write`` run on pool threads, ``start``, ``score`` and the
    model on the main thread. ``fail`` gets an exception from any stage; it re-raises the ones that stop
    the whole run (the worker's faults)."""
    name = "image"

    def start(self) -> bool:
        """Before decoding (main thread); False: skip this job."""
        return True

    def decode(self, device: torch.device) -> Frame:
        raise NotImplementedError

    def score(self, frame: Frame, out: torch.Tensor) -> dict:
        """Values measured on the model's device before writing (main thread)."""
        return {}

    def write(self, frame: Frame, out: torch.Tensor) -> dict:
        """Encode and write the sharpened pixels; returns values to record."""
        raise NotImplementedError

    def done(self, values: dict) -> None:
        """After ``write`` (same thread)."""

    def fail(self, exc: BaseException) -> None:
        raise exc


class Overlapped:
    """A pool of ``threads`` threads (0: serial; None: ``default_threads(device)``) and at most ``in_flight``
    images between decoding and written.

    ``run`` returns once every job of the call is through the model; ``drain`` waits for their writes. A
    worker that runs one chunk per task calls ``run`` per chunk, so one chunk's writes overlap the next
    chunk's decoding; the first exception that a job's ``fail`` re-raises stops the work and is raised from
    ``run`` / ``drain`` (``fault``)."""

    def __init__(self, threads: int | None = None, clock: StageClock | None = None, in_flight: int | None = None,
                 batch_images: bool | None = None, device: torch.device | None = None):
        self.threads = default_threads(device or torch.device("cpu")) if threads is None else threads
        self.batch_images = batch_images   # same-size images in one forward pass; None: when the model is on CUDA
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sharpen-io") if self.threads else None
        self.clock = clock or StageClock()
        self.in_flight_max = in_flight or max(2, 2 * self.threads)
        self.in_flight = 0
        self.fault: BaseException | None = None
        self._cond = threading.Condition()

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True)

    # ---------------------------------------------------------------- threads
    def _submit(self, fn, *args) -> Future:
        if self.pool is None:
            fut: Future = Future()
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - delivered through the future, as from a pool
                fut.set_exception(exc)
            return fut
        return self.pool.submit(fn, *args)

    def _release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def _failed(self, job: Job, exc: BaseException) -> None:
        try:
            job.fail(exc)
        except BaseException as fatal:  # noqa: BLE001 - the first one stops the run
            with self._cond:
                self.fault = self.fault or fatal
                self._cond.notify_all()

    def _decode(self, job: Job, device: torch.device) -> Frame:
        with self.clock.stage("decode"):
            frame = job.decode(device)
            if device.type == "cuda" and frame.pixels.device.type == "cpu":
                frame.pixels = frame.pixels.pin_memory()  # copied to the GPU without waiting
        return frame

    def _write(self, job: Job, frame: Frame, out: torch.Tensor, values: dict) -> None:
        try:
            with self.clock.stage("encode"):
                values = {**values, **job.write(frame, out)}
            job.done(values)
            self.clock.count_image()
        except BaseException as exc:  # noqa: BLE001 - handed to the job: fails alone or stops the run
            self._failed(job, exc)
        finally:
            self._release()

    # ---------------------------------------------------------------- main thread
    def _wait_for_room(self) -> None:
        with self._cond:
            while self.in_flight >= self.in_flight_max and self.fault is None:
                self._cond.wait(0.5)
            self.in_flight += 1

    def _raise_fault(self) -> None:
        """Raise the fault that stopped the work, once (the next call starts afresh)."""
        with self._cond:
            fault, self.fault = self.fault, None
        if fault is not None:
            raise fault

    def run(self, model: LoadedModel, jobs: list[Job]) -> None:
        """Sharpen ``jobs``: decode ahead, model on this thread, writes handed to the pool."""
        self._raise_fault()
        todo = deque(jobs)
        decoding: deque[tuple[Job, Future]] = deque()
        ahead = max(1, self.threads)
        try:
            while (todo or decoding) and self.fault is None:
                while todo and len(decoding) < ahead and self.fault is None:
                    job = todo.popleft()
                    try:
                        if not job.start():
                            continue
                    except BaseException as exc:  # noqa: BLE001
                        self._failed(job, exc)
                        continue
                    self._wait_for_room()
                    decoding.append((job, self._submit(self._decode, job, model.device)))
                if not decoding:
                    break
                group = self._next_group(model, decoding)
                if group:
                    self._sharpen(model, group)
        finally:
            for job, fut in decoding:   # stopped by a fault: what was taken goes back
                try:
                    fut.result()
                except BaseException:  # noqa: BLE001 - it is handed back either way
                    pass
                self._release()
                self._failed(job, Abandoned())
        if self.fault is not None:
            self.drain()   # the images still in flight settle (written, or handed back) before it is raised

    def drain(self) -> None:
        """Wait until every write handed to the pool has finished; raises the run's fault."""
        with self._cond:
            while self.in_flight > 0:
                self._cond.wait(0.5)
        self._raise_fault()

    def _next_group(self, model: LoadedModel, decoding: deque) -> list[tuple[Job, Frame]]:
        """The first decoded image and, on a GPU, the same-size ones after it that are decoded already and
        fit one forward pass with it."""
        group: list[tuple[Job, Frame]] = []
        while decoding:
            job, fut = decoding[0]
            if group and not fut.done():
                break
            try:
                frame = fut.result()
            except BaseException as exc:  # noqa: BLE001 - a bad file fails alone (or the job stops the run)
                decoding.popleft()
                self._release()
                self._failed(job, exc)
                if group:
                    break
                continue
            if group:
                first = group[0][1]
                h, w = frame.pixels.shape[:2]
                batches = model.device.type == "cuda" if self.batch_images is None else self.batch_images
                if not batches or frame.key != first.key or not fits_whole(model, len(group) + 1, h, w):
                    break
            decoding.popleft()
            group.append((job, frame))
        return group

    def _sharpen(self, model: LoadedModel, group: list[tuple[Job, Frame]]) -> None:
        frames = [f for _, f in group]
        dev = model.device
        px = frames[0].pixels[None].to(dev, non_blocking=True) if len(frames) == 1 else \
            torch.stack([f.pixels.to(dev, non_blocking=True) for f in frames])
        try:
            with self.clock.stage("estimate"):
                hints = estimate_hints(model, px)
                if hints is not None:
                    hints = hints.cpu()       # the guard reads them: one wait for the device per batch
            with self.clock.stage("model"):
                out = sharpen_within_memory(model, px, hints, ", ".join(j.name for j, _ in group))
            values = []
            for i, (job, frame) in enumerate(group):
                with self.clock.stage("score"):
                    values.append(job.score(frame, out[i]))
            with self.clock.stage("model"):
                host = _to_host(out, [encodes_on_device(f.format, o) for f, o in zip(frames, out)])
        except BaseException as exc:  # noqa: BLE001 - a batch that failed: each image goes on alone
            if len(group) > 1:
                for one in group:
                    self._sharpen(model, [one])
                return
            for job, _ in group:
                self._release()
                self._failed(job, exc)
            return
        for (job, frame), o, v in zip(group, host, values):
            self._submit(self._write, job, frame, o, v)


class Abandoned(Exception):
    """The run stopped (a worker fault) before this image was sharpened."""


def _to_host(out: torch.Tensor, on_device: list[bool]) -> list[torch.Tensor]:
    """Each image of ``out`` on the host (one wait for the device for the batch), or left on the device for
    a write that encodes there."""
    if out.device.type == "cpu":
        return list(out)
    host = []
    for o, keep in zip(out, on_device):
        if keep:
            host.append(o)
        else:
            buf = torch.empty(o.shape, dtype=o.dtype, pin_memory=True)
            buf.copy_(o, non_blocking=True)
            host.append(buf)
    torch.cuda.current_stream(out.device).synchronize()
    return host


def sharpen_within_memory(model: LoadedModel, px: torch.Tensor, hints, name: str) -> torch.Tensor:
    """``sharpen_pixels``; out of GPU memory: each image once more on smaller tiles, then on the CPU, else
    ImageError (a batch that does not fit goes one image at a time first)."""
    try:
        return sharpen_pixels(model, px, hints=hints)
    except torch.cuda.OutOfMemoryError:
        if px.shape[0] > 1:
            torch.cuda.empty_cache()
            return torch.stack([sharpen_within_memory(model, px[i:i + 1], None if hints is None else hints[i:i + 1],
                                                      name)[0] for i in range(px.shape[0])])
        _warn(f"{name}: out of GPU memory; trying again on {SMALL_TILE}-px tiles")
    torch.cuda.empty_cache()
    try:
        return sharpen_pixels(model, px, hints=hints, tile=SMALL_TILE, batch=1)
    except torch.cuda.OutOfMemoryError:
        _warn(f"{name}: out of GPU memory on {SMALL_TILE}-px tiles too; trying on the CPU")
    torch.cuda.empty_cache()
    try:
        cpu = load_model(model.path, "cpu")
        return sharpen_pixels(cpu, px.cpu(), hints=None if hints is None else hints.cpu(), tile=SMALL_TILE,
                              batch=1).to(px.device)
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and "can't allocate memory" not in str(exc):
            raise
        raise ImageError(name, f"too large for this worker: out of memory on the GPU (even in {SMALL_TILE}-px "
                               "tiles) and on the CPU") from exc


def _warn(message: str) -> None:
    log.warning(message)


def host_array(pixels: torch.Tensor) -> np.ndarray:
    """A tensor's pixels as a numpy array (a view when they are on the host)."""
    return pixels.cpu().numpy() if pixels.device.type != "cpu" else pixels.numpy()


def write_output(path, out: torch.Tensor, frame: Frame) -> None:
    """Write sharpened pixels to ``path`` (format from its suffix) atomically: on the GPU for an RGB JPEG
    whose pixels are there (``shared.device_codec``), else through ``shared.imageio``."""
    if encodes_on_device(format_for_path(path), out):
        write_encoded(path, encode_jpeg_on_device(out, frame.icc))
    else:
        write_image(path, Picture(host_array(out), frame.format, frame.icc))
