"""MOS studies over a real database and Redis through the JSON API and the forms: create, rate, results,
CSV, the pictures raters see, re-runs for another model version, and every 4xx answer."""
from __future__ import annotations

import csv
import io
import random
import re

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select, update

from dashboard import create_app
from dashboard.config import DashboardConfig
from shared.models import DONE, FAILED, Batch, ImageJob, Study, StudyCondition, StudyStimulus, StudyTrial
from shared.registry import active_model, register_model
from tests.studies import finished_batch

from .conftest import ROOT, photo_crops

TOKEN = "study-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"input": 2, "model": 4, "reference": 5, "high": 5, "low": 1}  # a consistent rater's answers


@pytest.fixture
def stack(make_stack, sqlite_url, redis_url):
    return make_stack(sqlite_url, redis_url)


def client_of(stack, **config):
    app = create_app(stack.settings, DashboardConfig(**config))
    app.testing = True
    return app.test_client()


@pytest.fixture
def client(stack):
    return client_of(stack)


@pytest.fixture
def batch_id(stack):
    return finished_batch(stack.db, stack.storage, photo_crops(6, 64))


def what_it_is(stack, trial_token: str) -> str:
    """The test knows what the rater must not: the trial's condition kind, or the kind of gold item."""
    with stack.db.session() as s:
        kind, gold = s.execute(select(StudyCondition.kind, StudyStimulus.gold)
                               .select_from(StudyTrial).join(StudyStimulus, StudyStimulus.id == StudyTrial.stimulus_id)
                               .outerjoin(StudyCondition, StudyCondition.id == StudyStimulus.condition_id)
                               .where(StudyTrial.token == trial_token)).one()
    return gold or kind


def share_of(stack, study_id: int) -> str:
    with stack.db.session() as s:
        return s.get(Study, study_id).share_token


def rate_all(client, stack, share: str, name: str, answer) -> int:
    """A rater joins through the API and answers every trial with ``answer(what it is)``; returns how many."""
    r = client.post(f"/api/v1/rate/{share}/raters", json={"name": name})
    assert r.status_code in (200, 201), r.json
    n, state = 0, r.json
    while state["next"]:
        score = answer(what_it_is(stack, state["next"]["trial"]))
        r = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": name, "trial": state["next"]["trial"],
                                                                "score": score})
        assert r.status_code == 201, r.json
        state, n = r.json, n + 1
    assert state["answered"] == state["total"] == n
    return n


