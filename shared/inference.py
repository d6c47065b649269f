"""Load a model file and sharpen images with it: device choice, mixed precision, batched tiled inference.

A model file is ``torch.save`` of a dict: ``format``, ``arch``, ``state_dict`` and ``meta`` (training config,
validation metrics, teacher init, creation time). Its sha256 is computed when it is loaded.

The worker and ``sharpen enhance`` hand over 8/16-bit pixels (``sharpen_pixels``): the degradation is read
from them on the model's device and they are sharpened whole, or in tiles when memory requires
(``shared.tiled``). ``sharpen_tensor`` / ``sharpen_array`` take float32 RGB in [0, 1] (NCHW tensors, HWC
numpy).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import nets
from .allocator import keep_freed_memory
from .blur_estimate import REGION, estimate_hint, hints_on_device, rgb_to_gray
from .storage import atomic_write
from .tiled import run_tiled

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
    memory_budget: int | None = None            # bytes a forward pass may use (None: ``tiled.memory_budget``)
    forward_bytes_per_pixel: float | None = field(default=None, repr=False)   # cached by ``tiled``

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

    def without_guard(self) -> "LoadedModel":
        """The same network (shared, not loaded again) serving its whole correction to every image."""
        return replace(self, meta={k: v for k, v in self.meta.items() if k != "guard"})

    def guard_gain(self, hint: "list[float] | float | None") -> float:
        """How much of the network's correction an image with this hint gets (1.0 without a guard)."""
        if self.guard is None or hint is None:
            return 1.0
        sigma = hint[0] if isinstance(hint, (list, tuple)) else hint
        lo, hi = self.guard
        return float(min(1.0, max(0.0, (sigma - lo) / max(hi - lo, 1e-6))))

    def estimate_hint(self, rgb) -> list[float] | None:
        """What this network is told about a float HWC RGB image (None when it takes no hint). A tensor on a
        GPU is read there; on the CPU, with OpenCV (the readings the models were tuned with)."""
        if not self.uses_hint:
            return None
        if torch.is_tensor(rgb) and rgb.device.type == "cpu":
            rgb = rgb.numpy()
        return estimate_hint(rgb, self.hint_size, self.device)


def load_model(path: Path | str | None = None, device: str | torch.device = "auto", *,
               memory_budget: int | None = None) -> LoadedModel:
    """Load a model file (default: ``default_model_path()``) onto ``device`` in eval mode; ``memory_budget``:
    bytes a forward pass may use (default: ``shared.tiled.memory_budget``)."""
    keep_freed_memory()   # the process that loads a model reuses its buffers image after image
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
                       path=path, device=dev, memory_budget=memory_budget)


Hint = "list[float] | float | None"


