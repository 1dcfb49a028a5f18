"""The statistics the studies use, in plain Python (the `math` module only):

- `paired_difference`: the mean difference of two arms paired by seed, and
  its t interval (`t_critical`); `welch_difference`, the same for two sets
  of runs that share no seeds;
- `pass_change_p`: whether a change altered which seeds pass (McNemar's
  exact test); `sign_test_p`, the same coin count on the signs of paired
  differences; `pass_counts_p`, two pass counts from different seeds
  (Fisher's exact test);
- `at_least`: the chance of k or more passes out of n at a pass rate (the
  binomial tail);
- `pass_rate_lower_bound`: the lowest pass rate a record of passes allows
  (Clopper-Pearson, one-sided), and `pass_rate_interval` (two-sided);
- planning a seed study: `half_width` (the interval n seeds give at a
  spread), `differences_sd` (the spread a half-width implies), `seeds_for`
  (the seeds a half-width needs) and `cleared_share` (how often a true
  effect's interval clears zero, simulated).

Each is a few lines, to be read beside the reference its docstring names;
tests/test_stats.py checks them against textbook values.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from typing import Callable, Sequence


def paired_difference(after: dict[int, float],
                      before: dict[int, float], confidence: float = 0.95
                      ) -> tuple[float, float, float, int]:
    """`after` minus `before`, paired by seed (the seeds both have): the mean
    difference, its standard error (the differences' standard deviation over
    the square root of their number), the half-width of its `confidence`
    interval (t_critical(n - 1) x SE) and n. With fewer than two pairs there
    is no interval: NaN.

    Pairing by seed removes what the seed alone decides (initialisation,
    batch order), so the interval is that of the change. Reference: Student
    (1908), "The probable error of a mean", Biometrika 6(1), 1-25; any
    textbook's paired t interval, e.g. Wasserman, *All of Statistics* (2004).
    """
    diffs = [after[seed] - before[seed] for seed in after if seed in before]
    n = len(diffs)
    if n < 2:  # one difference has no spread: no interval
        mean = statistics.fmean(diffs) if n else math.nan
        return mean, math.nan, math.nan, n
    se = statistics.stdev(diffs) / math.sqrt(n)
    return statistics.fmean(diffs), se, t_critical(n - 1, confidence) * se, n


def welch_difference(a: Sequence[float], b: Sequence[float],
                     confidence: float = 0.95) -> tuple[float, float, float, float]:
    """mean(`a`) minus mean(`b`) for two unpaired sets of runs (other seeds,
    or other digits): the difference, its standard error √(s_a²/n_a +
    s_b²/n_b) with each side's own spread, the half-width of its
    `confidence` interval (t_critical(df) x SE) and df, the Welch-
    Satterthwaite degrees of freedom, rounded down as a t table is read.
    Each side needs at least two runs.

    Unlike the pooled t interval it does not assume that the two spreads
    are equal. Reference: Welch (1947), "The generalization of 'Student's'
    problem when several different population variances are involved",
    Biometrika 34(1-2), 28-35.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each side needs at least two runs; got {len(a)} and "
                         f"{len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = math.floor((va + vb) ** 2 / (va ** 2 / (len(a) - 1)
                                      + vb ** 2 / (len(b) - 1)))
    se = math.sqrt(va + vb)
    return (statistics.fmean(a) - statistics.fmean(b), se,
            t_critical(df, confidence) * se, df)


