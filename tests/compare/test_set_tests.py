"""Pooled set metrics equal sdeval's own metrics; the permutation test is exact and calibrated.

Small synthetic features (tens of rows, 6-16 dims) keep each test well under a second.
Tolerances: 1e-9 relative for the pooled values (the same quantity from a different factorisation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from sdeval.compare.set_tests import (
    PooledSetDistance,
    pooled_cmmd,
    pooled_fid,
    pooled_kid,
    set_permutation_test,
)
from sdeval.metrics.distances import _poly_kernel, frechet_distance, kid, mmd_rbf


def features(n: int, dim: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((dim, dim)) / np.sqrt(dim)
    return np.maximum(rng.standard_normal((n, dim)) @ mix + 0.3 + shift, 0.0)


@pytest.fixture()
def pool_and_ref():
    return features(50, 12, seed=1), features(70, 12, seed=2, shift=0.1)


def test_pooled_fid_equals_frechet_distance(pool_and_ref):
    pool, ref = pool_and_ref
    mu, sigma = ref.mean(axis=0), np.cov(ref, rowvar=False)
    dist = pooled_fid(pool, mu, sigma)
    rng = np.random.default_rng(0)
    sets = np.stack([rng.choice(50, 20, replace=False) for _ in range(4)] + [np.arange(20)])
    got = dist.values(sets)
    for value, rows in zip(got, sets):
        sub = pool[rows]
        ref_value = frechet_distance(sub.mean(axis=0), np.cov(sub, rowvar=False), mu, sigma)
        assert value == pytest.approx(ref_value, rel=1e-9)
    assert dist.small_n_dim == 12 and dist.name == "fid"
    assert pooled_fid(pool, mu, sigma, name="clip_fid").name == "clip_fid"


def test_pooled_fid_rank_deficient_subsets_and_reference():
    pool = features(30, 16, seed=3)  # 8 rows in 16 dims: rank-deficient subset covariance
    ref = features(10, 16, seed=4)   # and a rank-deficient reference covariance
    mu, sigma = ref.mean(axis=0), np.cov(ref, rowvar=False)
    rows = np.arange(5, 13)
    got = pooled_fid(pool, mu, sigma).values(rows[None])[0]
    want = frechet_distance(pool[rows].mean(axis=0), np.cov(pool[rows], rowvar=False), mu, sigma)
    assert got == pytest.approx(want, rel=1e-8)


def test_pooled_kid_equals_sdeval_kid_when_every_subset_is_the_full_set(pool_and_ref):
    pool, ref = pool_and_ref
    rows = np.arange(10, 40)
    got = pooled_kid(pool, ref[:30]).values(rows[None])[0]
    # 30 vs 30 images, subset size min(30, 30, 1000) = 30: every KID subset is the full sets
    assert got == pytest.approx(kid(pool[rows], ref[:30])[0], rel=1e-9)


def test_pooled_kid_unequal_sizes_is_the_full_unbiased_mmd(pool_and_ref):
    pool, ref = pool_and_ref
    rows = np.arange(25)
    x, y, d = pool[rows], ref, pool.shape[1]
    kxx, kyy, kxy = _poly_kernel(x, x, d), _poly_kernel(y, y, d), _poly_kernel(x, y, d)
    n, m = len(x), len(y)
    want = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())
    assert pooled_kid(pool, ref).values(rows[None])[0] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("unbiased", [True, False])
def test_pooled_cmmd_equals_mmd_rbf(pool_and_ref, unbiased):
    pool, ref = pool_and_ref
    pool, ref = pool / np.linalg.norm(pool, axis=1, keepdims=True), ref / np.linalg.norm(ref, axis=1,
                                                                                         keepdims=True)
    sets = np.stack([np.arange(0, 20), np.arange(30, 50)])
    for sigma in (10.0, 0.5):
        got = pooled_cmmd(pool, ref, sigma=sigma, unbiased=unbiased).values(sets)
        for value, rows in zip(got, sets):
            want = mmd_rbf(pool[rows], ref, sigma=sigma, scale=1000.0, unbiased=unbiased)
            assert value == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_bad_inputs_are_rejected(pool_and_ref):
    pool, ref = pool_and_ref
    dist = pooled_kid(pool, ref)
    with pytest.raises(ValueError):
        dist.values(np.array([[0, 50]]))
    with pytest.raises(ValueError):
        dist.values(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError):
        pooled_fid(pool, ref.mean(axis=0)[:5], np.eye(12))
    with pytest.raises(ValueError):
        set_permutation_test(dist, np.arange(5), np.arange(5, 11), np.arange(5))


def _paired_pool(n_clusters: int, seeds: int, dim: int, *, seed: int, arm_shift: float = 0.0):
    """Both arms share a per-prompt feature effect; the arm may be shifted (a planted change)."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.standard_normal((n_clusters, dim)) * 0.7, seeds, axis=0)
    base = prompt + rng.standard_normal(prompt.shape)
    arm = prompt + rng.standard_normal(prompt.shape) + arm_shift
    n = n_clusters * seeds
    return (np.concatenate([arm, base]), np.arange(n), np.arange(n, 2 * n),
            np.repeat(np.arange(n_clusters), seeds))


