"""Numeric core of the set-level metrics: features -> statistics -> distance.

Every function here is a plain numpy/scipy function on arrays so it can be tested alone against
the reference implementations (clean-fid, google-research CMMD). Everything is float64: FID on
2048-dim features subtracts large, nearly equal traces, and float32 loses the digits that matter.
No torch import: loading this module must stay cheap (``sdeval --help`` never imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

__all__ = [
    "FeatureStats",
    "StatsAccumulator",
    "frechet_distance",
    "kid",
    "mmd_rbf",
    "small_n_warning",
]

# Gram matrices of the whole sets are precomputed for KID when they fit in this many float64
# elements (256 MiB): each subset is then a gather instead of three (m x m x d) products.
_KID_GRAM_MAX_ELEMENTS = 32 * 1024 * 1024
# Rows per block for the RBF kernel sums: a (2048 x 2048) float64 block is 32 MiB.
_RBF_BLOCK = 2048


def _as_features(name: str, feats: np.ndarray) -> np.ndarray:
    """Features as a finite float64 (N, D) array; a NaN here would silently become a NaN metric."""
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Gaussian sufficient statistics of a feature set: what FID needs and reference stats store.

    ``sigma`` is the unbiased sample covariance (``np.cov(feats, rowvar=False)``), as clean-fid
    computes it, so stored statistics are interchangeable with clean-fid's.
    """

    n: int
    mu: np.ndarray
    sigma: np.ndarray

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"mu {mu.shape} and sigma {sigma.shape} do not describe one dimension")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, feats: np.ndarray) -> FeatureStats:
        """One-shot statistics of an in-memory (N, D) feature array (N >= 2)."""
        arr = _as_features("feats", feats)
        if arr.shape[0] < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {arr.shape[0]}")
        return cls(n=int(arr.shape[0]), mu=arr.mean(axis=0), sigma=np.cov(arr, rowvar=False))


