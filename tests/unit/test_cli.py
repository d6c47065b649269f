"""The CLI as a user runs it: real files in, real files out."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shared import nets
from shared.cli import cli
from shared.imageio import Picture, read_image, write_image
from shared.inference import save_model


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    net = nets.build("student-s2d")
    with torch.no_grad():
        net.body[-1].weight.normal_(0, 0.01)  # not the identity, so outputs really change
    path = tmp_path / "model.pt"
    save_model(path, net, "student-s2d", {})
    return path


def test_enhance_keeps_names_sizes_alpha_and_depth(tmp_path, model_file, photo):
    src = tmp_path / "in"
    rng = np.random.default_rng(0)
    rgb16 = (photo * 65535).astype(np.uint16)
    alpha16 = rng.integers(0, 65536, photo.shape[:2] + (1,), dtype=np.uint16)
    write_image(src / "rgba16.png", Picture(np.concatenate([rgb16, alpha16], 2), "PNG"))
    write_image(src / "nested" / "gray.jpg", Picture((photo[:, :, :1] * 255).astype(np.uint8), "JPEG"))
    write_image(src / "plain.webp", Picture((photo * 255).astype(np.uint8), "WEBP"))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    result = CliRunner().invoke(cli, ["enhance", str(src), "--out", str(tmp_path / "out"), "--model",
                                      str(model_file)])
    assert result.exit_code == 1  # one file failed ...
    assert "broken.png" in result.output and "3 sharpened" in result.output  # ... alone, with its reason
    out16 = read_image(tmp_path / "out" / "rgba16.png")
    assert out16.pixels.dtype == np.uint16 and out16.pixels.shape == (256, 256, 4)
    assert np.array_equal(out16.pixels[:, :, 3], alpha16[:, :, 0])  # alpha untouched
    assert not np.array_equal(out16.pixels[:, :, :3], rgb16)         # colour sharpened
    gray = read_image(tmp_path / "out" / "nested" / "gray.jpg")
    assert gray.format == "JPEG" and gray.pixels.shape == (256, 256, 1)
    assert read_image(tmp_path / "out" / "plain.webp").format == "WEBP"


def test_enhance_with_a_missing_model_is_a_clear_error(tmp_path, photo):
    write_image(tmp_path / "a.png", Picture((photo * 255).astype(np.uint8), "PNG"))
    result = CliRunner().invoke(cli, ["enhance", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                                      "--model", str(tmp_path / "nope.pt")])
    assert result.exit_code != 0 and "model file not found" in result.output


def test_eval_prints_a_table_per_sigma(photo_folder, model_file):
    result = CliRunner().invoke(cli, ["eval", "--data", str(photo_folder), "--sigma", "1,2", "--model",
                                      str(model_file), "--max-side", "64"])
    assert result.exit_code == 0, result.output
    for text in ("σ = 1", "σ = 2", "blurred input", "unsharp mask, best setting", "unsharp mask, one setting", "Wiener", "student-s2d (model.pt)", "below input"):
        assert text in result.output


def test_table_counts_the_images_a_model_made_worse():
    from shared.evaluation import ORACLE_UNSHARP, Row, format_table

    rows = [Row("blurred input", 1.0, 0.90, 35.0, 4, 0.0), Row(ORACLE_UNSHARP, 1.0, 0.93, 36.0, 4, 1.0),
            Row("model", 1.0, 0.94, 37.0, 4, 1.0, below_input=1)]
    lines = format_table(rows).splitlines()
    assert lines[-1].split()[-1] == "1/4" and lines[-2].split()[-1] == "+1.00" and lines[-3].split()[-1] == "+0.00"


def test_samples_then_enhance_with_the_shipped_model(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["samples", "--out", str(tmp_path / "b")]).exit_code == 0
    result = runner.invoke(cli, ["enhance", str(tmp_path / "b" / "coffee.png"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "s" / "coffee.png").pixels.shape == read_image(tmp_path / "b" / "coffee.png").pixels.shape
