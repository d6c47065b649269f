"""Database, model and training-run commands: db, models (add, activate, rollback, compare), retrain, runs."""
from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from shared.models import EpochMetric, ModelVersion, TrainingRun

from .context import Context, QueueUnreachable


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(ctx: Context, revision):
    from shared import migrate

    migrate.upgrade(ctx.settings.db_url, revision)
    click.echo(f"{ctx.settings.db_url}: at {migrate.current(ctx.settings.db_url)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(ctx: Context, revision):
    from shared import migrate

    migrate.downgrade(ctx.settings.db_url, revision)
    click.echo(f"{ctx.settings.db_url}: at {migrate.current(ctx.settings.db_url)}")


@db.command("current")
@click.pass_obj
def db_current(ctx: Context):
    from shared import migrate

    click.echo(migrate.current(ctx.settings.db_url) or "empty")


@click.group(invoke_without_command=True)
@click.pass_context
def models(cctx):
    """List model versions (the active one marked *)."""
    if cctx.invoked_subcommand:
        return
    ctx: Context = cctx.obj
    from shared.registry import active_model

    with ctx.db.session() as s:
        active_model(s)  # registers the shipped default on first use
        for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id)):
            ssim = v.metrics.get("val_ssim") if v.metrics else None
            click.echo(f"{'*' if v.active else ' '} {v.id:>3}  {v.name:<28} {v.arch:<20} {v.sha256[:12]}  "
                       f"val SSIM {ssim if ssim is None else round(ssim, 4)}  {v.path}")


@models.command("activate")
@click.argument("version_id", type=int)
@click.pass_obj
def models_activate(ctx: Context, version_id):
    """Use this version for new batches."""
    from shared.registry import activate_model

    with ctx.db.session() as s:
        try:
            v = activate_model(s, version_id)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"model {v.id} ({v.name}) is active; new batches use it")


@models.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None)
@click.option("--activate", is_flag=True)
@click.pass_obj
def models_add(ctx: Context, path, name, activate):
    """Copy a model file into the storage and register it (every worker that mounts the storage finds it)."""
    from shared.inference import ModelFileError
    from shared.registry import add_model_file

    with ctx.db.session() as s:
        try:
            v, created = add_model_file(s, ctx.storage, Path(path), name, activate=activate)
        except ModelFileError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"model {v.id} {'registered' if created else 'was already registered'} as {v.path}"
                   f"{' and active' if v.active else ''}")


@models.command("rollback")
@click.pass_obj
def models_rollback(ctx: Context):
    """Activate again the version that was active before the current one."""
    from shared.registry import NothingToRollBack, rollback_model

    with ctx.db.session() as s:
        try:
            v = rollback_model(s)
        except NothingToRollBack as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"rolled back: model {v.id} ({v.name}) is active; new batches use it")