def test_a_study_through_the_api_rated_checked_and_exported(client, stack, batch_id):
    r = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 4, "seed": 11, "name": "first"})
    assert r.status_code == 201, r.json
    study = r.json
    assert r.headers["Location"].endswith(f"/api/v1/studies/{study['id']}")
    assert [c["kind"] for c in study["conditions"]] == ["input", "model", "reference"]
    assert study["status"] == "open" and study["reruns"] == []  # the batch's own version: nothing to re-run
    assert study["share_url"].endswith("/r/" + share_of(stack, study["id"]))
    again = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 4, "seed": 11}).json
    assert [im["image_id"] for im in again["images"]] == [im["image_id"] for im in study["images"]]  # seeded

    share = share_of(stack, study["id"])
    n = rate_all(client, stack, share, "Ann", lambda what: GOOD[what])
    rng = random.Random(4)
    lazy = {"high": lambda: rng.choice((1, 2, 3)), "low": lambda: rng.choice((3, 4, 5))}  # random, and wrong
    assert rate_all(client, stack, share, "Bob", lambda what: lazy[what]() if what in lazy else GOOD[what]) == n
    # 4 images × 3 conditions + one gold item of each kind + one hidden repeat (10 % of 12)
    assert n == 4 * 3 + 2 + 1

    with stack.db.session() as s:
        orders = [list(s.scalars(select(StudyTrial.stimulus_id).where(StudyTrial.rater_id == rater_id)
                                 .order_by(StudyTrial.position))) for rater_id in (1, 2)]
    assert orders[0] != orders[1] and set(orders[0]) == set(orders[1])  # the same stimuli, each in its own order

    res = client.get(f"/api/v1/studies/{study['id']}/results").json
    flags = {r["name"]: r["flags"] for r in res["raters"]}
    assert flags["Ann"] == [] and len(flags["Bob"]) == 1 and "missed 2 of 2 gold items" in flags["Bob"][0]
    assert [r["included"] for r in res["raters"]] == [True, False]
    by_kind = {c["kind"]: c["scores"]["quality"] for c in res["conditions"]}
    for kind, expected in (("input", 2), ("model", 4), ("reference", 5)):
        sc = by_kind[kind]
        assert (sc["mos"], sc["n_ratings"], sc["n_raters"], sc["sd"]) == (expected, 4, 1, 0)
        assert (sc["ci_lo"], sc["ci_hi"], sc["ci_method"]) == (expected, expected, "ratings")
    diff = {(d["a"], d["b"]): d for d in res["differences"]}
    assert diff[("reference", "blurred input")]["mean"] == 3 and diff[("reference", "blurred input")]["n"] == 4
    both = client.get(f"/api/v1/studies/{study['id']}/results?include_flagged=1").json
    assert {c["kind"]: c["scores"]["quality"]["n_raters"] for c in both["conditions"]}["model"] == 2

    r = client.get(f"/api/v1/studies/{study['id']}/ratings.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2 * n and {row["rater"] for row in rows} == {"Ann", "Bob"}
    assert set(rows[0]) >= {"study", "rater", "item", "condition", "model_version_id", "score", "shown_at",
                            "answered_at"}
    assert sum(row["repeat"] == "1" for row in rows) == 2 and sum(bool(row["gold"]) for row in rows) == 4
    version = str(study["model_version_ids"][0])
    assert {row["model_version_id"] for row in rows if row["condition"].startswith("model")} == {version}
    assert all(row["shown_at"] <= row["answered_at"] for row in rows)

    listed = client.get("/api/v1/studies").json
    assert listed["total"] == 2 and listed["studies"][1]["answered"] == 2 * n
    page = client.get(f"/studies/{study['id']}")
    assert page.status_code == 200 and "flagged" in page.text and "missed 2 of 2 gold items" in page.text
    assert " style=" not in page.text and "<script>" not in page.text


def test_the_pictures_tell_nothing_of_their_condition(client, stack, batch_id):
    study = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 2, "seed": 3}).json
    share = share_of(stack, study["id"])
    state = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Cy"}).json
    seen = {}
    while state["next"]:
        url = state["next"]["pictures"]["image"]
        assert state["next"]["trial"] in url and not re.search(r"input|output|reference|gold|model|\d+\.png", url)
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "image/png" and r.data[:4] == b"\x89PNG"
        assert "Content-Disposition" not in r.headers and "Last-Modified" not in r.headers and "ETag" not in r.headers
        pixels = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_GRAYSCALE)
        seen.setdefault(what_it_is(stack, state["next"]["trial"]), []).append(pixels)
        state = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": "Cy", "trial": state["next"]["trial"],
                                                                    "score": 3}).json
    assert {p.shape for kind in seen.values() for p in kind} == {(64, 64)}  # every condition the same size
    sharpness = {k: np.mean([cv2.Laplacian(p, cv2.CV_64F).var() for p in v]) for k, v in seen.items()}
    assert sharpness["low"] < sharpness["input"] < sharpness["reference"]  # the gold copy is strongly blurred
    trial = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Di"}).json["next"]["trial"]
    assert client.get(f"/api/v1/rate/{share}/pictures/{trial}/sharpened").status_code == 404  # not a triplet
    assert client.get(f"/api/v1/rate/nope/pictures/{trial}").status_code == 404  # another study's link


