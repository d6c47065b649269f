"""``sharpen enhance``: sharpen files or folders locally, without the queue."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from shared.cli.context import listed_images
from shared.imageio import ImageError, read_image


def collect_inputs(inputs: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) of the images; each file of a folder that is not an image
    is reported on stderr, by name, as skipped."""
    return listed_images(inputs, "INPUT")


class EnhanceFile:
    """One file as a ``shared.overlapped.Job`` (not subclassed: the CLI imports torch only when it runs):
    decoded and written on pool threads; files that fail are collected."""

    def __init__(self, src: Path, dst: Path, failed: list, progress=None):
        self.src, self.dst, self.failed, self.progress = src, dst, failed, progress
        self.name = src.name

    def start(self) -> bool:
        return True

    def decode(self, device):
        import torch

        from shared.overlapped import Frame

        picture = read_image(self.src)
        return Frame(torch.from_numpy(picture.pixels), picture.format, picture.icc)

    def score(self, frame, out) -> dict:
        return {}

    def write(self, frame, out) -> dict:
        from shared.overlapped import write_output

        write_output(self.dst, out, frame)
        return {}

    def done(self, values: dict) -> None:
        if self.progress:
            self.progress()

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, ImageError):
            raise exc
        self.failed.append(exc)
        if self.progress:
            self.progress()


def enhance_files(model, pairs: list[tuple[Path, Path]], threads: int | None = None, progress=None,
                  clock=None) -> list[ImageError]:
    """Sharpen (source, destination) pairs, decoding and writing on ``threads`` threads (None: as many as
    suit the model's device, 0: one image after another) while the model runs; returns the files that
    failed (each fails alone)."""
    from shared.overlapped import Overlapped

    failed: list[ImageError] = []
    flow = Overlapped(threads, clock, device=model.device)
    try:
        flow.run(model, [EnhanceFile(src, dst, failed, progress) for src, dst in pairs])
        flow.drain()
    finally:
        flow.close()
    return failed


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Model file (default: the shipped student, or $SHARPEN_MODEL).")
@click.option("--device", default=None, help="auto, cpu or cuda[:N] (default $SHARPEN_DEVICE or auto).")
@click.pass_obj
def enhance(ctx, inputs, out_dir, model_path, device):
    """Sharpen image files or folders into OUT, keeping names, sizes, alpha and bit depth."""
    from shared.inference import ModelFileError, load_model  # torch: only when this command runs

    files = collect_inputs(inputs)
    if not files:
        raise click.UsageError("no image files found in the inputs")
    try:
        model = load_model(model_path or ctx.settings.model_path or None, device or ctx.settings.device,
                           memory_budget=ctx.settings.memory_budget_mb << 20 or None)
    except ModelFileError as exc:
        raise click.ClickException(str(exc)) from exc
    out = Path(out_dir)
    threads = None if ctx.settings.io_threads < 0 else ctx.settings.io_threads
    with tqdm(total=len(files), desc=f"sharpening ({model.arch})", unit="img") as bar:
        failed = enhance_files(model, [(src, out / rel) for src, rel in files], threads, progress=lambda: bar.update())
    for exc in failed:
        click.echo(f"failed: {exc}", err=True)
    click.echo(f"{len(files) - len(failed)} sharpened into {out}, {len(failed)} failed")
    if failed:
        sys.exit(1)
