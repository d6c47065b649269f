"""``sharpen enhance``: sharpen files or folders locally, without the queue."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from shared.cli.context import listed_images
from shared.imageio import ImageError, from_model_output, read_image, to_model_input, write_image


def collect_inputs(inputs: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) of the images; each file of a folder that is not an image
    is reported on stderr, by name, as skipped."""
    return listed_images(inputs, "INPUT")


def enhance_file(model, src: Path, dst: Path) -> None:
    """Sharpen one file into ``dst`` keeping size, format, bit depth and alpha (alpha is not sharpened)."""
    from shared.inference import sharpen_array

    picture = read_image(src)
    rgb, _alpha = to_model_input(picture)
    write_image(dst, from_model_output(sharpen_array(model, rgb), picture))


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
        model = load_model(model_path or ctx.settings.model_path or None, device or ctx.settings.device)
    except ModelFileError as exc:
        raise click.ClickException(str(exc)) from exc
    out = Path(out_dir)
    failed = []
    for src, rel in tqdm(files, desc=f"sharpening ({model.arch})", unit="img"):
        try:
            enhance_file(model, src, out / rel)
        except ImageError as exc:
            failed.append(str(exc))
            tqdm.write(f"failed: {exc}", file=sys.stderr)
    click.echo(f"{len(files) - len(failed)} sharpened into {out}, {len(failed)} failed")
    if failed:
        sys.exit(1)
