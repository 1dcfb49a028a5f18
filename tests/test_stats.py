"""The statistics the studies use (`mnist_lib.stats`), against textbook values
and hand counts."""

from __future__ import annotations

import math

import pytest

from mnist_lib.stats import (at_least, correlation_interval, paired_difference, pass_change_p,
                             pass_counts_p, pass_rate_interval, pass_rate_lower_bound,
                             sign_test_p, t_critical, welch_difference)


@pytest.mark.parametrize("df, confidence, t", [
    # Textbook two-sided critical values of Student's t.
    (1, 0.95, 12.706), (2, 0.95, 4.303), (4, 0.95, 2.776), (10, 0.95, 2.228),
    (30, 0.95, 2.042), (4, 0.90, 2.132), (4, 0.99, 4.604), (10_000, 0.95, 1.960),
])
def test_t_critical_matches_the_tables(df, confidence, t):
    assert t_critical(df, confidence) == pytest.approx(t, abs=1e-3)


def test_t_critical_refuses_what_has_no_interval():
    for df, confidence in ((0, 0.95), (4, 1.0), (4, 0.0)):
        with pytest.raises(ValueError, match="need df >= 1"):
            t_critical(df, confidence)


def test_paired_difference_by_hand():
    # Differences 1, 2, 3 (seed 9 has no pair): mean 2, std 1, SE 1/sqrt(3),
    # and the 95% half-width t(2) = 4.303 times that.
    after = {0: 11.0, 1: 12.0, 2: 13.0, 9: 50.0}
    before = {0: 10.0, 1: 10.0, 2: 10.0}
    delta, se, ci, n = paired_difference(after, before)
    assert (delta, n) == (2.0, 3)
    assert se == pytest.approx(1 / math.sqrt(3))
    assert ci == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    delta, se, ci, n = paired_difference({0: 1.5}, {0: 1.0})  # one pair: no interval
    assert (delta, n) == (0.5, 1) and math.isnan(se) and math.isnan(ci)


def test_welch_difference_matches_a_published_example():
    # Welch's t-test, Wikipedia's first example (two samples of 15 with
    # unequal spreads): t = -2.46 with 24.99 degrees of freedom.
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6,
         19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1,
         22.9, 20.5, 24.4]
    delta, se, half, df = welch_difference(a, b)
    assert delta / se == pytest.approx(-2.46, abs=0.005)
    assert df == 24  # 24.99, rounded down as a t table is read
    assert half == pytest.approx(t_critical(24) * se)


def test_welch_difference_is_the_pooled_interval_when_spreads_and_sizes_agree():
    # Equal sizes and variances: Welch's df is 2(n - 1), its SE the pooled one.
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]
    delta, se, half, df = welch_difference(a, b)
    assert (delta, df) == (-1.0, 6)
    assert se == pytest.approx(math.sqrt(2 * (5 / 3) / 4))
    with pytest.raises(ValueError, match="at least two runs"):
        welch_difference([1.0], b)


@pytest.mark.parametrize("b, c, p", [
    (6, 0, 2 / 64),               # six changed verdicts, all one way
    (5, 1, 2 * (1 + 6) / 64),     # 1 or fewer of 6: (1 + 6) / 64, doubled
    (1, 1, 1.0), (0, 0, 1.0),
    (0, 3, 2 / 8),
])
def test_pass_change_p_is_mcnemars_exact_test(b, c, p):
    """The p of a comparison's change in passes (`study.compare`'s met_p)."""
    before = {i: False for i in range(b)} | {b + i: True for i in range(c)}
    before |= {100: True, 101: False}   # verdicts that did not change count not
    after = {s: not v for s, v in before.items()} | {100: True, 101: False}
    assert pass_change_p(after, before) == pytest.approx(p)


@pytest.mark.parametrize("differences, p", [
    ([0.1] * 10, 2 / 2 ** 10),            # ten of ten up
    ([1.0, 2.0, 3.0, -1.0], 2 * 5 / 16),  # 1 or fewer of 4 down: (1 + 4) / 16, doubled
    ([1.0, 0.0, -1.0], 1.0),              # the zero is dropped: one up, one down
    ([-50.0, 0.01, 0.02], 1.0),           # sizes do not count, only signs
])
def test_sign_test_p_counts_signs_only(differences, p):
    assert sign_test_p(differences) == pytest.approx(p)


