"""Small weight files of the helper networks (the blur estimator, the shape reader): a format tag, the state dict
and a meta dict, written atomically and read back with a clear error when missing or of another kind."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from .storage import atomic_write


def save_weights(path: Path, fmt: str, net: nn.Module, meta: dict) -> None:
    """Write ``net``'s weights and ``meta`` under format tag ``fmt`` atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save({"format": fmt, "state_dict": net.state_dict(), "meta": meta}, buf)
    atomic_write(Path(path), buf.getvalue(), mode=0o644)


def load_weights(path: Path | str, fmt: str, net: nn.Module, what: str, how: str) -> nn.Module:
    """``net`` with the weights of ``path`` (a ``fmt`` file), on the CPU, in eval mode. ``what`` names the kind of
    file in errors, ``how`` says how to make one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path} ({how})")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path} is not a Sharpen {what} file (expected format {fmt})")
    net.load_state_dict(payload["state_dict"])
    return net.eval()
