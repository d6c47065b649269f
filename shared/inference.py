"""Load a model file and sharpen images with it: device choice, mixed precision, batched tiled inference.

A model file is ``torch.save`` of a dict: ``format``, ``arch``, ``state_dict`` and ``meta`` (training config,
validation metrics, teacher init, creation time). Its sha256 is computed when it is loaded.

Images are float32 HWC RGB in [0, 1] (numpy) at the edges; NCHW tensors inside.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import nets
from .blur_estimate import estimate_hint
from .storage import atomic_write

MODEL_FORMAT = "sharpen-model/1"
PACKAGE_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = PACKAGE_MODELS / "student-default.pt"


class ModelFileError(ValueError):
    """A model file that is missing, not a Sharpen model, or of an unknown architecture."""


def default_model_path() -> Path:
    """The model shipped with the installation (found from the package, not the working directory)."""
    return DEFAULT_MODEL


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU. Call it in the process that will run the model."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(path: Path, net: nn.Module, arch: str, meta: dict) -> str:
    """Write a model file atomically; returns its sha256."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "arch": arch, "state_dict": state, "meta": meta}, buf)
    atomic_write(path, buf.getvalue(), mode=0o644)  # a model file is meant to be shared
    return file_sha256(path)


@dataclass
class LoadedModel:
    """A network ready to run, with what is known about it."""
    net: nn.Module
    arch: str
    meta: dict
    sha256: str
    path: Path
    device: torch.device
    amp: bool = True                 # mixed precision on CUDA (fp32 fallback when output is not finite)
    stats: dict = field(default_factory=lambda: {"fp32_fallbacks": 0})

    @property
    def scale(self) -> int:
        return int(self.net.scale)

    @property
    def is_teacher(self) -> bool:
        return self.arch in nets.TEACHERS

    @property
    def uses_hint(self) -> bool:
        """Whether the network takes an estimate of the image's degradation as a second input."""
        return bool(getattr(self.net, "uses_hint", False))

    @property
    def hint_size(self) -> int:
        """Numbers the network is told per image: 1 (blur σ) or 3 (σ and two noise readings); 0 for none."""
        return int(getattr(self.net, "hint_size", 0)) if self.uses_hint else 0

    @property
    def guard(self) -> tuple[float, float] | None:
        """(lo, hi): an image whose blur reads σ̂ ≤ lo is left as it is, one reading ≥ hi gets the whole
        correction, linear in between (``meta["guard"]``, chosen on the tuning split by ``choose_guard``):
        a photo that reads as sharp must not be "sharpened" into grain and halos."""
        g = self.meta.get("guard")
        return (float(g[0]), float(g[1])) if g else None

    def guard_gain(self, hint: "list[float] | float | None") -> float:
        """How much of the network's correction an image with this hint gets (1.0 without a guard)."""
        if self.guard is None or hint is None:
            return 1.0
        sigma = hint[0] if isinstance(hint, (list, tuple)) else hint
        lo, hi = self.guard
        return float(min(1.0, max(0.0, (sigma - lo) / max(hi - lo, 1e-6))))

    def estimate_hint(self, rgb) -> list[float] | None:
        """What this network is told about a float HWC RGB image (None when it takes no hint)."""
        return estimate_hint(rgb, self.hint_size, self.device) if self.uses_hint else None


def load_model(path: Path | str | None = None, device: str | torch.device = "auto") -> LoadedModel:
    """Load a model file (default: ``default_model_path()``) onto ``device`` in eval mode."""
    path = Path(path) if path else default_model_path()
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a model file"
        raise ModelFileError(f"{path} is not a readable Sharpen model file ({exc.__class__.__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a Sharpen model file (expected format {MODEL_FORMAT})")
    arch = payload["arch"]
    if arch not in nets.ARCHITECTURES:
        raise ModelFileError(f"{path}: unknown architecture {arch!r}")
    net = nets.build(arch, teacher_init="random")
    net.load_state_dict(payload["state_dict"])
    dev = device if isinstance(device, torch.device) else choose_device(device)
    net = net.to(dev).eval().to(memory_format=torch.channels_last)
    return LoadedModel(net=net, arch=arch, meta=payload.get("meta", {}), sha256=file_sha256(path),
                       path=path, device=dev)


Hint = "list[float] | float | None"


