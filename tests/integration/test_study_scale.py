"""A study of 100 images × 3 conditions × 10 raters (ratings inserted by script): its results page, results
and CSV answer in under a second."""
from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from dashboard import create_app
from dashboard.config import DashboardConfig
from dashboard.studies import StudySpec, create_study
from dashboard.studies.raters import join_study
from shared.models import DONE, Batch, ImageJob, ModelVersion, Study, StudyScore, StudyTrial, utcnow

N_IMAGES, N_RATERS = 100, 10


@pytest.fixture
def rated_study(make_stack, db_url, redis_url):
    stack = make_stack(db_url, redis_url)
    now = utcnow()
    with stack.db.session() as s:
        version = ModelVersion(name="student", path="models/x.pt", sha256="0" * 64, arch="s2d", active=True, metrics={})
        s.add(version)
        s.flush()
        batch = Batch(name="hundred", mode="paired", status=DONE, total=N_IMAGES, done_count=N_IMAGES,
                      model_version_id=version.id, created_at=now, finished_at=now)
        s.add(batch)
        s.flush()
        batch_id = batch.id
    with stack.db.engine.begin() as conn:
        conn.execute(insert(ImageJob), [dict(batch_id=batch_id, position=i, original_name=f"img{i:03d}.png",
                                             input_path=f"x/{i}.png", reference_path=f"x/r{i}.png",
                                             output_path=f"x/o{i}.png", status=DONE, width=512, height=384)
                                        for i in range(N_IMAGES)])
    study_id = create_study(stack.db, StudySpec(batch_ids=[batch_id], n_images=N_IMAGES, seed=1)).study_id
    with stack.db.session() as s:
        share = s.get(Study, study_id).share_token
    for r in range(N_RATERS):
        join_study(stack.db, share, f"rater {r}")
    rng = np.random.default_rng(0)
    with stack.db.session() as s:
        trial_ids = list(s.scalars(select(StudyTrial.id).where(StudyTrial.study_id == study_id)))
        s.execute(update(StudyTrial).where(StudyTrial.study_id == study_id).values(shown_at=now, answered_at=now))
    with stack.db.engine.begin() as conn:
        conn.execute(insert(StudyScore), [dict(trial_id=t, criterion="quality", score=int(v))
                                          for t, v in zip(trial_ids, rng.integers(1, 6, len(trial_ids)))])
    return stack, study_id, len(trial_ids)


def test_results_of_a_big_study_answer_in_under_a_second(rated_study):
    stack, study_id, n_trials = rated_study
    assert n_trials == N_RATERS * (N_IMAGES * 3 + 2 * 8 + 30)  # conditions, gold (2.5 % each), 10 % repeats
    client = create_app(stack.settings, DashboardConfig()).test_client()
    client.get("/studies/999")  # templates compiled, scipy imported: as in a running server
    client.get(f"/api/v1/studies/{study_id}/results?include_flagged=1")
    for url in (f"/studies/{study_id}", f"/studies/{study_id}?include_flagged=1",
                f"/api/v1/studies/{study_id}/results", f"/api/v1/studies/{study_id}/ratings.csv",
                f"/api/v1/studies/{study_id}", "/studies", "/api/v1/studies"):
        t0 = time.perf_counter()
        r = client.get(url)
        seconds = time.perf_counter() - t0
        assert r.status_code == 200, url
        assert seconds < 1.0, f"{url} took {seconds:.2f} s"
    res = client.get(f"/api/v1/studies/{study_id}/results?include_flagged=1").json
    assert [c["scores"]["quality"]["n_ratings"] for c in res["conditions"]] == [N_IMAGES * N_RATERS] * 3
    assert all(c["scores"]["quality"]["ci_method"] == "per-rater means" for c in res["conditions"])
    assert len(res["raters"]) == N_RATERS and all(r["answered"] == r["total"] for r in res["raters"])
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/studies/{study_id}/ratings.csv").text)))
    assert len(rows) == n_trials
    page = client.get(f"/studies/{study_id}?include_flagged=1").text  # random raters miss gold: all flagged
    assert page.count('class="dot dot-') == 3 and "95 % CI" in page
