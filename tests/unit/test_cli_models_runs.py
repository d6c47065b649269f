"""``sharpen models add|activate|rollback|compare`` and ``sharpen runs --cancel`` on SQLite, no servers (the
queue is not running, so what would be sent waits in the database and the commands say so)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from scheduler.enqueue import create_batch
from shared.cli import cli
from shared.cli.context import Context
from shared.config import Settings
from shared.inference import default_model_path
from shared.models import Batch, ImageJob, ModelVersion, TrainingRun
from trainer.config import make_config
from trainer.runs import create_run
from worker.pipeline import WorkerContext, process_jobs

from .test_jobs import folder_of, inputs

VARIANT = Path(default_model_path()).parent / "variants" / "s2d-plain.pt"


@pytest.fixture
def sharpen(tmp_path):
    settings = Settings.from_env({"STORAGE_ROOT": str(tmp_path / "var")})
    context = Context(settings)

    def run(*args, code=0):
        result = CliRunner().invoke(cli, list(map(str, args)), obj=context)
        assert result.exit_code == code, (result.output, result.stderr)
        return result
    run.ctx = context
    yield run
    context.db.dispose()


def test_models_add_copies_into_storage_then_activate_and_roll_back(sharpen, tmp_path):
    out = sharpen("models", "add", VARIANT, "--name", "variant").output
    assert "registered as models/added-" in out
    with sharpen.ctx.db.session() as s:
        v = s.scalar(select(ModelVersion).where(ModelVersion.name == "variant"))
        assert sharpen.ctx.storage.resolve(v.path).read_bytes() == VARIANT.read_bytes()
    assert "was already registered" in sharpen("models", "add", VARIANT).output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert "not a readable Sharpen model file" in sharpen("models", "add", junk, code=1).stderr
    assert "nothing to roll back" in sharpen("models", "rollback", code=1).stderr
    sharpen("models", "activate", v.id)
    assert "shipped default" in sharpen("models", "rollback").output  # activating registered the default first
    listing = sharpen("models").output
    assert "* " in listing and "variant" in listing


def test_runs_cancel(sharpen, tmp_path):
    run_id = create_run(sharpen.ctx.db, make_config("plain", data=[str(tmp_path)], epochs=3))
    assert f"run {run_id} cancelled" in sharpen("runs", run_id, "--cancel").output
    with sharpen.ctx.db.session() as s:
        assert s.get(TrainingRun, run_id).status == "cancelled"
    assert "already cancelled" in sharpen("runs", run_id, "--cancel", code=1).stderr
    assert "no training run 99" in sharpen("runs", 99, "--cancel", code=1).stderr
    assert "needs the run's id" in sharpen("runs", "--cancel", code=2).stderr
    assert f"run {run_id} cancelled" in sharpen("runs").output


def test_models_compare(sharpen, tmp_path):
    ctx = sharpen.ctx
    batch_id = create_batch(ctx.db, ctx.storage, inputs(folder_of(tmp_path, 2)), mode="synthetic", sigma=2.0)
    sharpen("models", "add", VARIANT, "--name", "variant")
    with ctx.db.session() as s:
        other = s.scalar(select(ModelVersion.id).where(ModelVersion.name == "variant"))
    assert "no finished image" in sharpen("models", "compare", batch_id, other, code=1).stderr
    worker = WorkerContext.from_settings(ctx.settings)

    def process(b):
        with ctx.db.session() as s:
            process_jobs(worker, list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == b))))

    process(batch_id)
    result = sharpen("models", "compare", batch_id, other)
    rerun = int(result.stdout.split()[0])
    assert "queue is not reachable" in result.stderr  # recorded; the scheduler sends it once the stack runs
    with ctx.db.session() as s:
        assert s.get(Batch, rerun).parent_batch_id == batch_id
    process(rerun)
    out = sharpen("models", "compare", batch_id, other, "--wait").stdout
    assert out.splitlines()[0] == str(rerun)  # the same re-run, not a second one
    assert "A: batch" in out and "B: batch" in out and "p0.png" in out and "p1.png" in out
    worker.db.dispose()
