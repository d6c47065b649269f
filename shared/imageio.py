"""Reading, writing and converting images for Sharpen.

Every image enters and leaves the system through this module. Formats are
recognised by their magic bytes (never by file name), the pixel count is
checked from the header before any pixels are decoded, EXIF orientation is
applied on reading, and every failure is reported as an :class:`ImageError`
naming the file and giving a reason a person can understand.

PNG and TIFF are decoded and all formats are encoded with OpenCV (which keeps
16-bit samples and alpha); JPEG, WebP, BMP and 8-bit TIFFs with alpha (which
OpenCV would premultiply) are decoded with Pillow. Pixels are always kept in
RGB(A) order as (H, W, C) arrays of uint8 or uint16.

Importing this module sets Pillow's Image.MAX_IMAGE_PIXELS to None and, if not
already set, OPENCV_IO_MAX_IMAGE_PIXELS: our own max_pixels check replaces both.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

# OpenCV refuses images above its own pixel limit (2**30 by default), read once
# when the library loads. Our own limit is checked first, so lift OpenCV's.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**40))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

# Our own max_pixels check (done before decoding) replaces Pillow's
# decompression-bomb check, which would otherwise pre-empt it with its own
# error or warning.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 100_000_000  # pixel-count limit (w*h)
SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
EXTENSIONS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP",
}

NOT_AN_IMAGE = "not a supported image (PNG, JPEG, TIFF, WebP or BMP expected)"
_TRUNCATED = "truncated file (image data ends early)"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 274  # EXIF tag


class ImageError(ValueError):
    """A file that cannot be used as an image.

    str() reads e.g. 'holiday.jpg: truncated file (image data ends early)'.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(name, reason)  # both in args, so it pickles
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class Picture:
    """Decoded pixels plus the format they came from.

    pixels: (H, W, C) uint8 or uint16; C is 1 (gray), 2 (gray+alpha), 3 (RGB)
    or 4 (RGBA); RGB order; EXIF orientation already applied.
    format: one of SUPPORTED_FORMATS.
    icc: the embedded colour profile, if any (without it a wide-gamut photo's colours would shift).
    """

    pixels: np.ndarray
    format: str
    icc: bytes | None = None   # ICC colour profile of the source, written back to PNG and JPEG outputs

    def __post_init__(self):
        p = self.pixels
        if p.ndim != 3 or p.shape[2] not in (1, 2, 3, 4) or p.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be (H, W, 1..4) uint8 or uint16, got {p.shape} {p.dtype}")
        if self.format not in SUPPORTED_FORMATS:
            raise ValueError(f"format must be one of {SUPPORTED_FORMATS}, got {self.format!r}")

    height = property(lambda self: self.pixels.shape[0])
    width = property(lambda self: self.pixels.shape[1])
    channels = property(lambda self: self.pixels.shape[2])
    bit_depth = property(lambda self: 16 if self.pixels.dtype == np.uint16 else 8)
    has_alpha = property(lambda self: self.channels in (2, 4))
    is_gray = property(lambda self: self.channels in (1, 2))


# ----------------------------------------------------------------- reading

