"""The dashboard in a real headless chromium against a real stack (HTTP server, worker, Redis, SQLite)."""
from __future__ import annotations

import json
import re
import time
import urllib.request
import zipfile

import numpy as np

from tests.integration.conftest import photo_crops, write_png
from tests.zips import zip_bytes

from .conftest import shot

BATCH_PAGE = re.compile(r".*/batches/\d+$")


def api(served, path: str) -> dict:
    with urllib.request.urlopen(served.url + "/api/v1" + path, timeout=10) as r:
        return json.load(r)


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll a JS expression from Python (Playwright's wait_for_function evaluates strings with eval,
    which the pages' CSP forbids)."""
    deadline = time.time() + timeout
    while not page.evaluate(expression):
        assert time.time() < deadline, f"never true: {expression}"
        time.sleep(0.05)


def watch_progress(page, timeout: float = 120) -> list[float]:
    """Values the batch page's progress bar shows, sampled until it reaches 100 %."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        value = page.eval_on_selector("#batch-progress", "e => e.value")
        if not seen or value != seen[-1]:
            seen.append(value)
            if 0 < value < 100 and not any(0 < v < 100 for v in seen[:-1]):
                shot(page, "batch-running", full_page=False)
        if value >= 100:
            return seen
        time.sleep(0.03)
    raise AssertionError(f"the progress bar stopped at {seen}")


def test_upload_a_folder_watch_it_compare_and_download(logged_in, served, tmp_path):
    folder = tmp_path / "holiday"
    names = [f"photo{i:02d}.png" for i in range(16)]
    for name, crop in zip(names, photo_crops(16, 224)):
        write_png(folder / name, crop)
    page = logged_in.new_page()
    page.goto(served.url + "/batches/new")
    page.check('input[name="mode"][value="synthetic"]')
    page.fill('input[name="sigma"]', "2")
    page.fill('input[name="name"]', "holiday, synthetic σ=2")
    page.set_input_files("#folder", str(folder))
    assert page.inner_text("#chosen").startswith("16 files chosen")
    shot(page, "upload")
    page.click("#submit")
    page.wait_for_url(BATCH_PAGE)
    page.evaluate("window.__notReloaded = true")
    seen = watch_progress(page)
    assert any(0 < v < 100 for v in seen), f"no intermediate progress: {seen}"
    assert seen[-1] == 100 and seen == sorted(seen)
    assert page.evaluate("window.__notReloaded") is True  # live, without a reload
    page.wait_for_selector(".page-head .badge-done")
    page.wait_for_selector("#mean-ssim")
    batch_id = int(page.url.rsplit("/", 1)[1])
    batch = api(served, f"/batches/{batch_id}")
    assert batch["counts"]["done"] == 16
    assert page.inner_text("#mean-ssim") == f"{batch['mean_ssim']:.4f}"
    assert batch["mean_ssim"] > batch["mean_input_ssim"]
    assert page.locator("#results-grid .triplet").count() == 12  # a page of the grid
    wait_until(page, "[...document.querySelectorAll('#results-grid img')].every(i => i.complete && i.naturalWidth)")
    shot(page, "batch-done")
    page.set_viewport_size({"width": 400, "height": 860})
    shot(page, "batch-done-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})

    with page.expect_download() as download:
        page.click("#download-all")
    saved = tmp_path / "outputs.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert sorted(zf.namelist()) == names and zf.testzip() is None

    page.click("#results-grid .triplet >> nth=0")
    page.wait_for_url("**/images/*")
    wait_until(page, "[...document.querySelectorAll('#side-view img')].every(i => i.complete && i.naturalWidth)")
    assert page.locator("#side-view figcaption").all_inner_texts() == ["Blurry", "Sharpened", "Reference"]
    assert page.inner_text("#zoom-level").startswith("fit")
    page.click('[data-zoom="1"]')
    assert page.inner_text("#zoom-level") == "100 %"
    box = page.locator("#side-view .viewport").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    assert int(page.inner_text("#zoom-level").split()[0]) > 100
    transforms = page.eval_on_selector_all("#side-view img", "els => els.map(e => e.style.transform)")
    assert len(set(transforms)) == 1  # the three views move together
    shot(page, "compare-side-by-side", full_page=False)
    page.click('[data-mode="slider"]')
    assert page.is_visible("#slider-view") and not page.is_visible("#side-view")
    page.fill("#slider-pos", "30")
    page.dispatch_event("#slider-pos", "input")
    page.click('[data-zoom="fit"]')
    shot(page, "compare-slider", full_page=False)
    first = page.url
    page.keyboard.press("ArrowRight")
    page.wait_for_url(lambda url: url != first)
    page.set_viewport_size({"width": 400, "height": 860})
    page.click('[data-mode="side"]')
    shot(page, "compare-narrow")
    page.goto(served.url + "/workers")
    assert "sharpen" in page.inner_text("#workers")
    shot(page, "workers-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    shot(page, "workers")
    page.goto(served.url + "/")
    assert page.locator("#batches tbody tr").count() >= 1
    shot(page, "batches")
    page.set_viewport_size({"width": 400, "height": 860})
    shot(page, "batches-narrow")
    page.close()


def test_a_zip_with_a_corrupt_image_fails_alone(logged_in, served, tmp_path):
    good = {}
    for i, crop in enumerate(photo_crops(5, 96)):
        path = write_png(tmp_path / f"img{i}.png", crop)
        good[f"scans/img{i}.png"] = path.read_bytes()
    archive = tmp_path / "scans.zip"
    archive.write_bytes(zip_bytes({**good, "scans/broken.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4}))
    page = logged_in.new_page()
    page.goto(served.url + "/batches/new")
    page.set_input_files("#files", str(archive))
    page.click("#submit")
    page.wait_for_url(BATCH_PAGE)
    page.wait_for_selector(".page-head .badge-done", timeout=120_000)
    page.wait_for_selector("#images tr.status-failed")
    row = page.inner_text("#images tr.status-failed")
    assert "scans/broken.jpg" in row and "failed" in row
    assert page.locator("#images tr.status-done").count() == 5
    assert page.inner_text('[data-field="failed"]') == "1"
    assert page.is_visible("#retry")
    assert page.eval_on_selector("#batch-progress", "e => e.value") == 100  # a failure has ended too
    shot(page, "batch-with-failure")
    page.close()


def test_upload_refusals_show_on_the_page(logged_in, served, tmp_path):
    page = logged_in.new_page()
    page.goto(served.url + "/batches/new")
    page.check('input[name="mode"][value="paired"]')
    assert page.is_visible('input[name="references"]') and not page.is_visible('input[name="sigma"]')
    bad = tmp_path / "slip.zip"
    bad.write_bytes(zip_bytes({"../../escape.png": b"x"}))
    page.set_input_files("#files", str(bad))
    page.click("#submit")
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "zip slip" in page.inner_text("#upload-error")
    shot(page, "upload-refused")
    page.set_viewport_size({"width": 400, "height": 860})
    shot(page, "upload-narrow")
    response = page.goto(served.url + "/batches/99999")
    assert response.status == 404 and "There is no batch 99999." in page.inner_text("main")
    shot(page, "not-found-narrow")
    page.close()


def test_files_dropped_on_the_page_are_uploaded(logged_in, served, tmp_path):
    import base64

    pngs = [base64.b64encode(write_png(tmp_path / f"d{i}.png", crop).read_bytes()).decode()
            for i, crop in enumerate(photo_crops(2, 64))]
    page = logged_in.new_page()
    page.goto(served.url + "/batches/new")
    drop = page.evaluate_handle("""(pngs) => {
        const dt = new DataTransfer();
        pngs.forEach((b64, i) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], "dropped" + i + ".png", { type: "image/png" }));
        });
        return dt;
    }""", pngs)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": drop})
    wait_until(page, "document.getElementById('chosen').textContent.startsWith('2 files chosen')")
    page.fill('input[name="name"]', "dropped")
    page.click("#submit")
    page.wait_for_url(BATCH_PAGE)
    batch = api(served, "/batches/" + page.url.rsplit("/", 1)[1])
    assert (batch["name"], batch["total"]) == ("dropped", 2)
    names = [im["original_name"] for im in api(served, f"/batches/{batch['id']}/metrics")["images"]]
    assert names == ["dropped0.png", "dropped1.png"]
    page.close()


def test_the_upload_bar_shows_the_transfer(logged_in, served, tmp_path):
    """The bar under Submit follows the bytes sent, before the batch exists (the upload throttled to
    512 KiB/s with Chromium's network emulation, so ~0.7 MB take over a second)."""
    rng = np.random.default_rng(1)
    sizes = [write_png(tmp_path / "noisy" / f"n{i}.png", rng.random((280, 280, 3), dtype=np.float32)).stat().st_size
             for i in range(3)]  # noise hardly compresses
    page = logged_in.new_page()
    page.goto(served.url + "/batches/new")
    assert page.is_hidden("#upload-progress")
    cdp = logged_in.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 512 * 1024})
    page.set_input_files("#folder", str(tmp_path / "noisy"))
    page.click("#submit")
    values, texts, deadline = [], set(), time.time() + 60
    while not BATCH_PAGE.match(page.url):
        try:
            value, text = page.evaluate("[document.getElementById('upload-progress').value, "
                                        "document.getElementById('upload-status').textContent]")
        except Exception:  # noqa: BLE001 - the page navigated away between the check and the read
            break
        if not values or value != values[-1]:
            values.append(value)
            if 20 < value < 80 and not any(20 < v < 80 for v in values[:-1]):
                shot(page, "upload-transfer")
        texts.add(text)
        assert time.time() < deadline, f"the upload never finished: {values}"
        time.sleep(0.05)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    page.wait_for_url(BATCH_PAGE)
    middle = [v for v in values if 0 < v < 100]
    assert len(middle) >= 3 and values == sorted(values), f"the bar did not follow the transfer: {values}"
    sending = [re.fullmatch(r"Uploading (\d+\.\d) MB of (\d+\.\d) MB", t) for t in texts if t.startswith("Uploading ")]
    assert len(sending) >= 3 and all(sending), texts
    assert all(abs(float(m[2]) - sum(sizes) / 2 ** 20) <= 0.1 and float(m[1]) <= float(m[2]) for m in sending)
    batch = api(served, "/batches/" + page.url.rsplit("/", 1)[1])
    assert (batch["name"], batch["total"]) == ("noisy", 3)
    page.close()


def test_the_workers_panel_refreshes_itself(logged_in, served):
    """A worker that starts shows up on an open workers page, and goes when it stops, without a reload."""
    import os
    import signal

    page = logged_in.new_page()
    page.goto(served.url + "/workers")
    rows = "document.querySelectorAll('#workers tbody tr').length"
    assert page.evaluate(rows) == 1 and "idle" in page.inner_text("#workers")
    page.evaluate("window.__notReloaded = true")
    trainer = served.stack.start("worker", "--queue", "train")
    try:
        wait_until(page, rows + " === 2", timeout=30)
        assert "train" in page.inner_text("#workers") and page.inner_text("#workers-count") == "2"
        assert page.inner_text("#workers-updated").startswith("updated ")
        shot(page, "workers-two")
    finally:
        os.killpg(trainer.pid, signal.SIGTERM)
        trainer.wait(timeout=30)
    wait_until(page, rows + " === 1", timeout=30)
    assert "train" not in page.inner_text("#workers") and page.inner_text("#workers-count") == "1"
    assert page.evaluate("window.__notReloaded") is True
    page.close()
