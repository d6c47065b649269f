import numpy as np
import pytest
import torch

from shared import nets
from shared.inference import (LoadedModel, ModelFileError, file_sha256, load_model, save_model, sharpen_array,
                              sharpen_tensor)


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
