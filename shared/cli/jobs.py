"""Batch commands: submit, status, metrics, batches, results.

With ``--server URL`` (or ``SHARPEN_SERVER``) submit/status/metrics/results go through the dashboard's JSON API
instead (``remote.py``): no database or storage needed on this machine.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
from sqlalchemy import select
from tqdm import tqdm

from shared.models import CANCELLED, DONE, MODES, QUEUED, RUNNING, Batch, ImageJob

from .context import Context, QueueUnreachable
from .remote import Client, results_remote, wait_remote


def remote_options(command):
    """``--server`` and ``--token``: talk to a dashboard instead of the database."""
    command = click.option("--token", envvar="SHARPEN_API_TOKEN", default=None,
                           help="The dashboard's API token (SHARPEN_API_TOKEN).")(command)
    return click.option("--server", envvar="SHARPEN_SERVER", default=None, metavar="URL",
                        help="A dashboard to use over HTTP, e.g. http://host:8000 (SHARPEN_SERVER).")(command)


def gather(paths: tuple[str, ...]) -> list:
    """The images to submit; a file in a folder that is not an image is reported (stderr) and skipped."""
    from scheduler.enqueue import InputFile

    from .context import listed_images

    return [InputFile(path.name, path=path) for path, _rel in listed_images(paths, "PATH")]


def _batch_or_fail(ctx: Context, batch_id: int) -> Batch:
    with ctx.db.session() as s:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise click.ClickException(f"no batch {batch_id}")
        return batch


def _summary(b: Batch | dict) -> str:
    if isinstance(b, dict):  # from the API
        from types import SimpleNamespace
        b = SimpleNamespace(**b)
    ended = b.done_count + b.failed_count
    line = f"batch {b.id} [{b.mode}] {b.status}: {ended}/{b.total} ({b.done_count} done, {b.failed_count} failed)"
    if b.mean_ssim is not None:
        line += (f"  SSIM {b.mean_ssim:.4f} (input {b.mean_input_ssim:.4f})"
                 f"  PSNR {b.mean_psnr:.2f} dB (input {b.mean_input_psnr:.2f})")
    return line


def wait_for(ctx: Context, batch_id: int, timeout: float | None = None) -> Batch:
    """Show a live progress bar (from the database) until the batch is done."""
    t0 = time.time()
    batch = _batch_or_fail(ctx, batch_id)
    with tqdm(total=batch.total, desc=f"batch {batch_id}", unit="img") as bar:
        while True:
            batch = _batch_or_fail(ctx, batch_id)
            bar.n = batch.done_count + batch.failed_count
            bar.set_postfix(failed=batch.failed_count)
            bar.refresh()
            if batch.status in (DONE, CANCELLED):
                return batch
            if timeout and time.time() - t0 > timeout:
                raise click.ClickException(f"batch {batch_id} not done after {timeout:g} s")
            time.sleep(0.5)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--mode", type=click.Choice(MODES), default="restore", show_default=True)
@click.option("--sigma", type=float, default=None, help="Blur σ for synthetic mode.")
@click.option("--reference", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of reference images, matched by file name (paired mode).")
@click.option("--name", default=None, help="A name for the batch.")
@click.option("--wait", is_flag=True, help="Show live progress until the batch is done.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@remote_options
@click.pass_obj
def submit(ctx: Context, paths, mode, sigma, reference, name, wait, timeout, server, token):
    """Submit images (files, folders or .zip files) as a batch; prints the batch id."""
    from scheduler.enqueue import create_batch, enqueue_batch, pair_references

    if mode == "paired" and not reference:
        raise click.UsageError("paired mode needs --reference DIR")
    inputs = gather(paths)
    if not inputs:
        raise click.UsageError("no files found")
    if server:
        client = Client(server, token)
        refs = [(i.name, i.path) for i in gather((reference,))] if reference else []
        batch = client.submit([(i.name, i.path) for i in inputs], refs, {"mode": mode, "sigma": sigma, "name": name})
        click.echo(batch["id"])
        if wait:
            click.echo(_summary(wait_remote(client, batch["id"], timeout)))
        return
    if mode == "paired":
        pair_references(inputs, Path(reference))
    try:
        batch_id = create_batch(ctx.db, ctx.storage, inputs, mode=mode, sigma=sigma, name=name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(batch_id)
    try:
        enqueue_batch(ctx.db, ctx.send, batch_id, ctx.settings.chunk_size)
    except QueueUnreachable as exc:
        click.echo(f"batch {batch_id} is recorded but the queue is not reachable ({exc}); it is sent as soon "
                   "as the stack runs (`sharpen up`)", err=True)
    if wait:
        batch = wait_for(ctx, batch_id, timeout)
        click.echo(_summary(batch))


@click.command()
@click.argument("batch_id", type=int)
@click.option("--wait", is_flag=True, help="Show live progress until the batch is done.")
@remote_options
@click.pass_obj
def status(ctx: Context, batch_id, wait, server, token):
    """Progress of a batch."""
    if server:
        client = Client(server, token)
        click.echo(_summary(wait_remote(client, batch_id) if wait else client.get(f"/batches/{batch_id}")))
        for line in _notes((im["status"], im["error"]) for im in client.all_metrics(batch_id)["images"]):
            click.echo(line)
        return
    batch = wait_for(ctx, batch_id) if wait else _batch_or_fail(ctx, batch_id)
    click.echo(_summary(batch))
    with ctx.db.session() as s:
        rows = s.execute(select(ImageJob.status, ImageJob.error).where(ImageJob.batch_id == batch_id,
                                                                       ImageJob.error.is_not(None))
                         .order_by(ImageJob.position)).all()
    for line in _notes(rows):
        click.echo(line)


def _notes(rows) -> list[str]:
    """Why images wait (a worker handed them back: one line per reason, with a count), then each failure."""
    waiting: dict[str, int] = {}
    failed = []
    for status, error in rows:
        if not error:
            continue
        if status in (QUEUED, RUNNING):
            waiting[error] = waiting.get(error, 0) + 1
        else:
            failed.append(f"  failed: {error}")
    return [f"  {n} image{'s' if n > 1 else ''} {why}" for why, n in waiting.items()] + failed


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.pass_obj
def batches(ctx: Context, limit):
    """The most recent batches."""
    with ctx.db.session() as s:
        for b in s.scalars(select(Batch).order_by(Batch.id.desc()).limit(limit)):
            click.echo(f"{_summary(b)}  {b.name}")


def batch_metrics(ctx: Context, batch: Batch) -> dict:
    from dashboard.queries import batch_metrics as query  # one query for the CLI, the API and the pages

    with ctx.db.session() as s:
        return query(s, batch)


@click.command()
@click.argument("batch_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@remote_options
@click.pass_obj
def metrics(ctx: Context, batch_id, as_json, server, token):
    """Per-batch and per-image SSIM/PSNR."""
    if server:
        data = Client(server, token).all_metrics(batch_id)
        batch = data["batch"]
    else:
        batch = _batch_or_fail(ctx, batch_id)
        data = batch_metrics(ctx, batch)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    click.echo(_summary(batch))
    fmt = lambda v, p: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    click.echo(f"{'image':<40} {'status':<7} {'SSIM':>7} {'in':>7} {'PSNR':>7} {'in':>7}")
    for im in data["images"]:
        click.echo(f"{im['original_name'][:40]:<40} {im['status']:<7} {fmt(im['ssim'], 4):>7} "
                   f"{fmt(im['input_ssim'], 4):>7} {fmt(im['psnr'], 2):>7} {fmt(im['input_psnr'], 2):>7}")


@click.command()
@click.argument("batch_id", type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@remote_options
@click.pass_obj
def results(ctx: Context, batch_id, out, server, token):
    """Copy a batch's sharpened images to OUT under their original names."""
    if server:
        click.echo(f"{results_remote(Client(server, token), batch_id, Path(out))} images written to {out}")
        return
    _batch_or_fail(ctx, batch_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    n = 0
    with ctx.db.session() as s:
        jobs = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id, ImageJob.status == DONE)
                              .order_by(ImageJob.position)))
    for job in jobs:
        stored = ctx.storage.resolve(job.output_path)
        name = Path(job.original_name).name
        if Path(name).suffix.lower() != stored.suffix:  # the output's real format names the file
            name = Path(name).stem + stored.suffix
        if name in used:  # two inputs with one name: keep both
            name = f"{job.position:05d}-{name}"
        used.add(name)
        shutil.copyfile(stored, out / name)
        n += 1
    click.echo(f"{n} images written to {out}")
