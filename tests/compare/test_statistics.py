"""The paired statistics against scipy and hand computations; Holm by hand; every decision branch.

Tolerances: 1e-12 relative where the same formula is computed two ways, exact where counts are
compared; the bootstrap interval is compared with scipy's own call on the same data and seed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from sdeval.compare.statistics import (
    cluster_differences,
    decide,
    holm,
    mde_paired,
    paired_metric_test,
    pass_rate_test,
    rank_arms,
    wilson_interval,
)


def clustered(n_prompts: int = 40, seeds: int = 3, *, effect: float = 0.0, seed: int = 0):
    """CLIP-like values: a prompt effect shared by both arms, skewed per-image noise."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.normal(0.0, 0.03, n_prompts), seeds)
    base = 0.30 + prompt + rng.gamma(4.0, 0.005, n_prompts * seeds)
    arm = 0.30 + prompt + rng.gamma(4.0, 0.005, n_prompts * seeds) + effect
    clusters = np.repeat([f"prompt {i}" for i in range(n_prompts)], seeds)
    return arm, base, clusters


def test_cluster_means_orientation_and_nan_dropping():
    arm = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    base = np.array([0.0, 1.0, 2.0, 6.0, np.nan])
    cl = np.array(["b", "b", "a", "a", "c"])
    a_m, b_m, d, dropped = cluster_differences(arm, base, cl, higher_is_better=True)
    assert dropped == 2
    # clusters in np.unique order: "a" (pair 3 only), "b" (pairs 0, 1); "c" lost its only pair
    np.testing.assert_allclose(a_m, [5.0, 2.0])
    np.testing.assert_allclose(b_m, [6.0, 0.5])
    np.testing.assert_allclose(d, [-1.0, 1.5])
    _, _, d_low, _ = cluster_differences(arm, base, cl, higher_is_better=False)
    np.testing.assert_allclose(d_low, [1.0, -1.5])


def test_paired_test_matches_scipy_on_prompt_differences():
    arm, base, cl = clustered(effect=0.004)
    r = paired_metric_test(arm, base, cl, higher_is_better=True, resamples=2000, seed=7)
    _, _, d, _ = cluster_differences(arm, base, cl, higher_is_better=True)
    assert (r.n_pairs, r.n_clusters, r.n_dropped) == (120, 40, 0)
    assert r.delta == pytest.approx(d.mean(), rel=1e-12)
    assert r.delta == pytest.approx(r.mean_arm - r.mean_baseline, rel=1e-12)
    assert r.mean_arm == pytest.approx(arm.mean(), rel=1e-12)  # equal seeds per prompt
    w = scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, method="exact")
    assert r.p == pytest.approx(w.pvalue, rel=1e-12) and r.wilcoxon_method == "exact"
    a_cl = arm.reshape(40, 3).mean(axis=1)
    b_cl = base.reshape(40, 3).mean(axis=1)
    assert r.p_ttest == pytest.approx(scipy.stats.ttest_rel(a_cl, b_cl).pvalue, rel=1e-10)
    boot = scipy.stats.bootstrap((d,), np.mean, n_resamples=2000, method="BCa", confidence_level=0.95,
                                 rng=np.random.default_rng(7))
    assert r.ci_low == pytest.approx(boot.confidence_interval.low, rel=1e-12)
    assert r.ci_high == pytest.approx(boot.confidence_interval.high, rel=1e-12)
    assert (r.ci_method, r.resamples, r.seed, r.test) == ("BCa", 2000, 7, "wilcoxon")
    assert r.cohens_dz == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)
    ranks = scipy.stats.rankdata(np.abs(d))
    t_plus, t_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    assert r.rank_biserial == pytest.approx((t_plus - t_minus) / (t_plus + t_minus), rel=1e-12)
    wins = int((d > 0).sum())
    assert (r.wins, r.ties, r.losses) == (wins, 0, 40 - wins)
    ci = scipy.stats.binomtest(wins, 40).proportion_ci(confidence_level=0.95, method="wilson")
    assert (r.win_low, r.win_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert r.mde == pytest.approx(mde_paired(d.std(ddof=1), 40), rel=1e-12)
    assert r.warnings == ()


def test_lower_is_better_flips_every_oriented_number():
    arm, base, cl = clustered(effect=0.004, seed=3)
    hi = paired_metric_test(arm, base, cl, higher_is_better=True, resamples=500)
    lo = paired_metric_test(arm, base, cl, higher_is_better=False, resamples=500)
    assert lo.delta == pytest.approx(-hi.delta) and lo.cohens_dz == pytest.approx(-hi.cohens_dz)
    assert lo.p == pytest.approx(hi.p) and lo.win_rate == pytest.approx(1 - hi.win_rate)
    assert lo.mean_arm == hi.mean_arm  # raw units do not flip


def test_large_sample_uses_the_normal_approximation_and_ties_count_half():
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(0.1, 1.0, 80), 1)  # many tied |d| and some zeros
    d[:5] = 0.0
    r = paired_metric_test(d, np.zeros(80), np.arange(80), higher_is_better=True, resamples=500)
    ref = scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, method="asymptotic")
    assert r.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert "normal approximation" in r.wilcoxon_method
    zeros = int((d == 0).sum())
    assert zeros >= 5 and r.ties == zeros
    assert r.win_rate == pytest.approx(((d > 0).sum() + zeros / 2) / 80)
    assert (r.win_low, r.win_high) == wilson_interval((d > 0).sum() + zeros / 2, 80)