def estimate_hints(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor | None:
    """(N, k) hints of an (N, H, W, C) batch of 8/16-bit pixels, on the model's device (None when the model
    takes none). Only the central ``REGION``² pixels are read. On a GPU they are read there with torch ops
    (``shared.blur_estimate.hints_on_device``), on the CPU with OpenCV, as the models were tuned."""
    if not model.uses_hint:
        return None
    n, h, w, c = pixels.shape
    y, x = (h - min(h, REGION)) // 2, (w - min(w, REGION)) // 2
    crop = pixels[:, y:y + REGION, x:x + REGION]
    scale = float(torch.iinfo(pixels.dtype).max) if not pixels.dtype.is_floating_point else 1.0
    if model.device.type == "cpu":
        rows = []
        for img in crop.cpu():
            rgb = img.numpy().astype(np.float32) / np.float32(scale)     # as to_model_input
            rgb = np.repeat(rgb[..., :1], 3, axis=2) if c in (1, 2) else rgb[..., :3]
            rows.append(estimate_hint(rgb, model.hint_size))
        return torch.tensor(rows, dtype=torch.float32)
    rgb = crop.to(model.device, non_blocking=True).float() / scale
    gray = rgb_to_gray(rgb[..., :1].expand(-1, -1, -1, 3) if c in (1, 2) else rgb[..., :3])
    return hints_on_device(gray, model.hint_size)


def _as_rows(model: LoadedModel, hint, n: int) -> torch.Tensor | None:
    """A hint given by the caller (one for all images, or one per image) as (n, k) on the model's device."""
    if not model.uses_hint or hint is None:
        return None
    t = torch.as_tensor(hint, dtype=torch.float32)
    t = t.reshape(1, -1).expand(n, -1) if t.ndim < 2 else t
    return t.to(model.device)


def _gains(model: LoadedModel, hints: torch.Tensor | None) -> list[float]:
    return [model.guard_gain(row) for row in hints.tolist()] if hints is not None and model.guard else []


@torch.inference_mode()
def sharpen_pixels(model: LoadedModel, pixels, *, hints=None, tile: int | None = None,
                   batch: int | None = None) -> torch.Tensor:
    """Sharpen 8/16-bit pixels: (H, W, C) or a same-size batch (N, H, W, C), uint8 or uint16 (a numpy array
    or a tensor on any device), C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).

    Returns pixels of the same shape, dtype and device, as ``from_model_output`` would round the float
    output (alpha copied, never sharpened). The hints are read on the model's device (``estimate_hints``)
    unless given ((k,) for all, or (N, k)); images that read as sharp under the model's guard come back as
    they are. Whole when the batch fits the memory budget, else in tiles (``shared.tiled``)."""
    px = torch.from_numpy(np.ascontiguousarray(pixels)) if isinstance(pixels, np.ndarray) else pixels
    single = px.ndim == 3
    px = px[None] if single else px
    out = _sharpen_batch(model, px, hints, tile, batch, float_out=False)
    return out[0] if single else out


def _sharpen_batch(model: LoadedModel, px: torch.Tensor, hints, tile, batch, float_out: bool) -> torch.Tensor:
    n = px.shape[0]
    rows = _as_rows(model, hints, n) if hints is not None else estimate_hints(model, px)
    gains = _gains(model, rows)
    if gains and max(gains) == 0.0:   # every image reads as sharp: returned as it is
        if float_out:
            return _to_float(px)
        return px.clone()
    keep = [i for i, g in enumerate(gains) if g > 0.0] if gains and min(gains) == 0.0 else None
    if keep is not None:              # some read as sharp: only the others go through the model
        out = _to_float(px) if float_out else px.clone()
        idx = torch.tensor(keep, device=px.device)
        part = _sharpen_batch(model, px[idx], rows[torch.tensor(keep, device=rows.device)], tile, batch, float_out)
        out[idx] = part
        return out
    g = torch.tensor(gains, device=model.device) if gains and min(gains) < 1.0 else None
    return run_tiled(model, px, rows.to(model.device) if rows is not None else None, g, tile=tile, batch=batch,
                     float_out=float_out)


def _to_float(px: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) pixels or float NHWC → float (N, 3, H, W) clipped to [0, 1] (the unsharpened image)."""
    t = px.permute(0, 3, 1, 2)
    if not t.dtype.is_floating_point:
        t = t.float() / float(torch.iinfo(px.dtype).max)
    t = t[:, :3] if t.shape[1] >= 3 else t[:, :1].expand(-1, 3, -1, -1)
    return t.float().clamp(0.0, 1.0)


@torch.inference_mode()
def sharpen_tensor(model: LoadedModel, x: torch.Tensor, *, tile: int | None = None, overlap: int = 64,
                   batch: int | None = None, hint: Hint = None) -> torch.Tensor:
    """Sharpen an (N, 3, H, W) float tensor in [0, 1] of any size in bounded memory; returns (N, 3, H, W)
    clipped, on ``x``'s device.

    A hinted network gets the degradation estimated once from each whole image (or ``hint`` when given,
    one for all images or one row per image: ``LoadedModel.estimate_hint``), so every tile of an image is
    sharpened alike; a model with a guard (``LoadedModel.guard``) applies only part of its correction to
    images that read as nearly sharp. ``tile`` None: whole when it fits the memory budget, else tiles
    chosen from it (``shared.tiled``)."""
    n = x.shape[0]
    if model.uses_hint and hint is None:
        hint = [model.estimate_hint(img.permute(1, 2, 0).float()) for img in x]
    rows = _as_rows(model, hint, n)
    gains = _gains(model, rows)
    if gains and max(gains) == 0.0:
        return x.float().clamp(0.0, 1.0)
    g = torch.tensor(gains, device=model.device) if gains and min(gains) < 1.0 else None
    return run_tiled(model, x.float().permute(0, 2, 3, 1), rows, g, tile=tile, overlap=overlap, batch=batch,
                     float_out=True)


def sharpen_array(model: LoadedModel, rgb: np.ndarray, **kw) -> np.ndarray:
    """Sharpen one float32 HWC RGB image in [0,1]; returns the same layout."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    return sharpen_tensor(model, x, **kw)[0].permute(1, 2, 0).cpu().numpy()
