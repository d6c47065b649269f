"""Tests for shared.imageio: all images are generated here, small and non-square."""

import io
import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.imageio import (
    ImageError, Picture, decode_image, encode_image, format_for_path,
    from_model_output, read_image, to_model_input, write_image,
)

H, W = 30, 40
RNG = np.random.default_rng(1234)


def rand(channels, dtype=np.uint8):
    top = 256 if dtype == np.uint8 else 65536
    return RNG.integers(0, top, (H, W, channels), dtype=dtype)


def pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def cv2_bytes(rgb, ext):
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# ------------------------------------------------------------- round trips

@pytest.mark.parametrize("name, pixels", [
    ("rgb8.png", rand(3)),
    ("rgb16.png", rand(3, np.uint16)),
    ("gray16.png", rand(1, np.uint16)),
    ("gray8.png", rand(1)),
    ("rgba8.png", rand(4)),
    ("rgba16.png", rand(4, np.uint16)),
    ("graya8.png", rand(2)),
    ("graya16.png", rand(2, np.uint16)),
    ("rgb16.tif", rand(3, np.uint16)),
    ("rgba16.tiff", rand(4, np.uint16)),
    ("gray16.tif", rand(1, np.uint16)),
    ("rgba8.tif", rand(4)),
    ("rgb8.bmp", rand(3)),
    ("gray8.bmp", rand(1)),
    ("rgb8.webp", rand(3)),
    ("rgba8.webp", rand(4)),
])
def test_lossless_round_trip(tmp_path, name, pixels):
    fmt = format_for_path(name)
    write_image(tmp_path / name, Picture(pixels, fmt))
    back = read_image(tmp_path / name)
    assert back.format == fmt
    assert back.pixels.dtype == pixels.dtype
    np.testing.assert_array_equal(back.pixels, pixels)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left


def test_jpeg_round_trip_is_close(tmp_path):
    smooth = cv2.GaussianBlur(rand(3), (9, 9), 3)
    write_image(tmp_path / "a.jpg", Picture(smooth, "PNG"))
    back = read_image(tmp_path / "a.jpg")
    assert back.format == "JPEG" and back.pixels.shape == (H, W, 3)
    assert np.abs(back.pixels.astype(int) - smooth).mean() < 3


def test_formats_that_cannot_hold_16_bits_or_alpha():
    rgba16 = Picture(rand(4, np.uint16), "PNG")
    expect8 = np.rint(rgba16.pixels[..., :3] / 257).astype(np.uint8)
    jpeg = decode_image(encode_image(rgba16, "JPEG", jpeg_quality=100))
    assert jpeg.pixels.shape == (H, W, 3) and jpeg.bit_depth == 8  # alpha dropped
    bmp = decode_image(encode_image(rgba16, "BMP"))
    np.testing.assert_array_equal(bmp.pixels, expect8)
    webp = decode_image(encode_image(rgba16, "WEBP"))
    np.testing.assert_array_equal(webp.pixels[..., :3], expect8)
    graya = decode_image(encode_image(Picture(rand(2), "PNG"), "JPEG"))
    assert graya.channels == 1
    graya16 = rand(2, np.uint16)  # TIFF gets gray+alpha as RGBA
    tiff = decode_image(encode_image(Picture(graya16, "PNG"), "TIFF"))
    np.testing.assert_array_equal(tiff.pixels, graya16[..., [0, 0, 0, 1]])


