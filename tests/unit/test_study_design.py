"""Each rater's order (every stimulus once, hidden repeats, orders that differ) and the rules that flag a rater."""
from __future__ import annotations

import random
from collections import Counter

from shared.study_design import (GOLD_HIGH, GOLD_LOW, MIN_GAP, QualityRules, Stimulus, plan_trials, plan_unlike,
                                 rater_flags, repeat_count)


def stimuli(n_images: int, n_conditions: int, n_gold: int = 2) -> list[Stimulus]:
    found = [Stimulus(i * n_conditions + c, image=i) for i in range(n_images) for c in range(n_conditions)]
    base = len(found)
    found += [Stimulus(base + g, image=g % n_images, gold=GOLD_HIGH if g % 2 else GOLD_LOW) for g in range(n_gold)]
    return found


def test_every_stimulus_once_plus_about_ten_percent_hidden_repeats():
    items = stimuli(30, 3, n_gold=4)
    plan = plan_trials(items, random.Random(1))
    firsts = [t.stimulus for t in plan if not t.repeat]
    assert sorted(firsts) == sorted(s.id for s in items)  # every stimulus, once
    repeats = [t for t in plan if t.repeat]
    assert len(repeats) == 9 == repeat_count(90, 0.10)  # 10 % of the 90 non-gold stimuli
    gold = {s.id for s in items if s.gold}
    assert not gold & {t.stimulus for t in repeats}  # gold items are never repeated
    assert max(Counter(t.stimulus for t in plan).values()) == 2
    for t in repeats:  # a repeat comes later, and not right after its first showing
        first = next(i for i, p in enumerate(plan) if p.stimulus == t.stimulus and not p.repeat)
        assert plan.index(t) - first > MIN_GAP
    assert all(a.image != b.image for a, b in zip(plan, plan[1:]))  # never the same photo twice in a row


def test_orders_are_seeded_and_differ_between_raters():
    items = stimuli(10, 3)
    assert plan_trials(items, random.Random(7)) == plan_trials(items, random.Random(7))
    orders = {tuple(t.stimulus for t in plan_trials(items, random.Random(seed))) for seed in range(20)}
    assert len(orders) == 20


def test_no_order_is_given_twice():
    items = [Stimulus(1, image="a"), Stimulus(2, image="b")]  # only two orders of first showings exist
    taken = []
    for _ in range(2):
        _seed, plan = plan_unlike(items, 5, taken)
        assert sum(t.repeat for t in plan) == 1
        taken.append([t.stimulus for t in plan if not t.repeat])
    assert sorted(map(tuple, taken)) == [(1, 2), (2, 1)]
    seed, plan = plan_unlike(items, 5, [])
    assert plan == plan_trials(items, random.Random(seed))  # the seed recorded rebuilds the order


def test_repeat_count():
    assert [repeat_count(n, 0.1) for n in (0, 1, 2, 12, 14, 300)] == [0, 0, 1, 1, 1, 30]
    assert repeat_count(300, 0) == 0


def test_repeats_that_differ_by_more_than_one_on_average_flag_a_rater():
    assert rater_flags([(4, 5), (3, 3), (2, 4)], []) == []  # mean |difference| (1 + 0 + 2) / 3 = 1: not more
    reasons = rater_flags([(4, 5), (3, 1), (2, 4)], [])  # (1 + 2 + 2) / 3 = 1.67
    assert len(reasons) == 1 and "differ by 1.67 on average over 3" in reasons[0]
    assert rater_flags([], []) == []  # nothing to judge by yet


def test_missed_gold_items_flag_a_rater():
    good = [(GOLD_HIGH, 4), (GOLD_HIGH, 5), (GOLD_LOW, 2), (GOLD_LOW, 1)]
    assert rater_flags([], good) == []
    reasons = rater_flags([], [(GOLD_HIGH, 3), (GOLD_LOW, 1), (GOLD_LOW, 3)])
    assert reasons == ["missed 2 of 3 gold items (reference rated 3, strongly blurred copy rated 3)"]
    assert rater_flags([], [(GOLD_HIGH, 3)], QualityRules(gold_misses_allowed=1)) == []
    both = rater_flags([(1, 5)], [(GOLD_LOW, 5)])
    assert len(both) == 2  # every reason is listed
