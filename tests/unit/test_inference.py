import math

import numpy as np
import pytest
import torch

from shared import nets
from shared.inference import (PACKAGE_MODELS, LoadedModel, ModelFileError, estimate_hints, file_sha256, load_model, save_model,
                              sharpen_array, sharpen_pixels, sharpen_tensor)


def trained_like(arch: str, seed: int = 0) -> torch.nn.Module:
    """A network with random (non-identity) weights, so tiling errors would show."""
    torch.manual_seed(seed)
    net = nets.build(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return net


def as_loaded(net, arch) -> LoadedModel:
    return LoadedModel(net=net.eval(), arch=arch, meta={}, sha256="", path=None, device=torch.device("cpu"))


@pytest.mark.parametrize("arch", list(nets.STUDENTS))
def test_student_tiled_equals_whole_image(arch):
    model = as_loaded(trained_like(arch), arch)
    x = torch.rand(1, 3, 203, 157, generator=torch.Generator().manual_seed(1))  # odd sizes on purpose
    whole = sharpen_tensor(model, x, tile=4096)
    for tile, batch in ((32, 3), (50, 8), (64, 1)):
        tiled = sharpen_tensor(model, x, tile=tile, batch=batch)
        assert tiled.shape == x.shape
        assert float((tiled - whole).abs().max()) < 1e-5
        # as 8-bit output: identical, except where float rounding meets a value halfway between two levels
        differs = torch.round(tiled * 255) != torch.round(whole * 255)
        halfway = ((whole * 255) % 1 - 0.5).abs() < 1e-3
        assert not bool((differs & ~halfway).any()), int(differs.sum())


def test_teacher_tiles_blend_within_bound(photo):
    model = as_loaded(trained_like("teacher"), "teacher")
    torch.manual_seed(0)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    whole = sharpen_tensor(model, x, tile=4096)
    tiled = sharpen_tensor(model, x, tile=128, overlap=32)
    diff = (tiled - whole).abs()
    assert tiled.shape == x.shape
    assert float(diff.mean()) < 0.02 and float(diff.max()) < 0.5


def test_tiny_and_single_pixel_images():
    for arch in ("student-seed", "student-s2d", "student-s2d-hint", "student-s2d-wiener"):
        model = as_loaded(trained_like(arch), arch)
        for h, w in ((1, 1), (1, 7), (3, 2)):
            assert sharpen_tensor(model, torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_model_file_round_trip(tmp_path, photo):
    net = trained_like("student-s2d")
    path = tmp_path / "m.pt"
    sha = save_model(path, net, "student-s2d", {"metrics": {"val_ssim": 0.9}})
    model = load_model(path, "cpu")
    assert model.arch == "student-s2d" and model.sha256 == sha == file_sha256(path)
    assert model.meta["metrics"]["val_ssim"] == 0.9
    out = sharpen_array(model, photo)
    assert out.shape == photo.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable Sharpen model"):
        load_model(bad)
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a Sharpen model file"):
        load_model(tmp_path / "other.pt")


def test_guard_holds_back_on_images_that_read_as_sharp(photo):
    model = as_loaded(trained_like("student-s2d-wiener"), "student-s2d-wiener")
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    full = sharpen_tensor(model, x, hint=[1.0, 0.002, 0.003])
    mid = sharpen_tensor(model, x, hint=[0.65, 0.002, 0.003])
    model.meta = {"guard": [0.5, 0.8]}
    assert torch.equal(sharpen_tensor(model, x, hint=[0.45, 0.002, 0.003]), x)            # reads as sharp
    assert torch.equal(sharpen_tensor(model, x, hint=[1.0, 0.002, 0.003]), full)          # clearly blurred
    half = sharpen_tensor(model, x, hint=[0.65, 0.002, 0.003])
    unclipped = (mid > 0) & (mid < 1)
    assert torch.allclose(half[unclipped], ((x + mid) / 2)[unclipped], atol=1e-5)
    assert model.guard_gain([0.65]) == pytest.approx(0.5)


def test_choose_guard_prefers_less_harm():
    from shared.degrade import EVAL_FAMILIES
    from shared.quality_table import choose_guard
    from tests.conftest import load_photo

    model = as_loaded(trained_like("student-s2d-wiener", seed=3), "student-s2d-wiener")
    images = [(n, load_photo(n, 96)) for n in ("astronaut.png", "coffee.png")]
    families = {k: EVAL_FAMILIES[k] for k in ("unblurred", "gaussian σ=2")}
    result = choose_guard(model, images, families)
    by_guard = {tuple(r["guard"]) if r["guard"] else None: r for r in result["candidates"]}
    assert result["guard"] is not None and result["harm"] <= by_guard[None]["harm"]
    assert result["worse"] <= by_guard[None]["worse"] and "guard" not in model.meta


def as_pixels(rgb: np.ndarray, dtype=np.uint8) -> np.ndarray:
    return np.rint(rgb * np.iinfo(dtype).max).astype(dtype)


def float_path(model, picture_pixels):
    """What the worker did before 8-bit pixels went to the model: float image in, float image out, rounded."""
    from shared.imageio import Picture, from_model_output, to_model_input

    picture = Picture(picture_pixels, "PNG")
    rgb, _ = to_model_input(picture)
    y = sharpen_array(model, rgb, hint=model.estimate_hint(rgb), tile=64)
    return from_model_output(y, picture).pixels


@pytest.mark.parametrize("layout", ["rgb8", "gray8", "gray-alpha8", "rgba16"])
def test_pixels_in_and_out_equal_the_float_path(photo, layout):
    from shared.degrade import Degradation, degrade

    blurred = degrade(photo[:150, :173], Degradation.fixed(2.0), np.random.default_rng(0))[0]  # odd width
    gray = blurred.mean(axis=2, keepdims=True)
    alpha = np.random.default_rng(1).random(blurred.shape[:2] + (1,), dtype=np.float32)
    px = {"rgb8": as_pixels(blurred), "gray8": as_pixels(gray),
          "gray-alpha8": as_pixels(np.concatenate([gray, alpha], axis=2)),
          "rgba16": as_pixels(np.concatenate([blurred, alpha], axis=2), np.uint16)}[layout]
    model = as_loaded(trained_like("student-s2d-hint", seed=2), "student-s2d-hint")
    model.meta = {"guard": [0.5, 4.0]}   # σ̂ ≈ 2 here: part of the correction, through the guard's blend
    expected = float_path(model, px)
    for tile in (None, 48):
        out = sharpen_pixels(model, px, tile=tile).numpy()
        assert out.dtype == px.dtype and out.shape == px.shape
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1   # float rounding at a level's edge
        assert (out != expected).mean() < 1e-3
    if px.shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], px[..., -1])   # alpha is copied, never sharpened


