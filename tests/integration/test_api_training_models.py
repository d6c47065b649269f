"""The training and model-registry API and forms over a real database and Redis: every route and its 4xx
answers (a data root outside the configured ones, cancel of a finished run, missing token, bad model files)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update

from dashboard import create_app
from dashboard.config import DashboardConfig
from shared.inference import default_model_path
from shared.models import DONE, ImageJob, TrainingRun
from worker.pipeline import WorkerContext, process_jobs

from .conftest import photo_crops, write_png
from .test_api import TOKEN, csrf_of, png

VARIANT = Path(default_model_path()).parent / "variants" / "s2d-plain.pt"


@pytest.fixture
def stack(make_stack, sqlite_url, redis_url):
    return make_stack(sqlite_url, redis_url)


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for i, crop in enumerate(photo_crops(4, 64)):
        write_png(root / "photos" / f"p{i}.png", crop)
    write_png(tmp_path / "secret" / "s.png", photo_crops(1, 32)[0])
    return root


def client_for(stack, data_root, **config):
    app = create_app(stack.settings, DashboardConfig(**{"data_roots": (data_root,), "max_model_bytes": 1 << 20,
                                                        **config}))
    app.testing = True
    return app.test_client()


@pytest.fixture
def client(stack, data_root):
    return client_for(stack, data_root)


RUN = {"data": ["data/photos"], "epochs": 1, "crop": 96, "batch_size": 4, "patches_per_image": 2,
       "val_max_side": 64}


def test_queue_a_run_read_it_and_the_message_on_redis(client, stack, data_root, redis_url):
    options = client.get("/api/v1/runs/options").json
    assert [f["id"] for f in options["data_folders"]] == ["data/photos"]
    assert "student-s2d-wiener" in options["architectures"] and "plain" in options["presets"]
    r = client.post("/api/v1/runs", json={**RUN, "activate_if_better": True})
    assert r.status_code == 201, r.json
    run = r.json
    assert (run["status"], run["epochs_total"], run["activate_if_better"], run["sent"]) == ("queued", 1, True, True)
    assert run["config"]["data"] == [str(data_root / "photos")] and run["config"]["crop"] == 96
    assert r.headers["Location"].endswith(f"/api/v1/runs/{run['id']}")
    assert redis.Redis.from_url(redis_url).llen("train") == 1  # sent on the train queue after commit
    listed = client.get("/api/v1/runs").json
    assert listed["total"] == 1 and listed["runs"][0]["id"] == run["id"]
    one = client.get(f"/api/v1/runs/{run['id']}").json
    assert one["epochs"] == [] and one["files"] == [] and one["log_tail"] == [] and not one["final"]
    form = client.post("/api/v1/runs", data={**RUN, "data": "data/photos"})  # form fields work as well
    assert form.status_code == 201 and form.json["config"]["epochs"] == 1


@pytest.mark.parametrize("sent, words", [
    ({"data": ["/etc"]}, "unknown data folder '/etc'"),
    ({"data": ["../secret"]}, "unknown data folder '../secret'"),
    ({"data": ["data/../secret"]}, "unknown data folder"),
    ({"data": []}, "choose at least one data folder"),
    ({"preset": "fastest"}, "unknown preset"),
    ({"epochs": 0}, "epochs must be between"),
    ({"crop": "big"}, "crop must be a whole number"),
    ({"teacher": "1"}, "unknown teacher"),
])
def test_run_requests_refused(client, stack, data_root, sent, words):
    r = client.post("/api/v1/runs", json={**RUN, **sent})
    assert r.status_code == 400 and words in r.json["error"] and r.json["status"] == 400, r.json
    r = client.post("/api/v1/runs", json={**RUN, "data": [str(data_root / "photos")]})  # the real path: still no
    assert r.status_code == 400 and "unknown data folder" in r.json["error"]
    assert client.get("/api/v1/runs").json["total"] == 0  # nothing queued
    assert client.post("/api/v1/runs", data=b"[1, 2]", content_type="application/json").status_code == 400


def test_cancel_a_queued_run_then_a_finished_one(client, stack):
    run_id = client.post("/api/v1/runs", json=RUN).json["id"]
    r = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json["outcome"] == "cancelled"
    assert client.get(f"/api/v1/runs/{run_id}").json["status"] == "cancelled"
    r = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json["error"]
    done = client.post("/api/v1/runs", json=RUN).json["id"]
    with stack.db.session() as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == done).values(status=DONE))
    r = client.post(f"/api/v1/runs/{done}/cancel")
    assert r.status_code == 409 and "already done" in r.json["error"]
    r = client.post("/api/v1/runs/999/cancel")
    assert r.status_code == 404 and "no training run 999" in r.json["error"]
    assert client.get("/api/v1/runs/999").status_code == 404


def upload(client, data: bytes, filename="model.pt", headers=None, **fields):
    return client.post("/api/v1/models", data={"file": (io.BytesIO(data), filename), **fields}, headers=headers or {},
                       content_type="multipart/form-data")


def test_add_a_model_file_activate_it_and_roll_back(client, stack):
    default_id = client.post("/api/v1/batches", data={"files": [(io.BytesIO(png(photo_crops(1, 32)[0])), "a.png")]},
                             content_type="multipart/form-data").json["model_version_id"]  # registers the default
    r = upload(client, VARIANT.read_bytes(), "s2d plain.pt", name="variant")
    assert r.status_code == 201, r.json
    added = r.json
    assert added["created"] and added["path"].startswith("models/added-") and added["arch"] == "student-s2d"
    assert stack.storage.resolve(added["path"]).read_bytes() == VARIANT.read_bytes()
    assert added["parameters"] > 10_000 and not added["active"] and added["batches"] == 0
    again = upload(client, VARIANT.read_bytes(), "copy.pt")
    assert again.status_code == 200 and again.json["id"] == added["id"] and not again.json["created"]

    r = client.post(f"/api/v1/models/{added['id']}/activate")
    assert r.status_code == 200 and r.json["active"]
    b = client.post("/api/v1/batches", data={"files": [(io.BytesIO(png(photo_crops(1, 32)[0])), "b.png")]},
                    content_type="multipart/form-data").json
    assert b["model_version_id"] == added["id"]  # a new batch uses the active version
    r = client.post("/api/v1/models/rollback")
    assert r.status_code == 200 and r.json["id"] == default_id and r.json["active"]
    assert client.get(f"/api/v1/batches/{b['id']}").json["model_version_id"] == added["id"]  # it keeps its own
    models = client.get("/api/v1/models").json
    counts = {m["id"]: m["batches"] for m in models["models"]}
    assert counts == {added["id"]: 1, default_id: 1}
    assert [a["reason"] for a in models["activations"]] == ["rollback", "activate", "default"]
    assert models["rollback_to"]["id"] == added["id"]
    assert client.post("/api/v1/models/999/activate").status_code == 404
    assert client.get("/api/v1/models/999").status_code == 404


@pytest.mark.parametrize("data, name, status, words", [
    (b"PK\x03\x04 not a model", "evil.pt", 400, "evil.pt is not a readable Sharpen model file"),
    (b"", "empty.pt", 400, "the file is empty"),
    (bytes(2 << 20), "huge.pt", 413, "larger than the 1 MiB allowed for a model file (SHARPEN_MAX_MODEL_MB)"),
    (None, None, 400, "no model file sent"),
])
def test_model_files_refused(client, stack, data, name, status, words):
    r = upload(client, data, name) if data is not None else client.post(
        "/api/v1/models", data={}, content_type="multipart/form-data")
    assert r.status_code == status and words in r.json["error"], r.json
    assert "/uploads/" not in r.json["error"]  # the server's spool path is not shown
    assert client.get("/api/v1/models").json["models"] == []
    models = stack.storage.models_dir
    assert not models.exists() or list(models.iterdir()) == []


def test_compare_two_versions_on_a_batch(client, stack, redis_url):
    files = [(io.BytesIO(png(c)), f"c{i}.png") for i, c in enumerate(photo_crops(3, 48))]
    batch = client.post("/api/v1/batches", data={"files": files, "mode": "synthetic", "sigma": "2"},
                        content_type="multipart/form-data").json
    other = upload(client, VARIANT.read_bytes(), name="variant").json["id"]
    r = client.post("/api/v1/models/compare", json={"batch_id": batch["id"], "model_version_id": other})
    assert r.status_code == 409 and "no finished image" in r.json["error"]
    ctx = WorkerContext.from_settings(stack.settings)

    def process(batch_id):
        with stack.db.session() as s:
            ids = list(s.scalars(select(ImageJob.id).where(ImageJob.batch_id == batch_id)))
        assert process_jobs(ctx, ids)["done"] == len(ids)

    process(batch["id"])
    queue = redis.Redis.from_url(redis_url)
    before = queue.llen("sharpen")
    r = client.post("/api/v1/models/compare", json={"batch_id": batch["id"], "model_version_id": other})
    assert r.status_code == 201 and r.json["created"] and r.json["parent_batch_id"] == batch["id"]
    rerun = r.json["id"]
    assert queue.llen("sharpen") == before + 1  # the re-run goes through the queue like any batch
    again = client.post("/api/v1/models/compare", data={"batch_id": batch["id"], "model_version_id": other})
    assert again.status_code == 200 and again.json["id"] == rerun and not again.json["created"]
    process(rerun)
    found = client.get(f"/api/v1/models/compare/{rerun}").json
    assert found["final"] and found["paired"] == 3
    assert found["a"]["mean_ssim"] == pytest.approx(client.get(f"/api/v1/batches/{batch['id']}").json["mean_ssim"])
    assert all(row["d_ssim"] == pytest.approx(row["b_ssim"] - row["a_ssim"]) for row in found["images"])
    for body, status, words in [({"batch_id": batch["id"], "model_version_id": batch["model_version_id"]}, 409,
                                 "choose another"),
                                ({"batch_id": 999, "model_version_id": other}, 404, "no batch 999"),
                                ({"batch_id": "x"}, 400, "send batch_id and model_version_id")]:
        r = client.post("/api/v1/models/compare", json=body)
        assert r.status_code == status and words in r.json["error"], r.json
    assert client.get(f"/api/v1/models/compare/{batch['id']}").status_code == 404  # not a re-run
    page = client.get(f"/models/compare/{rerun}")
    assert page.status_code == 200 and 'id="study-hook"' in page.text and "c0.png" in page.text
    ctx.db.dispose()


def test_token_rules(stack, data_root):
    client = client_for(stack, data_root, api_token=TOKEN)
    writes = [("/api/v1/runs", {"json": RUN}), ("/api/v1/runs/1/cancel", {}), ("/api/v1/models/1/activate", {}),
              ("/api/v1/models/rollback", {}), ("/api/v1/models/compare", {"json": {"batch_id": 1,
                                                                                    "model_version_id": 2}}),
              ("/api/v1/models", {"data": {"file": (io.BytesIO(b"x"), "m.pt")}})]
    for url, kw in writes:
        r = client.post(url, **kw)
        assert r.status_code == 401 and "needs an API token" in r.json["error"], url
        assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
    for url in ("/api/v1/runs", "/api/v1/runs/options", "/api/v1/models", "/training", "/models", "/training/new"):
        assert client.get(url).status_code == 200, url  # reads stay open
    r = client.post("/api/v1/runs", json=RUN, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201
    r = client.post("/api/v1/runs", json=RUN, headers={"Authorization": f"Bearer {TOKEN}",
                                                       "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/training/new", data={"data": "data/photos", "csrf_token": csrf_of(client, "/training/new")})
    assert r.status_code == 302 and "/login" in r.headers["Location"]  # the pages want a login


def test_the_forms_need_the_csrf_token_and_say_what_is_wrong(client, stack):
    form = {"data": "data/photos", "epochs": "1", "crop": "96"}
    assert client.post("/training/new", data=form).status_code == 400  # no CSRF token
    token = csrf_of(client, "/training/new")
    r = client.post("/training/new", data={**form, "data": "../../etc", "csrf_token": token})
    assert r.status_code == 400 and "unknown data folder" in r.text and 'value="../../etc"' not in r.text
    r = client.post("/training/new", data={**form, "csrf_token": token})
    assert r.status_code == 303 and re.search(r"/training/runs/\d+$", r.headers["Location"])
    run_id = int(r.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/training/runs/{run_id}").text
    assert 'id="cancel-run"' in page and 'id="curve-loss"' in page
    assert client.post(f"/training/runs/{run_id}/cancel").status_code == 400
    assert client.post(f"/training/runs/{run_id}/cancel", data={"csrf_token": token}).status_code == 303
    assert client.get(f"/api/v1/runs/{run_id}").json["status"] == "cancelled"
    assert client.post("/models/rollback").status_code == 400
    r = client.post("/models/add", data={"file": (io.BytesIO(b"junk"), "junk.pt"), "csrf_token": token},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and "junk.pt is not a readable Sharpen model file" in r.text
    r = client.post("/models/add", data={"file": (io.BytesIO(bytes(2 << 20)), "big.pt"), "csrf_token": token},
                    content_type="multipart/form-data")
    assert r.status_code == 413
