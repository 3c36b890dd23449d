"""The numeric core against its references: numpy's cov, scipy's sqrtm formula, clean-fid, a naive MMD.

Tolerances are written per test. Features imitate Inception pool3 (non-negative, correlated,
positive mean) so conditioning is realistic; 2048-dim cases are marked slow (scipy's sqrtm takes
tens of seconds there).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from sdeval.metrics import distances
from sdeval.metrics.distances import (
    FeatureStats,
    StatsAccumulator,
    frechet_distance,
    kid,
    mmd_rbf,
    small_n_warning,
)


def realistic_features(n: int, dim: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
    """Inception-like features: ReLU of correlated Gaussians, mean ~0.3, a few strong directions."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).standard_normal((dim, dim)) / np.sqrt(dim)
    latent = rng.standard_normal((n, dim)) * np.linspace(2.0, 0.2, dim)
    return np.maximum(latent @ mix + 0.3 + shift, 0.0)


def scipy_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The clean-fid / pytorch-fid formula with scipy's sqrtm, real part of the trace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LinAlgWarning on singular products
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def rel_err(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def cleanfid_fid():
    """clean-fid's module; importing it must not download anything (it only defines functions)."""
    from cleanfid import fid

    return fid


# --- statistics ---------------------------------------------------------------------------------

def test_feature_stats_matches_numpy() -> None:
    feats = realistic_features(500, 64, seed=0).astype(np.float32)
    stats = FeatureStats.from_features(feats)
    assert stats.n == 500 and stats.dim == 64
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64
    np.testing.assert_allclose(stats.mu, feats.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shift", [0.0, 1e4])  # a large mean is where raw sums of x xᵀ cancel
def test_accumulator_streaming_equals_one_shot(shift: float) -> None:
    feats = realistic_features(3000, 128, seed=1, shift=shift)
    acc = StatsAccumulator()
    rng = np.random.default_rng(0)
    start = 0
    for size in [1, 0, 7, 256, 1, 2]:
        acc.update(feats[start:start + size])
        start += size
    while start < len(feats):
        size = int(rng.integers(1, 400))
        acc.update(feats[start:start + size])
        start += size
    got = acc.finalize()
    assert got.n == len(feats)
    assert rel_err(got.mu, feats.mean(axis=0)) < 1e-12
    assert rel_err(got.sigma, np.cov(feats, rowvar=False)) < 1e-10
    np.testing.assert_array_equal(got.sigma, got.sigma.T)


def test_accumulator_merge_of_shards_equals_one_shot() -> None:
    feats = realistic_features(2500, 96, seed=2)
    bounds = [0, 1, 640, 641, 1900, 2500]  # uneven shards, one with a single row
    shards = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        acc = StatsAccumulator()
        for b in range(lo, hi, 128):
            acc.update(feats[b:min(b + 128, hi)])
        shards.append(acc)
    total = StatsAccumulator()
    total.merge(StatsAccumulator())  # an empty rank is a no-op
    for shard in shards:
        total.merge(shard)
    got = total.finalize()
    ref = FeatureStats.from_features(feats)
    assert got.n == ref.n
    assert rel_err(got.mu, ref.mu) < 1e-12
    assert rel_err(got.sigma, ref.sigma) < 1e-10
    # merging into a fresh accumulator copies, it does not alias the shard's arrays
    first = StatsAccumulator().merge(shards[1])
    first.update(feats[:10])
    assert shards[1].n == 639
    # what a rank sends (n, mean, m2) rebuilds an equivalent accumulator
    rebuilt = StatsAccumulator()
    for shard in shards:
        rebuilt.merge(StatsAccumulator.from_moments(shard.n, shard.mean, shard.m2))
    np.testing.assert_array_equal(rebuilt.finalize().sigma, got.sigma)


def test_accumulator_rejects_bad_input() -> None:
    acc = StatsAccumulator(dim=4)
    with pytest.raises(ValueError, match="at least 2"):
        acc.finalize()
    acc.update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="dimension"):
        acc.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        acc.update(np.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(np.ones((1, 4)))


# --- Fréchet distance ---------------------------------------------------------------------------

CASES = [  # (dim, n1, n2): full rank, one and both rank-deficient, just above the dimension
    (64, 2000, 1500),
    (64, 30, 500),
    (64, 500, 30),
    (64, 30, 20),
    (128, 129, 140),
    (256, 100, 100),
    (512, 3000, 2000),
]


@pytest.mark.parametrize(("dim", "n1", "n2"), CASES)
def test_frechet_matches_scipy_sqrtm(dim: int, n1: int, n2: int) -> None:
    a = FeatureStats.from_features(realistic_features(n1, dim, seed=10))
    b = FeatureStats.from_features(realistic_features(n2, dim, seed=11, shift=0.05))
    got = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    ref = scipy_fid(a.mu, a.sigma, b.mu, b.sigma)
    assert isinstance(got, float)
    assert abs(got - ref) <= 1e-6 * abs(ref)
    # symmetric in its two arguments
    assert abs(frechet_distance(b.mu, b.sigma, a.mu, a.sigma) - got) <= 1e-9 * got


@pytest.mark.parametrize(("dim", "n1", "n2"), [(64, 2000, 1500), (128, 129, 140), (512, 3000, 2000)])
def test_frechet_matches_cleanfid(cleanfid_fid, dim: int, n1: int, n2: int) -> None:
    a = FeatureStats.from_features(realistic_features(n1, dim, seed=20))
    b = FeatureStats.from_features(realistic_features(n2, dim, seed=21, shift=0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy >= 1.16 deprecates the disp= clean-fid passes
        ref = float(cleanfid_fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    assert abs(frechet_distance(a.mu, a.sigma, b.mu, b.sigma) - ref) <= 1e-6 * abs(ref)


@pytest.mark.slow
def test_frechet_2048_matches_scipy_and_cleanfid(cleanfid_fid) -> None:
    for n1, n2 in [(5000, 4000), (1000, 1500)]:  # full rank, and both rank-deficient
        a = FeatureStats.from_features(realistic_features(n1, 2048, seed=30))
        b = FeatureStats.from_features(realistic_features(n2, 2048, seed=31, shift=0.02))
        got = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
        assert abs(got - scipy_fid(a.mu, a.sigma, b.mu, b.sigma)) <= 1e-6 * got
        if n1 > 2048:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = float(cleanfid_fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
            assert abs(got - ref) <= 1e-6 * got


def test_frechet_exact_on_rank_deficient_data() -> None:
    """With N < D the exact trace is computable from the data; we match it far below scipy's error."""
    f1 = realistic_features(60, 256, seed=40)
    f2 = realistic_features(3000, 256, seed=41)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    x = (f1 - f1.mean(axis=0)) / np.sqrt(len(f1) - 1)  # s1 = xᵀ x, rank 59
    exact_tr = np.sqrt(np.clip(np.linalg.eigvalsh(x @ s2 @ x.T), 0, None)).sum()
    zero = np.zeros(256)
    got_tr = (np.trace(s1) + np.trace(s2) - frechet_distance(zero, s1, zero, s2)) / 2
    assert abs(got_tr - exact_tr) <= 1e-9 * exact_tr


@pytest.mark.parametrize(("n", "dim"), [(5000, 64), (40, 64), (2, 64)])
def test_frechet_identical_sets_is_zero(n: int, dim: int) -> None:
    a = FeatureStats.from_features(realistic_features(n, dim, seed=50))
    got = frechet_distance(a.mu, a.sigma, a.mu, a.sigma)
    assert 0.0 <= got <= 1e-9 * np.trace(a.sigma)


def test_frechet_closed_forms() -> None:
    # 1-D: (mu1 - mu2)² + (sqrt s1 - sqrt s2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]),
                            np.array([[9.0]])) == pytest.approx(4.0 + 1.0, rel=1e-14)
    # commuting (diagonal) covariances, one with zero variances
    d1, d2 = np.array([1.0, 0.0, 2.0, 0.0]), np.array([4.0, 3.0, 0.0, 0.0])
    expected = float(((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum())
    got = frechet_distance(np.zeros(4), np.diag(d1), np.zeros(4), np.diag(d2))
    assert got == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e6])
def test_frechet_never_nan_on_degenerate_input(scale: float) -> None:
    dim = 32
    mu = np.full(dim, 0.5)
    zero = np.zeros((dim, dim))
    rank1 = np.outer(np.arange(dim), np.arange(dim)) * scale
    stats_const = FeatureStats.from_features(np.ones((10, dim)))  # zero covariance
    for s1, s2 in [(zero, zero), (zero, rank1), (rank1, rank1), (rank1, stats_const.sigma)]:
        got = frechet_distance(mu, s1, mu + 1.0, s2)
        assert np.isfinite(got) and got >= 0.0 and isinstance(got, float)
    assert frechet_distance(mu, zero, mu + 1.0, zero) == pytest.approx(dim)


def test_frechet_rejects_bad_input() -> None:
    eye = np.eye(3)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(3), np.full((3, 3), np.nan), np.zeros(3), eye)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))


# --- KID ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n1", "n2", "subsets", "size", "seed"),
                         [(400, 300, 20, 100, 0), (60, 90, 10, 1000, 7), (1100, 1200, 3, 1000, 1)])
def test_kid_equals_cleanfid(cleanfid_fid, n1: int, n2: int, subsets: int, size: int,
                             seed: int) -> None:
    f1 = realistic_features(n1, 64, seed=60)
    f2 = realistic_features(n2, 64, seed=61, shift=0.05)
    np.random.seed(seed)  # clean-fid samples subsets from numpy's global state
    ref = cleanfid_fid.kernel_distance(f1, f2, num_subsets=subsets, max_subset_size=size)
    state = np.random.get_state()[1].copy()
    mean, std = kid(f1, f2, num_subsets=subsets, subset_size=size, seed=seed)
    assert abs(mean - ref) <= 1e-10 * abs(ref)
    assert std >= 0.0 and np.isfinite(std)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched


def test_kid_gram_and_direct_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    f1, f2 = realistic_features(200, 32, seed=62), realistic_features(150, 32, seed=63)
    fast = kid(f1, f2, num_subsets=15, subset_size=100, seed=3)
    monkeypatch.setattr(distances, "_KID_GRAM_MAX_ELEMENTS", 0)
    slow = kid(f1, f2, num_subsets=15, subset_size=100, seed=3)
    assert fast[0] == pytest.approx(slow[0], rel=1e-11)
    assert fast[1] == pytest.approx(slow[1], rel=1e-9)


def test_kid_subset_size_capped_and_deterministic() -> None:
    f1, f2 = realistic_features(30, 16, seed=64), realistic_features(50, 16, seed=65, shift=1.0)
    a = kid(f1, f2, num_subsets=5)
    assert a == kid(f1, f2, num_subsets=5)
    # m = N1 = 30 covers every row of f1; a clearly shifted set gives a clearly positive KID
    assert a[0] > 0.0
    with pytest.raises(ValueError, match="at least 2"):
        kid(f1[:1], f2)


# --- CMMD ---------------------------------------------------------------------------------------

def naive_mmd(x: np.ndarray, y: np.ndarray, sigma: float, scale: float, unbiased: bool) -> float:
    gamma = 1.0 / (2.0 * sigma**2)

    def k(a, b):
        return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if unbiased:
        return scale * ((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1))
                        - 2 * kxy.mean())
    return scale * (kxx.mean() + kyy.mean() - 2 * kxy.mean())