def test_decodes_files_written_by_pillow():
    la = rand(2)
    got = decode_image(pil_bytes(Image.fromarray(la, "LA"), "PNG")).pixels
    np.testing.assert_array_equal(got, la)
    rgba = rand(4)  # Pillow writes unassociated alpha; must not come back premultiplied
    got = decode_image(pil_bytes(Image.fromarray(rgba), "TIFF")).pixels
    np.testing.assert_array_equal(got, rgba)
    got = decode_image(pil_bytes(Image.fromarray(la, "LA"), "TIFF")).pixels
    np.testing.assert_array_equal(got, la)
    pal = Image.fromarray(RNG.integers(0, 3, (H, W), dtype=np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    data = pil_bytes(pal, "PNG", transparency=0)
    got = decode_image(data)
    assert got.channels == 4
    np.testing.assert_array_equal(got.pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")))


def test_magic_bytes_win_over_file_name(tmp_path):
    (tmp_path / "photo.png").write_bytes(cv2_bytes(rand(3), ".jpg"))
    pic = read_image(tmp_path / "photo.png")
    assert pic.format == "JPEG" and pic.pixels.shape == (H, W, 3)


# ------------------------------------------------------ model conversion

@pytest.mark.parametrize("pixels", [
    rand(3), rand(3, np.uint16), rand(1), rand(1, np.uint16), rand(4), rand(2), rand(2, np.uint16),
], ids=["rgb8", "rgb16", "gray8", "gray16", "rgba8", "graya8", "graya16"])
def test_identity_model_reproduces_picture(pixels):
    pic = Picture(pixels, "PNG")
    rgb, alpha = to_model_input(pic)
    assert rgb.dtype == np.float32 and rgb.shape == (H, W, 3)
    assert 0 <= rgb.min() and rgb.max() <= 1
    assert (alpha is not None) == pic.has_alpha
    if alpha is not None:
        assert alpha.dtype == np.float32 and alpha.shape == (H, W)
    back = from_model_output(rgb, pic)
    assert back.format == "PNG" and back.pixels.dtype == pixels.dtype
    np.testing.assert_array_equal(back.pixels, pixels)


def test_model_output_is_clipped_and_alpha_is_not_touched():
    pic = Picture(rand(4, np.uint16), "TIFF")
    rgb = np.full((H, W, 3), 1.7, np.float32)
    rgb[0, 0] = -0.3
    out = from_model_output(rgb, pic)
    assert out.pixels[1, 1, :3].tolist() == [65535] * 3 and out.pixels[0, 0, :3].tolist() == [0] * 3
    np.testing.assert_array_equal(out.pixels[..., 3], pic.pixels[..., 3])
    gray = from_model_output(np.dstack([np.zeros((H, W)), np.ones((H, W)), np.ones((H, W))]).astype(np.float32),
                             Picture(rand(1), "PNG"))
    assert gray.channels == 1 and (gray.pixels == 170).all()  # mean of 0, 1, 1 -> 2/3


# ---------------------------------------------------------- orientation

def with_orientation(fmt, orientation, pixels, **kw):
    exif = Image.Exif()
    exif[274] = orientation
    return pil_bytes(Image.fromarray(pixels), fmt, exif=exif, **kw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation):
    rgb, rgba = rand(3), rand(4)
    rgba[..., 3] |= 1  # lossless WebP may alter colours under fully transparent pixels
    cases = [("PNG", rgb, 0), ("PNG", rgba, 0), ("TIFF", rgb, 0), ("TIFF", rgba, 0),
             ("WEBP", rgba, 0), ("JPEG", rgb, 1)]
    for fmt, pixels, tol in cases:
        kw = {"lossless": True} if fmt == "WEBP" else {}
        data = with_orientation(fmt, orientation, pixels, **kw)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        got = decode_image(data).pixels
        assert got.shape == expected.shape, fmt
        assert np.abs(got.astype(int) - expected).max() <= tol, fmt


def test_png_exif_after_image_data_is_found():
    data = with_orientation("PNG", 6, rand(3))
    start = data.index(b"eXIf") - 4
    end = start + 12 + struct.unpack(">I", data[start:start + 4])[0]
    chunk, rest = data[start:end], data[:start] + data[end:]
    iend = rest.index(b"IEND") - 4
    moved = rest[:iend] + chunk + rest[iend:]
    assert decode_image(moved).pixels.shape == (W, H, 3)


# --------------------------------------------------------------- errors

def assert_error(excinfo, name, *words):
    msg = str(excinfo.value)
    assert msg.startswith(name + ": "), msg
    assert excinfo.value.name == name
    for word in words:
        assert word in msg, msg
    assert "Traceback" not in msg and "cv2" not in msg and "OpenCV" not in msg


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as e:
        read_image(tmp_path / "empty.png")
    assert_error(e, "empty.png", "empty file")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_bytes(b"hello, this is just text\n")
    with pytest.raises(ImageError) as e:
        read_image(tmp_path / "notes.jpg")
    assert_error(e, "notes.jpg", "not a supported image", "PNG, JPEG, TIFF, WebP or BMP")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95, -12, -5])
def test_truncated_png(keep):
    data = cv2_bytes(rand(3), ".png")
    cut = data[:int(len(data) * keep)] if keep > 0 else data[:keep]
    with pytest.raises(ImageError) as e:
        decode_image(cut, "scan.png")
    assert_error(e, "scan.png", "truncated")


def test_corrupt_png_data():
    data = bytearray(cv2_bytes(rand(3), ".png"))
    start = data.index(b"IDAT") + 4
    data[start:start + 50] = bytes(50)  # chunk layout intact, compressed data broken
    with pytest.raises(ImageError) as e:
        decode_image(bytes(data), "broken.png")
    assert_error(e, "broken.png", "corrupt")


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".bmp"])
def test_truncated_jpeg_webp_bmp(tmp_path, ext):
    data = encode_image(Picture(rand(3), format_for_path("x" + ext)))
    (tmp_path / ("holiday" + ext)).write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(ImageError) as e:
        read_image(tmp_path / ("holiday" + ext))
    assert str(e.value) == f"holiday{ext}: truncated file (image data ends early)"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about broken TIFF tags
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP", "BMP"])
def test_damaged_files_give_image_error_only(fmt):
    data = encode_image(Picture(rand(4 if fmt in ("TIFF", "WEBP") else 3, np.uint16), fmt))
    rng = np.random.default_rng(7)
    damaged = [data[:k] for k in range(1, len(data), len(data) // 15)]
    for _ in range(15):
        b = bytearray(data)
        b[rng.integers(0, len(data))] ^= 0xFF
        damaged.append(bytes(b))
    for bad in damaged:
        try:
            decode_image(bad, "x")
        except ImageError as e:
            assert str(e).startswith("x: ") and e.reason


def test_too_large_is_checked_from_the_header():
    with pytest.raises(ImageError) as e:
        decode_image(cv2_bytes(rand(3), ".png"), "big.png", max_pixels=1000)
    assert str(e.value) == "big.png: too large: 40x30 pixels, the limit is 1,000"
    # 20000x20000 header with no real pixel data: rejected before decoding,
    # by our message rather than Pillow's decompression-bomb error
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    fake = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(ImageError) as e:
        decode_image(fake, "bomb.png")
    assert str(e.value) == "bomb.png: too large: 20000x20000 pixels, the limit is 100,000,000"


def test_float_tiff_is_refused():
    ok, buf = cv2.imencode(".tiff", RNG.random((H, W, 3)).astype(np.float32))
    with pytest.raises(ImageError) as e:
        decode_image(buf.tobytes(), "float.tif")
    assert_error(e, "float.tif", "unsupported bit depth")


def test_unsupported_suffix_and_missing_file(tmp_path):
    for name, words in (("photo.gif", ("unsupported file extension '.gif'", ".png")),
                        ("README", ("no file extension",))):
        with pytest.raises(ImageError) as e:
            format_for_path(tmp_path / name)
        assert_error(e, name, *words)
    with pytest.raises(ImageError):
        write_image(tmp_path / "out.gif", Picture(rand(3), "PNG"))
    with pytest.raises(ImageError) as e:
        read_image(tmp_path / "missing.png")
    assert_error(e, "missing.png", "cannot read file")
    assert list(tmp_path.iterdir()) == []


def test_image_error_is_a_value_error_and_pickles():
    err = ImageError("a.png", "empty file")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.name, back.reason, str(back)) == ("a.png", "empty file", "a.png: empty file")


def test_write_image_replaces_existing_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    pic = Picture(rand(3), "JPEG")
    write_image(target, pic)
    back = read_image(target)
    assert back.format == "PNG"
    np.testing.assert_array_equal(back.pixels, pic.pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_picture_properties():
    pic = Picture(rand(2, np.uint16), "TIFF")
    assert (pic.height, pic.width, pic.channels, pic.bit_depth) == (H, W, 2, 16)
    assert pic.has_alpha and pic.is_gray
    with pytest.raises(ValueError):
        Picture(np.zeros((H, W), np.uint8), "PNG")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_icc_profile_is_kept(tmp_path, ext):
    """A photo's colour profile survives decode → model → encode, so its colours do not shift."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any valid, non-sRGB profile
    src = tmp_path / ("in" + ext)
    Image.fromarray(rand(3)).save(src, icc_profile=icc)
    picture = read_image(src)
    assert picture.icc == icc
    rgb, _ = to_model_input(picture)
    write_image(tmp_path / ("out" + ext), from_model_output(rgb, picture))
    assert read_image(tmp_path / ("out" + ext)).icc == icc
    with Image.open(tmp_path / ("out" + ext)) as im:  # and other software sees it
        assert im.info.get("icc_profile") == icc