def test_permutation_finds_a_planted_difference_and_orients_it():
    pool, a, b, cl = _paired_pool(30, 2, 6, seed=0, arm_shift=0.8)
    ref = np.random.default_rng(1).standard_normal((200, 6))
    dist = pooled_fid(pool, ref.mean(axis=0), np.cov(ref, rowvar=False))
    r = set_permutation_test(dist, a, b, cl, higher_is_better=False, n_permutations=1000, seed=3)
    assert r.value_arm > r.value_baseline and r.delta == pytest.approx(r.value_baseline - r.value_arm)
    assert r.p == pytest.approx(1 / 1001) and r.n_permutations == 1000 and r.test == "permutation"
    assert r.ci_high < 0 and r.ci_low < r.delta < r.ci_high
    assert any("FID computed on 60 images" in w for w in r.warnings) is False  # 60 > 6 dims
    again = set_permutation_test(dist, a, b, cl, higher_is_better=False, n_permutations=1000, seed=3)
    assert again == r  # seeded
    json.dumps(r.as_dict(), allow_nan=False)


def test_exact_enumeration_for_few_clusters_and_the_small_n_warning():
    pool, a, b, cl = _paired_pool(4, 2, 12, seed=2)
    ref = np.random.default_rng(1).standard_normal((50, 12))
    dist = pooled_fid(pool, ref.mean(axis=0), np.cov(ref, rowvar=False))
    r = set_permutation_test(dist, a, b, cl, n_permutations=1000)
    assert r.n_permutations == 16 and r.permutation.startswith("exact")
    # the exact p is a multiple of 1/16 and at least 2/16 (identity and the full swap tie)
    assert r.p * 16 == pytest.approx(round(r.p * 16)) and r.p >= 2 / 16
    assert any("FID computed on 8 images" in w for w in r.warnings)
    assert any("fewer than 30" in w for w in r.warnings)
    assert r.subsample_clusters == 2


def test_unequal_cluster_sizes_work():
    pool, a, b, cl = _paired_pool(12, 3, 5, seed=4)
    keep = np.ones(36, bool)
    keep[[1, 2, 10]] = False  # clusters of sizes 1, 2 and 3
    ref = np.random.default_rng(1).standard_normal((40, 5))
    r = set_permutation_test(pooled_kid(pool, ref), a[keep], b[keep], cl[keep], n_permutations=200,
                             n_subsamples=50)
    assert r.n_pairs == 33 and r.n_clusters == 12 and np.isfinite([r.ci_low, r.ci_high]).all()
    assert any("fewer than 1,000" in w for w in r.warnings)


def test_permutation_p_is_uniform_under_the_null():
    ps = []
    for seed in range(40):
        pool, a, b, cl = _paired_pool(12, 2, 4, seed=seed)
        ref = np.random.default_rng(1000 + seed).standard_normal((30, 4))
        r = set_permutation_test(pooled_kid(pool, ref), a, b, cl, n_permutations=199, seed=seed,
                                 n_subsamples=2)
        ps.append(r.p)
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.mean(ps < 0.05) <= 0.15


class _MeanOfFirstFeature(PooledSetDistance):
    """A linear set statistic (the mean of one feature): its interval must match the textbook one."""

    name = "mean"

    def __init__(self, values: np.ndarray) -> None:
        super().__init__(values.shape[0], 1)
        self._v = values

    def values(self, index_sets: np.ndarray) -> np.ndarray:
        return self._v[self._check(index_sets)].mean(axis=1)


def test_subsampling_interval_of_a_linear_statistic_matches_the_t_interval():
    rng = np.random.default_rng(8)
    n_clusters, seeds = 200, 2
    prompt = np.repeat(rng.normal(0, 1, n_clusters), seeds)
    arm = prompt + rng.normal(0.3, 1, n_clusters * seeds)
    base = prompt + rng.normal(0, 1, n_clusters * seeds)
    pool = np.concatenate([arm, base])
    n = n_clusters * seeds
    cl = np.repeat(np.arange(n_clusters), seeds)
    r = set_permutation_test(_MeanOfFirstFeature(pool), np.arange(n), np.arange(n, 2 * n), cl,
                             higher_is_better=True, n_permutations=200, n_subsamples=400, seed=1)
    d = (arm - base).reshape(n_clusters, seeds).mean(axis=1)
    half = stats.t.ppf(0.975, n_clusters - 1) * d.std(ddof=1) / np.sqrt(n_clusters)
    assert r.delta == pytest.approx(d.mean(), rel=1e-12)
    assert (r.ci_high - r.ci_low) == pytest.approx(2 * half, rel=0.2)
    assert abs((r.ci_low + r.ci_high) / 2 - d.mean()) < 0.3 * half
    assert "extrapolated" in r.ci_method