class StatsAccumulator:
    """Streaming mean/covariance so memory does not grow with N, and shards merge exactly.

    Keeps ``n``, the float64 ``mean`` and ``m2`` (the sum of outer products of deviations from
    the mean) and combines batches with Chan et al.'s pairwise update. Unlike raw sums of x and
    x xᵀ, this does not cancel catastrophically when the mean is large against the spread, so
    the result matches ``np.cov`` to ~1e-13 relative. ``merge`` is the same update, which is what a
    distributed run needs: gather each rank's accumulator and merge them in rank order.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.n: int = 0
        self.dim: int | None = dim
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        if dim is not None:
            self.mean = np.zeros(dim, dtype=np.float64)
            self.m2 = np.zeros((dim, dim), dtype=np.float64)

    @classmethod
    def from_moments(cls, n: int, mean: np.ndarray, m2: np.ndarray) -> StatsAccumulator:
        """Rebuild an accumulator from its ``n``, ``mean`` and ``m2`` (e.g. gathered from a rank)."""
        mean_a = np.asarray(mean, dtype=np.float64).copy()
        m2_a = np.asarray(m2, dtype=np.float64).copy()
        if mean_a.ndim != 1 or m2_a.shape != (mean_a.shape[0], mean_a.shape[0]) or n < 0:
            raise ValueError(f"inconsistent moments: n={n}, mean {mean_a.shape}, m2 {m2_a.shape}")
        acc = cls(dim=int(mean_a.shape[0]))
        if n:
            acc.n, acc.mean, acc.m2 = int(n), mean_a, m2_a
        return acc

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if n_b == 0:
            return
        if self.dim is None:
            self.dim = int(mean_b.shape[0])
        elif mean_b.shape[0] != self.dim:
            raise ValueError(f"feature dimension {mean_b.shape[0]} does not match {self.dim}")
        if self.n == 0 or self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 += m2_b  # in place: our arrays are private copies (see the first-batch branch)
        self.m2 += np.outer(delta, delta * (self.n * n_b / n))
        self.n = n

    def update(self, batch: np.ndarray) -> StatsAccumulator:
        """Add an (B, D) batch of features; returns self for chaining."""
        arr = _as_features("batch", batch)
        if arr.shape[0] == 0:
            return self
        mean_b = arr.mean(axis=0)
        centred = arr - mean_b
        self._combine(arr.shape[0], mean_b, centred.T @ centred)
        return self

    def merge(self, other: StatsAccumulator) -> StatsAccumulator:
        """Fold another accumulator (another shard or rank) into this one; returns self."""
        if other.n and other.mean is not None and other.m2 is not None:
            self._combine(other.n, other.mean, other.m2)
        return self

    def finalize(self) -> FeatureStats:
        """The statistics so far; the accumulator stays usable."""
        if self.n < 2 or self.mean is None or self.m2 is None:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        sigma = self.m2 / (self.n - 1)
        sigma = (sigma + sigma.T) * 0.5  # exact symmetry: the outer-product updates round unevenly
        return FeatureStats(n=self.n, mu=self.mean.copy(), sigma=sigma)


def _psd_factor(a: np.ndarray) -> np.ndarray:
    """F (D x r) with F Fᵀ = a for a symmetric PSD matrix, r its numerical rank.

    LAPACK's pivoted Cholesky (``dpstrf``) costs about a plain Cholesky, works on singular
    matrices and stops at the numerical rank (tolerance D * eps * max diag), so the null space of a
    rank-deficient covariance (N <= D) is dropped exactly instead of showing up later as rounding
    noise under a square root.
    """
    c, piv, rank, info = scipy.linalg.lapack.dpstrf(a, lower=1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky failed (LAPACK info {info})")
    lower = np.tril(c[:, :rank])
    factor = np.empty_like(lower)
    factor[piv - 1] = lower  # undo the pivoting: a = P L Lᵀ Pᵀ
    return factor


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 sigma2) for symmetric PSD matrices, without a general matrix square root.

    With sigma1 = F1 F1ᵀ and sigma2 = F2 F2ᵀ, the non-zero eigenvalues of sigma1 sigma2 are those
    of the symmetric PSD Gram matrix of C = F1ᵀ F2 (r1 x r2). So two pivoted Cholesky factors, two
    products and one symmetric eigenvalue solve (no vectors) give the trace; the eigenvalues are
    real by construction and the few that round below zero are clipped, so the result is never NaN
    or complex. Rank-deficient covariances make the problem smaller, not unstable.
    """
    f1, f2 = _psd_factor(sigma1), _psd_factor(sigma2)
    if f1.shape[1] == 0 or f2.shape[1] == 0:
        return 0.0
    c = f1.T @ f2
    gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    eig = scipy.linalg.eigh(gram, eigvals_only=True, driver="evd", check_finite=False)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): FID on Inception features.

    ||mu1 - mu2||² + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2), all in float64, with the
    trace of the square root from a symmetric eigenvalue problem (see ``_trace_sqrt_product``)
    rather than scipy's ``sqrtm`` (clean-fid), which is several times slower on 2048 x 2048 and can
    return complex parts on singular products. The result is clipped at 0: the true value is never
    negative, only rounding makes identical sets come out slightly below (clean-fid gives about
    -2e-6 for identical rank-deficient sets).
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {m1.shape}, sigma1 {s1.shape}, "
                         f"mu2 {m2.shape}, sigma2 {s2.shape}")
    for name, arr in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    s1 = (s1 + s1.T) * 0.5
    s2 = (s2 + s2.T) * 0.5
    diff = m1 - m2
    value = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2))
    value -= 2.0 * _trace_sqrt_product(s1, s2)
    return max(value, 0.0)