def test_a_triplet_study_scores_three_criteria(client, stack, batch_id):
    study = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 3, "kind": "triplet"}).json
    assert [c["kind"] for c in study["conditions"]] == ["model"]
    share = share_of(stack, study["id"])
    state = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Eve"}).json
    assert [c["key"] for c in state["criteria"]] == ["clarity", "edges", "naturalness"]
    assert set(state["next"]["pictures"]) == {"blurry", "sharpened", "truth"}
    for slot, url in state["next"]["pictures"].items():
        assert client.get(url).status_code == 200, slot
    trial = state["next"]["trial"]
    r = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": "Eve", "trial": trial, "score": 4})
    assert r.status_code == 400 and "send scores" in r.json["error"]
    r = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": "Eve", "trial": trial,
                                                            "scores": {"clarity": 4, "edges": 3}})
    assert r.status_code == 400 and "naturalness" in r.json["error"]
    while state["next"]:
        gold = what_it_is(stack, state["next"]["trial"])
        scores = {"high": (5, 5, 4), "low": (1, 2, 1)}.get(gold, (4, 3, 5))
        state = client.post(f"/api/v1/rate/{share}/ratings", json={
            "rater": "Eve", "trial": state["next"]["trial"],
            "scores": dict(zip(("clarity", "edges", "naturalness"), scores))}).json
    res = client.get(f"/api/v1/studies/{study['id']}/results").json
    assert res["criteria"] == ["clarity", "edges", "naturalness", "overall"] and res["raters"][0]["flags"] == []
    sc = res["conditions"][0]["scores"]
    assert (sc["clarity"]["mos"], sc["edges"]["mos"], sc["naturalness"]["mos"], sc["overall"]["mos"]) == (4, 3, 5, 4)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/studies/{study['id']}/ratings.csv").text)))
    assert {r["criterion"] for r in rows} == {"clarity", "edges", "naturalness"}


def test_study_refusals(client, stack, batch_id):
    def created(**body):
        return client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 2, **body})

    for body, status, words in [
        ({"batch_ids": []}, 400, "at least one finished batch"),
        ({"batch_ids": [999]}, 400, "no batch 999"),
        ({"batch_ids": ["one"]}, 400, "whole numbers"),
        ({"n_images": 0}, 400, "from 1 to 1000"),
        ({"n_images": 7}, 400, "only 6 finished images"),
        ({"n_images": "x"}, 400, "whole number"),
        ({"kind": "paired-comparison"}, 400, "unknown study type"),
        ({"model_version_ids": [999]}, 400, "no model version 999"),
        ({"seed": -1}, 400, "seed"),
    ]:
        r = created(**body)
        assert r.status_code == status and words in r.json["error"], (body, r.json)
    assert client.post("/api/v1/studies", data="[1]", content_type="application/json").status_code == 400
    restore = finished_batch(stack.db, stack.storage, photo_crops(2, 48), with_reference=False)
    r = client.post("/api/v1/studies", json={"batch_ids": [restore], "n_images": 2, "kind": "triplet"})
    assert r.status_code == 400 and "with a reference" in r.json["error"]
    plain = client.post("/api/v1/studies", json={"batch_ids": [restore], "n_images": 2}).json
    assert [c["kind"] for c in plain["conditions"]] == ["input", "model"]  # no reference to show
    with stack.db.session() as s:
        s.execute(update(Batch).where(Batch.id == restore).values(status="running"))
    r = client.post("/api/v1/studies", json={"batch_ids": [restore], "n_images": 1})
    assert r.status_code == 409 and "still running" in r.json["error"]
    assert client.get("/api/v1/studies").json["total"] == 1  # nothing half-made

    for method, url in [("get", "/api/v1/studies/999"), ("get", "/api/v1/studies/999/results"),
                        ("get", "/api/v1/studies/999/ratings.csv"), ("post", "/api/v1/studies/999/close"),
                        ("post", "/api/v1/studies/999/reopen")]:
        r = getattr(client, method)(url)
        assert r.status_code == 404 and "no study 999" in r.json["error"], url
    assert client.get("/studies/999").status_code == 404
    r = client.post("/api/v1/rate/not-a-study/raters", json={"name": "Al"})
    assert r.status_code == 404 and "no study at this link" in r.json["error"]

    study = created().json
    share = share_of(stack, study["id"])
    r = client.post(f"/api/v1/rate/{share}/raters", json={"name": "   "})
    assert r.status_code == 400 and "name or a code" in r.json["error"]
    assert client.post(f"/api/v1/rate/{share}/raters", json={"name": "x" * 101}).status_code == 400
    trial = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Al"}).json["next"]["trial"]
    other = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Bo"}).json["next"]["trial"]
    assert client.post(f"/api/v1/rate/{share}/raters", json={"name": " al "}).status_code == 200  # comes back

    def rate(score, t=trial, rater="Al"):
        return client.post(f"/api/v1/rate/{share}/ratings", json={"rater": rater, "trial": t, "score": score})

    for bad in (0, 6, -1, 4.5, "4.0", "x", True, None, "²"):
        r = rate(bad)
        assert r.status_code == 400 and "1 (Bad) to 5 (Excellent)" in r.json["error"], bad
    assert rate(3, t=other).status_code == 404  # Bo's trial
    assert rate(3, rater="Zed").status_code == 404  # never joined
    assert rate(3, t="forged").status_code == 404
    assert rate(3).status_code == 201
    r = rate(4)
    assert r.status_code == 409 and "already answered" in r.json["error"]
    r = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": "Al", "trial": trial, "score": 4},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403

    r = client.post(f"/api/v1/studies/{study['id']}/close")
    assert r.status_code == 200 and r.json["status"] == "closed"
    assert client.post(f"/api/v1/studies/{study['id']}/close").status_code == 409
    r = rate(2, t=other, rater="Bo")
    assert r.status_code == 409 and "closed" in r.json["error"]
    r = client.post(f"/api/v1/rate/{share}/raters", json={"name": "New"})
    assert r.status_code == 409 and "closed" in r.json["error"]
    assert client.post(f"/api/v1/studies/{study['id']}/reopen").json["status"] == "open"
    assert rate(2, t=other, rater="Bo").status_code == 201