@pytest.mark.parametrize("a, n_a, b, n_b, p", [
    (3, 4, 1, 4, 0.4857),      # Fisher's tea tasting; R: fisher.test(matrix(c(3,1,1,3), 2))
    (1, 10, 11, 14, 0.002759),  # R: fisher.test(matrix(c(1,11,9,3), 2))$p.value
    (5, 10, 5, 10, 1.0),       # equal counts: every table is at least as far
    (10, 20, 50, 50, 4.6573e-7),  # all 10 fails in the 20: C(20,10)/C(70,10)
])
def test_pass_counts_p_is_fishers_exact_test(a, n_a, b, n_b, p):
    assert pass_counts_p(a, n_a, b, n_b) == pytest.approx(p, rel=1e-3)
    # which row is first, and which outcome is "pass", do not matter
    assert pass_counts_p(b, n_b, a, n_a) == pytest.approx(p, rel=1e-3)
    assert pass_counts_p(n_a - a, n_a, n_b - b, n_b) == pytest.approx(p, rel=1e-3)


def test_pass_counts_p_refuses_more_passes_than_seeds():
    with pytest.raises(ValueError, match="0 <= passed <= n"):
        pass_counts_p(11, 10, 3, 10)


@pytest.mark.parametrize("k, n, rate, expected", [
    (3, 3, 0.5, 1 / 8),          # all three heads
    (2, 3, 0.5, 4 / 8),          # HHT, HTH, THH, HHH
    (0, 5, 0.3, 1.0),            # zero or more: certain
    (18, 20, 0.9, 0.6769),       # hand sum of C(20, j) 0.9^j 0.1^(20-j), j >= 18
    (1, 4, 0.0, 0.0), (4, 4, 1.0, 1.0),
])
def test_at_least_is_the_binomial_tail(k, n, rate, expected):
    assert at_least(k, n, rate) == pytest.approx(expected, abs=1e-4)


def test_at_least_refuses_a_rate_outside_zero_to_one():
    with pytest.raises(ValueError, match="0 <= rate <= 1"):
        at_least(2, 5, 1.2)


def test_the_lower_bound_is_where_the_tail_reaches_five_percent():
    """pass_rate_lower_bound inverts at_least: at the bound, that many passes
    or more come up 5% of the time."""
    bound = pass_rate_lower_bound(18, 20)
    assert at_least(18, 20, bound) == pytest.approx(0.05, abs=1e-6)


@pytest.mark.parametrize("passed, n, confidence, expected", [
    (15, 15, 0.95, 0.05 ** (1 / 15)),  # all pass: P(all n pass) = p^n = 0.05
    (14, 15, 0.975, 0.6805),           # the lower end of the two-sided 95% interval
    (0, 15, 0.95, 0.0),
])
def test_pass_rate_lower_bound(passed, n, confidence, expected):
    assert pass_rate_lower_bound(passed, n, confidence) == pytest.approx(
        expected, abs=1e-4)


