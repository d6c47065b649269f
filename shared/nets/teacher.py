"""The ResNet18-based teacher and the frozen ResNet18 feature extractor.

Both use torchvision's ``resnet18``. ImageNet weights come only through torchvision's own weights API and
cache (``~/.cache/torch/hub/checkpoints`` or ``$TORCH_HOME``); nothing is downloaded while training here.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F
from torchvision.models import ResNet18_Weights, resnet18

from .wiener import WienerFrontEnd

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not in torchvision's local cache."""


def imagenet_weights_cached() -> Path | None:
    """Path of the cached ResNet18 ImageNet checkpoint, or None when it is not on disk."""
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    path = hub / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    return path if path.is_file() else None


def resolve_init(init: str) -> str:
    """Turn ``auto`` into ``imagenet`` or ``random``; refuse ``imagenet`` when the weights are absent."""
    if init not in ("auto", "imagenet", "random"):
        raise ValueError(f"unknown init {init!r}: use auto, imagenet or random")
    cached = imagenet_weights_cached() is not None
    if init == "imagenet" and not cached:
        url = ResNet18_Weights.IMAGENET1K_V1.url
        raise WeightsUnavailable(
            f"ImageNet weights for resnet18 are not in torchvision's cache. Put {Path(url).name} "
            f"(from {url}) under $TORCH_HOME/hub/checkpoints/ or use --teacher-init random.")
    if init == "auto":
        return "imagenet" if cached else "random"
    return init


def build_resnet18(init: str) -> nn.Module:
    """torchvision resnet18 with ImageNet weights (``imagenet``) or random weights (``random``)."""
    init = resolve_init(init)
    weights = ResNet18_Weights.IMAGENET1K_V1 if init == "imagenet" else None
    return resnet18(weights=weights)


class _Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class ResNet18UNet(nn.Module):
    """Restoration teacher: ResNet18 encoder (FC and pooling removed), U-Net decoder, global residual.

    Input NCHW RGB in [0, 1]; height and width must be multiples of 32 (``scale``).
    """

    scale = 32
    receptive_radius = 256  # large; the teacher is tiled with overlap and blending, not exactly

    def __init__(self, init: str = "random"):
        super().__init__()
        r = build_resnet18(init)
        self.init = resolve_init(init)
        self.norm = _Normalize()
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu)          # 64 @ 1/2
        self.pool = r.maxpool
        self.enc1, self.enc2, self.enc3, self.enc4 = r.layer1, r.layer2, r.layer3, r.layer4  # 64,128,256,512
        self.full = _block(3, 32)                                  # full-resolution detail path
        self.dec4 = _block(512 + 256, 256)
        self.dec3 = _block(256 + 128, 128)
        self.dec2 = _block(128 + 64, 64)
        self.dec1 = _block(64 + 64, 64)
        self.dec0 = _block(64 + 32, 32)
        self.head = nn.Conv2d(32, 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def _up(x, skip):
        return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.correction(x, self.full(x))

    def correction(self, x: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        """The U-Net's output for encoder input ``x`` and full-resolution features ``s0``."""
        s1 = self.stem(self.norm(x))
        s2 = self.enc1(self.pool(s1))
        s3 = self.enc2(s2)
        s4 = self.enc3(s3)
        s5 = self.enc4(s4)
        y = self.dec4(self._up(s5, s4))
        y = self.dec3(self._up(y, s3))
        y = self.dec2(self._up(y, s2))
        y = self.dec1(self._up(y, s1))
        y = self.dec0(self._up(y, s0))
        return self.head(y)


class WienerResNet18UNet(ResNet18UNet):
    """The teacher behind the same Wiener front end as ``student-s2d-wiener``: the U-Net sees the Wiener
    output (its full-resolution path sees the input too) and adds a correction to the Wiener output. Told
    (σ, noise fine, noise coarse) per image like the student; starts as the blind Wiener filter."""

    hint_size = 3
    uses_hint = True

    def __init__(self, init: str = "random"):
        super().__init__(init)
        self.front = WienerFrontEnd()
        self.full = _block(6, 32)

    def forward(self, x: torch.Tensor, hint: torch.Tensor | None = None) -> torch.Tensor:
        if hint is None:
            raise ValueError("this teacher needs the degradation estimate of its input (hint=...)")
        h = hint.reshape(hint.shape[0], -1)
        w = self.front(x, h[:, 0], h[:, 1], h[:, 2])
        return w + self.correction(w, self.full(torch.cat([x, w], dim=1)))


class ResNet18Features(nn.Module):
    """Frozen ResNet18 trunk (FC removed) returning the feature maps used for feature distillation.

    ``layers`` picks which stages to return (1..4 = layer1..layer4). Always in eval mode, never trained.
    """

    def __init__(self, init: str = "auto", layers: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        r = build_resnet18(init)
        self.init = resolve_init(init)
        self.layers = tuple(layers)
        self.norm = _Normalize()
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.stages = nn.ModuleList([r.layer1, r.layer2, r.layer3, r.layer4][: max(self.layers)])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.stem(self.norm(x))
        out = []
        for i, stage in enumerate(self.stages, start=1):
            y = stage(y)
            if i in self.layers:
                out.append(y)
        return out