def test_token_rules(stack, batch_id):
    client = client_of(stack, api_token=TOKEN)
    r = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 2})
    assert r.status_code == 401 and "needs an API token" in r.json["error"]
    r = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 2}, headers=AUTH)
    assert r.status_code == 201 and r.json["share_url"]
    study_id = r.json["id"]
    for url in (f"/api/v1/studies/{study_id}/close", f"/api/v1/studies/{study_id}/reopen"):
        assert client.post(url).status_code == 401
    assert client.get(f"/api/v1/studies/{study_id}").json["share_url"] is None  # reads are open; the link is not
    assert client.get(f"/api/v1/studies/{study_id}", headers=AUTH).json["share_url"]
    share = share_of(stack, study_id)
    state = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Al"})  # raters need only the link
    assert state.status_code == 201
    r = client.post(f"/api/v1/rate/{share}/ratings", json={"rater": "Al", "trial": state.json["next"]["trial"],
                                                            "score": 5})
    assert r.status_code == 201
    page = client.get(f"/studies/{study_id}")
    assert page.status_code == 200 and share not in page.text and "Log in to see the link" in page.text


def csrf_of(client, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def test_the_forms_need_csrf_and_a_login(stack, batch_id):
    client = client_of(stack, api_token=TOKEN)
    token = csrf_of(client, "/studies/new")
    form = {"batch_ids": str(batch_id), "n_images": "2", "kind": "acr"}
    assert client.post("/studies/new", data=form).status_code == 400  # no CSRF token
    r = client.post("/studies/new", data={**form, "csrf_token": token})
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    client.post("/login", data={"token": TOKEN, "csrf_token": token})
    token = csrf_of(client, "/studies/new")
    r = client.post("/studies/new", data={**form, "n_images": "99", "csrf_token": token})
    assert r.status_code == 400 and "only 6 finished images" in r.text
    r = client.post("/studies/new", data={**form, "csrf_token": token})
    assert r.status_code == 303
    study_id = int(r.headers["Location"].rsplit("/", 1)[1])
    share = share_of(stack, study_id)
    assert share in client.get(r.headers["Location"]).text  # logged in: the link shows

    rater = client_of(stack, api_token=TOKEN)  # a rater: no login, only the link
    assert rater.post(f"/r/{share}", data={"name": "Al"}).status_code == 400
    rtoken = csrf_of(rater, f"/r/{share}")
    r = rater.post(f"/r/{share}", data={"name": "Al", "csrf_token": rtoken})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/r/{share}/rate")
    page = rater.get(f"/r/{share}/rate").text
    trial = re.search(r'name="trial" value="([^"]+)"', page).group(1)
    assert re.search(r'id="counter"><b>1</b> / \d+<', page) and 'value="5"' in page and "Excellent" in page
    assert rater.post(f"/r/{share}/rate", data={"trial": trial, "quality": "4"}).status_code == 400  # no CSRF
    r = rater.post(f"/r/{share}/rate", data={"trial": trial, "quality": "4", "csrf_token": rtoken})
    assert r.status_code == 303
    assert re.search(r'id="counter"><b>2</b> / ', rater.get(f"/r/{share}/rate").text)
    assert rater.post(f"/studies/{study_id}/close", data={"csrf_token": rtoken}).status_code == 302  # not for raters
    assert client.post(f"/studies/{study_id}/close", data={"csrf_token": token}).status_code == 303
    r = rater.get(f"/r/{share}/rate")
    assert r.status_code == 409 and "closed" in r.text
    assert rater.get("/r/not-a-study").status_code == 404


def test_another_version_is_rerun_before_the_study_opens(client, stack, batch_id):
    """A version the batch did not run with: a re-run batch over the same stored inputs, queued for the
    workers; the study opens when it is done, leaving out an image whose re-run failed."""
    with stack.db.session() as s:
        first = active_model(s).id
        other = register_model(s, ROOT / "models" / "variants" / "s2d-plain.pt", "plain").id
    study = client.post("/api/v1/studies", json={"batch_ids": [batch_id], "n_images": 3, "seed": 2,
                                                 "model_version_ids": [first, other]}).json
    assert study["status"] == "preparing" and [c["model_version_id"] for c in study["conditions"]] == [None, first,
                                                                                                      other, None]
    (rerun,) = study["reruns"]
    assert rerun["model_version_id"] == other and rerun["total"] == 3 and study["sent"] is True
    with stack.db.session() as s:
        copies = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == rerun["batch_id"])))
        sources = {j.original_name: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id))}
        assert s.get(Batch, rerun["batch_id"]).mode == "paired"
    for copy in copies:  # the very files the source batch sharpened, not copies and not a new blur
        assert (copy.input_path, copy.reference_path) == (sources[copy.original_name].input_path,
                                                          sources[copy.original_name].reference_path)
    share = share_of(stack, study["id"])
    r = client.post(f"/api/v1/rate/{share}/raters", json={"name": "Al"})
    assert r.status_code == 409 and "not ready" in r.json["error"]
    assert "http-equiv=\"refresh\"" in client.get(f"/studies/{study['id']}").text

    with stack.db.session() as s:  # what a worker records (the worker path itself is in the browser test)
        for i, copy in enumerate(copies):
            values = dict(status=FAILED, error="img: corrupt") if i == 0 else dict(
                status=DONE, output_path=sources[copy.original_name].output_path)
            s.execute(update(ImageJob).where(ImageJob.id == copy.id).values(**values))
    data = client.get(f"/api/v1/studies/{study['id']}").json
    assert data["status"] == "open"
    dropped = [im for im in data["images"] if im["dropped"]]
    assert len(dropped) == 1 and "failed: img: corrupt" in dropped[0]["dropped"]
    client.post(f"/api/v1/rate/{share}/raters", json={"name": "Al"})
    with stack.db.session() as s:
        shown = set(s.scalars(select(StudyStimulus.study_image_id).join(StudyTrial, StudyTrial.stimulus_id ==
                                                                        StudyStimulus.id)))
        kept = set(s.scalars(select(StudyStimulus.study_image_id).where(StudyStimulus.condition_id.is_not(None))))
    assert len(shown) == 2 and len(kept) == 3  # the dropped image is never shown



