"""A MOS study in a real headless chromium against a real stack: created from a finished batch through the
page (with a second model version, re-run by the worker first), rated by two people through the share link
(one consistent, with the keys, stopping and coming back; one clicking at random on the gold items), then
the results page (MOS, N, 95 % CI per condition; the random rater flagged and left out) and the CSV."""
from __future__ import annotations

import csv
import json
import random
import time
import urllib.request

from sqlalchemy import select

from shared.models import ModelVersion, StudyCondition, StudyStimulus, StudyTrial
from shared.registry import register_model
from tests.integration.conftest import ROOT, inputs_from, photo_crops, write_png

from .conftest import shot
from .test_dashboard import wait_until

N_IMAGES = 3


def what_it_is(served, page) -> str:
    """What the rater must not know: the shown trial's condition (``model:<id>``), or the gold kind."""
    token = page.get_attribute('input[name="trial"]', "value")
    with served.stack.db.session() as s:
        kind, version, gold = s.execute(
            select(StudyCondition.kind, StudyCondition.model_version_id, StudyStimulus.gold).select_from(StudyTrial)
            .join(StudyStimulus, StudyStimulus.id == StudyTrial.stimulus_id)
            .outerjoin(StudyCondition, StudyCondition.id == StudyStimulus.condition_id)
            .where(StudyTrial.token == token)).one()
    return gold or (f"model:{version}" if kind == "model" else kind)


def counter(page) -> tuple[int, int]:
    at, total = page.inner_text("#counter").split(" / ")
    return int(at), int(total)


def rate(served, page, answer, use_keys: bool, stop_after: int | None = None) -> int:
    """Answer trials until the thank-you page (or ``stop_after`` answers); returns how many were answered."""
    n = 0
    while page.query_selector("#rate-form") and (stop_after is None or n < stop_after):
        wait_until(page, "[...document.querySelectorAll('.stimulus img')].every(i => i.complete && i.naturalWidth)")
        score = answer(what_it_is(served, page))
        with page.expect_navigation():
            if use_keys:
                page.keyboard.press(str(score))
            else:
                page.click(f'button[name="quality"][value="{score}"]')
        n += 1
    return n