def _poly_kernel(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """KID's kernel k(x, y) = (xᵀy / d + 1)³."""
    k = a @ b.T
    k /= dim
    k += 1.0
    return k * k * k


def kid(feats1: np.ndarray, feats2: np.ndarray, *, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over subsets of the unbiased MMD².

    Same estimator, kernel and sampling as clean-fid's ``kernel_distance``: per subset, draw
    ``m = min(N1, N2, subset_size)`` rows of ``feats2`` then of ``feats1`` without replacement
    from a legacy ``RandomState(seed)`` (clean-fid draws from numpy's global state, so
    ``np.random.seed(seed)`` before its call reproduces these subsets exactly). The mean equals
    clean-fid's value; the std (population, ddof=0, as torch-fidelity reports it) shows how much
    the estimate moves between subsets. Seeded, so a rerun gives the same number.
    """
    x_all = _as_features("feats1", feats1)
    y_all = _as_features("feats2", feats2)
    if x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"feature dimensions differ: {x_all.shape[1]} vs {y_all.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    n1, n2, dim = x_all.shape[0], y_all.shape[0], x_all.shape[1]
    m = min(n1, n2, subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {n1} and {n2}")
    rng = np.random.RandomState(seed)
    precompute = n1 * n1 + n2 * n2 + n1 * n2 <= _KID_GRAM_MAX_ELEMENTS
    if precompute:  # each kernel entry once; subsets become gathers (many times fewer flops)
        k11 = _poly_kernel(x_all, x_all, dim)
        k22 = _poly_kernel(y_all, y_all, dim)
        k21 = _poly_kernel(y_all, x_all, dim)
    values = np.empty(num_subsets, dtype=np.float64)
    for i in range(num_subsets):
        idx2 = rng.choice(n2, m, replace=False)  # clean-fid: x from feats2 first,
        idx1 = rng.choice(n1, m, replace=False)  # then y from feats1
        if precompute:
            kxx = k22[np.ix_(idx2, idx2)]
            kyy = k11[np.ix_(idx1, idx1)]
            kxy = k21[np.ix_(idx2, idx1)]
        else:
            x, y = y_all[idx2], x_all[idx1]
            kxx, kyy, kxy = _poly_kernel(x, x, dim), _poly_kernel(y, y, dim), _poly_kernel(x, y, dim)
        within = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
        values[i] = (within / (m - 1) - kxy.sum() * 2.0 / m) / m
    return float(values.mean()), float(values.std())


def _rbf_sum(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray, gamma: float,
             *, same: bool) -> float:
    """Sum of exp(-gamma ||a_i - b_j||²) over all pairs (i != j when ``same``), block by block.

    Blocks keep memory at a few (block x block) arrays whatever N is; with ``same`` only the
    upper triangle of blocks is computed and off-diagonal blocks count twice.
    """
    total = 0.0
    bs = _RBF_BLOCK
    for i0 in range(0, a.shape[0], bs):
        ai, ai_sq = a[i0:i0 + bs], a_sq[i0:i0 + bs]
        for j0 in range(i0 if same else 0, b.shape[0], bs):
            d2 = ai @ b[j0:j0 + bs].T
            d2 *= -2.0
            d2 += ai_sq[:, None]
            d2 += b_sq[None, j0:j0 + bs]
            np.maximum(d2, 0.0, out=d2)  # rounding can make tiny distances negative
            if same and j0 == i0:
                np.fill_diagonal(d2, 0.0)
            d2 *= -gamma
            s = float(np.exp(d2, out=d2).sum())
            if same and j0 == i0:
                total += s - ai.shape[0]  # drop the diagonal, exp(0) = 1 each
            else:
                total += 2.0 * s if same else s
    return total


def mmd_rbf(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0, *,
            unbiased: bool = True) -> float:
    """CMMD: squared MMD with a Gaussian RBF kernel, gamma = 1 / (2 sigma²), times ``scale``.

    Defaults are the CMMD paper's (sigma 10, x1000, on L2-normalised CLIP ViT-L/14@336
    embeddings, which the caller provides). ``unbiased=True`` (default, as the paper states)
    leaves the i = j terms out of the within-set means; the google-research reference code
    averages over the full matrices (the biased V-statistic), which ``unbiased=False``
    reproduces. Computed blockwise in float64 so N ~ 30k needs tens of MiB, not N² memory.
    """
    xa = _as_features("x", x)
    ya = _as_features("y", y)
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"feature dimensions differ: {xa.shape[1]} vs {ya.shape[1]}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    n, m = xa.shape[0], ya.shape[0]
    need = 2 if unbiased else 1
    if n < need or m < need:
        raise ValueError(f"MMD needs at least {need} embeddings per set, got {n} and {m}")
    gamma = 1.0 / (2.0 * sigma * sigma)
    x_sq = np.einsum("ij,ij->i", xa, xa)
    y_sq = np.einsum("ij,ij->i", ya, ya)
    s_xx = _rbf_sum(xa, x_sq, xa, x_sq, gamma, same=True)
    s_yy = _rbf_sum(ya, y_sq, ya, y_sq, gamma, same=True)
    s_xy = _rbf_sum(xa, x_sq, ya, y_sq, gamma, same=False)
    if unbiased:
        k_xx, k_yy = s_xx / (n * (n - 1)), s_yy / (m * (m - 1))
    else:
        k_xx, k_yy = (s_xx + n) / (n * n), (s_yy + m) / (m * m)
    return float(scale * (k_xx + k_yy - 2.0 * s_xy / (n * m)))


def small_n_warning(n: int, dim: int) -> str | None:
    """The warning FID needs when N is at most the feature dimension, else None.

    With N <= D the covariance has rank at most N - 1 < D: FID is then dominated by its
    small-sample bias and not comparable across set sizes. KID and CMMD are unbiased in N.
    """
    if n > dim:
        return None
    return (f"FID computed on {n} images with {dim}-dimensional features: with N <= {dim} the "
            f"covariance is rank-deficient (rank <= {max(n - 1, 0)}), so FID is strongly biased "
            f"by the sample size and not comparable to FIDs on other set sizes. Prefer KID or "
            f"CMMD (unbiased estimators), or use well over {dim} images (ideally 10,000+) for FID.")
