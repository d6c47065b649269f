import numpy as np
import pytest

from shared.blur_estimate import PRIOR_SIGMA, estimate_blur
from shared.degrade import Degradation, degrade

from ..conftest import PHOTOS, load_photo


def blurred(img, sigma):
    return degrade(img, Degradation.fixed(sigma), np.random.default_rng(0))[0]


def step_edges(size=256, seed=0):
    """Random flat rectangles: every edge is an ideal step, so the estimate should find the applied σ."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 0.5, np.float32)
    for _ in range(40):
        y, x = rng.integers(0, size - 20, 2)
        h, w = rng.integers(10, 80, 2)
        img[y:y + h, x:x + w] = rng.random(3)
    return img


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_finds_the_sigma_of_blurred_step_edges(sigma):
    assert estimate_blur(blurred(step_edges(), sigma)) == pytest.approx(sigma, rel=0.25)


@pytest.mark.parametrize("name", PHOTOS)
def test_grows_with_the_blur_of_a_photo(name):
    sharp = load_photo(name, 512)
    estimates = [estimate_blur(blurred(sharp, s)) for s in (0.5, 1.0, 2.0, 3.0)]
    assert estimates == sorted(estimates) and estimates[0] < estimates[-1] - 1.0


def test_flat_tiny_and_gray_images():
    assert estimate_blur(np.full((64, 64, 3), 0.3, np.float32)) == PRIOR_SIGMA  # no edges
    assert estimate_blur(np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)) == PRIOR_SIGMA
    gray = blurred(step_edges(), 2.0)[:, :, 0]
    assert estimate_blur(gray) == pytest.approx(2.0, rel=0.25)
    tall = np.tile(gray, (17, 1))  # 4352 rows: measured on the central 4096
    assert estimate_blur(tall) == pytest.approx(2.0, rel=0.25)
    assert estimate_blur(tall[:, :, None]) == estimate_blur(tall)
