"""MOS statistics against values worked out by hand (t quantiles from a printed table, to 4 decimals)."""
from __future__ import annotations

import math

import pytest

from shared.study_stats import (BY_RATERS, BY_RATINGS, paired_difference, sd, summarise, t_interval, t_quantile,
                                wilson_interval)

# Student's t, two-sided 95 % (the 0.975 quantile), from a table
T975 = {4: 2.7764, 5: 2.5706, 7: 2.3646, 9: 2.2622}
Z975 = 1.9600


def test_t_quantiles_match_the_table():
    for df, table in T975.items():
        assert t_quantile(0.975, df) == pytest.approx(table, abs=5e-5)


def test_mos_sd_and_t_interval_of_five_ratings():
    # [4, 5, 3, 4, 4]: mean 4; squared deviations 0 + 1 + 1 + 0 + 0 = 2; variance 2/4; SD √0.5 = 0.70711;
    # half width 2.7764 · 0.70711 / √5 = 0.87798
    ci = t_interval([4, 5, 3, 4, 4])
    assert ci.mean == 4 and ci.n == 5
    assert sd([4, 5, 3, 4, 4]) == pytest.approx(0.70711, abs=1e-5)
    assert (ci.lo, ci.hi) == (pytest.approx(3.12202, abs=1e-4), pytest.approx(4.87798, abs=1e-4))


def test_too_few_values_have_no_interval():
    assert sd([3]) is None and sd([]) is None
    one = t_interval([3])
    assert (one.mean, one.lo, one.hi) == (3, None, None)
    assert t_interval([]).mean is None
    flat = t_interval([4, 4, 4])
    assert (flat.lo, flat.hi) == (4, 4)  # no spread, no width


def test_five_raters_interval_is_over_their_means():
    ratings = [("r1", 5), ("r1", 3), ("r2", 4), ("r2", 4), ("r3", 3), ("r3", 3), ("r4", 5), ("r4", 5),
               ("r5", 2), ("r5", 4)]
    s = summarise(ratings)
    # MOS over the 10 ratings: 38 / 10; squared deviations sum to 9.6 → SD √(9.6 / 9) = 1.03280
    assert (s.mos, s.n_ratings, s.n_raters, s.ci_method) == (pytest.approx(3.8), 10, 5, BY_RATERS)
    assert s.sd == pytest.approx(1.03280, abs=1e-5)
    # rater means 4, 4, 3, 5, 3: mean 3.8; squared deviations 2.8 → SD √0.7 = 0.83666;
    # half width 2.7764 · 0.83666 / √5 = 1.03884
    assert (s.ci_lo, s.ci_hi) == (pytest.approx(2.76116, abs=1e-4), pytest.approx(4.83884, abs=1e-4))


def test_few_raters_interval_is_over_the_ratings_and_says_so():
    ratings = [("r1", 5), ("r1", 3), ("r2", 4), ("r2", 4), ("r3", 3), ("r3", 3), ("r4", 5), ("r4", 5)]
    s = summarise(ratings)
    # 8 ratings, mean 4, squared deviations 6 → SD √(6/7) = 0.92582; half 2.3646 · 0.92582 / √8 = 0.77400
    assert (s.mos, s.n_raters, s.ci_method) == (4, 4, BY_RATINGS)
    assert s.sd == pytest.approx(0.92582, abs=1e-5)
    assert (s.ci_lo, s.ci_hi) == (pytest.approx(3.22600, abs=1e-4), pytest.approx(4.77400, abs=1e-4))
    assert summarise([]).mos is None and summarise([]).n_ratings == 0


def test_paired_difference_over_rater_image_pairs_when_raters_are_few():
    a = {("r1", 1): 5, ("r1", 2): 4, ("r1", 3): 4, ("r2", 1): 3, ("r2", 2): 4, ("r2", 3): 5, ("r3", 9): 5}
    b = {("r1", 1): 3, ("r1", 2): 3, ("r1", 3): 4, ("r2", 1): 2, ("r2", 2): 4, ("r2", 3): 3}
    d = paired_difference(a, b)
    # differences 2, 1, 0, 1, 0, 2 (r3's image 9 has no partner): mean 1; SS 4 → SD √0.8 = 0.89443;
    # half 2.5706 · 0.89443 / √6 = 0.93865
    assert (d.mean, d.n, d.method) == (1, 6, BY_RATINGS)
    assert (d.lo, d.hi) == (pytest.approx(0.06135, abs=1e-4), pytest.approx(1.93865, abs=1e-4))


def test_paired_difference_over_rater_means_from_five_raters():
    diffs = {"r1": (1, 1), "r2": (2, 2), "r3": (1, -1), "r4": (0, 2), "r5": (1, 1)}
    a = {(r, i): 3 + d for r, ds in diffs.items() for i, d in enumerate(ds)}
    b = {(r, i): 3 for r in diffs for i in range(2)}
    d = paired_difference(a, b)
    # rater means 1, 2, 0, 1, 1: mean 1; SS 2 → SD √0.5; half 2.7764 · 0.70711 / √5 = 0.87798
    assert (d.mean, d.n, d.method) == (1, 5, BY_RATERS)
    assert (d.lo, d.hi) == (pytest.approx(0.12202, abs=1e-4), pytest.approx(1.87798, abs=1e-4))


def test_wilson_interval():
    # 8 of 10: z² = 3.8416; centre (0.8 + 0.19208) / 1.38416; half 1.96 · √(0.016 + 0.009604) / 1.38416
    p, lo, hi = wilson_interval(8, 10)
    assert p == 0.8
    z2 = Z975 ** 2
    half = Z975 * math.sqrt(0.8 * 0.2 / 10 + z2 / 400)
    assert lo == pytest.approx((0.8 + z2 / 20 - half) / (1 + z2 / 10), abs=1e-4)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    p, lo, hi = wilson_interval(0, 10)  # upper bound z²/n / (1 + z²/n) = 0.38416 / 1.38416
    assert (p, lo, hi) == (0, 0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(0, 0) == (None, None, None)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