# Remembered: a chapter asks for the same few values hundreds of times.
@functools.lru_cache(maxsize=None)
def t_critical(df: int, confidence: float = 0.95) -> float:
    """The two-sided critical value of Student's t with `df` degrees of
    freedom: a mean difference of n paired runs, m ± t_critical(n - 1) * SE,
    covers the true difference with probability `confidence`. With few runs
    it is well above the normal's 1.96: 2.78 for 5 runs (df 4) at 95%.

    The density (1 + x²/df)^(-(df+1)/2), normalised, is integrated with
    Simpson's rule and the quantile found by bisection: accurate to about
    1e-6, plenty for a confidence interval. Reference: the t table of any
    statistics textbook (tests/test_stats.py checks against one).
    """
    if not (df >= 1 and 0 < confidence < 1):
        raise ValueError(f"need df >= 1 and 0 < confidence < 1; got df={df}, "
                         f"confidence={confidence}")
    log_c = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2)
             - 0.5 * math.log(df * math.pi))

    def density(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    def mass(x: float, steps: int = 2000) -> float:  # P(0 < T < x), Simpson
        h = x / steps
        inner = sum((4 if k % 2 else 2) * density(k * h) for k in range(1, steps))
        return h / 3 * (density(0.0) + inner + density(x))

    lo, hi = 0.0, 1.0
    while mass(hi) < confidence / 2:  # bracket the quantile
        lo, hi = hi, 2 * hi
    return _crossing(mass, confidence / 2, lo, hi)


def coin_split_p(b: int, c: int) -> float:
    """How often a fair coin, tossed b + c times, splits at least as unevenly
    as b against c, either way (two-sided): 2 * P(min(b, c) or fewer heads),
    at most 1. The exact test behind `pass_change_p` and `sign_test_p`."""
    m = b + c
    tail = sum(math.comb(m, k) for k in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def pass_change_p(after: dict[int, bool], before: dict[int, bool]) -> float:
    """How likely a split of passes at least this lopsided is by chance, if
    the change made no difference to whether a seed passes: McNemar's exact
    test, two-sided, on the seeds both have. Only the seeds whose verdict
    changed count (b passed only after, c only before); with no effect each
    is a coin toss, so min(b, c) or fewer of b + c is binomial(b + c, 1/2).
    1.0 when no verdict changed.

    Reference: McNemar (1947), "Note on the sampling error of the difference
    between correlated proportions or percentages", Psychometrika 12(2),
    153-157; the exact (binomial) form as in Fagerland, Lydersen and Laake
    (2013), BMC Medical Research Methodology 13, 91.
    """
    b = sum(after[s] and not before[s] for s in after if s in before)
    c = sum(before[s] and not after[s] for s in after if s in before)
    return coin_split_p(b, c)


def sign_test_p(differences: Sequence[float]) -> float:
    """The exact sign test, two-sided: how often, with no effect, the paired
    differences' signs split at least as unevenly as these. Each nonzero
    difference is a coin toss (zeros are dropped), so only the count up and
    the count down matter, not their sizes: a run that diverged counts once.
    Ten of ten one way gives 2 / 2**10 = 0.002.

    Reference: Conover (1999), Practical Nonparametric Statistics, 3rd ed.,
    section 3.4.
    """
    up = sum(d > 0 for d in differences)
    down = sum(d < 0 for d in differences)
    return coin_split_p(up, down)


def pass_counts_p(passed_a: int, n_a: int, passed_b: int, n_b: int) -> float:
    """Could one pass rate give both counts, passed_a of n_a seeds and
    passed_b of n_b other seeds? Fisher's exact test, two-sided: keep the
    totals (n_a, n_b, and all passes), deal the passes between the two rows
    in every way, each way equally likely when the rates are equal, and
    return the share of deals whose table is no likelier than the one seen.
    A table with x passes in row a has C(passes, x) C(fails, n_a - x) deals.
    10 of 20 against 50 of 50: about 5e-7.

    Reference: Fisher (1935), "The logic of inductive inference", Journal of
    the Royal Statistical Society 98(1), 39-82; Agresti (2007), An
    Introduction to Categorical Data Analysis, 2nd ed., section 2.6.
    """
    if not (0 <= passed_a <= n_a and 0 <= passed_b <= n_b):
        raise ValueError(f"need 0 <= passed <= n in each row; got {passed_a} "
                         f"of {n_a} and {passed_b} of {n_b}")
    passes, fails = passed_a + passed_b, n_a + n_b - passed_a - passed_b

    def deals(x: int) -> int:  # tables with x passes in row a
        return math.comb(passes, x) * math.comb(fails, n_a - x)

    xs = range(max(0, n_a - fails), min(n_a, passes) + 1)
    seen = deals(passed_a)  # whole numbers: "no likelier" is exact
    return sum(deals(x) for x in xs if deals(x) <= seen) / sum(map(deals, xs))


def at_least(k: int, n: int, rate: float) -> float:
    """The chance of `k` or more passes out of `n` seeds when each passes with
    probability `rate`, independently: the binomial tail
    sum over j = k..n of C(n, j) rate^j (1 - rate)^(n - j).
    at_least(18, 20, 0.9) is 0.68: a recipe that passes 90% of the time
    shows 18 of 20 or better about two times in three."""
    if not (n >= 0 and 0 <= rate <= 1):
        raise ValueError(f"need n >= 0 and 0 <= rate <= 1; got n={n}, rate={rate}")
    return sum(math.comb(n, j) * rate ** j * (1 - rate) ** (n - j)
               for j in range(max(k, 0), n + 1))


def pass_rate_lower_bound(passed: int, n: int, confidence: float = 0.95) -> float:
    """The lowest pass rate that `passed` passes out of `n` seeds are consistent
    with, at `confidence` (one-sided Clopper-Pearson): at any lower rate, that
    many passes or more would come up less than 1 - `confidence` of the time.

    A perfect record is a sample too: 15 passes out of 15 still allow a rate
    as low as 0.82 at 95% (0.05 ** (1 / 15)). Reference: Clopper and Pearson
    (1934), "The use of confidence or fiducial limits illustrated in the case
    of the binomial", Biometrika 26(4), 404-413.
    """
    if not (n >= 1 and 0 <= passed <= n and 0 < confidence < 1):
        raise ValueError(f"need 0 <= passed <= n, n >= 1 and 0 < confidence < 1; "
                         f"got passed={passed}, n={n}, confidence={confidence}")
    if passed == 0:
        return 0.0
    # The chance of `passed` or more grows with the rate: find where it is 5%.
    return _crossing(lambda rate: at_least(passed, n, rate), 1 - confidence,
                     0.0, 1.0)


def pass_rate_interval(passed: int, n: int, confidence: float = 0.95
                       ) -> tuple[float, float]:
    """The two-sided `confidence` interval of the pass rate behind `passed`
    passes out of `n` seeds (Clopper-Pearson, reference above): each end is a
    one-sided bound at (1 + confidence) / 2, so 10 of 20 gives 0.27 to 0.73
    at 95%."""
    one_sided = (1 + confidence) / 2
    lo = pass_rate_lower_bound(passed, n, one_sided)
    # The upper end is the lower end for the failures, seen from the other side.
    return lo, 1 - pass_rate_lower_bound(n - passed, n, one_sided)


def correlation_interval(r: float, n: int, confidence: float = 0.95
                         ) -> tuple[float, float]:
    """The `confidence` interval of a correlation `r` measured over `n` pairs,
    by Fisher's z: atanh(r) is close to normal with standard error
    1 / sqrt(n - 3), so the interval is tanh(atanh(r) -+ z * se). Ten seeds
    with r = 0.5 give about -0.19 to +0.86 at 95%: a correlation from a few
    seeds says little. Reference: Fisher (1921), "On the 'probable error' of
    a coefficient of correlation deduced from a small sample", Metron 1."""
    if not (-1 < r < 1 and n > 3 and 0 < confidence < 1):
        raise ValueError(f"need -1 < r < 1, n > 3 and 0 < confidence < 1; "
                         f"got r={r}, n={n}, confidence={confidence}")
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    centre, se = math.atanh(r), 1 / math.sqrt(n - 3)
    return math.tanh(centre - z * se), math.tanh(centre + z * se)


def half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    """The half-width of the t interval of the mean of `n` paired differences
    whose standard deviation is `sd`: t_critical(n - 1) * sd / sqrt(n), the
    interval `paired_difference` gives. It shrinks about as 1/sqrt(n)."""
    if not (n >= 2 and sd >= 0):
        raise ValueError(f"need n >= 2 seeds and sd >= 0; got n={n}, sd={sd}")
    return t_critical(n - 1, confidence) * sd / math.sqrt(n)


def differences_sd(half: float, n: int, confidence: float = 0.95) -> float:
    """The standard deviation of `n` paired differences that an interval of
    half-width `half` implies: `half_width` solved for the spread,
    half * sqrt(n) / t_critical(n - 1). A study's typical half-width thus
    becomes the spread to plan the next study with."""
    if not (n >= 2 and half >= 0):
        raise ValueError(f"need n >= 2 seeds and half >= 0; got n={n}, half={half}")
    return half * math.sqrt(n) / t_critical(n - 1, confidence)


def seeds_for(sd: float, half: float, confidence: float = 0.95,
              most: int = 10_000) -> int:
    """The fewest seeds (at least 2) whose paired differences, at standard
    deviation `sd`, give an interval of half-width `half` or less. Refuses
    when more than `most` seeds would be needed, rather than guess."""
    if not (sd >= 0 and half > 0):
        raise ValueError(f"need sd >= 0 and half > 0; got sd={sd}, half={half}")
    # t exceeds the normal's z, so no n below (z * sd / half)² can reach the
    # width: start there (each t_critical costs ~50 ms) and count up.
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    for n in range(max(2, math.floor((z * sd / half) ** 2)), most + 1):
        if half_width(sd, n, confidence) <= half:
            return n
    raise ValueError(f"a half-width of {half} at SD {sd} needs more than {most} "
                     "seeds; ask for a wider interval, or pass most=")


def cleared_share(effect: float, sd: float, seeds: int = 10,
                  trials: int = 10_000, seed: int = 0,
                  confidence: float = 0.95) -> float:
    """How often a study would resolve a true `effect`: the share of
    `trials` simulated studies, each `seeds` paired differences drawn from a
    normal with mean `effect` and standard deviation `sd`, whose interval
    lies wholly above zero (its power, by simulation; seeded by `seed`, so
    the same arguments give the same share). With effect 0 it is about
    (1 - confidence) / 2: an interval above zero by luck."""
    if not (seeds >= 2 and trials >= 1 and sd >= 0):
        raise ValueError(f"need seeds >= 2, trials >= 1 and sd >= 0; got "
                         f"seeds={seeds}, trials={trials}, sd={sd}")
    rng, cleared = random.Random(seed), 0
    t = t_critical(seeds - 1, confidence)
    for _ in range(trials):
        d = [rng.gauss(effect, sd) for _ in range(seeds)]
        half = t * statistics.stdev(d) / math.sqrt(seeds)
        cleared += statistics.fmean(d) - half > 0
    return cleared / trials


def _crossing(f: Callable[[float], float], level: float, lo: float, hi: float
              ) -> float:
    """The x in [lo, hi] where the increasing `f` reaches `level`, by
    bisection: 50 halvings leave the bracket 1e-15 of its width."""
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < level else (lo, mid)
    return (lo + hi) / 2
