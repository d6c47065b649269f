"""A 10,000-image batch: its page, progress and metrics answer in under a second (they are paginated)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import insert

from dashboard import create_app
from dashboard.config import DashboardConfig
from shared.models import DONE, FAILED, Batch, ImageJob, utcnow

N = 10_000


@pytest.fixture
def big_batch(make_stack, db_url, redis_url):
    stack = make_stack(db_url, redis_url)
    rng = np.random.default_rng(0)
    now = utcnow()
    with stack.db.session() as s:
        batch = Batch(name="ten thousand", mode="paired", status=DONE, total=N, done_count=N - 10, failed_count=10,
                      mean_ssim=0.9, mean_input_ssim=0.8, mean_psnr=30.0, mean_input_psnr=28.0, created_at=now,
                      started_at=now, finished_at=now)
        s.add(batch)
        s.flush()
        batch_id = batch.id
    inp = rng.uniform(0.6, 0.9, N)
    rows = [dict(batch_id=batch_id, position=i, original_name=f"img{i:05d}.png", input_path=f"batches/x/{i}.png",
                 reference_path=f"batches/x/r{i}.png", output_path=f"batches/x/o{i}.png",
                 status=FAILED if i % 1000 == 0 else DONE, error=f"img{i:05d}.png: corrupt" if i % 1000 == 0 else None,
                 width=64, height=64, ssim=float(inp[i] + 0.05), input_ssim=float(inp[i]), psnr=30.0, input_psnr=28.0,
                 seconds=0.01) for i in range(N)]
    with stack.db.engine.begin() as conn:
        conn.execute(insert(ImageJob), rows)
    return stack, batch_id, inp


def timed(client, url) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = client.get(url)
    return time.perf_counter() - t0, r


def test_big_batch_answers_in_under_a_second(big_batch):
    stack, batch_id, inp = big_batch
    app = create_app(stack.settings, DashboardConfig())
    client = app.test_client()
    client.get("/batches/999")  # templates compiled once, as in a running server
    client.get("/")
    for url in (f"/batches/{batch_id}", f"/batches/{batch_id}?status=failed", f"/batches/{batch_id}?page=200",
                f"/batches/{batch_id}/live", f"/api/v1/batches/{batch_id}", f"/api/v1/batches/{batch_id}/metrics",
                f"/api/v1/batches/{batch_id}/metrics?page=10", "/api/v1/batches", "/"):
        seconds, r = timed(client, url)
        assert r.status_code == 200, url
        assert seconds < 1.0, f"{url} took {seconds:.2f} s"
    metrics = client.get(f"/api/v1/batches/{batch_id}/metrics").json
    assert metrics["page"] == {"page": 1, "per_page": 1000, "total": N, "pages": 10}
    assert metrics["histogram"]["n"] == N - 10
    one = client.get(f"/api/v1/batches/{batch_id}").json
    assert one["counts"]["failed"] == 10
    done = [i for i in range(N) if i % 1000]
    assert one["mean_ssim"] == pytest.approx(float(np.mean(inp[done] + 0.05)))  # counted now, not the row's 0.9