def unit_rows(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)  # CLIP embeddings are L2-normalised


@pytest.mark.parametrize("block", [7, 64, 2048])  # ragged blocks, several, one
@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_rbf_matches_naive(monkeypatch: pytest.MonkeyPatch, block: int, unbiased: bool) -> None:
    monkeypatch.setattr(distances, "_RBF_BLOCK", block)
    x, y = unit_rows(130, 24, seed=70), unit_rows(95, 24, seed=71, shift=0.2)
    for sigma in (10.0, 0.5):
        got = mmd_rbf(x, y, sigma=sigma, unbiased=unbiased)
        ref = naive_mmd(x, y, sigma, 1000.0, unbiased)
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_mmd_rbf_biased_matches_google_reference_formula() -> None:
    """``unbiased=False`` is google-research/cmmd's distance.mmd (means over full matrices)."""
    x, y = unit_rows(80, 16, seed=72), unit_rows(60, 16, seed=73, shift=0.1)
    gamma = 1 / (2 * 10**2)
    xx, yy, xy = x @ x.T, y @ y.T, x @ y.T
    xs, ys = np.diag(xx), np.diag(yy)
    k_xx = np.mean(np.exp(-gamma * (-2 * xx + xs[:, None] + xs[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * xy + xs[:, None] + ys[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * yy + ys[:, None] + ys[None, :])))
    ref = 1000 * (k_xx + k_yy - 2 * k_xy)
    assert mmd_rbf(x, y, unbiased=False) == pytest.approx(ref, rel=1e-10)


def test_mmd_rbf_properties() -> None:
    x, y = unit_rows(100, 16, seed=74), unit_rows(100, 16, seed=75, shift=0.5)
    assert mmd_rbf(x, y, scale=1.0) * 1000 == pytest.approx(mmd_rbf(x, y), rel=1e-12)
    assert mmd_rbf(x, y) == pytest.approx(mmd_rbf(y, x), rel=1e-12)
    assert mmd_rbf(x, y) > 0.0
    assert mmd_rbf(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="dimensions"):
        mmd_rbf(x, y[:, :8])
    with pytest.raises(ValueError, match="at least 2"):
        mmd_rbf(x[:1], y)


# --- guard and import weight --------------------------------------------------------------------

def test_small_n_warning() -> None:
    assert small_n_warning(10_000, 2048) is None
    assert small_n_warning(2049, 2048) is None
    for n in (2048, 500, 1):
        text = small_n_warning(n, 2048)
        assert text is not None and "KID" in text and "CMMD" in text and str(n) in text


def test_module_does_not_import_torch() -> None:
    code = "import sys, sdeval.metrics.distances; sys.exit('torch' in sys.modules)"
    root = Path(distances.__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