def test_floating_noise_does_not_break_ties():
    d = np.array([0.1, 0.2, 0.3, -0.1, 0.5, 0.7, -0.2, 0.4])
    noisy = d + np.array([0, 1, -1, 1, 0, 0, 1, -1]) * 1e-17
    arm = 0.3 + noisy
    r = paired_metric_test(arm, np.full(8, 0.3), np.arange(8), higher_is_better=True, resamples=200)
    ties = scipy.stats.wilcoxon(np.round(arm - 0.3, 12), zero_method="wilcox", correction=False)
    assert r.p == pytest.approx(ties.pvalue, rel=1e-9)


def test_identical_arms_give_p_one_and_a_point_interval():
    arm, _, cl = clustered(n_prompts=10)
    r = paired_metric_test(arm, arm.copy(), cl, higher_is_better=True)
    assert (r.delta, r.ci_low, r.ci_high, r.p, r.p_ttest, r.cohens_dz) == (0.0, 0.0, 0.0, 1.0, 1.0, 0.0)
    assert r.win_rate == 0.5 and r.ties == 10 and math.isnan(r.mde)
    assert any("fewer than 30" in w for w in r.warnings)
    assert any("equal" in w for w in r.warnings)
    out = r.as_dict()
    assert out["mde"] is None and isinstance(out["warnings"], list)
    json.dumps(out, allow_nan=False)


def test_few_prompts_fall_back_to_percentile_and_nan_pairs_are_counted():
    arm = np.array([1.0, 2.0, np.nan, 4.0])
    base = np.array([0.5, 1.0, 1.0, 5.0])
    r = paired_metric_test(arm, base, np.array([0, 0, 1, 1]), higher_is_better=True, resamples=300)
    assert (r.n_pairs, r.n_clusters, r.n_dropped) == (3, 2, 1)
    assert r.ci_method == "percentile"
    assert any("percentile" in w for w in r.warnings) and any("dropped" in w for w in r.warnings)
    boot = scipy.stats.bootstrap((np.array([-1.0, 0.75]),), np.mean, n_resamples=300, method="percentile",
                                 rng=np.random.default_rng(0))
    assert r.ci_low == pytest.approx(boot.confidence_interval.low)


def test_margin_adds_a_noninferiority_p():
    arm, base, cl = clustered(effect=-0.001, seed=5)
    r = paired_metric_test(arm, base, cl, higher_is_better=True, resamples=300, margin=0.01)
    _, _, d, _ = cluster_differences(arm, base, cl, higher_is_better=True)
    ref = scipy.stats.wilcoxon(d + 0.01, alternative="greater", correction=False, method="exact")
    assert r.p_noninferiority == pytest.approx(ref.pvalue, rel=1e-12)
    with pytest.raises(ValueError):
        paired_metric_test(arm, base, cl, higher_is_better=True, margin=-1.0)


def test_mde_matches_the_textbook_sample_size():
    # REFERENCE.md §7: a paired t-test needs ~199 pairs for dz = 0.2 at 80 % power, alpha 0.05
    assert mde_paired(1.0, 199) == pytest.approx(0.2, abs=0.001)
    assert mde_paired(2.5, 199) == pytest.approx(2.5 * mde_paired(1.0, 199), rel=1e-9)
    assert math.isnan(mde_paired(1.0, 1)) and math.isnan(mde_paired(0.0, 10))


