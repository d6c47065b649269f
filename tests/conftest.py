"""Shared fixtures: small real photos from scikit-image (shipped inside the package), never downloads."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage

os.environ.setdefault("OMP_NUM_THREADS", "2")

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")


def load_photo(name: str, max_side: int = 256) -> np.ndarray:
    """float32 RGB in [0,1], downscaled so its longer side is ``max_side``."""
    bgr = cv2.imread(str(SKIMAGE_DATA / name), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    s = max_side / max(rgb.shape[:2])
    return cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA).clip(0, 1)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return load_photo("astronaut.png")


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Five small sharp photos as PNG in a folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        rgb = load_photo(name, 160)
        cv2.imwrite(str(folder / f"{Path(name).stem}.png"), cv2.cvtColor((rgb * 255).round().astype(np.uint8),
                                                                        cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The stack behind a real HTTP dashboard (worker, Redis, SQLite), shared by the tests that need one."""
    from tests.served import start_served

    running, stop = start_served(tmp_path_factory.mktemp("served"))
    yield running
    stop()
