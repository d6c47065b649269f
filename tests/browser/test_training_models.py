"""Retraining and the model registry in a real headless chromium against the served stack, with a real
trainer process: queue a run from the form and watch its curve appear; cancel another mid-way; add a
model, activate it, submit a batch with it, roll back; compare the two versions on that batch."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from shared.inference import default_model_path
from tests.integration.conftest import photo_crops, write_png

from .conftest import shot
from .test_dashboard import BATCH_PAGE, api, wait_until

RUN_PAGE = re.compile(r".*/training/runs/\d+$")
VARIANT = Path(default_model_path()).parent / "variants" / "s2d-distill.pt"   # one no other browser test registers


@pytest.fixture(scope="module")
def trainer(served):
    """A trainer (worker on the train queue) beside the served stack, for this module's tests."""
    proc = served.stack.start("worker", "--queue", "train")
    yield proc
    served.stack.kill(proc)


@pytest.fixture(scope="module")
def tiny_photos(served):
    """Five small sharp photos in a folder under the served dashboard's data root."""
    folder = Path(served.stack.env["SHARPEN_DATA_ROOTS"]) / "tiny"
    for i, crop in enumerate(photo_crops(5, 96)):
        write_png(folder / f"p{i}.png", crop)
    return "data/tiny"


def api_post(served, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(served.url + "/api/v1" + path, data=json.dumps(body or {}).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {served.token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def fill_run_form(page, folder: str, epochs: int, patches: int) -> None:
    for box in page.locator('input[name="data"]').all():
        box.uncheck()
    page.check(f'input[name="data"][value="{folder}"]')
    page.select_option("#preset", "plain")
    page.fill('input[name="epochs"]', str(epochs))
    page.fill('input[name="crop"]', "48")
    page.click("details summary")
    page.fill('input[name="batch_size"]', "4")
    page.fill('input[name="patches_per_image"]', str(patches))
    page.fill('input[name="val_max_side"]', "64")
    page.fill('input[name="checkpoint_every"]', "1")


def badge(page) -> str:
    return page.inner_text(".page-head .badge")


def test_queue_a_run_watch_its_curve_then_cancel_another(logged_in, served, trainer, tiny_photos):
    page = logged_in.new_page()
    page.goto(served.url + "/training/new")
    assert page.is_visible(f'input[name="data"][value="{tiny_photos}"]')
    fill_run_form(page, tiny_photos, epochs=1, patches=2)
    shot(page, "training-form")
    page.click("#queue-run")
    page.wait_for_url(RUN_PAGE)
    run_id = int(page.url.rsplit("/", 1)[1])
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#curve-loss circle").count() == 0  # nothing trained yet when the page opens
    wait_until(page, "document.querySelectorAll('#curve-loss circle').length === 1", timeout=120)
    wait_until(page, "document.querySelector('.page-head .badge').textContent === 'done'", timeout=60)
    assert page.evaluate("window.__notReloaded") is True  # the curve came in without a reload
    assert page.locator("#curve-ssim circle").count() == 2  # val SSIM and the blurred input's
    run = api(served, f"/runs/{run_id}")
    assert run["status"] == "done" and [e["epoch"] for e in run["epochs"]] == [1]
    assert page.inner_text('[data-field="last_val_ssim"]') == f"{run['last_val_ssim']:.4f}"
    wait_until(page, "document.querySelectorAll('#run-files [data-file]').length === 2")
    assert "done: model version" in page.inner_text("#run-log")
    shot(page, "run-done")

    page.goto(served.url + "/training/new")
    fill_run_form(page, tiny_photos, epochs=500, patches=4)
    page.click("#queue-run")
    page.wait_for_url(RUN_PAGE)
    second = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector('#run-files [data-file="checkpoint.pt"]', timeout=120_000)  # live, after epoch 1
    shot(page, "run-training")
    page.click("#cancel-run")
    page.wait_for_selector(".flash")
    assert "stopping" in page.inner_text(".flash") or badge(page) == "cancelled"
    wait_until(page, "document.querySelector('.page-head .badge').textContent === 'cancelled'", timeout=60)
    run = api(served, f"/runs/{second}")
    assert run["status"] == "cancelled" and 1 <= run["checkpoint_epoch"] <= run["epochs_done"] < 500
    wait_until(page, "document.getElementById('run-log').textContent.includes('is kept')")
    kept = served.stack.storage.run_dir(second) / "checkpoint.pt"
    assert torch.load(kept, weights_only=False)["epoch"] == run["checkpoint_epoch"]  # the checkpoint stays
    assert page.inner_text('#run-files [data-file="checkpoint.pt"] td') == str(run["checkpoint_epoch"])
    assert not page.is_visible("#cancel-run")
    shot(page, "run-cancelled")
    page.set_viewport_size({"width": 400, "height": 860})
    shot(page, "run-cancelled-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(served.url + "/training")
    assert page.locator("#runs tbody tr").count() >= 2
    shot(page, "runs")
    page.close()


def test_add_activate_submit_roll_back_and_compare(logged_in, served, tmp_path):
    page = logged_in.new_page()
    try:
        page.goto(served.url + "/models")
        page.set_input_files("#model-file", str(VARIANT))
        page.fill('#add-model input[name="name"]', "variant s2d")
        page.click("#add-model-submit")
        page.wait_for_url("**/models#model-*")
        version = int(page.url.rsplit("-", 1)[1])
        added = api(served, f"/models/{version}")
        assert added["name"] == "variant s2d" and added["path"].startswith("models/added-") and not added["active"]
        page.click(f'[data-activate="{version}"]')
        page.wait_for_selector(f"#model-{version} .badge-done")
        assert "new batches use it" in page.inner_text(".flash")
        shot(page, "models-activated")

        folder = tmp_path / "four"
        for i, crop in enumerate(photo_crops(4, 96)):
            write_png(folder / f"f{i}.png", crop)
        page.goto(served.url + "/batches/new")
        page.check('input[name="mode"][value="synthetic"]')
        page.fill('input[name="sigma"]', "2")
        page.fill('input[name="name"]', "made with the variant")
        page.set_input_files("#folder", str(folder))
        page.click("#submit")
        page.wait_for_url(BATCH_PAGE)
        batch_id = int(page.url.rsplit("/", 1)[1])
        page.wait_for_selector(".page-head .badge-done", timeout=120_000)
        assert "model variant s2d" in page.inner_text(".meta-line")
        assert api(served, f"/batches/{batch_id}")["model_version_id"] == version

        page.goto(served.url + "/models")
        page.click("#rollback")
        page.wait_for_selector(".flash")
        assert "Rolled back" in page.inner_text(".flash")
        models = api(served, "/models")
        active = [m for m in models["models"] if m["active"]]
        assert len(active) == 1 and active[0]["id"] != version and active[0]["name"] == "shipped default"
        assert api(served, f"/batches/{batch_id}")["model_version_id"] == version  # the batch keeps its version
        assert page.inner_text(f'#model-{version} [data-field="batches"]') == "1"
        shot(page, "models-rolled-back")

        page.goto(served.url + f"/batches/{batch_id}")
        page.click("#compare-models")
        page.wait_for_url(f"**/models?batch={batch_id}#compare")
        assert page.eval_on_selector("#compare-batch", "e => e.value") == str(batch_id)
        page.select_option("#compare-version", str(active[0]["id"]))
        page.click("#compare-submit")
        page.wait_for_url("**/models/compare/*")
        page.evaluate("window.__notReloaded = true")
        wait_until(page, "[...document.querySelectorAll('#compare-images tbody tr td:nth-child(6)')]"
                         ".filter(td => td.textContent.trim() !== '–').length === 4", timeout=120)
        assert page.evaluate("window.__notReloaded") is True
        rerun = int(page.url.rsplit("/", 1)[1])
        found = api(served, f"/models/compare/{rerun}")
        assert found["final"] and found["paired"] == 4 and found["a"]["model_version_id"] == version
        assert page.inner_text("#d-ssim") == f"{found['mean_d_ssim']:+.4f}"
        assert page.is_visible("#start-study")  # the hook for a MOS study of the two
        wait_until(page, "[...document.querySelectorAll('#compare-images img')]"
                         ".every(i => i.complete && i.naturalWidth)")
        shot(page, "models-compare")
        page.goto(served.url + f"/batches/{rerun}")
        page.click("#comparison-link")
        page.wait_for_url(f"**/models/compare/{rerun}")
        page.goto(served.url + "/models")
        shot(page, "models")
        page.set_viewport_size({"width": 400, "height": 860})
        shot(page, "models-narrow")
    finally:
        page.close()
        actives = [m for m in api(served, "/models")["models"] if m["active"]]
        if actives and actives[0]["name"] != "shipped default":  # leave the served stack as the other tests expect
            default = [m for m in api(served, "/models")["models"] if m["name"] == "shipped default"][0]
            api_post(served, f"/models/{default['id']}/activate")
