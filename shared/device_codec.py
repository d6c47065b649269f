"""JPEG in and out on the GPU (nvJPEG through ``torchvision.io``) when the model runs on CUDA.

Only 8-bit RGB and gray JPEGs are decoded on the device, and only RGB ones encoded there; everything else
(other formats, CMYK, alpha, 16 bits, a JPEG that nvJPEG refuses) goes through ``shared.imageio`` on the
host. The header is checked by ``imageio.peek`` (format, pixel limit, EXIF orientation, colour profile) as
for every image, and the colour profile is written back. This path runs only with CUDA; on the CPU the
decoders of ``shared.imageio`` are used.
"""
from __future__ import annotations

import functools
import warnings

import torch

from .imageio import Header, orient, peek, with_icc


@functools.cache
def _io():
    """torchvision.io when it has its image ops (decode_jpeg/encode_jpeg), else None."""
    try:
        import torchvision.io as io

        io.image._assert_has_image_ops()
        return io
    except Exception:  # noqa: BLE001 - no torchvision, or built without image ops: the host decoders do it
        return None


# torchvision 0.29 marks its image codecs deprecated (in favour of torchcodec) and warns on each call
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io.image")


def decodes_on_device(header: Header, device: torch.device) -> bool:
    return (device.type == "cuda" and _io() is not None and header.format == "JPEG"
            and header.mode in ("RGB", "L"))


def decode_jpeg_on(device: torch.device, data: bytes, name: str, max_pixels: int
                   ) -> tuple[torch.Tensor, bytes | None] | None:
    """(pixels (H, W, C) uint8 on ``device``, colour profile) of a JPEG decoded by nvJPEG, EXIF orientation
    applied; None when it is not a JPEG for the device (decode it on the host). ImageError from the header
    checks, as on the host."""
    header = peek(data, name, max_pixels)
    if not decodes_on_device(header, device) or b"\xff\xd9" not in data[-64:]:  # truncated: the host says why
        return None
    io = _io()
    mode = io.ImageReadMode.RGB if header.mode == "RGB" else io.ImageReadMode.GRAY
    try:
        chw = io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode, device=device)
    except RuntimeError as exc:
        if "CUDA" in str(exc) and "nvjpeg" not in str(exc).lower():
            raise   # the device is in trouble: the worker's fault, not the image's
        return None  # nvJPEG cannot read this one: the host decoder will
    return orient(chw.permute(1, 2, 0), header.orientation).contiguous(), header.icc


def encodes_on_device(fmt: str, pixels: torch.Tensor) -> bool:
    """Whether sharpened pixels in this format are encoded where they are (RGB JPEG on CUDA)."""
    return (fmt == "JPEG" and pixels.device.type == "cuda" and pixels.dtype == torch.uint8
            and pixels.ndim == 3 and pixels.shape[2] == 3 and _io() is not None)


def encode_jpeg_on_device(pixels: torch.Tensor, icc: bytes | None, quality: int = 95) -> bytes:
    """JPEG bytes of (H, W, 3) uint8 pixels on CUDA (the quality ``imageio.encode_image`` uses), with the
    colour profile."""
    data = _io().encode_jpeg(pixels.permute(2, 0, 1).contiguous(), quality=quality)
    return with_icc(data.cpu().numpy().tobytes(), "JPEG", icc)