def test_a_batch_of_images_equals_each_alone_with_its_own_hint(photo):
    from shared.degrade import Degradation, degrade

    images = [as_pixels(degrade(photo[:96, :128], Degradation.fixed(s), np.random.default_rng(0))[0]) for s in (1, 3)]
    model = as_loaded(trained_like("student-s2d-wiener", seed=4), "student-s2d-wiener")
    alone = [sharpen_pixels(model, px) for px in images]
    both = sharpen_pixels(model, np.stack(images))
    for i in range(2):   # batched convolutions round differently, rarely by one level
        diff = (both[i].int() - alone[i].int()).abs()
        assert int(diff.max()) <= 1 and int((diff > 0).sum()) <= 5
    hints = estimate_hints(model, torch.from_numpy(np.stack(images)))
    assert hints.shape == (2, 3) and hints[0, 0] < hints[1, 0]   # the blurrier image reads blurrier
    model.meta = {"guard": [1.0, 1.2]}   # the first reads as sharp: returned as it is, the second sharpened
    hints = [[0.5, 0.001, 0.001], [2.5, 0.001, 0.001]]
    out = sharpen_pixels(model, np.stack(images), hints=hints)
    assert torch.equal(out[0], torch.from_numpy(images[0]))
    assert int((out[1].int() - sharpen_pixels(model, images[1], hints=hints[1]).int()).abs().max()) <= 1
    assert not torch.equal(out[1], torch.from_numpy(images[1]))


def test_the_tile_follows_the_image_size_and_the_memory_budget():
    from shared.tiled import CPU_BUDGET, bytes_per_pixel, choose_tile, memory_budget

    model = load_model(PACKAGE_MODELS / "variants" / "s2d-wiener-guarded.pt", "cpu")   # the Wiener front end alone
    assert choose_tile(model, 1, 1024, 1024) is None                     # a 1 MP image goes whole
    th, tw = choose_tile(model, 1, 5472, 7296)                           # 40 MP: tiles
    budget = memory_budget(model.device, 5472 * 7296)
    assert budget == max(CPU_BUDGET[0], 5472 * 7296 * 12)                # one float copy of it, at least 512 MiB
    assert memory_budget(model.device, 8000 * 8000) == 8000 * 8000 * 12
    halo = 42
    assert (th + 2 * halo) * (tw + 2 * halo) * bytes_per_pixel(model) <= budget
    assert math.ceil(5472 / th) * th - 5472 < th / 2 and th % 2 == 0     # balanced: no sliver of a last row
    trained = as_loaded(trained_like("student-s2d-wiener"), "student-s2d-wiener")
    assert bytes_per_pixel(trained) > bytes_per_pixel(model)             # its convolutions run too
    assert choose_tile(trained, 1, 1024, 1024, budget=64 << 20) is not None
    bank = as_loaded(trained_like("student-s2d-wbank"), "student-s2d-wbank")
    assert bytes_per_pixel(bank) > bytes_per_pixel(trained)              # and its bank of filtered copies


def test_a_process_that_loads_a_model_keeps_its_freed_buffers():
    """glibc (this image's C library) is told to serve image-sized buffers from its heap and keep them
    (shared.allocator): loading a model does it, once."""
    from shared import allocator

    load_model(PACKAGE_MODELS / "variants" / "s2d-wiener-guarded.pt", "cpu")
    assert allocator._done and allocator.keep_freed_memory()
