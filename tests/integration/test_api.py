"""The JSON API and the HTML forms over a real database and Redis: every route, and its 4xx answers."""
from __future__ import annotations

import io
import json
import re
import zipfile

import cv2
import numpy as np
import pytest
import redis

from dashboard import create_app
from dashboard.config import DashboardConfig, ExposedWithoutToken
from shared.models import CANCELLED, DONE, FAILED, QUEUED
from tests import zips

from .conftest import photo_crops

TOKEN = "s3cret-token"


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(np.rint(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    return [png(c) for c in photo_crops(4, 48)]


def make_client(stack, **config):
    app = create_app(stack.settings, DashboardConfig(**{"max_upload_bytes": 4 << 20, "max_files": 20, **config}))
    app.testing = True
    return app, app.test_client()


@pytest.fixture
def stack(make_stack, sqlite_url, redis_url):
    return make_stack(sqlite_url, redis_url)


@pytest.fixture
def client(stack):
    return make_client(stack)[1]


def files(*items):
    return [(io.BytesIO(data), name) for name, data in items]


def submit(client, items, headers=None, **fields):
    return client.post("/api/v1/batches", data={"files": files(*items), **fields}, headers=headers or {},
                       content_type="multipart/form-data")


def test_submit_list_read_and_the_message_on_redis(client, stack, pngs, redis_url):
    r = submit(client, [("a.png", pngs[0]), ("b.png", pngs[1]), ("c.png", pngs[2])], name="three")
    assert r.status_code == 201, r.json
    batch = r.json
    assert (batch["name"], batch["mode"], batch["total"], batch["status"], batch["sent"]) == ("three", "restore", 3,
                                                                                              QUEUED, True)
    assert r.headers["Location"].endswith(f"/api/v1/batches/{batch['id']}")
    assert redis.Redis.from_url(redis_url).llen("sharpen") == 1  # one chunk of ids, sent after commit
    listed = client.get("/api/v1/batches").json
    assert listed["total"] == 1 and listed["batches"][0]["id"] == batch["id"]
    one = client.get(f"/api/v1/batches/{batch['id']}").json
    assert one["counts"] == {"queued": 3, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    metrics = client.get(f"/api/v1/batches/{batch['id']}/metrics").json
    assert [im["original_name"] for im in metrics["images"]] == ["a.png", "b.png", "c.png"]
    assert metrics["page"] == {"page": 1, "per_page": 1000, "total": 3, "pages": 1}
    stored = sorted(p.name for p in (stack.storage.batch_dir(batch["id"]) / "input").iterdir())
    assert len(stored) == 3 and all(re.fullmatch(r"\d+\.png", n) for n in stored)  # ids on disk, never names


@pytest.mark.parametrize("case, status, words", [
    ("no files", 400, "no files"),
    ("unknown mode", 400, "unknown mode"),
    ("synthetic without sigma", 400, "needs a blur sigma"),
    ("bad sigma", 400, "sigma must be a number"),
    ("paired without references", 400, "needs reference images"),
    ("oversized upload", 413, "larger than the 4 MiB allowed"),
    ("too many files", 413, "more than 20 files"),
    ("zip slip", 400, "zip slip"),
    ("zip symlink", 400, "symbolic link"),
    ("nested zip", 400, "archives inside"),
    ("zip bomb", 400, "decompression bomb"),
    ("not a zip", 400, "not a readable zip"),
])
def test_submit_refusals(client, pngs, case, status, words):
    one = [("a.png", pngs[0])]
    kw = {
        "no files": dict(items=[]),
        "unknown mode": dict(items=one, mode="sharpest"),
        "synthetic without sigma": dict(items=one, mode="synthetic"),
        "bad sigma": dict(items=one, mode="synthetic", sigma="two"),
        "paired without references": dict(items=one, mode="paired"),
        "oversized upload": dict(items=[("big.png", bytes(5 << 20))]),
        "too many files": dict(items=[(f"{i}.png", pngs[0]) for i in range(21)]),
        "zip slip": dict(items=[("x.zip", zips.zip_slip())]),
        "zip symlink": dict(items=[("x.zip", zips.zip_symlink())]),
        "nested zip": dict(items=[("x.zip", zips.zip_nested())]),
        "zip bomb": dict(items=[("x.zip", zips.zip_bomb(16))]),
        "not a zip": dict(items=[("x.zip", b"PK\x03\x04broken")]),
    }[case]
    r = submit(client, kw.pop("items"), **kw)
    assert r.status_code == status, r.json
    assert r.is_json and words in r.json["error"] and r.json["status"] == status
    assert client.get("/api/v1/batches").json["total"] == 0  # nothing half-made


def test_unknown_batch_image_and_kind(client, pngs):
    for method, url in [("get", "/api/v1/batches/999"), ("get", "/api/v1/batches/999/metrics"),
                        ("post", "/api/v1/batches/999/retry"), ("post", "/api/v1/batches/999/cancel"),
                        ("get", "/api/v1/batches/999/download"), ("get", "/api/v1/batches/999/images/1/output"),
                        ("get", "/api/v1/batches/999/images/1/input/thumbnail")]:
        r = getattr(client, method)(url)
        assert r.status_code == 404 and "no batch 999" in r.json["error"], url
    batch_id = submit(client, [("a.png", pngs[0])]).json["id"]
    assert client.get(f"/api/v1/batches/{batch_id}/images/99999/input").status_code == 404
    job_id = client.get(f"/api/v1/batches/{batch_id}/metrics").json["images"][0]["id"]
    assert client.get(f"/api/v1/batches/{batch_id}/images/{job_id}/secrets").status_code == 404
    r = client.get(f"/api/v1/batches/{batch_id}/images/{job_id}/output")
    assert r.status_code == 404 and "no output file" in r.json["error"]  # not processed (no worker here)
    r = client.get(f"/api/v1/batches/{batch_id}/download")
    assert r.status_code == 404 and "no finished images" in r.json["error"]
    assert client.get(f"/api/v1/batches/{batch_id}/images/{job_id}/input").data == pngs[0]
    assert client.get("/batches/999").status_code == 404


def test_cancel_then_retry(client, pngs):
    batch_id = submit(client, [(f"{i}.png", p) for i, p in enumerate(pngs)]).json["id"]
    r = client.post(f"/api/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200 and r.json["cancelled"] == 4
    b = client.get(f"/api/v1/batches/{batch_id}").json
    assert b["status"] == CANCELLED and b["final"] and b["counts"][CANCELLED] == 4 and b["percent"] == 100.0
    r = client.post(f"/api/v1/batches/{batch_id}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json["error"]
    r = client.post(f"/api/v1/batches/{batch_id}/retry")
    assert r.status_code == 200 and r.json["requeued"] == 4
    b = client.get(f"/api/v1/batches/{batch_id}").json
    assert b["status"] == QUEUED and b["counts"][QUEUED] == 4 and not b["final"]
    r = client.post(f"/api/v1/batches/{batch_id}/retry")
    assert r.status_code == 409 and "no failed or cancelled" in r.json["error"]


def test_token_rules(stack, pngs):
    _, client = make_client(stack, api_token=TOKEN)
    r = submit(client, [("a.png", pngs[0])])
    assert r.status_code == 401 and "needs an API token" in r.json["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = submit(client, [("a.png", pngs[0])], headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json["error"] == "wrong API token"
    for url in ("/api/v1/batches/1/retry", "/api/v1/batches/1/cancel"):
        assert client.post(url).status_code == 401
    r = submit(client, [("a.png", pngs[0])], headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201
    assert client.get("/api/v1/batches").status_code == 200  # reads stay open
    r = submit(client, [("a.png", pngs[0])], headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json["error"]


def csrf_of(client, url="/batches/new") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def test_html_forms_need_the_csrf_token(client, pngs):
    data = {"files": files(("a.png", pngs[0])), "mode": "restore"}
    r = client.post("/batches/new", data=data, content_type="multipart/form-data")
    assert r.status_code == 400 and "CSRF" in r.text
    token = csrf_of(client)
    r = client.post("/batches/new", data={**data, "files": files(("a.png", pngs[0])), "csrf_token": "forged"},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    r = client.post("/batches/new", data={**data, "files": files(("a.png", pngs[0])), "csrf_token": token},
                    content_type="multipart/form-data")
    assert r.status_code == 303 and re.search(r"/batches/\d+$", r.headers["Location"])
    batch_id = int(r.headers["Location"].rsplit("/", 1)[1])
    assert client.post(f"/batches/{batch_id}/cancel").status_code == 400  # no token
    r = client.post(f"/batches/{batch_id}/cancel", data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get(f"/api/v1/batches/{batch_id}").json["status"] == CANCELLED
    r = client.post("/batches/new", data={"files": files(("a.png", pngs[0])), "mode": "odd", "csrf_token": token},
                    content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert r.status_code == 400 and "unknown mode" in r.json["error"]  # the upload page's XHR
    r = client.post("/batches/new", data={"files": files(("big.png", bytes(5 << 20))), "csrf_token": token},
                    content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert r.status_code == 413 and "larger than the 4 MiB allowed" in r.json["error"]  # shown by the page


def test_pages_need_a_login_when_a_token_is_set(stack, pngs):
    _, client = make_client(stack, api_token=TOKEN)
    token = csrf_of(client)
    data = lambda: {"files": files(("a.png", pngs[0])), "csrf_token": token}  # noqa: E731
    r = client.post("/batches/new", data=data(), content_type="multipart/form-data")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    r = client.post("/login", data={"token": "nope", "csrf_token": token, "next": "/batches/new"})
    assert r.status_code == 401 and "Wrong token" in r.text
    r = client.post("/login", data={"token": TOKEN, "next": "//evil.example/", "csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == "/"  # never off-site
    token = csrf_of(client)  # a new session after login
    r = client.post("/batches/new", data={"files": files(("a.png", pngs[0])), "csrf_token": token},
                    content_type="multipart/form-data")
    assert r.status_code == 303


def test_refuses_to_listen_beyond_loopback_without_a_token(stack):
    from dataclasses import replace

    exposed = replace(stack.settings, dashboard_host="0.0.0.0")
    with pytest.raises(ExposedWithoutToken, match="SHARPEN_API_TOKEN"):
        create_app(exposed, DashboardConfig())
    create_app(exposed, DashboardConfig(api_token=TOKEN))
    create_app(replace(stack.settings, dashboard_host="::1"), DashboardConfig())


def test_security_headers_and_openapi_covers_every_route(stack, client):
    r = client.get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in r.text and " style=" not in r.text  # the CSP forbids both
    spec = client.get("/api/v1/openapi.json").json
    app, _ = make_client(stack)
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")}
    assert routes == set(spec["paths"])
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            assert {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}} <= set(spec["paths"][path]), rule
    assert client.get("/workers").status_code == 200


def test_a_batch_through_a_real_worker(stack, pngs, tmp_path):
    """A paired zip (reference/ folder, a corrupt image, a text file) through the API and a worker; then the
    metrics, thumbnails (cached), files, the streamed zip, and a retry of the failures."""
    stack.start("worker", "--queue", "sharpen")
    _, client = make_client(stack)
    blurred = [png(cv2.GaussianBlur(c, (0, 0), 2.0)) for c in photo_crops(4, 48)]
    archive = zips.zip_bytes({**{f"set/img{i}.png": b for i, b in enumerate(blurred)},
                              **{f"set/reference/img{i}.png": p for i, p in enumerate(pngs)},
                              "set/broken.jpg": b"\xff\xd8\xff\xe0" + bytes(200), "set/readme.txt": b"hello",
                              "set/reference/broken.png": pngs[0], "set/reference/readme.png": pngs[1]})
    r = submit(client, [("photos.zip", archive)], mode="paired")
    assert r.status_code == 201, r.json
    batch_id = r.json["id"]
    assert r.json["total"] == 6
    b = stack.wait_batch(batch_id)
    data = client.get(f"/api/v1/batches/{batch_id}").json
    assert (data["counts"]["done"], data["counts"]["failed"], data["final"]) == (4, 2, True)
    metrics = client.get(f"/api/v1/batches/{batch_id}/metrics").json
    errors = {im["original_name"]: im["error"] for im in metrics["images"] if im["status"] == FAILED}
    assert set(errors) == {"set/broken.jpg", "set/readme.txt"}
    assert all(name in error for name, error in errors.items())  # each failure names its file
    assert "not a supported image" in errors["set/readme.txt"]
    assert metrics["batch"]["mean_ssim"] == pytest.approx(b.mean_ssim) and b.mean_ssim > b.mean_input_ssim
    assert metrics["histogram"]["n"] == 4
    from dashboard.queries import batch_metrics  # the same function `sharpen metrics --json` prints
    with stack.db.session() as s:
        assert json.loads(json.dumps(batch_metrics(s, s.get(type(b), batch_id)))) == {
            k: v for k, v in metrics.items() if k in ("batch", "images")}

    done = [im for im in metrics["images"] if im["status"] == DONE][0]
    base = f"/api/v1/batches/{batch_id}/images/{done['id']}"
    for kind in ("input", "output", "reference"):
        r = client.get(f"{base}/{kind}/thumbnail")
        assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.data[:2] == b"\xff\xd8"
    thumbs = sorted((stack.storage.root / "thumbs" / str(batch_id)).iterdir())
    stamps = [t.stat().st_mtime_ns for t in thumbs]
    client.get(f"{base}/output/thumbnail")
    assert [t.stat().st_mtime_ns for t in thumbs] == stamps and len(thumbs) == 3  # cached, not remade
    r = client.get(f"{base}/output")
    assert r.status_code == 200 and 'filename=img' in r.headers["Content-Disposition"]

    r = client.get(f"/api/v1/batches/{batch_id}/download")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.data)) as zf:
        assert sorted(zf.namelist()) == [f"img{i}.png" for i in range(4)]
        assert zf.testzip() is None

    r = client.post(f"/api/v1/batches/{batch_id}/retry")
    assert r.status_code == 200 and r.json["requeued"] == 2
    b = stack.wait_batch(batch_id)
    assert (b.done_count, b.failed_count) == (4, 2)  # they fail again, for the same reasons

    workers = client.get("/api/v1/workers").json
    assert [w["queues"] for w in workers["workers"]] == [["sharpen"]] and workers["workers"][0]["device"] == "cpu"
    assert workers["queues"]["sharpen"] == 0 and workers["broker"] == stack.settings.broker_url
    assert "idle" in client.get("/workers").text

    page = client.get(f"/batches/{batch_id}")
    assert page.status_code == 200 and "set/broken.jpg" in page.text and "Download all outputs" in page.text
    assert client.get(f"/batches/{batch_id}/images/{done['id']}").status_code == 200
    assert client.get(f"/batches/{batch_id}/live?status=failed").status_code == 200
    assert client.get(f"/batches/{batch_id}?batch_id=3&page=x&status=odd&gpage=-1").status_code == 200


def test_pages_render_batches_with_and_without_scores(client, pngs):
    submit(client, [("a.png", pngs[0])])  # restore: never scored
    r = client.get("/")
    assert r.status_code == 200 and "a.png" in r.text
    assert client.get("/api/v1/batches").json["batches"][0]["ssim_gain"] is None


def test_the_workers_panel_knows_busy_workers_by_their_leases(client, stack, pngs):
    """A solo worker busy with a task does not answer the broadcast; the image it holds under a live lease
    still shows it online, doing that image (an expired lease shows nothing)."""
    import socket
    from datetime import timedelta

    from sqlalchemy import update

    from shared.models import RUNNING, ImageJob, utcnow

    batch_id = submit(client, [("a.png", pngs[0]), ("b.png", pngs[1])]).json["id"]
    first, second = [im["id"] for im in client.get(f"/api/v1/batches/{batch_id}/metrics").json["images"]]

    def hold(job_id, worker, seconds):
        with stack.db.session() as s:
            s.execute(update(ImageJob).where(ImageJob.id == job_id).values(
                status=RUNNING, worker=worker, lease_expires_at=utcnow() + timedelta(seconds=seconds)))

    hold(first, "gpu-box:4242", 60)
    hold(second, "gpu-box:4243", -1)
    workers = client.get("/api/v1/workers").json["workers"]
    assert [(w["name"], w["host"], w["pid"], w["queues"], w["busy"]) for w in workers] == [
        ("gpu-box:4242", "gpu-box", 4242, ["sharpen"], True)]
    assert [(t["job_ids"], t["batch_id"]) for t in workers[0]["tasks"]] == [([first], batch_id)]
    page = client.get("/workers").text
    assert "sharpening 1 image of" in page and f'href="/batches/{batch_id}"' in page and "busy" in page

    trainer = stack.start("worker", "--queue", "train")  # answers the broadcast; not a consumer of this batch
    hold(first, f"{socket.gethostname()}:{trainer.pid}", 60)
    workers = client.get("/api/v1/workers").json["workers"]
    assert len(workers) == 1 and workers[0]["name"].startswith("train-") and workers[0]["pid"] == trainer.pid
    assert workers[0]["busy"] and [(t["job_ids"], t["batch_id"]) for t in workers[0]["tasks"]] == [([first], batch_id)]


def test_an_image_over_the_pixel_limit_fails_alone_with_the_limit_named(make_stack, sqlite_url, redis_url):
    stack = make_stack(sqlite_url, redis_url, SHARPEN_MAX_PIXELS=2000)
    stack.start("worker", "--queue", "sharpen")
    _, client = make_client(stack)
    small, big = photo_crops(1, 40)[0], photo_crops(1, 48)[0]  # 1,600 and 2,304 pixels
    batch_id = submit(client, [("small.png", png(small)), ("big.png", png(big))]).json["id"]
    stack.wait_batch(batch_id)
    images = {im["original_name"]: im for im in client.get(f"/api/v1/batches/{batch_id}/metrics").json["images"]}
    assert images["small.png"]["status"] == DONE
    assert images["big.png"]["status"] == FAILED
    assert images["big.png"]["error"] == "big.png: too large: 48x48 pixels, the limit is 2,000"


def test_uploaded_files_are_spooled_to_disk_under_the_storage_root(stack, pngs):
    """The request parser writes every uploaded file, small or large, to a file in STORAGE_ROOT/uploads (not
    memory, not /tmp)."""
    import os

    app, _ = make_client(stack)
    data = {"files": files(("a.png", pngs[0]), ("big.png", bytes(1 << 20)))}
    with app.test_request_context("/api/v1/batches", method="POST", data=data, content_type="multipart/form-data"):
        from flask import request

        streams = [f.stream for f in request.files.getlist("files")]
        assert len(streams) == 2
        for stream in streams:
            where = os.readlink(f"/proc/self/fd/{stream.fileno()}")
            assert where.startswith(str(stack.storage.root / "uploads")), where