def _forward(model: LoadedModel, x: torch.Tensor, hint: Hint = None) -> torch.Tensor:
    """One forward pass of an NCHW batch whose sides are multiples of ``model.scale``; every image of the
    batch is told the same ``hint``."""
    x = x.to(model.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    run = model.net
    if model.uses_hint:
        values = torch.tensor(hint if isinstance(hint, (list, tuple)) else [hint], dtype=torch.float32)
        h = values.to(model.device).expand(x.shape[0], -1)
        run = lambda t: model.net(t, h)  # noqa: E731
    with torch.inference_mode():
        if model.device.type == "cuda" and model.amp:
            with torch.autocast("cuda", dtype=torch.float16):
                y = run(x)
            if torch.isfinite(y).all():
                return y.float()
            model.stats["fp32_fallbacks"] += 1
        return run(x).float()


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # reflect needs pad < size; replicate covers tiny images
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


def _tiles(length: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _exact_tiled(model: LoadedModel, x: torch.Tensor, tile: int, batch: int, hint: Hint) -> torch.Tensor:
    """Student: tiles with a halo of at least the receptive radius, so the result equals one whole pass
    (bit for bit up to float rounding in fp32; under fp16 autocast on a GPU, to fp16 rounding)."""
    s = model.scale
    halo = math.ceil(model.net.receptive_radius / s) * s
    tile = max(s, tile // s * s)
    _, _, H, W = x.shape
    out = torch.empty_like(x)
    jobs: dict[tuple[int, int], list[tuple[int, int, int, int, int, int]]] = {}
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
            a, b = max(0, y0 - halo), min(H, y1 + halo)
            c, d = max(0, x0 - halo), min(W, x1 + halo)
            jobs.setdefault((b - a, d - c), []).append((y0, y1, x0, x1, a, c))
    for (h, w), group in jobs.items():
        for i in range(0, len(group), batch):
            part = group[i:i + batch]
            inp = torch.cat([x[:, :, a:a + h, c:c + w] for (_, _, _, _, a, c) in part])
            res = _forward(model, inp, hint).to(x.device)
            for k, (y0, y1, x0, x1, a, c) in enumerate(part):
                out[:, :, y0:y1, x0:x1] = res[k:k + 1, :, y0 - a:y1 - a, x0 - c:x1 - c]
    return out


def _blended_tiled(model: LoadedModel, x: torch.Tensor, tile: int, overlap: int, batch: int,
                   hint: Hint = None) -> torch.Tensor:
    """Teacher: overlapping tiles blended with a linear ramp (its receptive field is too large to be exact)."""
    s = model.scale
    tile = max(s, tile // s * s)
    _, _, H, W = x.shape
    if H <= tile and W <= tile:
        return _forward(model, x, hint).to(x.device)
    th, tw = min(tile, H), min(tile, W)
    ramp = lambda n: torch.minimum(torch.arange(n) + 1.0, torch.arange(n, 0, -1.0)).clamp(max=overlap + 1)  # noqa
    weight = (ramp(th)[:, None] * ramp(tw)[None, :]).to(x)
    acc = torch.zeros_like(x)
    norm = torch.zeros((1, 1, H, W), dtype=x.dtype, device=x.device)
    coords = [(y0, x0) for y0 in _tiles(H, th, th - overlap) for x0 in _tiles(W, tw, tw - overlap)]
    for i in range(0, len(coords), batch):
        part = coords[i:i + batch]
        res = _forward(model, torch.cat([x[:, :, y:y + th, z:z + tw] for y, z in part]), hint).to(x.device)
        for k, (y, z) in enumerate(part):
            acc[:, :, y:y + th, z:z + tw] += res[k:k + 1] * weight
            norm[:, :, y:y + th, z:z + tw] += weight
    return acc / norm


@torch.inference_mode()
def sharpen_tensor(model: LoadedModel, x: torch.Tensor, *, tile: int = 512, overlap: int = 64,
                   batch: int = 8, hint: Hint = None) -> torch.Tensor:
    """Sharpen a (1,3,H,W) float tensor in [0,1] of any size in bounded memory; returns (1,3,H,W) clipped.

    A hinted network gets the degradation estimated once from the whole image (or ``hint`` when given:
    ``LoadedModel.estimate_hint``), so every tile of the image is sharpened alike; a model with a guard
    (``LoadedModel.guard``) applies only part of its correction to images that read as nearly sharp.
    """
    if model.uses_hint and hint is None:
        hint = model.estimate_hint(x[0].permute(1, 2, 0).float())
    gain = model.guard_gain(hint)
    if gain == 0.0:
        return x.float().clamp(0.0, 1.0)
    xp, h, w = _pad_to(x.float(), model.scale)
    if model.is_teacher:
        y = _blended_tiled(model, xp, tile, overlap, batch, hint)
    else:
        y = _exact_tiled(model, xp, tile, batch, hint)
    y = y[:, :, :h, :w]
    if gain < 1.0:
        y = x.float() + gain * (y - x.float())
    return y.clamp_(0.0, 1.0)


def sharpen_array(model: LoadedModel, rgb: np.ndarray, **kw) -> np.ndarray:
    """Sharpen one float32 HWC RGB image in [0,1]; returns the same layout."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    return sharpen_tensor(model, x, **kw)[0].permute(1, 2, 0).cpu().numpy()