def api_get(served, path: str, raw: bool = False):
    req = urllib.request.Request(served.url + "/api/v1" + path, headers={"Authorization": f"Bearer {served.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode() if raw else json.load(r)


def test_a_study_from_a_batch_two_raters_and_the_results(browser, logged_in, served, tmp_path):
    folder = tmp_path / "sharp"
    for i, crop in enumerate(photo_crops(4, 224)):
        write_png(folder / f"photo{i}.png", crop)
    batch_id = served.stack.submit(inputs_from(folder), mode="synthetic", sigma=2.5, name="for a study")
    served.stack.wait_batch(batch_id)
    with served.stack.db.session() as s:
        plain = register_model(s, ROOT / "models" / "variants" / "s2d-plain.pt", "s2d plain").id
        shipped = s.scalar(select(ModelVersion.id).where(ModelVersion.active.is_(True)))

    page = logged_in.new_page()
    page.goto(served.url + "/studies/new")
    page.check(f'#batch-{batch_id}')
    page.check(f'input[name="model_version_ids"][value="{shipped}"]')
    page.check(f'input[name="model_version_ids"][value="{plain}"]')
    page.fill('input[name="n_images"]', str(N_IMAGES))
    page.fill('input[name="seed"]', "7")
    page.fill('input[name="name"]', "shipped vs plain")
    shot(page, "study-new")
    page.click("#create-study")
    page.wait_for_url("**/studies/*")
    study_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text(".page-head .badge") == "preparing"  # the plain version re-runs the images first
    shot(page, "study-preparing")
    deadline = time.time() + 120
    while page.inner_text(".page-head .badge") != "open":
        assert time.time() < deadline, page.inner_text("#share")
        time.sleep(0.5)
        page.reload()
    share_url = page.input_value("#share-url")
    assert "/r/" in share_url

    answers = {"input": 2, f"model:{shipped}": 3, f"model:{plain}": 4, "reference": 5, "high": 5, "low": 1}
    ann = browser.new_context(viewport={"width": 1280, "height": 900})  # raters: no login, only the link
    rater = ann.new_page()
    rater.goto(share_url)
    assert "Rate picture quality" in rater.inner_text("h1") and rater.query_selector(".topbar") is None
    shot(rater, "rater-welcome")
    rater.fill('input[name="name"]', "Ann")
    rater.click("#start")
    rater.wait_for_url("**/rate")
    first, total = counter(rater)
    assert first == 1 and total == N_IMAGES * 4 + 2 + 1  # 4 conditions, a gold item of each kind, a repeat
    src = rater.get_attribute(".stimulus img", "src")
    assert "/pictures/" in src and not any(w in src for w in ("input", "output", "reference", "model", "gold"))
    assert rater.get_attribute(".stimulus img", "alt") == "the picture to rate"
    shot(rater, "rater-rating", full_page=False)
    assert rate(served, rater, lambda what: answers[what], use_keys=True, stop_after=5) == 5
    ann.close()

    ann = browser.new_context(viewport={"width": 1280, "height": 900})  # comes back another day: same link, name
    rater = ann.new_page()
    rater.goto(share_url)
    rater.fill('input[name="name"]', "ann")
    rater.click("#start")
    rater.wait_for_url("**/rate")
    assert counter(rater) == (6, total)
    assert rate(served, rater, lambda what: answers[what], use_keys=True) == total - 5
    assert "Thank you" in rater.inner_text("h1")
    shot(rater, "rater-done")
    ann.close()

    bob = browser.new_context(viewport={"width": 420, "height": 860})
    rater = bob.new_page()
    rater.goto(share_url)
    rater.fill('input[name="name"]', "Bob")
    rater.click("#start")
    rater.wait_for_url("**/rate")
    shot(rater, "rater-rating-narrow")
    rng = random.Random(5)
    guess = {"high": (1, 2, 3), "low": (3, 4, 5)}  # at random on the gold items (and so wrong)
    assert rate(served, rater, lambda what: rng.choice(guess[what]) if what in guess else answers[what],
                use_keys=False) == total
    bob.close()

    page.goto(f"{served.url}/studies/{study_id}")
    rows = {r.get_attribute("data-condition"): r for r in page.query_selector_all("#results-quality tbody tr")}
    assert len(rows) == 4
    expected = {"blurred input": 2, "reference": 5}
    for label, row in rows.items():
        mos = float(row.query_selector('[data-field="mos"]').inner_text())
        assert mos == expected.get(label, 3 if label.startswith(f"model {shipped} ") else 4), label
        assert row.query_selector('[data-field="n"]').inner_text() == str(N_IMAGES)  # Ann's only
        assert row.query_selector('[data-field="raters"]').inner_text() == "1"
        ci = row.query_selector('[data-field="ci"]').inner_text()
        assert ci == f"[{mos:.2f}, {mos:.2f}]"  # she never wavered: an interval of no width
    flagged = page.inner_text('#raters tr[data-rater="Bob"]')
    assert "flagged" in flagged and "missed 2 of 2 gold items" in flagged and flagged.rstrip().endswith("no")
    assert "ok" in page.inner_text('#raters tr[data-rater="Ann"]')
    assert page.locator("svg.mos-plot circle").count() == 4
    shot(page, "study-results")
    page.click("#toggle-flagged")
    page.wait_for_url("**include_flagged=1")
    assert page.inner_text('#results-quality tr[data-condition="reference"] [data-field="raters"]') == "2"
    shot(page, "study-results-with-flagged")

    with page.expect_download() as download:
        page.click("#csv")
    saved = tmp_path / "ratings.csv"
    download.value.save_as(saved)
    with open(saved, newline="") as f:
        ratings = list(csv.DictReader(f))
    assert len(ratings) == 2 * total and {r["rater"] for r in ratings} == {"Ann", "Bob"}
    assert sorted(int(r["trial"]) for r in ratings if r["rater"] == "Ann") == list(range(total))
    assert {r["model_version_id"] for r in ratings if r["condition"].startswith("model")} == {str(shipped), str(plain)}
    results = api_get(served, f"/studies/{study_id}/results")
    assert [r["name"] for r in results["raters"] if r["flags"]] == ["Bob"]
    page.goto(served.url + "/studies")
    assert "shipped vs plain" in page.inner_text("#studies")
    shot(page, "studies")
    page.close()


def test_a_triplet_study_page(browser, served, tmp_path):
    folder = tmp_path / "sharp"
    for i, crop in enumerate(photo_crops(2, 192)):
        write_png(folder / f"t{i}.png", crop)
    batch_id = served.stack.submit(inputs_from(folder), mode="synthetic", sigma=2.0, name="triplets")
    served.stack.wait_batch(batch_id)
    body = json.dumps({"batch_ids": [batch_id], "n_images": 2, "kind": "triplet"}).encode()
    req = urllib.request.Request(served.url + "/api/v1/studies", data=body, method="POST", headers={
        "Authorization": f"Bearer {served.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        study = json.load(r)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(study["share_url"])
    page.fill('input[name="name"]', "Tess")
    page.click("#start")
    page.wait_for_url("**/rate")
    assert page.locator(".stimulus figcaption").all_inner_texts() == ["Blurry", "Sharpened", "Ground truth"]
    wait_until(page, "[...document.querySelectorAll('.stimulus img')].every(i => i.complete && i.naturalWidth)")
    sizes = page.eval_on_selector_all(".stimulus img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert len({tuple(s) for s in sizes}) == 1  # the three shown at one size
    shot(page, "rater-triplet", full_page=False)
    page.keyboard.press("4")
    page.keyboard.press("3")
    with page.expect_navigation():
        page.keyboard.press("5")  # the third row set: sent
    assert page.inner_text("#counter").startswith("2 /")
    scores = api_get(served, f"/studies/{study['id']}/ratings.csv", raw=True)
    assert ",clarity,4," in scores and ",edges,3," in scores and ",naturalness,5," in scores
    context.close()