def test_a_study_and_the_models_comparison_share_their_reruns(client, stack, batch_id):
    """A study's re-run is a re-run of the batch, which the compare page shows; a comparison re-runs every
    finished image (the study's has only those it sampled), and a later study of that batch and version reuses
    that re-run instead of making its own, opening at once when it is done."""
    with stack.db.session() as s:
        first = active_model(s).id
        other = register_model(s, ROOT / "models" / "variants" / "s2d-plain.pt", "plain").id
    spec = {"batch_ids": [batch_id], "n_images": 3, "seed": 2, "model_version_ids": [first, other]}
    (partial,) = client.post("/api/v1/studies", json=spec).json["reruns"]
    found = client.get(f"/api/v1/models/compare/{partial['batch_id']}").json
    assert found["a"]["batch_id"] == batch_id and len(found["images"]) == 3
    compare = {"batch_id": batch_id, "model_version_id": other}
    r = client.post("/api/v1/models/compare", json=compare)
    assert r.status_code == 201 and r.json["id"] != partial["batch_id"]
    full = r.json["id"]
    with stack.db.session() as s:
        sources = {j.position: j for j in s.scalars(select(ImageJob).where(ImageJob.batch_id == batch_id))}
        copies = list(s.scalars(select(ImageJob).where(ImageJob.batch_id == full)))
        assert sorted(j.position for j in copies) == sorted(sources) and len(copies) == 6
        for j in copies:  # the source's stored files; then what a worker records
            assert (j.input_path, j.reference_path) == (sources[j.position].input_path,
                                                        sources[j.position].reference_path)
            j.status, j.output_path = DONE, sources[j.position].output_path
    study = client.post("/api/v1/studies", json={**spec, "n_images": 5, "seed": 3}).json
    assert [b["batch_id"] for b in study["reruns"]] == [full] and study["status"] == "open"
    with stack.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Batch).where(Batch.parent_batch_id == batch_id)) == 2
    again = client.post("/api/v1/models/compare", json=compare)
    assert again.status_code == 200 and again.json["id"] == full