@models.command("compare")
@click.argument("batch_id", type=int)
@click.argument("version_id", type=int)
@click.option("--wait", is_flag=True, help="Wait for the re-run, then print both versions' scores.")
@click.pass_obj
def models_compare(ctx: Context, batch_id, version_id, wait):
    """Re-run a batch's finished images with another model version; prints the re-run's batch id, and with
    --wait the SSIM/PSNR of both versions and the per-image differences."""
    from scheduler.rerun import rerun_with_model
    from scheduler.control import BatchStateError
    from scheduler.enqueue import enqueue_batch

    try:
        rerun_id, created = rerun_with_model(ctx.db, batch_id, version_id)
    except (LookupError, BatchStateError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(rerun_id)
    if created:
        try:
            enqueue_batch(ctx.db, ctx.send, rerun_id, ctx.settings.chunk_size)
        except QueueUnreachable as exc:
            click.echo(f"batch {rerun_id} is recorded; the queue is not reachable ({exc}), it is sent when the "
                       "stack runs", err=True)
    if wait:
        from scheduler.compare import compare_batches

        from .jobs import wait_for

        wait_for(ctx, rerun_id)
        with ctx.db.session() as s:
            found = compare_batches(s, rerun_id)
        a, b = found["a"], found["b"]
        for side in (a, b):
            click.echo(f"{side['label']}: batch {side['batch_id']}, model {side['model_version_id']} "
                       f"({side['model_name']}): SSIM {_num(side['mean_ssim'], 4)}  "
                       f"PSNR {_num(side['mean_psnr'], 2)} dB")
        for row in found["images"]:
            click.echo(f"  {row['original_name']:<32} SSIM {_num(row['a_ssim'], 4)} → {_num(row['b_ssim'], 4)} "
                       f"({_num(row['d_ssim'], 4, True)})  PSNR {_num(row['a_psnr'], 2)} → {_num(row['b_psnr'], 2)}")
        click.echo(f"B − A over the {found['paired']} images both scored: SSIM {_num(found['mean_d_ssim'], 4, True)}"
                   f", PSNR {_num(found['mean_d_psnr'], 2, True)} dB; B better on {found['b_better']}, worse on "
                   f"{found['b_worse']}")


def _num(value, places: int, signed: bool = False) -> str:
    return "–" if value is None else (f"{value:+.{places}f}" if signed else f"{value:.{places}f}")


@click.command()
@click.option("--data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folders of sharp images (default: the photos in data/photos).")
@click.option("--preset", default="realistic", show_default=True,
              help="Training recipe (trainer.config.PRESETS); realistic: the shipped default's.")
@click.option("--arch", default=None)
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--epochs", type=int, default=None)
@click.option("--crop", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--patches-per-image", type=int, default=None)
@click.option("--checkpoint-every", type=int, default=None)
@click.option("--val-max-side", type=int, default=None)
@click.option("--fresh", is_flag=True, help="Start from new weights (default: continue the active model when it has "
                                            "the run's architecture).")
@click.option("--activate-if-better", is_flag=True,
              help="Activate the new model if it beats the active one on the run's validation photos under every "
                   "blur family.")
@click.option("--wait", is_flag=True, help="Follow the run until it ends.")
@click.pass_obj
def retrain(ctx: Context, data, preset, arch, teacher, epochs, crop, batch_size, patches_per_image,
            checkpoint_every, val_max_side, fresh, activate_if_better, wait):
    """Queue a training run on the train queue; prints the run id."""
    from scheduler.periodic import enqueue_training_run
    from trainer.config import check_config, make_config
    from trainer.runs import continue_active, create_run

    folders = [str(Path(d).absolute()) for d in data] or [str(Path("data/photos").absolute())]
    try:
        cfg = make_config(preset, arch=arch, data=folders, epochs=epochs, crop=crop, batch_size=batch_size,
                          patches_per_image=patches_per_image, checkpoint_every=checkpoint_every,
                          val_max_side=val_max_side, teacher=str(Path(teacher).absolute()) if teacher else None)
        check_config(cfg)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    if not fresh:
        cfg = continue_active(ctx.db, ctx.storage, cfg)
    run_id = create_run(ctx.db, cfg, activate_if_better=activate_if_better)
    click.echo(run_id)
    try:
        enqueue_training_run(ctx.db, ctx.send, run_id)
    except QueueUnreachable as exc:
        click.echo(f"run {run_id} is recorded; the queue is not reachable ({exc}), it is sent when the stack runs",
                   err=True)
    if wait:
        import time

        while True:
            with ctx.db.session() as s:
                run = s.get(TrainingRun, run_id)
            if run.status in ("done", "failed", "cancelled"):
                break
            time.sleep(1)
        click.echo(f"run {run_id} {run.status}: {run.epochs_done}/{run.epochs_total} epochs"
                   + (f" — {run.error}" if run.error else ""))


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--cancel", "cancel", is_flag=True, help="Cancel RUN: it stops at its next step, keeping its last "
                                                      "checkpoint.")
@click.pass_obj
def runs(ctx: Context, run_id, cancel):
    """Training runs, or one run's epochs; --cancel RUN stops one."""
    if cancel:
        from trainer.runs import RunStateError, cancel_run

        if run_id is None:
            raise click.UsageError("--cancel needs the run's id: sharpen runs RUN --cancel")
        try:
            outcome = cancel_run(ctx.db, run_id)
        except (LookupError, RunStateError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"run {run_id} cancelled" if outcome == "cancelled" else
                   f"run {run_id} is stopping: its trainer stops at the next step and keeps its last checkpoint")
        return
    with ctx.db.session() as s:
        if run_id is None:
            for r in s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(20)):
                click.echo(f"run {r.id} {r.status} ({r.config.get('arch')} {r.epochs_done}/{r.epochs_total} "
                           f"epochs, attempts {r.attempts}){'  activated' if r.activated else ''}"
                           + (f"  error: {r.error}" if r.error else ""))
            return
        for e in s.scalars(select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch)):
            click.echo(f"epoch {e.epoch:>4}  loss {e.loss:.5f}  val SSIM {e.val_ssim:.4f}  PSNR {e.val_psnr:.2f} dB")
