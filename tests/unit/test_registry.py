"""The model registry's plain functions on SQLite, no servers: a model file added into storage (relative path),
activations and roll back, and two versions compared on the same batch through the worker pipeline."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from scheduler.compare import compare_batches
from scheduler.control import BatchStateError
from scheduler.enqueue import create_batch
from scheduler.rerun import rerun_with_model
from shared.inference import ModelFileError, default_model_path, file_sha256
from shared.models import Batch, ImageJob, ModelActivation, ModelVersion
from shared.registry import NothingToRollBack, activate_model, active_model, add_model_file, rollback_model
from tests.conftest import PHOTOS, load_photo
from worker.pipeline import process_jobs

from .test_jobs import ctx, inputs  # noqa: F401 - the fixture

VARIANT = Path(default_model_path()).parent / "variants" / "s2d-plain.pt"


def test_a_model_file_is_copied_into_storage_and_recorded_relative_to_it(ctx, tmp_path):
    src = tmp_path / "elsewhere" / "my model.pt"
    src.parent.mkdir()
    shutil.copyfile(VARIANT, src)
    with ctx.db.session() as s:
        version, created = add_model_file(s, ctx.storage, src, "mine")
        assert created and not Path(version.path).is_absolute() and version.path.startswith("models/added-")
        assert ctx.storage.resolve(version.path).is_file() and file_sha256(ctx.storage.resolve(version.path)) == \
            version.sha256
        assert version.arch == "student-s2d" and version.parameters > 10_000 and version.name == "mine"
        again, created = add_model_file(s, ctx.storage, src, "other name")
        assert again.id == version.id and not created
    src.unlink()  # the registry does not depend on where the file came from
    assert ctx.storage.resolve(version.path).is_file()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with ctx.db.session() as s, pytest.raises(ModelFileError, match="not a readable Sharpen model"):
        add_model_file(s, ctx.storage, junk)
    with ctx.db.session() as s:
        assert s.scalar(select(ModelVersion).where(ModelVersion.name == "junk")) is None
    assert sorted(p.name for p in ctx.storage.models_dir.iterdir()) == [Path(version.path).name]


def test_activate_and_roll_back(ctx):
    with ctx.db.session() as s:
        default = active_model(s)
        other, _ = add_model_file(s, ctx.storage, VARIANT, "variant")
        with pytest.raises(NothingToRollBack):
            rollback_model(s)  # only the default has ever been active
        activate_model(s, other.id)
        assert active_model(s).id == other.id
        assert rollback_model(s).id == default.id and active_model(s).id == default.id
        assert rollback_model(s).id == other.id  # a roll back of the roll back
        history = [(a.model_version_id, a.previous_version_id, a.reason)
                   for a in s.scalars(select(ModelActivation).order_by(ModelActivation.id))]
        assert history == [(default.id, None, "default"), (other.id, default.id, "activate"),
                           (default.id, other.id, "rollback"), (other.id, default.id, "rollback")]
        activate_model(s, other.id)  # already active: nothing recorded
        assert s.scalar(select(ModelActivation).order_by(ModelActivation.id.desc())).reason == "rollback"
        with pytest.raises(LookupError):
            activate_model(s, 999)


def test_two_versions_on_the_same_synthetic_batch(ctx, tmp_path):
    folder = tmp_path / "sharp"
    folder.mkdir()
    for name in PHOTOS[:3]:
        rgb = load_photo(name, 64)
        cv2.imwrite(str(folder / f"{Path(name).stem}.png"),
                    cv2.cvtColor(np.rint(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    parent = create_batch(ctx.db, ctx.storage, inputs(folder), mode="synthetic", sigma=2.0)
    with ctx.db.session() as s:
        default_id = s.get(Batch, parent).model_version_id
        other, _ = add_model_file(s, ctx.storage, VARIANT, "variant")
        other_id = other.id
    with pytest.raises(BatchStateError, match="no finished image"):
        rerun_with_model(ctx.db, parent, other_id)

    def ids(batch_id):
        with ctx.db.session() as s:
            return list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)))

    assert process_jobs(ctx, ids(parent))["done"] == 3
    with pytest.raises(BatchStateError, match="choose another"):
        rerun_with_model(ctx.db, parent, default_id)
    with pytest.raises(LookupError, match="no model version 999"):
        rerun_with_model(ctx.db, parent, 999)
    rerun, created = rerun_with_model(ctx.db, parent, other_id)
    assert created and rerun_with_model(ctx.db, parent, other_id) == (rerun, False)
    with pytest.raises(BatchStateError, match="itself a re-run"):
        rerun_with_model(ctx.db, rerun, default_id)
    with ctx.db.session() as s:
        b = s.get(Batch, rerun)
        # paired over the parent's stored blurred inputs and references (not blurred again), its σ kept
        assert (b.mode, b.sigma, b.parent_batch_id, b.model_version_id, b.total) == ("paired", 2.0, parent,
                                                                                      other_id, 3)
    assert process_jobs(ctx, ids(rerun))["done"] == 3
    with ctx.db.session() as s:
        found = compare_batches(s, rerun)
        a_jobs = {j.position: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == parent))}
        b_jobs = {j.position: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == rerun))}
    assert found["final"] and found["paired"] == 3
    assert (found["a"]["model_version_id"], found["b"]["model_version_id"]) == (default_id, other_id)
    for pos, a in a_jobs.items():
        b = b_jobs[pos]
        assert (b.original_name, b.input_ssim) == (a.original_name, a.input_ssim)  # the same blurred pixels
        assert (b.input_path, b.reference_path) == (a.input_path, a.reference_path)  # the stored files, no copy
        assert b.output_path != a.output_path and ctx.storage.resolve(b.output_path).is_file()
    row = found["images"][0]
    assert row["d_ssim"] == pytest.approx(row["b_ssim"] - row["a_ssim"]) and row["a_ssim"] != row["b_ssim"]
    assert found["mean_d_ssim"] == pytest.approx(sum(r["d_ssim"] for r in found["images"]) / 3)
    assert found["b_better"] + found["b_worse"] == 3
    with ctx.db.session() as s, pytest.raises(LookupError, match="not a re-run"):
        compare_batches(s, parent)


def test_the_first_activation_can_be_rolled_back_to_the_shipped_default(ctx):
    with ctx.db.session() as s:
        other, _ = add_model_file(s, ctx.storage, VARIANT, "variant")
        activate_model(s, other.id)  # nothing was active yet: no batch had registered the default
        back = rollback_model(s)
        assert back.name == "shipped default" and back.active and back.path == str(default_model_path())
