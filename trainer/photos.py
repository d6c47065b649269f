"""The training photos used for the shipped model: free photos that ship inside packages.

``collect_photos(out)`` writes them in DIV2K layout (``DIV2K_train_HR/``, ``DIV2K_valid_HR/``), each downscaled
(area) so its longer side is at most ``max_side`` px. The split below is fixed and written down so the
shipped model can be reproduced. Debian's ``lomiri-wallpapers*`` and ``mate-backgrounds`` are never used:
they are reserved for independent evaluation.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from shared.evaluation import fit_within
from shared.imageio import read_image, to_model_input

# (source, relative path, split). Python packages: path inside the installed package.
PACKAGE_PHOTOS = [
    ("skimage", "data/astronaut.png", "train"),
    ("skimage", "data/coffee.png", "train"),
    ("skimage", "data/chelsea.png", "valid"),
    ("skimage", "data/rocket.jpg", "train"),
    ("skimage", "data/motorcycle_left.png", "train"),
    ("skimage", "data/motorcycle_right.png", "valid"),
    ("sklearn", "datasets/images/china.jpg", "train"),
    ("sklearn", "datasets/images/flower.jpg", "train"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "train"),
]
# Debian package plasma-workspace-wallpapers: the wallpapers that are photographs (the others are artwork).
PLASMA_PHOTOS = [
    ("BytheWater", "train"), ("ColdRipple", "train"), ("ColorfulCups", "train"), ("DarkestHour", "valid"),
    ("EveningGlow", "train"), ("FallenLeaf", "train"), ("Grey", "train"), ("Kite", "train"),
    ("OneStandsOut", "train"), ("Path", "valid"), ("Volna", "train"), ("summer_1am", "train"),
]
FORBIDDEN_PACKAGES = ("lomiri-wallpapers", "mate-backgrounds")


def package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"python package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / rel


def fetch_plasma_wallpapers(cache: Path) -> Path:
    """``apt-get download`` plasma-workspace-wallpapers into ``cache`` and unpack it; returns the wallpaper dir."""
    root = cache / "plasma"
    target = root / "usr/share/wallpapers"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(["apt-get", "download", "plasma-workspace-wallpapers"], cwd=tmp, check=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return target


def largest_image(folder: Path) -> Path:
    files = [p for p in (folder / "contents" / "images").iterdir() if p.suffix.lower() in (".jpg", ".png")]
    return max(files, key=lambda p: p.stat().st_size)


def _save(src: Path, dst: Path, max_side: int) -> None:
    rgb = fit_within(to_model_input(read_image(src))[0], max_side)
    u8 = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))


def collect_photos(out: Path, max_side: int = 1024, with_debian: bool = True, cache: Path | None = None) -> dict:
    """Write the photo set into ``out`` in DIV2K layout; returns {split: [file names]}."""
    out = Path(out)
    split = {"train": [], "valid": []}
    sources = [(package_file(pkg, rel), f"{pkg}-{Path(rel).stem}", part) for pkg, rel, part in PACKAGE_PHOTOS]
    if with_debian:
        if shutil.which("apt-get") is None:
            raise RuntimeError("apt-get is needed to fetch plasma-workspace-wallpapers (or pass with_debian=False)")
        walls = fetch_plasma_wallpapers(Path(cache or out / ".cache"))
        sources += [(largest_image(walls / name), f"plasma-{name}", part) for name, part in PLASMA_PHOTOS]
    for src, stem, part in sources:
        name = f"{stem}.png"
        _save(src, out / f"DIV2K_{part}_HR" / name, max_side)
        split[part].append(name)
    return split
