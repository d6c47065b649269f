"""Retraining requests on SQLite, no servers: the data folders offered under the roots, choices checked
against them (never a path), bounded numbers, teachers among registered versions; the charts of a run."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from dashboard.charts import line_chart, training_charts
from dashboard.data_roots import UnknownDataFolder, choose_folders, data_folders
from dashboard.run_requests import RunRequestError, as_multidict, parse_run_request
from shared import migrate
from shared.config import Settings
from shared.db import Database
from shared.models import ModelVersion


def images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((8, 8, 3), 10 * i, np.uint8))
    return folder


@pytest.fixture
def roots(tmp_path):
    data, more = tmp_path / "data", tmp_path / "more"
    images(data / "photos" / "DIV2K_train_HR", 3)
    images(data / "photos" / "DIV2K_valid_HR", 1)
    images(data / "flowers", 4)
    images(data / "a" / "b" / "deep", 2)
    images(data / "a" / "b" / "c" / "too-deep", 2)
    images(data / ".hidden", 2)
    (data / "empty").mkdir()
    images(more, 2)
    outside = images(tmp_path / "secret", 3)
    os.symlink(outside, data / "link-out")
    return (data, more)


@pytest.fixture
def session(tmp_path):
    db = Database(Settings.from_env({"STORAGE_ROOT": str(tmp_path / "var")}))
    migrate.upgrade(db.url)
    with db.session() as s:
        yield s
    db.dispose()


def test_the_folders_offered_under_the_roots(roots):
    found = {f.id: (f.images, f.layout, f.path) for f in data_folders(roots)}
    data, more = roots
    assert found == {"data/photos": (3, "DIV2K", data / "photos"), "data/flowers": (4, "folder", data / "flowers"),
                     "data/a/b/deep": (2, "folder", data / "a" / "b" / "deep"), "more": (2, "folder", more)}
    # not offered: the DIV2K halves on their own, hidden folders, empty ones, deeper than 3, links out of a root
    assert data_folders((data / "missing",)) == []


@pytest.mark.parametrize("sent", ["/etc", "../secret", "data/../secret", "data/link-out", "data/.hidden",
                                  "data/photos/DIV2K_train_HR", "secret", ""])
def test_a_folder_not_offered_is_refused(roots, tmp_path, sent):
    with pytest.raises(UnknownDataFolder, match="choose"):
        choose_folders([sent] if sent else [], roots)
    with pytest.raises(UnknownDataFolder):
        choose_folders([str(tmp_path / "secret")], roots)  # its real path is no better


def test_roots_with_the_same_name_are_told_apart(tmp_path):
    a, b = images(tmp_path / "x" / "data", 2), images(tmp_path / "y" / "data", 2)
    assert [f.id for f in data_folders((a, b))] == ["data#1", "data#2"]


def test_a_request_becomes_a_checked_config(roots, session):
    req = parse_run_request(as_multidict({"data": ["data/flowers", "more"], "preset": "plain", "arch": "student",
                                          "epochs": 3, "crop": "48", "w_ssim": "0.25", "activate_if_better": True}),
                            session, roots)
    cfg = req.config
    assert cfg.data == [str(roots[0] / "flowers"), str(roots[1])]
    assert (cfg.arch, cfg.epochs, cfg.crop, cfg.w_ssim, cfg.preset) == ("student", 3, 48, 0.25, "plain")
    assert req.activate_if_better
    plain = parse_run_request(as_multidict({"data": "data/photos"}), session, roots)
    assert plain.config.preset == "realistic" and plain.config.arch == "student-s2d-wbank-lean"  # the default's recipe
    assert not plain.activate_if_better and not plain.fresh and plain.config.epochs == 100
    assert parse_run_request(as_multidict({"data": "data/photos", "fresh": "on"}), session, roots).fresh


def test_a_retraining_run_continues_the_active_model_of_its_architecture(tmp_path):
    """The default run (the realistic recipe) starts from the active model's weights, which are the shipped
    lean bank student's until another is activated; a run of another architecture, or one told where to start,
    is left as it is."""
    from shared.inference import default_model_path
    from shared.registry import activate_model, register_model
    from shared.storage import Storage
    from trainer.config import make_config
    from trainer.runs import continue_active

    settings = Settings.from_env({"STORAGE_ROOT": str(tmp_path / "var")})
    db, storage = Database(settings), Storage(settings.storage_root)
    migrate.upgrade(db.url)
    realistic = make_config("realistic", data=["x"])
    assert continue_active(db, storage, realistic).init_from == str(default_model_path())
    assert continue_active(db, storage, make_config("plain", data=["x"])).init_from is None   # student-s2d-hint
    told = make_config("realistic", data=["x"], init_from="elsewhere.pt")
    assert continue_active(db, storage, told).init_from == "elsewhere.pt"
    with db.session() as s:   # another bank student, stored under the storage root, becomes the active one
        own = storage.root / "models" / "mine.pt"
        own.parent.mkdir(parents=True)
        own.write_bytes((default_model_path().parent / "variants" / "s2d-wbank-lean-unguarded.pt").read_bytes())
        version = register_model(s, own, "mine", storage_root=storage.root)
    with db.session() as s:
        activate_model(s, version.id)
    assert continue_active(db, storage, realistic).init_from == str(own)
    db.dispose()


@pytest.mark.parametrize("fields, words", [
    ({"data": "../../etc"}, "unknown data folder '../../etc'"),
    ({}, "choose at least one data folder"),
    ({"data": "more", "preset": "best"}, "unknown preset 'best'"),
    ({"data": "more", "crop": "64"}, "leaves nothing inside the loss margin of 32 px"),   # the realistic recipe
    ({"data": "more", "arch": "resnet50"}, "unknown architecture 'resnet50'"),
    ({"data": "more", "epochs": "0"}, "epochs must be between 1 and 100000"),
    ({"data": "more", "epochs": "2.5"}, "epochs must be a whole number"),
    ({"data": "more", "crop": "100000"}, "crop must be between 16 and 2048"),
    ({"data": "more", "w_pixel": "nan"}, "w_pixel must be between 0 and 100"),
    ({"data": "more", "w_ssim": "-1"}, "w_ssim must be between"),
    ({"data": "more", "preset": "distill"}, "needs a teacher"),
    ({"data": "more", "teacher": "/models/teacher.pt"}, "unknown teacher"),
    ({"data": "more", "teacher": "1"}, "unknown teacher '1'"),  # a student is no teacher
])
def test_bad_requests_are_refused_with_the_field_named(roots, session, fields, words):
    session.add(ModelVersion(name="student", path="models/s.pt", sha256="a" * 64, arch="student-s2d", metrics={}))
    session.flush()
    with pytest.raises(RunRequestError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_run_request(as_multidict(fields), session, roots)


def test_a_registered_teacher_is_chosen_by_id(roots, session):
    t = ModelVersion(name="teacher", path="models/teacher-x.pt", sha256="b" * 64, arch="teacher", metrics={})
    session.add(t)
    session.flush()
    cfg = parse_run_request(as_multidict({"data": "more", "preset": "distill", "teacher": str(t.id)}),
                            session, roots).config
    assert cfg.teacher == "models/teacher-x.pt" and cfg.w_output_kd > 0  # resolved under the storage by the trainer


def test_a_chart_of_one_point_still_shows_it_and_more_points_make_a_path():
    one = line_chart([("loss", "series-a", [(1, 0.02)])])
    assert one.points == 1 and len(one.series[0].dots) == 1 and one.series[0].path.startswith("M")
    many = line_chart([("ssim", "series-a", [(1, 0.80), (2, 0.82), (3, None), (4, 0.85)])])
    xs = [x for x, _y, _t in many.series[0].dots]
    ys = [y for _x, y, _t in many.series[0].dots]
    assert len(xs) == 3 and xs == sorted(xs)
    assert ys[0] > ys[1] > ys[2]  # higher values are drawn higher (smaller SVG y)
    labels = [float(label) for _y, label in many.y_ticks]
    assert labels == sorted(labels) and labels[0] <= 0.80 + 1e-9 <= 0.85 <= labels[-1] + 0.01
    assert line_chart([("x", "series-a", [])]).points == 0
    charts = training_charts([{"epoch": 1, "loss": 0.1, "val_ssim": 0.8, "input_ssim": 0.7, "val_psnr": 25,
                               "input_psnr": 23}])
    assert [len(c.series) for c in charts.values()] == [1, 2, 2]
