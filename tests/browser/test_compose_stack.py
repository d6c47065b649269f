"""The stack docker-compose.yml describes, run outside docker: gunicorn serving ``dashboard.wsgi:app`` with
the compose file's options, the compose worker command, PostgreSQL and Redis. The batch page's polling
must work there as it does under ``sharpen up`` (its development server)."""
from __future__ import annotations

import json
import re
import time
import urllib.request

import cv2
import pytest

from tests.integration.conftest import photo_crops, write_png
from tests.served import start_compose_like

from .conftest import log_in, shot

IMAGES = 12


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory):
    # One chunk holds the whole batch: progress recounted per chunk would jump 0 → 100 %.
    running, stop = start_compose_like(tmp_path_factory.mktemp("compose"), SHARPEN_CHUNK_SIZE=IMAGES,
                                       SHARPEN_POLL_MS=200)
    yield running
    stop()


def progress(served, batch_id: int) -> dict:
    """What the batch page polls (its data-progress-url)."""
    with urllib.request.urlopen(f"{served.url}/api/v1/batches/{batch_id}", timeout=10) as r:
        return json.load(r)


def test_under_gunicorn_progress_moves_per_image_and_the_page_reaches_100(browser, compose_stack, tmp_path):
    folder = tmp_path / "pics"
    for i, crop in enumerate(photo_crops(IMAGES, 224)):  # 448 px: each image takes a visible moment
        write_png(folder / f"p{i}.png", cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC).clip(0, 1))
    context = log_in(browser, compose_stack)
    page = context.new_page()
    page.goto(compose_stack.url + "/batches/new")
    page.check('input[name="mode"][value="synthetic"]')  # scored: σ = 2 (the form's default)
    page.set_input_files("#folder", str(folder))
    page.click("#submit")
    page.wait_for_url(re.compile(r".*/batches/\d+$"))
    batch_id = int(page.url.rsplit("/", 1)[1])
    assert page.get_attribute("#progress", "data-progress-url") == f"/api/v1/batches/{batch_id}"
    page.evaluate("window.__notReloaded = true")

    ended, recorded, bar, deadline = [], [], [], time.time() + 120
    means_while_running = set()
    while True:
        b = progress(compose_stack, batch_id)
        if 0 < b["ended"] < IMAGES:
            means_while_running.add(b["mean_ssim"])
        value = page.eval_on_selector("#batch-progress", "e => e.value")
        if not ended or b["ended"] != ended[-1]:
            ended.append(b["ended"])
        if not recorded or b["done_count"] + b["failed_count"] != recorded[-1]:
            recorded.append(b["done_count"] + b["failed_count"])  # the batch row's counters
        if not bar or value != bar[-1]:
            bar.append(value)
        if b["final"] and value >= 100:
            break
        assert time.time() < deadline, f"stuck: endpoint {ended}, bar {bar}"
        time.sleep(0.02)
    assert b["status"] == "done" and b["counts"]["done"] == IMAGES
    for seen in (ended, recorded):
        within_the_chunk = [e for e in seen if 0 < e < IMAGES]
        assert len(within_the_chunk) >= 3, f"progress did not move per image: {seen}"
        assert seen == sorted(seen) and seen[-1] == IMAGES
    assert any(0 < v < 100 for v in bar) and bar[-1] == 100 and bar == sorted(bar), bar
    assert None not in means_while_running and len(means_while_running) >= 2  # as of now, not of the chunk's end
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_selector(".page-head .badge-done")
    assert page.inner_text('[data-field="ended"]') == str(IMAGES)
    shot(page, "gunicorn-batch-done")
    context.close()
    assert context.console_errors == []


def test_every_compose_service_is_up_and_the_workers_panel_sees_them(browser, compose_stack):
    """Beat, the trainer and the sweeper started from the compose file's commands, and still run."""
    assert all(proc.poll() is None for proc in compose_stack.stack.procs)
    with urllib.request.urlopen(f"{compose_stack.url}/api/v1/workers", timeout=10) as r:
        workers = json.load(r)["workers"]
    assert sorted(q for w in workers for q in w["queues"]) == ["scheduler", "sharpen", "train"]
    page = browser.new_page()
    page.goto(compose_stack.url + "/workers")
    assert page.locator("#workers tbody tr").count() == 3
    page.close()


def test_the_cli_wait_bar_moves_per_image_locally_and_over_http(compose_stack, tmp_path):
    """``sharpen submit --wait`` reads the batch row (beside the database) or the API (``--server``): both
    bars pass through counts inside the batch's only chunk."""
    import subprocess
    import sys

    folder = tmp_path / "cli"
    for i, crop in enumerate(photo_crops(IMAGES, 224)):
        write_png(folder / f"c{i}.png", cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC).clip(0, 1))
    stack = compose_stack.stack
    remote = ["--server", compose_stack.url, "--token", compose_stack.token]
    for where in (["--name", "local"], ["--name", "remote", *remote]):
        out = subprocess.run([sys.executable, "-m", "shared.cli", "submit", str(folder), "--wait", "--timeout", "120",
                              *where], env=stack.env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert f"done: {IMAGES}/{IMAGES} ({IMAGES} done, 0 failed)" in out.stdout, out.stdout
        counts = {int(n) for n in re.findall(rf"(\d+)/{IMAGES} \[", out.stderr)}
        assert len({n for n in counts if 0 < n < IMAGES}) >= 2, (where[1], out.stderr[-2000:])


def test_slow_uploads_do_not_stall_the_pages(compose_stack):
    """Three uploads that trickle in (as over a slow link) hold three of gunicorn's threads; the progress
    endpoint still answers at once (with the sync worker class they would hold both processes)."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(compose_stack.url)
    head = (f"POST /api/v1/batches HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Bearer {compose_stack.token}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 10000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"files\"; "
            "filename=\"a.png\"\r\n\r\n").encode()
    slow = [socket.create_connection((address.hostname, address.port)) for _ in range(3)]
    try:
        for s in slow:
            s.sendall(head + bytes(1000))
        time.sleep(0.5)
        t0 = time.time()
        with urllib.request.urlopen(compose_stack.url + "/api/v1/batches", timeout=10) as r:
            assert r.status == 200
        assert time.time() - t0 < 3
    finally:
        for s in slow:
            s.close()
