"""The design of a MOS study as plain functions: each rater's order of stimuli, and the rules that flag a rater.

Every rater sees every stimulus once, in an order of their own (seeded, so it can be rebuilt), with the same
photo never twice in a row when it can be helped; about ``repeat_share`` of the stimuli (never gold items)
come back later as hidden repeats, at least ``min_gap`` trials after their first showing. Gold items are
stimuli whose answer is known: a reference (expected ≥ 4) and a strongly blurred copy (expected ≤ 2).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Hashable, Sequence

REPEAT_SHARE = 0.10
MIN_GAP = 3
GOLD_HIGH, GOLD_LOW = "high", "low"


@dataclass(frozen=True)
class Stimulus:
    id: int
    image: Hashable        # the photo it shows (the conditions of one photo share it)
    gold: str | None = None


@dataclass(frozen=True)
class Planned:
    stimulus: int
    image: Hashable
    repeat: bool = False


def repeat_count(n: int, share: float) -> int:
    """How many of ``n`` stimuli are repeated: ``share`` of them, rounded, and at least one from two on."""
    if share <= 0 or n < 2:
        return 0
    return min(n, max(1, round(n * share)))


def _spread(stimuli: list[Stimulus], rng: random.Random) -> list[Stimulus]:
    """A random order in which the next stimulus is, when any is left that can be, of another photo."""
    remaining = list(stimuli)
    rng.shuffle(remaining)
    order: list[Stimulus] = []
    while remaining:
        last = order[-1].image if order else None
        pick = next((i for i, s in enumerate(remaining) if s.image != last), 0)
        order.append(remaining.pop(pick))
    return order


def plan_trials(stimuli: Sequence[Stimulus], rng: random.Random, repeat_share: float = REPEAT_SHARE,
                min_gap: int = MIN_GAP) -> list[Planned]:
    """One rater's trials: every stimulus once, plus hidden repeats of ``repeat_count`` non-gold ones."""
    order = _spread(list(stimuli), rng)
    trials = [Planned(s.id, s.image) for s in order]
    pool = [s for s in order if s.gold is None]
    for s in rng.sample(pool, repeat_count(len(pool), repeat_share)):
        first = next(i for i, t in enumerate(trials) if t.stimulus == s.id)
        spots = list(range(min(first + 1 + min_gap, len(trials)), len(trials) + 1))
        rng.shuffle(spots)

        def apart(q: int) -> bool:  # no neighbour shows the same photo
            return ((q == 0 or trials[q - 1].image != s.image)
                    and (q == len(trials) or trials[q].image != s.image))

        trials.insert(next((q for q in spots if apart(q)), spots[0]), Planned(s.id, s.image, repeat=True))
    return trials


def plan_unlike(stimuli: Sequence[Stimulus], seed: int, taken: Sequence[Sequence[int]],
                repeat_share: float = REPEAT_SHARE, attempts: int = 50) -> tuple[int, list[Planned]]:
    """``plan_trials`` from ``seed`` (then seed + 1, …) until its order of first showings is none of ``taken``
    (other raters' first showings, repeats left out): no two raters share an order (when there are enough
    orders to go round). Returns (seed used, plan)."""
    seen = {tuple(t) for t in taken}
    for k in range(attempts):
        plan = plan_trials(stimuli, random.Random(seed + k), repeat_share)
        if tuple(t.stimulus for t in plan if not t.repeat) not in seen:
            return seed + k, plan
    return seed + k, plan


@dataclass(frozen=True)
class QualityRules:
    """When a rater is flagged (and left out of the MOS unless the study page includes them)."""
    repeat_max_mean_diff: float = 1.0   # hidden repeats differing by more than this on average
    gold_misses_allowed: int = 0        # gold items answered outside their expected range
    gold_high_min: float = 4.0          # a reference: expected ≥ 4
    gold_low_max: float = 2.0           # a strongly blurred copy: expected ≤ 2

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def missed_gold(kind: str, score: float, rules: QualityRules) -> bool:
    return score < rules.gold_high_min if kind == GOLD_HIGH else score > rules.gold_low_max


def rater_flags(repeat_pairs: Sequence[tuple[float, float]], gold: Sequence[tuple[str, float]],
                rules: QualityRules = QualityRules()) -> list[str]:
    """Why a rater is not to be trusted (empty when they are): ``repeat_pairs`` are (first, repeat) scores of
    one stimulus, ``gold`` (kind, score) answers to gold items."""
    reasons = []
    if repeat_pairs:
        diff = sum(abs(a - b) for a, b in repeat_pairs) / len(repeat_pairs)
        if diff > rules.repeat_max_mean_diff:
            reasons.append(f"hidden repeats differ by {diff:.2f} on average over {len(repeat_pairs)} "
                           f"(more than {rules.repeat_max_mean_diff:g})")
    misses = [(k, s) for k, s in gold if missed_gold(k, s, rules)]
    if len(misses) > rules.gold_misses_allowed:
        detail = ", ".join(f"{'reference' if k == GOLD_HIGH else 'strongly blurred copy'} rated {s:g}"
                           for k, s in misses)
        reasons.append(f"missed {len(misses)} of {len(gold)} gold items ({detail})")
    return reasons
