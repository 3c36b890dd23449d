"""Set metrics (FID, CLIP-FID, KID, CMMD) of two arms against one reference: the paired test.

A set metric has one value per arm, so its uncertainty can only come from re-forming the sets.
Two resampling schemes, both over whole prompt clusters and both keeping N equal in each arm:

* **Paired label-swap permutation test** (H0: the arms are exchangeable within each prompt): for
  each permutation, every cluster's images either stay or swap arms as a block, and the metric
  difference is recomputed. Each permuted set has exactly the observed N, so FID's 1/N bias is the
  same on both sides under H0 and the test is exact (valid at any N), unlike a bootstrap of FID.
* **Interval by subsampling clusters without replacement** at a fixed size b (default half the
  clusters): the spread of ``delta_b - delta_n`` estimates that of ``delta_n - delta`` once
  rescaled. Politis & Romano's ``sqrt(b / n)`` (finite-population form ``sqrt(b / (n - b))``)
  assumes a variance linear in 1/N; these metrics have a second, 1/N² term (Hoeffding's
  decomposition of a U-statistic) that dominates at small N, so a second set of subsamples at
  b/2 fits ``Var = a/m + c/m²`` and the spread is rescaled to the variance at n. No image is
  ever duplicated (duplicates bias FID), and the spread is centred at its own mean, so the larger
  bias of smaller subsets moves neither end of the interval.

Each resample needs the metric of many different subsets of one pooled set of images, so the
expensive parts are precomputed once over the pool (see :func:`pooled_fid`, :func:`pooled_kid`,
:func:`pooled_cmmd`); a subset then costs gathers and, for FID, one symmetric eigenvalue solve of
an (n x n) matrix. On the full sets the values equal sdeval's own metrics
(``sdeval.metrics.distances``) to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from sdeval.compare.statistics import MIN_PROMPTS, _AsDict
from sdeval.metrics.distances import _poly_kernel, _psd_factor, small_n_warning

__all__ = [
    "PooledSetDistance",
    "SetTest",
    "pooled_cmmd",
    "pooled_fid",
    "pooled_kid",
    "set_permutation_test",
]

#: float64 elements a pooled (N x N) matrix may take (1 GiB); above, a clear error, not swapping
_POOL_MAX_ELEMENTS = 128 * 1024 * 1024
#: rows of the (P x N) subset-indicator matrix processed at once
_CHUNK_ELEMENTS = 8 * 1024 * 1024
#: rows per block when a kernel is computed block by block
_BLOCK = 2048


def _features(name: str, feats: np.ndarray) -> np.ndarray:
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D (N, D) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_pool_size(n: int) -> None:
    if n * n > _POOL_MAX_ELEMENTS:
        raise ValueError(f"a pooled {n} x {n} matrix is too large for the set permutation test "
                         f"(limit {int(math.isqrt(_POOL_MAX_ELEMENTS))} pooled images)")


class PooledSetDistance:
    """A set metric against a fixed reference, evaluable on many subsets of one pooled feature set.

    ``values(index_sets)`` takes a (P, n) integer array of row indices into the pool (one subset
    per row; duplicates would be treated as repeated images) and returns the P metric values.
    """

    name: str = "set"
    #: FID-like metrics set this to the feature dimension: under it, the small-N warning applies
    small_n_dim: int | None = None

    def __init__(self, n_pool: int, dim: int) -> None:
        self.n_pool = int(n_pool)
        self.dim = int(dim)

    def _check(self, index_sets: np.ndarray) -> np.ndarray:
        idx = np.asarray(index_sets)
        if idx.ndim == 1:
            idx = idx[None, :]
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index_sets must be a (P, n) integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_pool):
            raise ValueError(f"index_sets hold rows outside the pool of {self.n_pool}")
        return idx

    def _indicator(self, idx: np.ndarray) -> np.ndarray:
        """(P, N) counts of each pooled row in each subset (exact sums over positions, even with
        repeated rows)."""
        z = np.zeros((idx.shape[0], self.n_pool), dtype=np.float64)
        np.add.at(z, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), 1.0)
        return z

    def _chunk(self) -> int:
        return max(1, _CHUNK_ELEMENTS // max(self.n_pool, 1))

    def values(self, index_sets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def cluster_form(self, arm_idx: np.ndarray, base_idx: np.ndarray, inv: np.ndarray, n_clusters: int):
        """Optional fast path of the permutation test: ``evaluate(sel, flip) -> (arm, baseline)``
        values for (P, clusters) selections and swaps, or None (then ``values`` is used)."""
        return None


class _PooledFrechet(PooledSetDistance):
    """FID (or CLIP-FID) of pool subsets against fixed reference statistics (mu_r, S_r).

    With X the subset's rows, Xc = H X its centred rows and S_r = L Lᵀ:
      tr sqrt(S_a S_r) = sum sqrt(eig(Xc S_r Xcᵀ / (n-1))) = sum sqrt(eig(H G_SS H / (n-1)))
    with G = (F L)(F L)ᵀ over the pool, computed once. ||mu_a - mu_r||² and tr(S_a) come from the
    subset's feature sum and the pooled squared norms, so a subset costs an (n x n) gather, a
    double-centring and ``eigh(eigvals_only=True)``.
    """

    def __init__(self, pool: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray, name: str) -> None:
        super().__init__(pool.shape[0], pool.shape[1])
        self.name = name
        self.small_n_dim = self.dim
        self._feats = pool
        mu = np.asarray(ref_mu, dtype=np.float64).ravel()
        sigma = np.asarray(ref_sigma, dtype=np.float64)
        if mu.shape != (self.dim,) or sigma.shape != (self.dim, self.dim):
            raise ValueError(f"reference mu {mu.shape} / sigma {sigma.shape} do not match dim {self.dim}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError("reference statistics contain NaN or infinite values")
        sigma = (sigma + sigma.T) * 0.5
        factor = _psd_factor(sigma)
        self._y = pool @ factor  # (N, r): S_r = L Lᵀ, so F S_r Fᵀ = Y Yᵀ
        self._gram: np.ndarray | None = None  # (N, N), built on first use by a subset of n <= r
        self._sq = np.einsum("ij,ij->i", pool, pool)
        self._dot_ref = pool @ mu
        self._ref_const = float(mu @ mu) + float(np.trace(sigma))

    def _trace_sqrt(self, rows: np.ndarray) -> float:
        """tr sqrt(S_a S_r) of one subset, from the smaller of the (n x n) and (r x r) problems.

        Both have the same non-zero eigenvalues; eigenvalues under size * eps * the largest are
        rounding noise of exact zeros (the centring direction, rank deficiency) and are dropped,
        as the pivoted Cholesky of ``frechet_distance`` drops them: sqrt would turn a 1e-16 into a
        1e-8 error.
        """
        n = rows.shape[0]
        if n <= self._y.shape[1]:
            if self._gram is None:
                _check_pool_size(self.n_pool)
                self._gram = self._y @ self._y.T
            g = self._gram[np.ix_(rows, rows)]
            row_mean = g.mean(axis=1)
            g -= row_mean[:, None]
            g -= row_mean[None, :]
            g += row_mean.mean()
        else:
            yc = self._y[rows]
            yc = yc - yc.mean(axis=0)
            g = yc.T @ yc
        if g.shape[0] == 0:
            return 0.0
        eig = scipy.linalg.eigh(g, eigvals_only=True, driver="evd", check_finite=False, overwrite_a=True)
        top = float(eig[-1]) if eig.size else 0.0
        eig = eig[eig > g.shape[0] * np.finfo(np.float64).eps * max(top, 0.0)]
        return float(np.sqrt(eig / (n - 1)).sum())

    def values(self, index_sets: np.ndarray) -> np.ndarray:
        idx = self._check(index_sets)
        n = idx.shape[1]
        if n < 2:
            raise ValueError("FID needs at least 2 images per subset")
        out = np.empty(idx.shape[0], dtype=np.float64)
        for start in range(0, idx.shape[0], self._chunk()):
            part = idx[start:start + self._chunk()]
            z = self._indicator(part)
            total = z @ self._feats  # (p, D) feature sums
            mean_sq = np.einsum("ij,ij->i", total, total) / (n * n)
            trace_a = (z @ self._sq - n * mean_sq) / (n - 1)
            base = mean_sq - 2.0 * (z @ self._dot_ref) / n + self._ref_const + trace_a
            # one eigenvalue solve per subset, nothing else; on one BLAS thread: a threaded eigh of
            # these small matrices spends its time synchronising (n=100: 17x slower, n=1000: 3.6x on
            # 2 cores with the other busy)
            with threadpool_limits(1, user_api="blas"):
                for j, rows in enumerate(part):
                    out[start + j] = max(base[j] - 2.0 * self._trace_sqrt(rows), 0.0)
        return out


class _PooledMMD(PooledSetDistance):
    """Squared MMD of pool subsets against fixed reference features, from precomputed kernels.

    Precomputed once: each pool row's kernel sum over the reference, the reference's own kernel
    sum and the pool kernel's diagonal; the (N x N) pool kernel on first use by ``values``. A
    batch of subsets (indicator rows z) then costs ``(z K) · z`` and two dot products:
    zᵀKz - z·diag(K) over n(n-1) (unbiased; zᵀKz over n² when biased), the reference term, and
    -2 z·r / (n m). The permutation test uses :meth:`cluster_form` instead, which never holds K.
    """

    def __init__(self, pool: np.ndarray, ref: np.ndarray, kernel, *, name: str, scale: float,
                 unbiased: bool) -> None:
        super().__init__(pool.shape[0], pool.shape[1])
        if ref.shape[1] != self.dim:
            raise ValueError(f"feature dimensions differ: pool {self.dim} vs reference {ref.shape[1]}")
        m = ref.shape[0]
        need = 2 if unbiased else 1
        if m < need:
            raise ValueError(f"MMD needs at least {need} reference embeddings, got {m}")
        self.name, self.scale, self.unbiased, self.n_ref = name, float(scale), bool(unbiased), int(m)
        self._pool, self._kernel = pool, kernel
        self._k: np.ndarray | None = None
        self._diag = np.concatenate([np.diag(kernel(pool[j:j + _BLOCK], pool[j:j + _BLOCK]))
                                     for j in range(0, self.n_pool, _BLOCK)])
        cross = np.zeros(self.n_pool, dtype=np.float64)
        ref_sum = ref_diag = 0.0
        for r0 in range(0, m, _BLOCK):  # blockwise: (N x m) is never held whole
            block = ref[r0:r0 + _BLOCK]
            cross += kernel(pool, block).sum(axis=1)
            k_rr = kernel(block, ref)
            ref_sum += float(k_rr.sum())
            ref_diag += float(np.einsum("ii->i", k_rr[:, r0:r0 + block.shape[0]]).sum())
        self._cross = cross
        if unbiased:
            self._ref_term = (ref_sum - ref_diag) / (m * (m - 1))
        else:
            self._ref_term = ref_sum / (m * m)

    def _kmat(self) -> np.ndarray:
        if self._k is None:
            _check_pool_size(self.n_pool)
            self._k = self._kernel(self._pool, self._pool)
        return self._k

    def _mmd(self, within: np.ndarray, diag: np.ndarray, cross: np.ndarray, n: np.ndarray) -> np.ndarray:
        """The estimator from a subset's kernel sums (within includes the diagonal) and size."""
        if self.unbiased:
            within = (within - diag) / (n * (n - 1))
        else:
            within = within / (n * n)
        return self.scale * (within + self._ref_term - 2.0 * cross / (n * self.n_ref))

    def values(self, index_sets: np.ndarray) -> np.ndarray:
        idx = self._check(index_sets)
        n = idx.shape[1]
        if n < (2 if self.unbiased else 1):
            raise ValueError("MMD needs at least 2 images per subset")
        k = self._kmat()
        out = np.empty(idx.shape[0], dtype=np.float64)
        for start in range(0, idx.shape[0], self._chunk()):
            z = self._indicator(idx[start:start + self._chunk()])
            out[start:start + z.shape[0]] = self._mmd(np.einsum("ij,ij->i", z @ k, z), z @ self._diag,
                                                      z @ self._cross, np.full(z.shape[0], float(n)))
        return out

    def cluster_form(self, arm_idx: np.ndarray, base_idx: np.ndarray, inv: np.ndarray, n_clusters: int):
        """The metric of both arms for any choice of clusters and swaps, from (2C x 2C) sums.

        With E the (N x 2C) map of pooled rows to (arm, cluster) and (baseline, cluster) blocks,
        M = Eᵀ K E holds every block's kernel sum, computed in row blocks of K (never held whole).
        A set made of weights u over the 2C blocks has within-sum uᵀ M u, diagonal, reference and
        size terms linear in u; so P patterns cost one (P x 2C) @ (2C x 2C) product. Returns
        ``evaluate(sel, flip) -> (arm values, baseline values)`` for (P, C) cluster selections
        (0/1) and swaps, or None when M would be too large.
        """
        c = int(n_clusters)
        if 4 * c * c > _POOL_MAX_ELEMENTS:
            return None
        e = np.zeros((self.n_pool, 2 * c), dtype=np.float64)
        np.add.at(e, (arm_idx, inv), 1.0)
        np.add.at(e, (base_idx, c + inv), 1.0)
        if self._k is not None:
            ke = self._k @ e
        else:
            ke = np.empty_like(e)
            for j in range(0, self.n_pool, _BLOCK):
                ke[j:j + _BLOCK] = self._kernel(self._pool[j:j + _BLOCK], self._pool) @ e
        m = e.T @ ke
        m = (m + m.T) * 0.5
        diag = e.T @ self._diag
        cross = e.T @ self._cross
        size = e.sum(axis=0)

        def evaluate(sel: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            f = flip.astype(np.float64)
            g, h = sel * (1.0 - f), sel * f  # arm: A images of kept, B images of swapped clusters
            out = []
            for u in (np.concatenate([g, h], axis=1), np.concatenate([h, g], axis=1)):
                out.append(self._mmd(np.einsum("ij,ij->i", u @ m, u), u @ diag, u @ cross, u @ size))
            return out[0], out[1]

        return evaluate


def pooled_fid(pool_feats: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray, *,
               name: str = "fid") -> PooledSetDistance:
    """FID of subsets of ``pool_feats`` (both arms' rows stacked) against reference statistics
    (``sigma`` the unbiased covariance, as ``FeatureStats``); ``name="clip_fid"`` for CLIP
    embeddings. Equals ``frechet_distance`` of the subset's mean and ``np.cov`` to rounding."""
    pool = _features("pool_feats", pool_feats)
    return _PooledFrechet(pool, ref_mu, ref_sigma, name)


def pooled_kid(pool_feats: np.ndarray, ref_feats: np.ndarray, *, name: str = "kid") -> PooledSetDistance:
    """KID of pool subsets: the unbiased MMD² with KID's kernel (xᵀy / d + 1)³ on the *whole*
    subset and the whole reference (no random sub-subsets, so the permutation statistic is
    deterministic). sdeval's ``kid`` averages the same estimator over random subsets of size
    ``min(N1, N2, subset_size)``; when both sets have that size, every subset is the full set and
    the two are equal; otherwise they estimate the same MMD²."""
    pool = _features("pool_feats", pool_feats)
    ref = _features("ref_feats", ref_feats)
    dim = pool.shape[1]
    return _PooledMMD(pool, ref, lambda a, b: _poly_kernel(a, b, dim), name=name, scale=1.0,
                      unbiased=True)


def pooled_cmmd(pool_feats: np.ndarray, ref_feats: np.ndarray, *, sigma: float = 10.0,
                scale: float = 1000.0, unbiased: bool = True, name: str = "cmmd") -> PooledSetDistance:
    """CMMD of pool subsets: RBF-kernel MMD² (gamma = 1 / (2 sigma²)) x ``scale``, the same
    parameters and estimator as ``sdeval.metrics.distances.mmd_rbf``."""
    pool = _features("pool_feats", pool_feats)
    ref = _features("ref_feats", ref_feats)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    gamma = 1.0 / (2.0 * sigma * sigma)

    def rbf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = a @ b.T
        d2 *= -2.0
        d2 += np.einsum("ij,ij->i", a, a)[:, None]
        d2 += np.einsum("ij,ij->i", b, b)[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2 *= -gamma
        return np.exp(d2, out=d2)

    return _PooledMMD(pool, ref, rbf, name=name, scale=scale, unbiased=unbiased)


@dataclass(frozen=True)
class SetTest(_AsDict):
    """A set metric of one arm against the baseline, both against the same reference.

    ``delta``, ``ci_low`` and ``ci_high`` are oriented (positive = arm better); ``value_arm`` and
    ``value_baseline`` are the metric on each arm's full paired set, in raw units.
    """

    metric: str
    n_pairs: int
    n_clusters: int
    value_arm: float
    value_baseline: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    subsample_clusters: int
    n_subsamples: int
    subsample_bias: float
    p: float
    test: str
    permutation: str
    n_permutations: int
    seed: int
    higher_is_better: bool
    alpha: float
    warnings: tuple[str, ...]


def _positions_by_row(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group the rows of a boolean (S, n) mask by their count; each group as (row ids, (s, k)
    column positions), so subsets of unequal size are evaluated in rectangular batches."""
    counts = mask.sum(axis=1)
    groups = []
    for k in np.unique(counts):
        rows = np.flatnonzero(counts == k)
        pos = np.argsort(~mask[rows], axis=1, kind="stable")[:, :k]
        groups.append((rows, pos))
    return groups


def set_permutation_test(dist: PooledSetDistance, arm_idx: np.ndarray, base_idx: np.ndarray,
                         clusters: np.ndarray, *, higher_is_better: bool = False,
                         n_permutations: int = 1000, seed: int = 0, alpha: float = 0.05,
                         subsample_fraction: float = 0.5, n_subsamples: int = 200,
                         stop_after_exceedances: int | None = None) -> SetTest:
    """Test the difference of a set metric between an arm and the baseline, pair by pair.

    ``arm_idx[i]`` / ``base_idx[i]`` are the pooled rows of pair i, ``clusters[i]`` its prompt.
    p is two-sided: the share of label-swap permutations (each cluster swaps as a block) whose
    |difference| reaches the observed one, with the +1 correction ((k + 1) / (P + 1)); when
    2^clusters <= ``n_permutations`` every assignment is enumerated instead and p is exact. The
    interval comes from ``n_subsamples`` subsamples of round(``subsample_fraction`` x clusters)
    clusters without replacement (see the module docstring). Seeded: a rerun gives the same result.

    ``stop_after_exceedances=h`` (e.g. 20) stops the permutations at the h-th one at least as
    extreme as the observed difference, with p = h / L after L permutations (Besag & Clifford's
    sequential p-value, valid as it stands): a clearly non-significant FID difference then costs
    tens of eigenvalue solves instead of thousands, while a significant one still runs all
    ``n_permutations``.
    """
    a = np.asarray(arm_idx).ravel()
    b = np.asarray(base_idx).ravel()
    cl = np.asarray(clusters).ravel()
    if not (a.shape == b.shape == cl.shape) or a.size < 2:
        raise ValueError(f"arm_idx {a.shape}, base_idx {b.shape} and clusters {cl.shape} must be equal "
                         f"lengths >= 2")
    if not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise ValueError("arm_idx and base_idx must be integer row indices into the pool")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_permutations < 1 or n_subsamples < 0:
        raise ValueError("n_permutations must be >= 1 and n_subsamples >= 0")
    if stop_after_exceedances is not None and stop_after_exceedances < 1:
        raise ValueError(f"stop_after_exceedances must be >= 1, got {stop_after_exceedances}")
    if not 0.0 < subsample_fraction < 1.0:
        raise ValueError(f"subsample_fraction must be in (0, 1), got {subsample_fraction}")
    _, inv = np.unique(cl, return_inverse=True)
    inv = inv.ravel()
    n_clusters = int(inv.max()) + 1
    sign = 1.0 if higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    if dist.small_n_dim is not None:
        w = small_n_warning(int(a.size), dist.small_n_dim)
        if w:
            notes.append(w)
    if n_clusters < MIN_PROMPTS:
        notes.append(f"only {n_clusters} prompts (fewer than {MIN_PROMPTS}): only large effects can be found")

    form = dist.cluster_form(a, b, inv, n_clusters)
    if form is not None:
        va, vb = form(np.ones((1, n_clusters)), np.zeros((1, n_clusters), dtype=bool))
        v_arm, v_base = float(va[0]), float(vb[0])
    else:
        v_arm, v_base = (float(v) for v in dist.values(np.stack([a, b])))
    delta = sign * (v_arm - v_base)
    tol = 1e-9 * max(abs(v_arm), abs(v_base), 1e-300)

    def by_clusters(sel: np.ndarray, flip: np.ndarray) -> np.ndarray:
        out = np.empty(sel.shape[0], dtype=np.float64)
        step = max(1, _CHUNK_ELEMENTS // (4 * n_clusters))
        for s in range(0, sel.shape[0], step):
            va, vb = form(sel[s:s + step], flip[s:s + step])
            out[s:s + va.shape[0]] = sign * (va - vb)
        return out

    def deltas(flip: np.ndarray) -> np.ndarray:
        """Oriented differences for (P, clusters) swap patterns, in batches of the pool's size."""
        if form is not None:
            return by_clusters(np.ones(flip.shape, dtype=np.float64), flip)
        out = np.empty(flip.shape[0], dtype=np.float64)
        step = max(1, _CHUNK_ELEMENTS // max(dist.n_pool, 1) // 2)
        for s in range(0, flip.shape[0], step):
            f = flip[s:s + step][:, inv]
            sets_a, sets_b = np.where(f, b, a), np.where(f, a, b)
            vals = dist.values(np.concatenate([sets_a, sets_b]))
            out[s:s + f.shape[0]] = sign * (vals[:f.shape[0]] - vals[f.shape[0]:])
        return out

    if n_clusters <= 20 and 2 ** n_clusters <= n_permutations:
        codes = np.arange(2 ** n_clusters)[:, None]
        flips = ((codes >> np.arange(n_clusters)[None, :]) & 1).astype(bool)
        perm = deltas(flips)
        p = float(np.mean(np.abs(perm) >= abs(delta) - tol))
        mode, n_perm = f"exact (all 2^{n_clusters} swap patterns)", int(flips.shape[0])
    else:
        flips = rng.random((n_permutations, n_clusters)) < 0.5
        h = stop_after_exceedances
        if h is None:
            hits = np.abs(deltas(flips)) >= abs(delta) - tol
            p = float((1 + np.sum(hits)) / (n_permutations + 1))
            mode, n_perm = "monte carlo, (k + 1) / (P + 1)", int(n_permutations)
        else:  # Besag & Clifford (1991): stop at the h-th permutation at least as extreme
            done, count, stopped = 0, 0, None
            while done < n_permutations and stopped is None:
                batch = flips[done:done + 64]
                hits = np.abs(deltas(batch)) >= abs(delta) - tol
                cum = count + np.cumsum(hits)
                at = np.flatnonzero(cum >= h)
                if at.size:
                    stopped = done + int(at[0]) + 1
                count = int(cum[-1]) if stopped is None else h
                done += batch.shape[0]
            if stopped is not None:
                p, n_perm = h / stopped, stopped
                mode = f"sequential (Besag-Clifford), stopped at exceedance {h} after {stopped}: p = h / L"
            else:
                p, n_perm = (count + 1) / (n_permutations + 1), int(n_permutations)
                mode = f"sequential (Besag-Clifford, h = {h}), ran all: (k + 1) / (P + 1)"
        if n_permutations < 1000:
            notes.append(f"only {n_permutations} permutations (fewer than 1,000): p is coarse")

    size = int(round(subsample_fraction * n_clusters))
    size = min(max(size, 2), n_clusters - 1)
    small = size // 2
    ci_low = ci_high = bias = math.nan
    ci_method = "none"
    if n_clusters < 4 or n_subsamples < 2:
        notes.append(f"no interval: subsampling needs at least 4 prompts and 2 subsamples "
                     f"({n_clusters} prompts, {n_subsamples} subsamples)")
    else:

        def subsample(m: int) -> np.ndarray:
            """Oriented differences on ``n_subsamples`` random sets of m whole clusters."""
            chosen = np.argsort(rng.random((n_subsamples, n_clusters)), axis=1)[:, :m]
            cmask = np.zeros((n_subsamples, n_clusters), dtype=bool)
            np.put_along_axis(cmask, chosen, True, axis=1)
            if form is not None:
                return by_clusters(cmask.astype(np.float64), np.zeros(cmask.shape, dtype=bool)) - delta
            sub = np.empty(n_subsamples, dtype=np.float64)
            for rows, pos in _positions_by_row(cmask[:, inv]):
                vals = dist.values(np.concatenate([a[pos], b[pos]]))
                sub[rows] = sign * (vals[:rows.size] - vals[rows.size:])
            return sub - delta

        u = subsample(size)
        bias = float(u.mean())
        v1 = float(u.var(ddof=1))
        # Var(delta_m) = x n/m + y (n/m)^2 (the Hoeffding form of a degree-2 U-statistic: exact
        # for KID/CMMD, a close model for FID), so Var(delta_m - delta_n) = x (r - 1) + y (r^2 - 1)
        # with r = n/m. Two sizes give x and y (>= 0), and Var(delta_n) = x + y. With only the
        # linear term this is the sqrt(m / (n - m)) subsampling scale; the quadratic term, large
        # at small N, would otherwise make the interval too wide.
        r1 = n_clusters / size
        scale2 = (r1 - 1.0)  # linear-only fit: Var(delta_n) = v1 / (r1 - 1)
        var_n = v1 / scale2
        how = "linear variance term only"
        if small >= 2 and small < size:
            v2 = float(subsample(small).var(ddof=1))
            r2 = n_clusters / small
            m = np.array([[r1 - 1.0, r1 * r1 - 1.0], [r2 - 1.0, r2 * r2 - 1.0]])
            x, y = np.linalg.solve(m, np.array([v1, v2]))
            if y < 0:
                x, y = v1 / (r1 - 1.0), 0.0
            elif x < 0:
                x, y = 0.0, v1 / (r1 * r1 - 1.0)
            var_n = float(x + y)
            how = f"variance extrapolated from {size} and {small} prompts (a/m + c/m^2)"
        k = math.sqrt(var_n / v1) if v1 > 0 else 0.0
        q_lo, q_hi = np.quantile(u - bias, [alpha / 2.0, 1.0 - alpha / 2.0])
        ci_low, ci_high = delta - k * float(q_hi), delta - k * float(q_lo)
        ci_method = (f"cluster subsampling without replacement, {size} of {n_clusters} prompts, basic "
                     f"interval centred at the subsample mean, scaled by {k:.3g} ({how})")
    return SetTest(
        metric=dist.name, n_pairs=int(a.size), n_clusters=n_clusters, value_arm=v_arm,
        value_baseline=v_base, delta=delta, ci_low=ci_low, ci_high=ci_high, confidence=1 - alpha,
        ci_method=ci_method, subsample_clusters=size, n_subsamples=int(n_subsamples),
        subsample_bias=bias, p=p, test="permutation", permutation=mode, n_permutations=n_perm,
        seed=seed, higher_is_better=bool(higher_is_better), alpha=alpha, warnings=tuple(notes))