def sniff(data: bytes) -> str | None:
    """The format named by the magic bytes at the start of data, or None."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"II*\0", b"MM\0*")):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _png_exif_and_complete(data: bytes) -> tuple[bytes | None, bool]:
    """Walk the PNG chunks: (payload of an eXIf chunk or None, IEND reached?)."""
    pos, exif = len(_PNG_SIGNATURE), None
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if kind == b"eXIf":
            exif = data[pos + 8:pos + 8 + length]
        elif kind == b"IEND":
            return exif, True
        pos = end
    return exif, False


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first TIFF directory, for TIFFs Pillow cannot open."""
    try:
        bo = "<" if data[:2] == b"II" else ">"
        (ifd,) = struct.unpack(bo + "I", data[4:8])
        (count,) = struct.unpack(bo + "H", data[ifd:ifd + 2])
        size = {}
        for i in range(count):
            tag, typ, _, value = struct.unpack(bo + "HHI4s", data[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
            if tag in (256, 257):
                size[tag] = struct.unpack(bo + ("H" if typ == 3 else "I"), value[:2 if typ == 3 else 4])[0]
        return size[256], size[257]
    except (struct.error, KeyError):
        return None


def _tiff_alpha_8bit(img: Image.Image | None) -> bool:
    """True for 8-bit TIFFs with alpha, which Pillow decodes as stored.

    OpenCV reads these through libtiff's RGBA interface, which premultiplies
    unassociated alpha into the colours (and drops a gray image's alpha).
    """
    if img is None or img.mode not in ("LA", "RGBA"):
        return False
    bits = img.tag_v2.get(258, 8)
    return max(bits) <= 8 if isinstance(bits, tuple) else bits <= 8


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation like PIL.ImageOps.exif_transpose does."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _orientation(img: Image.Image, fmt: str, data: bytes) -> int:
    """EXIF orientation (1..8) from the header; 1 when absent or unreadable."""
    try:
        if fmt == "PNG":  # Pillow's getexif() would decode a PNG to find a late eXIf chunk
            payload = _png_exif_and_complete(data)[0]
            if payload is None:
                return 1
            exif = Image.Exif()
            exif.load(payload)
        else:
            exif = img.getexif()
        value = int(exif.get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block is no reason to reject the picture
        return 1
    return value if 2 <= value <= 8 else 1


def _pillow_error(name: str, e: Exception) -> ImageError:
    """Turn an exception from Pillow into an ImageError a person can read."""
    detail = str(e)
    if "truncated" in detail.lower():
        return ImageError(name, _TRUNCATED)
    if isinstance(e, UnidentifiedImageError):
        detail = "the header cannot be read"
    elif not detail or "decoder" in detail:  # e.g. 'decoder error -2'
        detail = "the pixel data cannot be decoded"
    return ImageError(name, f"corrupt image data: {detail}")


def _pillow_pixels(img: Image.Image, name: str) -> np.ndarray:
    """Decode a Pillow image to an (H, W, C) array with our channel layouts."""
    try:
        img.load()
    except Exception as e:
        raise _pillow_error(name, e) from None
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("CMYK", "YCbCr"):
        img = img.convert("RGB")
    if img.mode in ("I;16", "I;16L", "I;16B"):
        arr = np.array(img).astype(np.uint16)
    elif img.mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.array(img)
    else:
        raise ImageError(name, f"unsupported pixel format {mode}")
    return arr[..., None] if arr.ndim == 2 else arr


def _cv2_pixels(data: bytes, name: str) -> np.ndarray:
    """Decode PNG/TIFF with OpenCV, keeping 16 bits and alpha, as RGB(A)."""
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None:
        raise ImageError(name, "truncated or corrupt image data")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(name, f"unsupported bit depth ({arr.dtype} samples; 8 or 16 bits expected)")
    if arr.ndim == 2:
        return arr[..., None]
    if arr.shape[2] == 3:
        return arr[..., ::-1]
    if arr.shape[2] == 4:
        return arr[..., [2, 1, 0, 3]]
    return arr


def decode_image(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode image bytes into a Picture; name is only used in error messages."""
    if not data:
        raise ImageError(name, "empty file")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError(name, NOT_AN_IMAGE)
    if fmt == "WEBP" and struct.unpack("<I", data[4:8])[0] + 8 > len(data):  # RIFF size
        raise ImageError(name, _TRUNCATED)
    img = size = icc = None
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])  # lazy: reads the header only
        size = img.size
        icc = img.info.get("icc_profile") or None
    except Exception as e:
        size = _tiff_size(data) if fmt == "TIFF" else None  # OpenCV may read TIFFs Pillow cannot
        if size is None:
            raise _pillow_error(name, e) from None
    try:
        w, h = size
        if w * h > max_pixels:  # before anything else: a hostile header must not cost a decode
            raise ImageError(name, f"too large: {w}x{h} pixels, the limit is {max_pixels:,}")
        if fmt == "PNG" and not _png_exif_and_complete(data)[1]:
            raise ImageError(name, _TRUNCATED)
        if fmt in ("JPEG", "WEBP", "BMP") or (fmt == "TIFF" and _tiff_alpha_8bit(img)):
            arr = _orient(_pillow_pixels(img, name), _orientation(img, fmt, data))
        else:
            arr = _cv2_pixels(data, name)
            if fmt == "PNG":  # (OpenCV applies a TIFF's orientation itself)
                if data[25] == 4 and arr.shape[2] == 4:  # IHDR colour type 4: gray+alpha,
                    arr = arr[..., [0, 3]]  # which OpenCV expands to RGBA
                arr = _orient(arr, _orientation(img, fmt, data))
    finally:
        if img is not None:
            img.close()
    return Picture(np.ascontiguousarray(arr), fmt, icc)


@dataclass
class Header:
    """What the first bytes of an image say (``peek``): its format, size, Pillow mode, EXIF orientation and
    colour profile."""
    format: str
    width: int
    height: int
    mode: str
    orientation: int
    icc: bytes | None


def peek(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The header of image bytes, checked as ``decode_image`` checks it (format, pixel limit) without
    decoding the pixels; ImageError when it is not a usable image."""
    if not data:
        raise ImageError(name, "empty file")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError(name, NOT_AN_IMAGE)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            (w, h), mode, icc = img.size, img.mode, img.info.get("icc_profile") or None
            orientation = _orientation(img, fmt, data)
    except Exception as e:
        raise _pillow_error(name, e) from None
    if w * h > max_pixels:
        raise ImageError(name, f"too large: {w}x{h} pixels, the limit is {max_pixels:,}")
    return Header(fmt, w, h, mode, orientation, icc)


def orient(arr, orientation: int):
    """Apply an EXIF orientation (1..8) to an (H, W, C) numpy array or tensor, as PIL's exif_transpose."""
    if isinstance(arr, np.ndarray):
        return _orient(arr, orientation)
    flip = lambda t, *dims: t.flip(dims)  # noqa: E731 - numpy's [::-1] on a tensor
    return {2: lambda t: flip(t, 1), 3: lambda t: flip(t, 0, 1), 4: lambda t: flip(t, 0),
            5: lambda t: t.permute(1, 0, 2), 6: lambda t: t.rot90(-1, (0, 1)),
            7: lambda t: flip(t.permute(1, 0, 2), 0, 1), 8: lambda t: t.rot90(1, (0, 1))
            }.get(orientation, lambda t: t)(arr)


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read and decode an image file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(path.name, f"cannot read file: {e.strerror or e}") from None
    return decode_image(data, path.name, max_pixels)


# ----------------------------------------------------------------- writing

def format_for_path(path) -> str:
    """The format to write for path's suffix; ImageError if unsupported."""
    path = Path(path)
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        what = f"unsupported file extension '{path.suffix}'" if path.suffix else "no file extension"
        raise ImageError(path.name, f"{what} (expected one of {', '.join(EXTENSIONS)})")
    return fmt


def _to_8bit(p: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 as round(x / 257); uint8 unchanged."""
    if p.dtype == np.uint8:
        return p
    return ((p.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _png_gray_alpha(p: np.ndarray) -> bytes:
    """A PNG of colour type 4 (gray+alpha), which OpenCV cannot write."""
    h, w, _ = p.shape
    depth = 16 if p.dtype == np.uint16 else 8
    rows = p.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (_PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, _PNG_ZLIB_LEVEL)) + chunk(b"IEND", b""))


# PNG: zlib's fastest level, Huffman coding only (no string matching) and the Up filter. Measured on ten
# 1 MP photos (bench/png.py, OpenCV 5): 20 % less time than OpenCV's default (level 1 with matching and the
# Sub filter) for files 2 % larger; level 0 (stored) saves 29 % for files 2.4x larger; level 6 (libpng's
# and Pillow's default) takes 7.4x the time for files 19 % smaller. Writing PNGs is the worker's largest CPU
# cost beside the model; the output is lossless either way.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
              *([cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP] if hasattr(cv2, "IMWRITE_PNG_FILTER") else [])]
_PNG_ZLIB_LEVEL = 1  # the gray+alpha PNGs written here


def encode_image(picture: Picture, fmt: str | None = None, jpeg_quality: int = 95) -> bytes:
    """Encode a Picture; fmt defaults to picture.format.

    PNG, TIFF and WebP are lossless. JPEG and BMP are written with 8 bits and
    without alpha (alpha is dropped, not composited); WebP is 8 bits. Gray+alpha
    goes to TIFF and WebP as RGBA. No EXIF is written (orientation is already
    applied to the pixels).
    """
    fmt = (fmt or picture.format).upper()
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"cannot encode {fmt!r}: expected one of {SUPPORTED_FORMATS}")
    p, params = picture.pixels, []
    if fmt in ("JPEG", "BMP"):
        p = _to_8bit(p[..., :1] if p.shape[2] == 2 else p[..., :3])
        if fmt == "JPEG":
            params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif fmt == "WEBP":
        p = _to_8bit(p)
        params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # 101 = lossless
        if hasattr(cv2, "IMWRITE_WEBP_LOSSLESS_PRESERVE_COLOR"):  # keep RGB under alpha 0
            params += [cv2.IMWRITE_WEBP_LOSSLESS_MODE, cv2.IMWRITE_WEBP_LOSSLESS_PRESERVE_COLOR]
    elif fmt == "PNG" and p.shape[2] == 2:
        return with_icc(_png_gray_alpha(p), fmt, picture.icc)
    elif fmt == "PNG":
        params = PNG_PARAMS
    if p.shape[2] == 2:
        p = p[..., [0, 0, 0, 1]]  # gray+alpha -> RGBA
    if p.shape[2] == 3:
        p = p[..., ::-1]
    elif p.shape[2] == 4:
        p = p[..., [2, 1, 0, 3]]
    try:
        ok, buf = cv2.imencode("." + fmt.lower(), np.ascontiguousarray(p), params)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError("image", f"cannot be encoded as {fmt}")
    return with_icc(buf.tobytes(), fmt, picture.icc)


def with_icc(data: bytes, fmt: str, icc: bytes | None) -> bytes:
    """Embed an ICC profile (OpenCV writes none): an iCCP chunk after PNG's IHDR, APP2 segments in JPEG.

    TIFF, WebP and BMP outputs go without it.
    """
    if not icc:
        return data
    if fmt == "PNG":
        body = b"ICC profile\0\0" + zlib.compress(icc)
        chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
        end_of_ihdr = 8 + 4 + 4 + 13 + 4
        return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]
    if fmt == "JPEG":
        pieces = [icc[i:i + 65519] for i in range(0, len(icc), 65519)]
        segments = b"".join(
            b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(part)) + b"ICC_PROFILE\0" + bytes([n + 1, len(pieces)]) + part
            for n, part in enumerate(pieces))
        at = 2  # after SOI, and after a JFIF APP0 segment, which must come first
        if data[2:4] == b"\xff\xe0":
            at = 4 + struct.unpack(">H", data[4:6])[0]
        return data[:at] + segments + data[at:]
    return data


def write_image(path, picture: Picture) -> None:
    """Write picture to path in the format its suffix names, atomically.

    Missing parent folders are created. The bytes go to a temporary file in the same
    directory, which then replaces path, so readers never see a half-written image.
    """
    path = Path(path)
    fmt = format_for_path(path)
    try:
        data = encode_image(picture, fmt)
    except ImageError as e:
        raise ImageError(path.name, e.reason) from None
    write_encoded(path, data)


def write_encoded(path, data: bytes) -> None:
    """Write encoded image bytes to path atomically (``write_image`` without the encoding)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------- model conversion

def to_model_input(picture: Picture) -> tuple[np.ndarray, np.ndarray | None]:
    """(rgb float32 (H, W, 3) in [0, 1], alpha float32 (H, W) in [0, 1] or None).

    Gray is replicated to three channels; 16-bit samples are divided by 65535.
    """
    scale = np.float32(65535 if picture.bit_depth == 16 else 255)
    p = picture.pixels
    color = np.repeat(p[..., :1], 3, axis=2) if picture.is_gray else p[..., :3]
    rgb = color.astype(np.float32) / scale
    alpha = p[..., -1].astype(np.float32) / scale if picture.has_alpha else None
    return rgb, alpha


def from_model_output(rgb: np.ndarray, like: Picture) -> Picture:
    """Turn model output back into a Picture shaped like `like`.

    rgb is float32 (H, W, 3); values are clipped to [0, 1] and rounded to
    like's bit depth. Gray pictures get the mean of the three channels; alpha
    is copied unchanged from `like` (it is never sharpened).
    """
    if rgb.shape != (like.height, like.width, 3):
        raise ValueError(f"model output {rgb.shape} does not match picture {(like.height, like.width, 3)}")
    scale = np.float32(65535 if like.bit_depth == 16 else 255)
    color = np.clip(rgb.astype(np.float32, copy=False), 0, 1)
    if like.is_gray:
        color = color.mean(axis=2, keepdims=True, dtype=np.float32)
    out = np.rint(color * scale).astype(like.pixels.dtype)
    if like.has_alpha:
        out = np.concatenate([out, like.pixels[..., -1:]], axis=2)
    return Picture(out, like.format, like.icc)
