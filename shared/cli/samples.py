"""``sharpen samples``: write blurred copies of the photos that ship inside installed packages, to try things on."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from shared.degrade import Degradation, degrade
from shared.imageio import Picture, from_model_output, read_image, to_model_input, write_image

SAMPLE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")


def sample_paths() -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / name for name in SAMPLE_PHOTOS if (data / name).is_file()]


def write_blurred(src: Path, dst: Path, sigma: float) -> None:
    picture = read_image(src)
    rgb, _ = to_model_input(picture)
    blurred, _ = degrade(rgb, Degradation.fixed(sigma), np.random.default_rng(0))
    out = from_model_output(blurred, picture)
    write_image(dst, Picture(out.pixels, "PNG", out.icc))


@click.command()
@click.option("--out", default="var/samples/blurred", show_default=True, type=click.Path(file_okay=False))
@click.option("--sigma", default=2.0, show_default=True, help="Gaussian blur σ in pixels.")
def samples(out, sigma):
    """Write Gaussian-blurred sample photos (from scikit-image) as PNG into OUT."""
    paths = sample_paths()
    for src in paths:
        write_blurred(src, Path(out) / f"{src.stem}.png", sigma)
    click.echo(f"{len(paths)} blurred samples (σ={sigma:g}) in {out}")
