"""A small network that reads how blurred an image is: the σ of a Gaussian blur, from a gray image.

Pixel-unshuffle by 2, six 3x3 convolutions (two of them stride 2), then two maps at 1/8 resolution: a log σ
reading and a weight. The image's reading is the softmax-weighted mean of the readings, so flat regions,
where blur cannot be seen, get little say. Input is gray minus its 9x9 local mean (brightness does not
matter, only edges and texture do).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BlurEstimatorNet(nn.Module):
    multiple = 8  # the input's sides must be multiples of this

    def __init__(self, widths: tuple[int, int, int] = (32, 48, 64)):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            nn.Conv2d(4, a, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(a, a, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(b, c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, 2, 1))

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) gray in [0, 1] -> (N,) log σ."""
        detail = gray - F.avg_pool2d(gray, 9, 1, 4, count_include_pad=False)
        out = self.body(F.pixel_unshuffle(detail * 8.0, 2))
        reading, weight = out[:, 0].flatten(1), out[:, 1].flatten(1)
        return (torch.softmax(weight, dim=1) * reading).sum(dim=1)
