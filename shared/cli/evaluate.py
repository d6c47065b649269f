"""``sharpen eval``: the SSIM/PSNR table per σ for baselines and models."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click


def parse_sigmas(text: str) -> list[float]:
    try:
        sigmas = [float(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"expected numbers like 1,2,3, got {text!r}") from exc
    if not sigmas or any(s <= 0 for s in sigmas):
        raise click.BadParameter("σ values must be positive")
    return sigmas


@click.command("eval")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
              help="Folder(s) or files of sharp images.")
@click.option("--sigma", default="1,2,3", show_default=True, help="Comma-separated blur σ values.")
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Model file(s); default: the shipped student.")
@click.option("--max-side", default=1024, show_default=True, help="Downscale images to this longer side.")
@click.option("--no-baselines", is_flag=True, help="Skip unsharp mask and Wiener.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
def eval_command(data, sigma, models, max_side, no_baselines, as_json):
    """Blur sharp images with known σ, sharpen them, and print SSIM/PSNR per method."""
    from shared.evaluation import evaluate, format_table, load_images  # torch: only when this command runs
    from shared.inference import load_model

    images = load_images([Path(d) for d in data], max_side)
    loaded = {}
    for m in models or [None]:
        model = load_model(m, "auto")
        loaded[f"{model.arch} ({model.path.name})"] = model
    rows = evaluate(images, parse_sigmas(sigma), loaded, baselines=not no_baselines)
    click.echo(json.dumps([asdict(r) for r in rows], indent=1) if as_json else format_table(rows))
