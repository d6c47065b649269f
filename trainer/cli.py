"""``sharpen train …`` (also ``python -m trainer``): run the distillation trainer locally.

Every ``TrainConfig`` field is an option (``--crop 384``, ``--w-output-kd 1``…); a preset fills defaults first.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

# trainer imports torch-heavy modules; the CLI imports them only when a train command runs
from trainer.config import DEFAULT_STUDENT, PRESETS, TrainConfig, make_config

_SPECIAL = {"arch", "data", "val_data", "teacher", "preset"}


def _config_options(fn):
    for f in reversed(dataclasses.fields(TrainConfig)):
        if f.name in _SPECIAL:
            continue
        default = f.default
        if isinstance(default, bool):
            opt = click.option(f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}", f.name,
                               default=None, help=f"(default {default})")
        elif isinstance(default, tuple) or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            opt = click.option(f"--{f.name.replace('_', '-')}", f.name, default=None,
                               help="comma-separated (default " + ",".join(map(str, default)) + ")")
        else:
            kind = {int: int, float: float}.get(type(default), str)
            opt = click.option(f"--{f.name.replace('_', '-')}", f.name, type=kind, default=None,
                               help=f"(default {default})")
        fn = opt(fn)
    return fn


def _parse_tuples(values: dict) -> dict:
    out = dict(values)
    for key, cast in (("feature_layers", int), ("val_sigmas", float)):
        if out.get(key) is not None:
            out[key] = tuple(cast(v) for v in str(out[key]).split(",") if v.strip())
    return out


def _common(fn):
    fn = _config_options(fn)
    fn = click.option("--resume", is_flag=True, help="Continue the run in OUT from its last checkpoint.")(fn)
    fn = click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
                      help="Start from a preset configuration.")(fn)
    fn = click.option("--out", "out", required=True, type=click.Path(file_okay=False),
                      help="Run folder (checkpoint.pt, model.pt, metrics.jsonl).")(fn)
    fn = click.option("--val-data", "val_data", multiple=True, type=click.Path(exists=True, file_okay=False),
                      help="Validation folder(s).")(fn)
    fn = click.option("--data", "data", multiple=True, required=True,
                      type=click.Path(exists=True, file_okay=False),
                      help="Folder(s) of sharp images; DIV2K_train_HR/DIV2K_valid_HR understood.")(fn)
    return fn


def _run(cfg: TrainConfig, out: str, resume: bool) -> None:
    from trainer.checkpoint import CheckpointMismatch
    from trainer.loop import train as run_training
    from shared.nets import WeightsUnavailable

    try:
        result = run_training(cfg, Path(out), resume=resume)
    except (CheckpointMismatch, WeightsUnavailable, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model written to {result.model_path}")
    click.echo(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.final.items()}))


@click.group()
def train() -> None:
    """Train the teacher, then distil a student from it."""


@train.command("teacher")
@click.option("--arch", type=click.Choice(["teacher", "teacher-wiener"]), default=None,
              help="teacher: the ResNet18 U-Net; teacher-wiener: the same behind the Wiener front end.")
@_common
def train_teacher(arch, data, val_data, out, preset, resume, **options):
    """Train the ResNet18 U-Net teacher on sharp images."""
    cfg = make_config(preset or "teacher", arch=arch, data=list(data), val_data=list(val_data),
                      **_parse_tuples(options))
    if not cfg.arch.startswith("teacher"):
        raise click.UsageError(f"preset {preset!r} trains {cfg.arch}; use `sharpen train student`")
    _run(cfg, out, resume)


@train.command("student")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Trained teacher model file: enables output and feature distillation.")
@click.option("--arch", default=None, help=f"Student architecture (default {DEFAULT_STUDENT}).")
@_common
def train_student(teacher, arch, data, val_data, out, preset, resume, **options):
    """Train a four-convolution student, distilled from --teacher when given."""
    if preset is None:
        preset = "distill" if teacher else "plain"
    cfg = make_config(preset, arch=arch, teacher=teacher, data=list(data), val_data=list(val_data),
                      **_parse_tuples(options))
    if cfg.arch.startswith("teacher"):
        raise click.UsageError("use `sharpen train teacher` to train the teacher")
    _run(cfg, out, resume)


@train.command("fetch-photos")
@click.option("--out", default="data/photos", show_default=True, type=click.Path(file_okay=False))
@click.option("--max-side", default=1024, show_default=True)
@click.option("--no-debian", is_flag=True, help="Only the photos inside Python packages.")
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Where downloaded .deb files are kept  [default: .cache next to --out]")
def fetch_photos(out, max_side, no_debian, cache):
    """Rebuild the photo set of trainer/photo_manifest.json byte for byte: DIV2K_train_HR (train),
    DIV2K_valid_HR (tuning) and holdout_HR (held-out validation)."""
    from trainer.photos import PhotoError, collect_photos

    try:
        collect_photos(Path(out), max_side=max_side, cache=cache and Path(cache),
                       only=["python"] if no_debian else None, log=click.echo)
    except PhotoError as e:
        raise click.ClickException(str(e))


@train.command("blur-estimator")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder(s) of sharp photos; DIV2K_train_HR/DIV2K_valid_HR understood.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write.")
@click.option("--steps", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=32, show_default=True)
@click.option("--crop", default=192, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--degradation", type=click.Choice(["gaussian", "realistic"]), default="gaussian", show_default=True,
              help="realistic: every blur family with noise and JPEG, read as the equivalent Gaussian σ.")
@click.option("--workers", default=0, show_default=True, help="Processes making the training crops.")
@click.option("--lr", default=2e-3, show_default=True, help="Peak learning rate (one cycle).")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from this estimator's weights (e.g. models/blur-estimator.pt).")
@click.option("--target", type=click.Choice(["sigma", "covariance"]), default="sigma", show_default=True,
              help="covariance: read the blur kernel's 2 x 2 covariance (its direction too: camera shake), "
                   "with --degradation realistic; --init-from a σ estimator starts it as that estimator.")
@click.option("--shake-share", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="With --degradation realistic: the chance a crop is blurred by a camera shake instead of a draw "
                   "of the whole mixture (more directions for a covariance reader to learn from).")
def train_blur_estimator(data, out, steps, batch_size, crop, seed, degradation, workers, lr, init_from, target,
                         shake_share):
    """Train the network that reads an image's blur σ (the hinted students' hint)."""
    from tqdm import tqdm

    from trainer.blur_estimator import EstimatorConfig, train_blur_estimator as run

    cfg = EstimatorConfig(steps=steps, batch_size=batch_size, crop=crop, seed=seed, degradation=degradation,
                          workers=workers, lr=lr, init_from=init_from, target=target,
                          shake_share=shake_share)
    with tqdm(total=steps, desc="blur estimator", unit="step") as bar:
        def progress(step, loss):
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
        try:
            metrics = run([Path(d) for d in data], Path(out), cfg, progress)
        except (FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"blur estimator written to {out}")
    click.echo(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))


@train.command("shape-reader")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder(s) of sharp training photos (e.g. data/photos/DIV2K_train_HR); never the held-out ones.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write.")
@click.option("--reps", default=3, show_default=True, type=click.IntRange(1), help="Draws per photo and shape.")
@click.option("--seed", default=0, show_default=True)
def train_shape_reader(data, out, reps, seed):
    """Fit the reader of the blur's shape (clean, Gaussian, defocus, shake) that shape-hinted students are told."""
    from trainer.shape_reader import train_shape_reader as run

    try:
        metrics = run([Path(d) for d in data], Path(out), reps=reps, seed=seed, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"shape reader written to {out}")
    click.echo(json.dumps(metrics))


