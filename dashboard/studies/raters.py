"""Raters: join a study by its share link and a name or code, get the next trial, answer it.

A rater has no account: the unguessable share token is the credential, and the name (compared casefolded)
finds a rater who comes back. Joining the first time plans that rater's trials (``shared.study_design``);
coming back resumes at the first unanswered one. A rater can only answer their own trials of an open study,
each once, with whole scores 1–5 on each of the study's criteria.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from shared.db import Database
from shared.models import (CLOSED, FAILED, OPEN, PREPARING, ImageJob, Study, StudyImage, StudyRater, StudyScore,
                           StudyStimulus, StudyTrial, utcnow)
from shared.study_design import Stimulus, plan_unlike, repeat_count

from .create import refresh_study
from .errors import StudyError

NAME_MAX = 100
MAX_RATERS = 1000   # per study: anyone with the link can join, so the link cannot fill the database
# (key, label) of what a rater scores, by study kind; the scale is the same for all (ITU-T P.800 ACR)
CRITERIA = {"acr": (("quality", "Quality"),),
            "triplet": (("clarity", "Clarity"), ("edges", "Edge sharpness"), ("naturalness", "Naturalness"))}
SCALE = ((5, "Excellent"), (4, "Good"), (3, "Fair"), (2, "Poor"), (1, "Bad"))


def normalise_name(raw) -> tuple[str, str]:
    """(name as shown, key it is found by): spaces collapsed, 1–100 characters."""
    name = re.sub(r"\s+", " ", raw if isinstance(raw, str) else "").strip()
    if not name:
        raise StudyError("give a name or a code (anything you will remember, to come back later)")
    if len(name) > NAME_MAX:
        raise StudyError(f"a name or code of at most {NAME_MAX} characters, please")
    return name, name.casefold()


def study_by_share(s, share_token: str) -> Study:
    study = s.scalar(select(Study).where(Study.share_token == share_token)) if share_token else None
    if study is None:
        raise StudyError("there is no study at this link (check that it was copied whole)", 404)
    return refresh_study(s, study)


def require_open(study: Study) -> None:
    if study.status == OPEN:
        return
    raise StudyError({PREPARING: "this study is not ready yet: its images are still being processed; try again "
                                 "in a few minutes",
                      CLOSED: "this study is closed: it takes no more ratings",
                      FAILED: f"this study failed: {study.error}"}.get(study.status, study.status), 409)


def _stimuli(s, study_id: int) -> list[Stimulus]:
    rows = s.execute(select(StudyStimulus.id, StudyStimulus.study_image_id, StudyStimulus.gold)
                     .join(StudyImage, StudyImage.id == StudyStimulus.study_image_id)
                     .where(StudyStimulus.study_id == study_id, StudyImage.dropped.is_(None))
                     .order_by(StudyStimulus.id)).all()
    return [Stimulus(i, image, gold) for i, image, gold in rows]


def trials_per_rater(s, study: Study) -> int:
    """How many pictures a new rater will be shown: every stimulus once, and the hidden repeats."""
    stimuli = _stimuli(s, study.id)
    return len(stimuli) + repeat_count(sum(st.gold is None for st in stimuli), study.settings.get("repeat_share", 0.1))


def _orders(s, study_id: int) -> list[list[int]]:
    orders: dict[int, list[int]] = {}
    for rater_id, stimulus_id in s.execute(select(StudyTrial.rater_id, StudyTrial.stimulus_id)
                                           .where(StudyTrial.study_id == study_id, StudyTrial.is_repeat.is_(False))
                                           .order_by(StudyTrial.rater_id, StudyTrial.position)):
        orders.setdefault(rater_id, []).append(stimulus_id)
    return list(orders.values())


def _add_rater(s, study: Study, name: str, key: str) -> StudyRater:
    n_raters = s.scalar(select(func.count()).select_from(StudyRater).where(StudyRater.study_id == study.id))
    if n_raters >= MAX_RATERS:
        raise StudyError(f"this study has its {MAX_RATERS} raters already", 409)
    stimuli = _stimuli(s, study.id)
    taken = _orders(s, study.id)
    seed, plan = plan_unlike(stimuli, (study.seed + 7919 * (n_raters + 1)) % 2 ** 31, taken,
                             study.settings.get("repeat_share", 0.1))
    rater = StudyRater(study_id=study.id, name=name, name_key=key, seed=seed % 2 ** 31, last_seen_at=utcnow())
    s.add(rater)
    s.flush()
    s.add_all(StudyTrial(study_id=study.id, rater_id=rater.id, position=pos, stimulus_id=t.stimulus,
                         is_repeat=t.repeat, token=secrets.token_urlsafe(16)) for pos, t in enumerate(plan))
    return rater


def join_study(db: Database, share_token: str, raw_name) -> tuple[int, bool]:
    """The rater of this name in the study, made (with their trials) on first use: (rater id, new?)."""
    name, key = normalise_name(raw_name)
    for _attempt in range(2):  # two first visits of one name at once: the second finds the first's rater
        try:
            with db.session() as s:
                study = study_by_share(s, share_token)
                rater = s.scalar(select(StudyRater).where(StudyRater.study_id == study.id, StudyRater.name_key == key))
                if rater is not None:
                    rater.last_seen_at = utcnow()
                    return rater.id, False
                require_open(study)
                return _add_rater(s, study, name, key).id, True
        except IntegrityError:
            continue
    raise StudyError("could not join the study; try again", 409)


def rater_in(s, study: Study, rater_id: int | None = None, name=None) -> StudyRater:
    """A rater of this study, by id (the rater pages' session) or name (the API)."""
    if rater_id is not None:
        rater = s.get(StudyRater, rater_id)
    else:
        rater = s.scalar(select(StudyRater).where(StudyRater.study_id == study.id,
                                                  StudyRater.name_key == normalise_name(name)[1]))
    if rater is None or rater.study_id != study.id:
        raise StudyError("no such rater in this study: join it first with your name or code", 404)
    return rater


@dataclass
class Progress:
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


def progress(s, rater_id: int) -> Progress:
    total, answered = s.execute(select(func.count(), func.count(StudyTrial.answered_at))
                                .where(StudyTrial.rater_id == rater_id)).one()
    return Progress(answered, total)


@dataclass
class TrialView:
    """What the rater page shows: nothing about the condition, only an opaque token and the display size."""
    token: str
    position: int
    width: int | None
    height: int | None


def next_trial(db: Database, study_id: int, rater_id: int) -> TrialView | None:
    """The rater's first unanswered trial (stamped as shown the first time), or None when all are answered."""
    from .stimuli import display_size

    with db.session() as s:
        trial = s.scalar(select(StudyTrial).where(StudyTrial.rater_id == rater_id, StudyTrial.answered_at.is_(None))
                         .order_by(StudyTrial.position).limit(1))
        if trial is None:
            return None
        if trial.shown_at is None:
            trial.shown_at = utcnow()
        w, h = s.execute(select(ImageJob.width, ImageJob.height)
                         .join(StudyImage, StudyImage.image_job_id == ImageJob.id)
                         .join(StudyStimulus, StudyStimulus.study_image_id == StudyImage.id)
                         .where(StudyStimulus.id == trial.stimulus_id)).one()
        return TrialView(trial.token, trial.position, *display_size(w, h))


def parse_scores(kind: str, sent: Mapping) -> dict[str, int]:
    """Whole scores 1–5 for each of the kind's criteria (form strings or JSON numbers)."""
    scores = {}
    for key, label in CRITERIA[kind]:
        value = sent.get(key)
        if value is None or value == "":
            raise StudyError(f"no score for {label.lower()} ({key}): choose 1 (Bad) to 5 (Excellent)")
        ok = (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, str) and value.isascii() and value.isdigit())
        if not ok or not 1 <= int(value) <= 5:
            raise StudyError(f"a score is a whole number from 1 (Bad) to 5 (Excellent); {key} was {value!r}")
        scores[key] = int(value)
    unknown = set(sent) - {k for k, _ in CRITERIA[kind]}
    if unknown:
        raise StudyError(f"this study scores {', '.join(k for k, _ in CRITERIA[kind])}, "
                         f"not {', '.join(sorted(unknown))}")
    return scores


