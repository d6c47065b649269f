"""Statistics of a MOS study (absolute category rating, ITU-T P.800/P.808 style): plain functions over scores.

Scores are integers 1–5 (5 Excellent … 1 Bad). A condition's **MOS** is the mean of its ratings and its **SD**
the sample standard deviation (n − 1). Its 95 % confidence interval is a Student-t interval:

- over **per-rater means** when at least ``MIN_RATERS`` raters rated it — the raters are the sample, so a
  rater who is harsh on everything counts once, not once per rating (P.1401's advice for subjective tests);
- over the **ratings** themselves when fewer raters did. That treats each rating as independent, which
  they are not (a rater's ratings agree with each other), so the interval is too narrow; the result says so.

The difference between two conditions is paired: each rater rated both on the same images, so the
interval is over per-rater mean differences (or over the (rater, image) differences when raters are few).
The Wilson score interval is for a share (e.g. the share of ratings that are Good or Excellent).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

MIN_RATERS = 5      # from this many raters on, intervals are over per-rater means
LEVEL = 0.95
BY_RATERS, BY_RATINGS = "per-rater means", "ratings"


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def sd(xs: list[float]) -> float | None:
    """Sample standard deviation (divides by n − 1); None for fewer than two values."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.special import stdtrit  # imported on first use (half a second; scipy.stats takes twice that)

    return float(stdtrit(df, p))


def normal_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided t interval; ``lo``/``hi`` are None below two values."""
    mean: float | None
    lo: float | None
    hi: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None else (self.hi - self.lo) / 2


def t_interval(xs: list[float], level: float = LEVEL) -> Interval:
    """mean ± t(1 − α/2, n − 1) · s / √n."""
    m, s, n = mean(xs), sd(xs), len(xs)
    if s is None:
        return Interval(m, None, None, n)
    h = t_quantile(0.5 + level / 2, n - 1) * s / math.sqrt(n)
    return Interval(m, m - h, m + h, n)


@dataclass(frozen=True)
class Summary:
    """One condition: MOS, SD, counts, and the interval with the way it was computed (``ci_method``)."""
    mos: float | None
    sd: float | None
    n_ratings: int
    n_raters: int
    ci_lo: float | None
    ci_hi: float | None
    ci_method: str

    def as_dict(self) -> dict:
        return {"mos": self.mos, "sd": self.sd, "n_ratings": self.n_ratings, "n_raters": self.n_raters,
                "ci_lo": self.ci_lo, "ci_hi": self.ci_hi, "ci_method": self.ci_method}


def per_rater_means(ratings: Iterable[tuple[object, float]]) -> dict[object, float]:
    by_rater: dict[object, list[float]] = defaultdict(list)
    for rater, score in ratings:
        by_rater[rater].append(score)
    return {r: sum(v) / len(v) for r, v in by_rater.items()}


def summarise(ratings: list[tuple[object, float]], min_raters: int = MIN_RATERS, level: float = LEVEL) -> Summary:
    """A condition's ratings as (rater, score) pairs → MOS, SD, N and the 95 % interval."""
    scores = [s for _, s in ratings]
    means = per_rater_means(ratings)
    if len(means) >= min_raters:
        ci, method = t_interval(list(means.values()), level), BY_RATERS
    else:
        ci, method = t_interval(scores, level), BY_RATINGS
    return Summary(mean(scores), sd(scores), len(scores), len(means), ci.lo, ci.hi, method)


@dataclass(frozen=True)
class Difference:
    """Condition A − condition B, paired: mean difference, its interval, and over what it was computed."""
    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "method": self.method}


def paired_difference(a: Mapping[tuple[object, object], float], b: Mapping[tuple[object, object], float],
                      min_raters: int = MIN_RATERS, level: float = LEVEL) -> Difference:
    """A − B from scores keyed by (rater, image); only pairs rated in both count.

    With ``min_raters`` or more raters: a t interval over each rater's mean difference; else over the
    (rater, image) differences."""
    diffs = [(key[0], a[key] - b[key]) for key in a.keys() & b.keys()]
    by_rater = per_rater_means(diffs)
    if len(by_rater) >= min_raters:
        ci, method = t_interval(list(by_rater.values()), level), BY_RATERS
    else:
        ci, method = t_interval([d for _, d in diffs], level), BY_RATINGS
    return Difference(ci.mean, ci.lo, ci.hi, ci.n, method)


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """A share and its Wilson score interval: (p, lo, hi); all None when n is 0.

    (p + z²/2n ± z·√(p(1 − p)/n + z²/4n²)) / (1 + z²/n), z the normal quantile."""
    if n <= 0:
        return None, None, None
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    z = normal_quantile(0.5 + level / 2)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return p, max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)