def test_pass_rate_lower_bound_grows_with_passes_and_seeds():
    bounds = [pass_rate_lower_bound(k, 15) for k in range(16)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 16
    # The same share of passes from more seeds pins the rate down more tightly.
    assert pass_rate_lower_bound(30, 30) > pass_rate_lower_bound(15, 15)
    with pytest.raises(ValueError, match="passed <= n"):
        pass_rate_lower_bound(6, 5)


@pytest.mark.parametrize("passed, n, lo, hi", [
    # Clopper-Pearson's exact two-sided 95% limits, as tabled (e.g. R's
    # binom.test(10, 20)$conf.int: 0.2719578 0.7280422).
    (10, 20, 0.2719578, 0.7280422),
    (0, 10, 0.0, 0.3084971),
    (45, 50, 0.7818646, 0.9667249),  # mpmath: the Beta(45, 6) and Beta(46, 5) quantiles
    (50, 50, 0.9288783, 1.0)])
def test_pass_rate_interval_is_clopper_pearsons_two_sided(passed, n, lo, hi):
    assert pass_rate_interval(passed, n) == pytest.approx((lo, hi), abs=1e-6)


def test_a_final_tests_headline_counts_and_bounds_its_seeds():
    """study.headline: the count, Clopper-Pearson bounds and the seeds'
    last-3 means of a final test record."""
    from mnist_lib import study
    from mnist_lib.stats import pass_rate_interval, pass_rate_lower_bound

    runs = [{"seed": s, "last3": [99.4 + d, 99.5 + d, 99.6 + d], "met": d >= 0}
            for s, d in enumerate([-0.1, 0.0, 0.1, 0.2])]
    h = study.headline({"runs": runs, "passed": 3, "n_seeds": 4})
    assert (h["passed"], h["n"]) == (3, 4)
    assert (h["lo"], h["hi"]) == pass_rate_interval(3, 4)
    assert h["lower"] == pass_rate_lower_bound(3, 4) < h["passed"] / h["n"]
    assert h["mean"] == pytest.approx(99.55) and h["min"] == pytest.approx(99.4)
    assert h["max"] == pytest.approx(99.7)
    assert h["sd"] == pytest.approx(0.1290994, rel=1e-6)


def test_correlation_interval_is_fishers_z_by_hand():
    """tanh(atanh(r) -+ 1.96 / sqrt(n - 3)) at 95%, worked out by hand: for
    r = 0.5 over 10 pairs, atanh(0.5) = 0.5493 and 1.96 / sqrt(7) = 0.7408."""
    lo, hi = correlation_interval(0.5, 10)
    assert lo == pytest.approx(math.tanh(0.5493 - 0.7408), abs=1e-3)  # -0.189
    assert hi == pytest.approx(math.tanh(0.5493 + 0.7408), abs=1e-3)  # +0.859
    assert lo < 0 < 0.5 < hi                  # ten seeds cannot rule out none
    narrow = correlation_interval(0.5, 103)   # more pairs, a narrower interval
    assert lo < narrow[0] < 0.5 < narrow[1] < hi
    with pytest.raises(ValueError, match="n > 3"):
        correlation_interval(0.5, 3)
    with pytest.raises(ValueError, match="-1 < r < 1"):
        correlation_interval(1.0, 10)


def test_half_width_and_differences_sd_undo_each_other():
    from mnist_lib.stats import differences_sd, half_width, t_critical
    assert half_width(0.1, 10) == pytest.approx(t_critical(9) * 0.1 / math.sqrt(10))
    for n in (2, 10, 30):
        assert differences_sd(half_width(0.07, n), n) == pytest.approx(0.07)
    assert half_width(0.1, 40) < half_width(0.1, 10) / 1.9  # about 1/sqrt(n)
    with pytest.raises(ValueError, match="n >= 2"):
        half_width(0.1, 1)


def test_seeds_for_is_the_fewest_seeds_that_reach_the_width():
    from mnist_lib.stats import half_width, seeds_for
    n = seeds_for(0.1, 0.05)  # by hand: t(16)/sqrt(17) > 0.5 >= t(17)/sqrt(18)
    assert n == 18 and half_width(0.1, n) <= 0.05 < half_width(0.1, n - 1)
    assert seeds_for(0.0, 0.01) == 2
    with pytest.raises(ValueError, match="more than 100 seeds"):
        seeds_for(1.0, 0.01, most=100)


def test_cleared_share_is_about_the_tail_at_zero_and_grows_with_effect():
    from mnist_lib.stats import cleared_share
    assert cleared_share(0.0, 0.1, trials=20_000) == pytest.approx(0.025, abs=0.006)
    shares = [cleared_share(e, 0.1, trials=2_000) for e in (0.02, 0.05, 0.1)]
    assert shares == sorted(shares)
    # An effect of one SD over ten seeds: a t test's power is 0.80 (the
    # noncentral t, delta = sqrt(10); G*Power gives 0.803).
    assert cleared_share(0.1, 0.1, trials=10_000) == pytest.approx(0.80, abs=0.02)
    assert cleared_share(0.05, 0.1, seeds=30, trials=2_000) > shares[1]
    assert cleared_share(0.03, 0.1, seed=3) == cleared_share(0.03, 0.1, seed=3)
    with pytest.raises(ValueError, match="seeds >= 2"):
        cleared_share(0.1, 0.1, seeds=1)