def record_answer(db: Database, share_token: str, trial_token: str, sent: Mapping, *, rater_id: int | None = None,
                  rater_name=None) -> int:
    """Record a rater's scores for one of their trials; returns the rater's id. StudyError: 404 for a trial
    that is not theirs, 409 when the study is not open or the trial was answered, 400 for bad scores."""
    with db.session() as s:
        study = study_by_share(s, share_token)
        rater = rater_in(s, study, rater_id, rater_name)
        require_open(study)
        scores = parse_scores(study.kind, sent)
        trial = s.scalar(select(StudyTrial).where(StudyTrial.token == trial_token, StudyTrial.rater_id == rater.id)) \
            if isinstance(trial_token, str) else None
        if trial is None:
            raise StudyError("no such trial for this rater", 404)
        now = utcnow()
        claimed = s.execute(update(StudyTrial).where(StudyTrial.id == trial.id, StudyTrial.answered_at.is_(None))
                            .values(answered_at=now, shown_at=func.coalesce(StudyTrial.shown_at, now)))
        if claimed.rowcount != 1:
            raise StudyError("this one is already answered", 409)
        s.add_all(StudyScore(trial_id=trial.id, criterion=k, score=v) for k, v in scores.items())
        rater.last_seen_at = now
        return rater.id