def test_the_study_commands(stack, batch_id, tmp_path):
    from click.testing import CliRunner

    from dashboard.studies.raters import join_study, next_trial, record_answer
    from shared.cli import cli
    from shared.cli.context import Context

    def run(*args):
        return CliRunner().invoke(cli, ["study", *map(str, args)], obj=Context(stack.settings))

    r = run("create", "--batch", 999, "--images", 2)
    assert r.exit_code == 1 and "no batch 999" in r.output
    r = run("create", "--batch", batch_id, "--images", 3, "--seed", 4, "--name", "from the terminal")
    assert r.exit_code == 0, r.output
    study_id = int(re.match(r"study (\d+) \(open\): 3 images, seed 4", r.output).group(1))
    share = re.search(r"raters open: http://127\.0\.0\.1:8000/r/(\S+)", r.output).group(1)
    assert share == share_of(stack, study_id)
    rater_id, _ = join_study(stack.db, share, "Al")
    while (trial := next_trial(stack.db, study_id, rater_id)) is not None:
        score = GOOD[what_it_is(stack, trial.token)]
        record_answer(stack.db, share, trial.token, {"quality": score}, rater_id=rater_id)
    r = run("results", study_id)
    assert r.exit_code == 0, r.output
    assert re.search(r"^reference\s+5\.00\s+\[5\.00, 5\.00\]\s+0\.00\s+3\s+1\s+ratings$", r.output, re.M), r.output
    assert "rater Al: " in r.output and ", ok" in r.output
    assert run("results", study_id, "--json").output.startswith("{")
    out = tmp_path / "ratings.csv"
    assert run("export", study_id, "--out", out).exit_code == 0
    assert len(list(csv.DictReader(out.open()))) == 3 * 3 + 2 + 1
    assert "from the terminal" in run("list").output and "conditions: blurred input" in run("show", study_id).output
    assert run("close", study_id).output.strip() == f"study {study_id} is closed"
    r = run("close", study_id)
    assert r.exit_code == 1 and "already closed" in r.output
    assert run("reopen", study_id).output.strip() == f"study {study_id} is open"