@train.command("wiener")
@click.option("--balance", required=True, help="a,b,c: λ = a + b·n_fine² + c·n_coarse² (noise in 1/255 units).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="The folder(s) the balance was fitted on (recorded with their manifest's sha256).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
def wiener_model(balance, data, out):
    """Write a student-s2d-wiener whose correction is zero: the blind Wiener filter alone, with this balance."""
    import math
    import sys

    import torch

    from shared import nets
    from shared.inference import file_sha256, save_model
    from trainer.loop import git_commit

    try:
        a, b, c = (float(v) for v in balance.split(","))
    except ValueError as exc:
        raise click.BadParameter("expected three numbers a,b,c") from exc
    net = nets.build("student-s2d-wiener")
    net.front.log_balance.data = torch.tensor([math.log(max(v, 1e-12)) for v in (a, b, c)])  # 0 → 1e-12
    manifests = {d: file_sha256(Path(d).parent / "manifest.json") for d in data
                 if (Path(d).parent / "manifest.json").is_file()}
    meta = {"epochs": 0, "steps": 0, "balance": [a, b, c], "metrics": {},
            "provenance": {"command": " ".join(sys.argv), "parents": {}, "data_manifests": manifests,
                           "git_commit": git_commit()}}
    save_model(Path(out), net, "student-s2d-wiener", meta)
    click.echo(f"blind Wiener student written to {out}")


@train.command("guard")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="The tuning photos (e.g. data/photos/DIV2K_valid_HR); never the held-out ones.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--max-side", default=1024, show_default=True)
def guard(model_file, data, out, max_side):
    """Choose the model's guard on tuning photos: how it holds back on images that read as nearly sharp."""
    from shared.evaluation import load_images
    from shared.inference import file_sha256, load_model, save_model
    from shared.quality_table import choose_guard

    model = load_model(model_file, "cpu")
    images = load_images([Path(d) for d in data], max_side)
    result = choose_guard(model, images, progress=lambda f: click.echo(f"  scored {f}"))
    meta = dict(model.meta)
    meta["guard"] = list(result["guard"]) if result["guard"] else None
    meta["guard_tuning"] = {"data": list(data), "max_side": max_side, "photos": len(images),
                            **{k: v for k, v in result.items() if k != "candidates"},
                            "parent_sha256": file_sha256(Path(model_file))}
    prov = dict(meta.get("provenance") or {})
    prov["parents"] = {**prov.get("parents", {}), "guarded_from": {"path": model_file,
                                                                   "sha256": file_sha256(Path(model_file))}}
    meta["provenance"] = prov
    save_model(Path(out), model.net, model.arch, meta)
    click.echo(f"guard {result['guard']} (mean SSIM {result['mean_ssim']:.4f}, photos made worse "
               f"{result['worse']}); model written to {out}")


@train.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Default RUN_DIR/model.pt.")
@click.option("--half", is_flag=True, help="Store float16 weights (half the size).")
def export(run_dir, out, half):
    """Write a model file from a run's last checkpoint (e.g. a run stopped before its end)."""
    from trainer.loop import export_checkpoint

    click.echo(f"model written to {export_checkpoint(Path(run_dir), out, half)}")
