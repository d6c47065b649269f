"""Sharpen images in pieces that fit a memory budget: whole when they fit, tiles only when they do not.

A student's tiles carry a halo of at least its receptive radius, so tiled output equals whole-image output
(to float rounding). The tile is chosen from the image's size and a memory budget (``memory_budget``: half
of what the GPU has free, ``CPU_BUDGET`` on the CPU) and the model's memory per pixel
(``bytes_per_pixel``: measured once on CUDA, estimated from the layers on the CPU).

Pixels stay 8/16-bit (uint8/uint16, (N, H, W, C), C = 1..4) until a tile enters the model and go back into
an 8/16-bit buffer as it leaves, rounded as ``shared.imageio.from_model_output`` rounds (alpha copied,
gray as the mean of the three outputs): a large image needs its two integer buffers and one tile's work,
never a float copy of itself. On a GPU nothing here waits for the device: the check that fp16 output is
finite is made once per call, not per tile.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .inference import LoadedModel

log = logging.getLogger(__name__)
CPU_BUDGET = (512 << 20, 1 << 30)   # a forward pass on the CPU may use one float copy of its images, within these
MIN_TILE = 64
_PROBE_SIDE = 256


def memory_budget(device: torch.device, pixels: int = 0) -> int:
    """Bytes a forward pass over ``pixels`` pixels may use on ``device``: half of the GPU memory that is free
    (the driver's free memory plus what torch's cache holds unused); on the CPU one float32 RGB copy of the
    image, at least 512 MiB (a 1.4 MP image goes whole, whatever the student: whole is faster than tiles once
    the allocator keeps its buffers, ``shared.allocator``) and at most 1 GiB, so that a large image needs about
    two float copies of itself in all (its 8-bit buffers, one tile's work)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(0.5 * (free + cached))
    lo, hi = CPU_BUDGET
    return int(min(hi, max(lo, 12 * pixels)))


def _skips_convolutions(net: nn.Module) -> bool:
    """A student whose correction is zero runs only its front end (see ``FourConvStudent.forward``)."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if getattr(net, "front", None) is None or not convs:
        return False
    return not any(bool(p.detach().any()) for p in convs[-1].parameters())


def _estimated_bytes_per_pixel(net: nn.Module, teacher: bool) -> float:
    """Peak bytes per input pixel of a float32 forward, from the layers (measured on 1-4 MP images on the
    CPU: 100-520 B/px for the students, 950 for the teacher; these estimates are at or above those)."""
    if teacher:
        return 1200.0
    floats = 12.0                                              # input, output and their float copies
    if getattr(net, "front", None) is not None:
        floats += 24.0                                         # the Wiener front end's FFT buffers
    if getattr(getattr(net, "spec", None), "bank", False) and not _skips_convolutions(net):
        floats += 8.0                                          # a bank's kernel spectra and one more filtered
                                                               # copy (its filters run one at a time)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if convs and not _skips_convolutions(net):
        scale = int(getattr(net, "scale", 1))
        widest = max(c.in_channels + c.out_channels for c in convs) / scale ** 2
        floats += 1.5 * widest                                 # a layer's input and output, and a temporary
    return 4.0 * floats


def _measured_bytes_per_pixel(model: "LoadedModel") -> float:
    """Peak CUDA memory of one forward pass on a probe image, per pixel, with a margin of 1.5."""
    side = max(_PROBE_SIDE, model.scale)
    x = torch.rand(1, 3, side, side, device=model.device)
    hints = _dummy_hints(model, 1)
    torch.cuda.synchronize(model.device)
    base = torch.cuda.memory_allocated(model.device)
    torch.cuda.reset_peak_memory_stats(model.device)
    _forward(model, x, hints, None, amp=model.amp)
    peak = torch.cuda.max_memory_allocated(model.device) - base
    return 1.5 * max(peak, 1) / side ** 2


def bytes_per_pixel(model: "LoadedModel") -> float:
    """Peak bytes per pixel of one forward pass of ``model`` (cached on the model)."""
    if model.forward_bytes_per_pixel is None:
        if model.device.type == "cuda":
            model.forward_bytes_per_pixel = _measured_bytes_per_pixel(model)
        else:
            model.forward_bytes_per_pixel = _estimated_bytes_per_pixel(model.net, model.is_teacher)
    return model.forward_bytes_per_pixel


def fits_whole(model: "LoadedModel", images: int, height: int, width: int, budget: int | None = None) -> bool:
    """Whether ``images`` images of this size go through the model in one forward pass within the budget."""
    budget = budget or model.memory_budget or memory_budget(model.device, images * height * width)
    return images * height * width * bytes_per_pixel(model) <= budget


def _dummy_hints(model: "LoadedModel", n: int) -> torch.Tensor | None:
    if not model.uses_hint:
        return None
    typical = [1.5, 0.002, 0.002, 0.25, 0.25, 0.25, 2.25, 0.0, 2.25]   # σ, noise, shape, covariance
    return torch.tensor([typical[:model.hint_size]] * n, device=model.device)


def choose_tile(model: "LoadedModel", images: int, height: int, width: int,
                budget: int | None = None) -> tuple[int, int] | None:
    """(tile height, tile width) for images of this size, or None when they go whole. Tiles are as large as
    the budget allows (with their halo) and balanced so the last row and column are not slivers."""
    budget = budget or model.memory_budget or memory_budget(model.device, images * height * width)
    if fits_whole(model, images, height, width, budget):
        return None
    s, halo = model.scale, _halo(model)
    area = budget / bytes_per_pixel(model) / images            # pixels one tile may have, halo included
    side = max(MIN_TILE, int(math.sqrt(area)) - 2 * halo) // s * s
    rows, cols = math.ceil(height / side), math.ceil(width / side)
    return _round_up(math.ceil(height / rows), s), _round_up(math.ceil(width / cols), s)


def _round_up(n: int, s: int) -> int:
    return -(-n // s) * s


def _halo(model: "LoadedModel") -> int:
    s = model.scale
    return 0 if model.is_teacher else math.ceil(model.net.receptive_radius / s) * s


def _forward(model: "LoadedModel", x: torch.Tensor, hints: torch.Tensor | None, finite: list | None,
             amp: bool) -> torch.Tensor:
    """One forward pass of an NCHW float batch whose sides are multiples of ``model.scale``; ``hints``: one
    row per image of the batch. Under fp16 autocast, whether the output is finite is and-ed into
    ``finite[0]`` (a device tensor: no wait here)."""
    x = x.to(model.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    run = model.net if hints is None else (lambda t: model.net(t, hints))  # noqa: E731
    with torch.inference_mode():
        if amp:
            with torch.autocast("cuda", dtype=torch.float16):
                y = run(x)
            if finite is not None:
                ok = torch.isfinite(y).all()
                finite[0] = ok if finite[0] is None else finite[0] & ok
            return y.float()
        return run(x).float()


class _Source:
    """Float NCHW regions of an (N, H, W, C) buffer: integer pixels divided by their scale, gray replicated,
    or float RGB as it is; reflect-padded (as the whole image would be) where a region passes the edge."""

    def __init__(self, pixels: torch.Tensor, padded_hw: tuple[int, int], device: torch.device):
        self.pixels, self.device = pixels, device
        self.n, self.h, self.w, self.c = pixels.shape
        self.hp, self.wp = padded_hw
        self.scale = None if pixels.dtype.is_floating_point else float(torch.iinfo(pixels.dtype).max)
        ph, pw = self.hp - self.h, self.wp - self.w
        self.mode = "reflect" if ph < self.h and pw < self.w else "replicate"  # reflect needs pad < size

    def region(self, a: int, b: int, c: int, d: int) -> torch.Tensor:
        t = self.pixels[:, a:min(b, self.h), c:min(d, self.w)].to(self.device, non_blocking=True)
        t = t.permute(0, 3, 1, 2)
        if self.scale is not None:
            t = t.float() / self.scale        # as to_model_input: float32 division
        t = t[:, :3] if self.c >= 3 else t[:, :1].expand(-1, 3, -1, -1)
        pb, pd = b - min(b, self.h), d - min(d, self.w)
        if pb or pd:
            t = F.pad(t, (0, pd, 0, pb), mode=self.mode)
        return t


class _Sink:
    """Writes finished float tiles into the output: an integer buffer like the input (rounded as
    ``from_model_output``: clipped, gray as the mean of the three, alpha copied) or a float NCHW tensor."""

    def __init__(self, like: torch.Tensor, out: torch.Tensor | None, float_out: bool):
        self.float_out = float_out
        n, h, w, c = like.shape
        if float_out:
            self.out = out if out is not None else torch.empty((n, 3, h, w), dtype=torch.float32, device=like.device)
        else:
            self.out = out if out is not None else torch.empty_like(like)
            if c in (2, 4):
                self.out[..., -1] = like[..., -1]
        self.gray = c in (1, 2)
        self.colors = 1 if self.gray else 3
        self.scale = None if float_out else float(torch.iinfo(like.dtype).max)
        self.h, self.w = h, w

    def write(self, y: torch.Tensor, y0: int, y1: int, x0: int, x1: int) -> None:
        y1, x1 = min(y1, self.h), min(x1, self.w)
        y = y[:, :, :y1 - y0, :x1 - x0].clamp(0.0, 1.0)
        if self.float_out:
            self.out[:, :, y0:y1, x0:x1] = y.to(self.out.device, non_blocking=True)
            return
        if self.gray:
            y = y.mean(dim=1, keepdim=True)
        q = torch.round(y * self.scale).to(self.out.dtype).permute(0, 2, 3, 1)
        self.out[:, y0:y1, x0:x1, :self.colors] = q.to(self.out.device, non_blocking=True)


def _tile_jobs(hp: int, wp: int, th: int, tw: int, halo: int) -> dict:
    """Tiles grouped by input shape: (h, w) -> [(y0, y1, x0, x1, a, c)], output rows y0:y1 and columns
    x0:x1, read from a:a+h, c:c+w (the tile and its halo, cut at the image's edges)."""
    jobs: dict[tuple[int, int], list[tuple[int, int, int, int, int, int]]] = {}
    for y0 in range(0, hp, th):
        for x0 in range(0, wp, tw):
            y1, x1 = min(y0 + th, hp), min(x0 + tw, wp)
            a, b = max(0, y0 - halo), min(hp, y1 + halo)
            c, d = max(0, x0 - halo), min(wp, x1 + halo)
            jobs.setdefault((b - a, d - c), []).append((y0, y1, x0, x1, a, c))
    return jobs


def _blend(y: torch.Tensor, x: torch.Tensor, gains: torch.Tensor | None) -> torch.Tensor:
    """Part of the correction for images whose gain (``LoadedModel.guard_gain``) is below 1."""
    if gains is None:
        return y
    g = gains.to(y).view(-1, 1, 1, 1)
    return torch.where(g < 1.0, x + g * (y - x), y)


def _exact_tiles(model, src: _Source, sink: _Sink, tile: tuple[int, int], batch: int, hints, gains,
                 finite, amp) -> None:
    """Student: tiles with a halo of at least the receptive radius, so the result equals one whole pass."""
    halo = _halo(model)
    th, tw = tile
    for (h, w), group in _tile_jobs(src.hp, src.wp, th, tw, halo).items():
        for i in range(0, len(group), batch):
            part = group[i:i + batch]
            inp = torch.cat([src.region(a, a + h, c, c + w) for (_, _, _, _, a, c) in part])
            res = _forward(model, inp, None if hints is None else hints.repeat(len(part), 1), finite, amp)
            g = None if gains is None else gains.repeat(len(part))
            res = _blend(res, inp.to(res.device), g)
            for k, (y0, y1, x0, x1, a, c) in enumerate(part):
                rows = slice(k * src.n, (k + 1) * src.n)
                sink.write(res[rows, :, y0 - a:y1 - a, x0 - c:x1 - c], y0, y1, x0, x1)


def _ramp(n: int, overlap: int) -> torch.Tensor:
    return torch.minimum(torch.arange(n) + 1.0, torch.arange(n, 0, -1.0)).clamp(max=overlap + 1)


def _blended_tiles(model, src: _Source, sink: _Sink, tile: int, overlap: int, batch: int, hints, gains,
                   finite, amp) -> None:
    """Teacher: overlapping tiles blended with a linear ramp (its receptive field is too large to be exact);
    the float image and its accumulators are held whole."""
    x = src.region(0, src.hp, 0, src.wp)
    s = model.scale
    tile = max(s, tile // s * s)
    _, _, H, W = x.shape
    if H <= tile and W <= tile:
        sink.write(_blend(_forward(model, x, hints, finite, amp), x.to(model.device), gains), 0, H, 0, W)
        return
    th, tw = min(tile, H), min(tile, W)
    weight = (_ramp(th, overlap)[:, None] * _ramp(tw, overlap)[None, :]).to(x)
    acc = torch.zeros_like(x)
    norm = torch.zeros((1, 1, H, W), dtype=x.dtype, device=x.device)
    starts = lambda n, t: sorted({*range(0, max(n - t, 0) + 1, t - overlap), max(n - t, 0)})  # noqa: E731
    coords = [(y, z) for y in starts(H, th) for z in starts(W, tw)]
    for i in range(0, len(coords), batch):
        part = coords[i:i + batch]
        inp = torch.cat([x[:, :, y:y + th, z:z + tw] for y, z in part])
        hint_rows = None if hints is None else hints.repeat(len(part), 1)
        res = _forward(model, inp, hint_rows, finite, amp).to(x.device)
        for k, (y, z) in enumerate(part):
            acc[:, :, y:y + th, z:z + tw] += res[k * src.n:(k + 1) * src.n] * weight
            norm[:, :, y:y + th, z:z + tw] += weight
    sink.write(_blend(acc / norm, x, gains), 0, H, 0, W)


@torch.inference_mode()
def run_tiled(model: "LoadedModel", pixels: torch.Tensor, hints: torch.Tensor | None,
              gains: torch.Tensor | None, *, tile: int | None = None, overlap: int = 64, batch: int | None = None,
              float_out: bool = False) -> torch.Tensor:
    """Sharpen an (N, H, W, C) buffer (uint8/uint16 pixels, or float RGB in [0, 1]) on ``model.device``.

    ``hints``: (N, k) on the model's device or None; ``gains``: (N,) guard gains or None (all 1). ``tile``:
    a square tile side (``batch`` tiles a forward pass), or None to choose from the memory budget. Returns
    the same layout, dtype and device as ``pixels`` (``float_out``: float (N, 3, H, W) in [0, 1] instead).
    fp16 output that is not finite is computed again in fp32 (checked once, at the end)."""
    n, h, w, _c = pixels.shape
    s = model.scale
    hp, wp = _round_up(h, s), _round_up(w, s)
    if tile is None:
        planned = choose_tile(model, n, hp, wp)
        tile_hw, batch = planned or (hp, wp), batch or 1
    else:
        tile_hw, batch = (max(s, tile // s * s),) * 2, batch or 8
    amp = model.device.type == "cuda" and model.amp

    def run(amp: bool) -> torch.Tensor:
        src = _Source(pixels, (hp, wp), model.device)
        sink = _Sink(pixels, None, float_out)
        finite = [None]
        if model.is_teacher:
            side = tile if tile is not None else max(tile_hw)
            _blended_tiles(model, src, sink, side, overlap, batch, hints, gains, finite, amp)
        else:
            _exact_tiles(model, src, sink, tile_hw, batch, hints, gains, finite, amp)
        if finite[0] is not None and not bool(finite[0]):   # the one wait for the device
            return None
        return sink.out

    out = run(amp)
    if out is None:
        log.warning("fp16 output of %s was not finite: computed again in fp32", model.arch)
        out = run(False)
    return out
