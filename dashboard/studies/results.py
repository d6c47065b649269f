"""A study's results: raters checked against the quality rules, MOS and intervals per condition, paired
differences, and the CSV of every raw rating.

Only first showings of non-gold stimuli count towards the MOS (hidden repeats and gold items are for the
checks). Flagged raters are left out unless ``include_flagged``; they are always listed with the reasons.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from itertools import combinations

from sqlalchemy import func, select

from shared.models import ImageJob, Study, StudyCondition, StudyImage, StudyRater, StudyScore, StudyStimulus, StudyTrial
from shared.study_design import GOLD_HIGH, QualityRules, rater_flags
from shared.study_stats import BY_RATERS, MIN_RATERS, paired_difference, summarise, wilson_interval

from .raters import CRITERIA

OVERALL = "overall"


def criteria_of(kind: str) -> list[str]:
    """What the results report: the criteria rated, and for a triplet study their mean (``overall``) too."""
    keys = [k for k, _ in CRITERIA[kind]]
    return keys + [OVERALL] if len(keys) > 1 else keys


def main_criterion(kind: str) -> str:
    return criteria_of(kind)[-1]


def _answered(s, study_id: int) -> dict[int, dict]:
    trials: dict[int, dict] = {}
    for trial_id, rater, stimulus, repeat, condition, gold, image, criterion, score in s.execute(
            select(StudyTrial.id, StudyTrial.rater_id, StudyTrial.stimulus_id, StudyTrial.is_repeat,
                   StudyStimulus.condition_id, StudyStimulus.gold, StudyStimulus.study_image_id,
                   StudyScore.criterion, StudyScore.score)
            .join(StudyStimulus, StudyStimulus.id == StudyTrial.stimulus_id)
            .join(StudyScore, StudyScore.trial_id == StudyTrial.id)
            .where(StudyTrial.study_id == study_id)):
        t = trials.setdefault(trial_id, {"rater": rater, "stimulus": stimulus, "repeat": repeat,
                                         "condition": condition, "gold": gold, "image": image, "scores": {}})
        t["scores"][criterion] = score
    for t in trials.values():
        t["scores"][OVERALL] = sum(t["scores"].values()) / len(t["scores"])
    return trials


def _rater_checks(s, study: Study, trials: dict[int, dict], main: str) -> list[dict]:
    rules = QualityRules(**study.settings.get("rules", {}))
    firsts = {(t["rater"], t["stimulus"]): t["scores"][main] for t in trials.values() if not t["repeat"]}
    pairs: dict[int, list] = defaultdict(list)
    gold: dict[int, list] = defaultdict(list)
    for t in trials.values():
        if t["repeat"] and (t["rater"], t["stimulus"]) in firsts:
            pairs[t["rater"]].append((firsts[(t["rater"], t["stimulus"])], t["scores"][main]))
        elif t["gold"] and not t["repeat"]:
            gold[t["rater"]].append((t["gold"], t["scores"][main]))
    raters = []
    for rater_id, name, total, answered, last_seen in s.execute(
            select(StudyRater.id, StudyRater.name, func.count(StudyTrial.id), func.count(StudyTrial.answered_at),
                   StudyRater.last_seen_at)
            .join(StudyTrial, StudyTrial.rater_id == StudyRater.id, isouter=True)
            .where(StudyRater.study_id == study.id).group_by(StudyRater.id).order_by(StudyRater.id)):
        p, g = pairs[rater_id], gold[rater_id]
        raters.append({"id": rater_id, "name": name, "answered": answered, "total": total,
                       "last_seen_at": last_seen.isoformat() if last_seen else None,
                       "repeats": len(p), "repeat_mean_diff": sum(abs(a - b) for a, b in p) / len(p) if p else None,
                       "gold": len(g), "gold_high": sum(k == GOLD_HIGH for k, _ in g),
                       "flags": rater_flags(p, g, rules)})
    return raters


def study_results(s, study: Study, include_flagged: bool = False) -> dict:
    """Everything the results page and ``GET /studies/ID/results`` show (see the module docstring)."""
    criteria, main = criteria_of(study.kind), main_criterion(study.kind)
    trials = _answered(s, study.id)
    raters = _rater_checks(s, study, trials, main)
    for r in raters:
        r["included"] = include_flagged or not r["flags"]
    included = {r["id"] for r in raters if r["included"]}
    keyed: dict[tuple[int, str], dict] = defaultdict(dict)   # (condition, criterion) → {(rater, image): score}
    for t in trials.values():
        if t["condition"] is not None and not t["repeat"] and t["rater"] in included:
            for c in criteria:
                keyed[(t["condition"], c)][(t["rater"], t["image"])] = t["scores"][c]
    conditions = []
    for c in s.scalars(select(StudyCondition).where(StudyCondition.study_id == study.id)
                       .order_by(StudyCondition.position)):
        scores = {}
        for crit in criteria:
            ratings = keyed[(c.id, crit)]
            summary = summarise([(rater, v) for (rater, _image), v in ratings.items()]).as_dict()
            p, lo, hi = wilson_interval(sum(v >= 4 for v in ratings.values()), len(ratings))
            scores[crit] = {**summary, "good_or_better": p, "gob_lo": lo, "gob_hi": hi}
        conditions.append({"id": c.id, "label": c.label, "kind": c.kind, "model_version_id": c.model_version_id,
                           "scores": scores})
    differences = []
    for a, b in combinations(conditions, 2):
        d = paired_difference(keyed[(b["id"], main)], keyed[(a["id"], main)]).as_dict()
        differences.append({"a": b["label"], "b": a["label"], "a_id": b["id"], "b_id": a["id"], **d})
    return {"study_id": study.id, "kind": study.kind, "criteria": criteria, "main_criterion": main,
            "include_flagged": include_flagged, "conditions": conditions, "differences": differences,
            "raters": raters, "n_raters_included": len(included),
            "n_ratings": sum(c["scores"][main]["n_ratings"] for c in conditions),
            "n_raters_flagged": sum(bool(r["flags"]) for r in raters), "min_raters_for_rater_ci": MIN_RATERS,
            "ci_note": (f"95 % t-intervals over per-rater means from {MIN_RATERS} raters on; with fewer, over the "
                        "ratings themselves (too narrow: one rater's ratings are not independent)."),
            "by_raters": BY_RATERS}


CSV_COLUMNS = ("study", "study_name", "rater", "trial", "item", "image", "condition", "model_version_id", "gold",
               "repeat", "criterion", "score", "shown_at", "answered_at")


def ratings_csv(s, study: Study) -> str:
    """Every raw rating, one row per score: the trial's position in the rater's order, the item (sampled
    image), its condition (or the kind of gold item), the model version, and when it was shown and answered."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for (rater, position, item, image, label, version, gold, repeat, criterion, score, shown,
         answered) in s.execute(
            select(StudyRater.name, StudyTrial.position, StudyImage.position, ImageJob.original_name,
                   StudyCondition.label, StudyCondition.model_version_id, StudyStimulus.gold, StudyTrial.is_repeat,
                   StudyScore.criterion, StudyScore.score, StudyTrial.shown_at, StudyTrial.answered_at)
            .join(StudyRater, StudyRater.id == StudyTrial.rater_id)
            .join(StudyStimulus, StudyStimulus.id == StudyTrial.stimulus_id)
            .join(StudyImage, StudyImage.id == StudyStimulus.study_image_id)
            .join(ImageJob, ImageJob.id == StudyImage.image_job_id)
            .join(StudyCondition, StudyCondition.id == StudyStimulus.condition_id, isouter=True)
            .join(StudyScore, StudyScore.trial_id == StudyTrial.id)
            .where(StudyTrial.study_id == study.id)
            .order_by(StudyRater.id, StudyTrial.position, StudyScore.criterion)):
        condition = label or ("gold: reference" if gold == GOLD_HIGH else "gold: strongly blurred copy")
        writer.writerow((study.id, study.name, rater, position, item, image, condition,
                         "" if version is None else version, gold or "", int(bool(repeat)), criterion, score,
                         shown.isoformat() if shown else "", answered.isoformat() if answered else ""))
    return out.getvalue()