def test_pass_rates_match_mcnemar_and_the_published_newcombe_interval():
    # Fagerland, Lydersen & Laake (2017), Cavo et al. (2012): both 59, b 6, c 16, neither 80;
    # Newcombe square-and-add: -0.0621 (95 % CI -0.1186 to -0.0046)
    arm = np.array([1] * 59 + [1] * 6 + [0] * 16 + [0] * 80, dtype=bool)
    base = np.array([1] * 59 + [0] * 6 + [1] * 16 + [0] * 80, dtype=bool)
    r = pass_rate_test(arm, base)
    assert (r.both, r.b, r.c, r.neither, r.n_pairs) == (59, 6, 16, 80, 161)
    assert r.delta == pytest.approx(-0.0621, abs=5e-5)
    assert r.ci_low == pytest.approx(-0.1186, abs=5e-5) and r.ci_high == pytest.approx(-0.0046, abs=5e-5)
    assert r.p == pytest.approx(scipy.stats.binomtest(6, 22, 0.5).pvalue, rel=1e-12)
    ci = scipy.stats.binomtest(65, 161).proportion_ci(method="wilson")
    assert (r.rate_arm_low, r.rate_arm_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    swapped = pass_rate_test(base, arm)
    assert (swapped.ci_low, swapped.ci_high) == (pytest.approx(-r.ci_high), pytest.approx(-r.ci_low))


def test_pass_rates_edge_cases():
    same = np.array([True, False, True, True])
    r = pass_rate_test(same, same)
    assert r.p == 1.0 and r.delta == 0.0 and r.ci_low <= 0.0 <= r.ci_high
    allpass = pass_rate_test(np.ones(10, bool), np.ones(10, bool))
    assert allpass.rate_arm == 1.0 and -1 <= allpass.ci_low <= 0 <= allpass.ci_high <= 1
    missing = pass_rate_test(np.array([1.0, np.nan, 0.0]), np.array([0.0, 1.0, 0.0]))
    assert missing.n_pairs == 2 and missing.n_dropped == 1 and missing.b == 1
    json.dumps(pass_rate_test(np.zeros(0, bool), np.zeros(0, bool)).as_dict(), allow_nan=False)


def test_holm_by_hand():
    p = [0.01, 0.04, float("nan"), 0.03, 0.005]
    # m = 4 sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, np.nan, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    assert holm([]).size == 0 and np.isnan(holm([np.nan])).all()
    rng = np.random.default_rng(0)
    raw = rng.random(12)
    adj = holm(raw)
    assert np.all(adj >= raw) and np.all(np.diff(adj[np.argsort(raw)]) >= 0)
    assert not np.allclose(adj, scipy.stats.false_discovery_control(raw))  # BH is another method
    with pytest.raises(ValueError):
        holm([1.5])


@pytest.mark.parametrize(("args", "margin", "expected"), [
    ((0.5, 0.2, 0.8, 0.01), None, "improved"),
    ((-0.5, -0.8, -0.2, 0.01), None, "regressed"),
    ((0.1, -0.2, 0.4, 0.30), None, "no_change"),
    ((0.5, 0.2, 0.8, 0.20), None, "no_change"),        # interval excludes 0 but p (adjusted) does not
    ((-0.5, -0.8, -0.2, float("nan")), None, "no_change"),
    ((0.5, 0.2, 0.8, 0.01), 0.1, "improved"),
    ((-0.5, -0.8, -0.2, 0.01), 0.1, "regressed"),      # better bound -0.2 beyond -0.1
    ((-0.1, -0.3, -0.05, 0.01), 0.1, "inconclusive"),  # significant but within the margin's reach
    ((0.0, -0.05, 0.05, 0.60), 0.1, "non_inferior"),
    ((0.1, -0.05, 0.3, 0.20), 0.1, "non_inferior"),
    ((0.0, -0.3, 0.3, 0.90), 0.1, "inconclusive"),     # wider than the margin on both sides
    ((-0.1, -0.3, 0.05, 0.40), 0.1, "inconclusive"),   # worse bound beyond -margin
    ((math.nan, math.nan, math.nan, math.nan), 0.1, "inconclusive"),
])
def test_decide_branches(args, margin, expected):
    delta, lo, hi, p = args
    assert decide(delta, lo, hi, p, alpha=0.05, margin=margin) == expected


def test_rank_arms():
    arms = {"base": (0.30, 0.29, 0.31), "lora_a": (0.33, 0.32, 0.34), "lora_b": (0.305, 0.29, 0.315)}
    order, best = rank_arms(arms, higher_is_better=True)
    assert order == ["lora_a", "lora_b", "base"] and best == "lora_a"
    order, best = rank_arms(arms, higher_is_better=True, decisions={"lora_a": "no_change"}, baseline="base")
    assert best is None  # the test against the baseline does not support it
    overlap = {**arms, "lora_b": (0.325, 0.31, 0.335)}
    assert rank_arms(overlap, higher_is_better=True)[1] is None
    fid = {"base": (30.0, 28.0, 32.0), "new": (20.0, 18.0, 22.0), "bad": (math.nan, math.nan, math.nan)}
    assert rank_arms(fid, higher_is_better=False) == (["new", "base", "bad"], "new")
    assert rank_arms({"only": (1.0, 0.0, 2.0)}, higher_is_better=True) == (["only"], None)
