"""Paired statistics of one per-image metric between an arm and the baseline, and the decisions.

Everything here is a pure numpy/scipy function on arrays (no I/O, no torch), vectorised: the
bootstrap resamples in one array operation (``scipy.stats.bootstrap(vectorized=True)``), never in a
Python loop per resample. All differences are *oriented*: positive means the arm is better, from
the metric's ``higher_is_better``. The unit of analysis is the prompt (cluster): several seeds of
one prompt are not independent, so every test and interval works on per-prompt mean differences
(the pitfalls and choices are written out in docs/compare-statistics.md).
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy
import scipy.optimize
import scipy.special
import scipy.stats

__all__ = [
    "DECISIONS",
    "PairedTest",
    "PassRateTest",
    "cluster_differences",
    "decide",
    "holm",
    "mde_paired",
    "paired_metric_test",
    "pass_rate_test",
    "rank_arms",
    "wilson_interval",
]

DECISIONS = ("improved", "regressed", "no_change", "non_inferior", "inconclusive")
#: fewer prompts than this: a warning that only large effects can be detected
MIN_PROMPTS = 30
#: per-cluster differences are rounded to this many significant digits of the largest one before
#: ranking, so that differences equal in exact arithmetic tie (REFERENCE.md §7: wilcoxon(np.round(d)))
_RANK_DIGITS = 10


def _json_safe(value: Any) -> Any:
    """as_dict values: tuples as lists, numpy scalars as Python, NaN/inf as None (valid JSON)."""
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: non-finite floats become None, tuples become lists."""
        return _json_safe(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class PairedTest(_AsDict):
    """One per-image metric, one arm against the baseline, on per-prompt mean differences.

    ``delta``, ``ci_low``, ``ci_high``, ``win_rate``, ``mde`` are oriented (positive = arm better);
    ``mean_arm`` / ``mean_baseline`` are in the metric's raw unit: the mean over prompts of each
    prompt's mean (so ``delta == ±(mean_arm - mean_baseline)`` exactly; with the same number of
    seeds per prompt it is also the plain image mean).
    """

    n_pairs: int
    n_clusters: int
    n_dropped: int
    mean_arm: float
    mean_baseline: float
    delta: float
    sd_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    resamples: int
    seed: int
    p: float
    test: str
    p_ttest: float
    wilcoxon_zero_method: str
    wilcoxon_correction: bool
    wilcoxon_method: str
    cohens_dz: float
    rank_biserial: float
    wins: int
    ties: int
    losses: int
    win_rate: float
    win_low: float
    win_high: float
    win_ties: str
    mde: float
    mde_method: str
    higher_is_better: bool
    alpha: float
    margin: float | None
    p_noninferiority: float | None
    scipy_version: str
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class PassRateTest(_AsDict):
    """Pass rates of the arm and the baseline on the same pairs, and their paired difference.

    ``b`` = pairs where the arm passes and the baseline fails, ``c`` = the reverse; McNemar's exact
    test is the two-sided binomial test of ``b`` out of ``b + c`` against 1/2. The interval of
    ``delta = rate_arm - rate_baseline`` is Newcombe's (1998) method 10, square-and-add of the two
    Wilson intervals with the phi correlation of the pairs.
    """

    n_pairs: int
    n_dropped: int
    passed_arm: int
    passed_baseline: int
    rate_arm: float
    rate_arm_low: float
    rate_arm_high: float
    rate_baseline: float
    rate_baseline_low: float
    rate_baseline_high: float
    both: int
    b: int
    c: int
    neither: int
    delta: float
    ci_low: float
    ci_high: float
    ci_method: str
    confidence: float
    p: float
    test: str
    warnings: tuple[str, ...]


def wilson_interval(successes: float, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion (same as ``binomtest(...).proportion_ci("wilson")``).

    ``successes`` may be fractional (win counts with ties as halves). ``n == 0`` gives (nan, nan).
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = float(scipy.special.ndtri(1.0 - alpha / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p) / n + z * z / (4.0 * n * n), 0.0)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def cluster_differences(arm: np.ndarray, baseline: np.ndarray, clusters: np.ndarray, *,
                        higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-cluster means of the arm and the baseline and the oriented per-cluster differences.

    Pairs where either value is NaN (a failed image) are dropped pairwise first; returns
    ``(arm_means, base_means, oriented_diffs, n_dropped)``, clusters in ``np.unique`` order.
    """
    a = np.asarray(arm, dtype=np.float64).ravel()
    b = np.asarray(baseline, dtype=np.float64).ravel()
    cl = np.asarray(clusters).ravel()
    if not (a.shape == b.shape == cl.shape):
        raise ValueError(f"arm {a.shape}, baseline {b.shape} and clusters {cl.shape} differ in length")
    keep = np.isfinite(a) & np.isfinite(b)
    n_dropped = int(keep.size - keep.sum())
    a, b, cl = a[keep], b[keep], cl[keep]
    if a.size == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, empty, n_dropped
    _, inv = np.unique(cl, return_inverse=True)
    inv = inv.ravel()
    counts = np.bincount(inv).astype(np.float64)
    a_mean = np.bincount(inv, weights=a) / counts
    b_mean = np.bincount(inv, weights=b) / counts
    sign = 1.0 if higher_is_better else -1.0
    return a_mean, b_mean, sign * (a_mean - b_mean), n_dropped


def _round_for_ranks(d: np.ndarray) -> np.ndarray:
    """d rounded relative to its largest magnitude so floating noise does not break ties."""
    scale = float(np.max(np.abs(d))) if d.size else 0.0
    if scale == 0.0 or not math.isfinite(scale):
        return d.copy()
    quantum = 10.0 ** (math.floor(math.log10(scale)) - _RANK_DIGITS)
    return np.round(d / quantum) * quantum


def _rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-), zeros dropped (as Wilcoxon)."""
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    ranks = scipy.stats.rankdata(np.abs(nz))
    t_plus = float(ranks[nz > 0].sum())
    t_minus = float(ranks[nz < 0].sum())
    return (t_plus - t_minus) / (t_plus + t_minus)


def _wilcoxon(d: np.ndarray, alternative: str = "two-sided") -> tuple[float, str]:
    """Wilcoxon signed-rank p on rounded differences (zeros dropped, no continuity correction).

    The method follows scipy's ``auto`` rule, made explicit so it can be recorded: exact null
    distribution for n <= 50 without zeros or ties, an exact enumeration of sign flips for n <= 13
    with ties, else the normal approximation with the tie-corrected variance.
    """
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0, "all differences zero (p = 1)"
    n_zero = int(d.size - nz.size)
    has_ties = np.unique(np.abs(nz)).size < nz.size
    if d.size <= 50 and not has_ties and n_zero == 0:
        method: Any = "exact"
        name = "exact"
    elif d.size <= 13:
        method = scipy.stats.PermutationMethod(n_resamples=2 ** 13)
        name = "exact sign-flip enumeration (ties or zeros, n <= 13)"
    else:
        method = "asymptotic"
        name = "normal approximation, tie-corrected"
    res = scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, alternative=alternative,
                               method=method)
    return float(res.pvalue), name


def _power_t(dz: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test (exact, noncentral t) for a true effect dz = mean/sd."""
    df = n - 1
    tcrit = float(scipy.stats.t.ppf(1.0 - alpha / 2.0, df))
    nc = dz * math.sqrt(n)
    upper = float(scipy.stats.nct.sf(tcrit, df, nc))
    lower = float(scipy.stats.nct.cdf(-tcrit, df, nc))  # NaN far in the tail on some scipy versions
    return upper + (lower if math.isfinite(lower) else 0.0)


def mde_paired(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference that a two-sided paired t-test on ``n`` clusters detects with
    ``power`` (exact noncentral t, solved numerically) for a cluster-difference SD ``sd``.

    NaN when n < 2 or sd is not positive and finite. (Wilcoxon's efficiency relative to t is 0.955
    for normal differences and higher for heavy tails, so this is also a close guide for it.)
    """
    if n < 2 or not (sd > 0 and math.isfinite(sd)):
        return math.nan
    hi = 1.0
    while _power_t(hi, n, alpha) < power:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    dz = scipy.optimize.brentq(lambda x: _power_t(x, n, alpha) - power, 0.0, hi, xtol=1e-12, rtol=1e-10)
    return float(dz) * sd


def _bootstrap_ci(d: np.ndarray, *, confidence: float, resamples: int,
                  seed: int) -> tuple[float, float, str, tuple[str, ...]]:
    """BCa interval of the mean of cluster differences; percentile when BCa is degenerate."""
    n = d.size
    if n < 2:
        return math.nan, math.nan, "none", (f"no interval from {n} prompt(s)",)
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), "degenerate (all prompt differences equal)", (
            "all per-prompt differences are equal: the interval is the single value",)
    notes: list[str] = []
    method = "BCa"
    if n < 3:
        method = "percentile"
        notes.append(f"BCa needs at least 3 prompts ({n} here): percentile bootstrap interval instead")
    kwargs = dict(n_resamples=resamples, vectorized=True, axis=-1, confidence_level=confidence,
                  rng=np.random.default_rng(seed), batch=max(1, min(resamples, 4_000_000 // max(n, 1))))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap((d,), np.mean, method=method, **kwargs)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if method == "BCa" and not (math.isfinite(lo) and math.isfinite(hi)):
        method = "percentile"
        notes.append("BCa interval was degenerate: percentile bootstrap interval instead")
        kwargs["rng"] = np.random.default_rng(seed)
        res = scipy.stats.bootstrap((d,), np.mean, method=method, **kwargs)
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi, method, tuple(notes)


def paired_metric_test(arm: np.ndarray, baseline: np.ndarray, clusters: np.ndarray, *,
                       higher_is_better: bool, alpha: float = 0.05, resamples: int = 10000,
                       seed: int = 0, margin: float | None = None) -> PairedTest:
    """Compare one per-image metric between an arm and the baseline on paired images.

    ``arm[i]`` and ``baseline[i]`` are the values of pair i and ``clusters[i]`` its prompt. Each
    prompt's mean difference (oriented: positive = arm better) is one observation, so seeds of one
    prompt never count as independent evidence. Reported: the mean of those differences, a BCa
    bootstrap interval resampling prompts, the Wilcoxon signed-rank p (zeros dropped, no continuity
    correction; the test of record), the paired t p as a second opinion, Cohen's dz, the
    matched-pairs rank-biserial r, the win rate (share of prompts where the arm is better, a tie
    counting half) with a Wilson interval, and the minimum detectable difference at 80 % power. With
    a ``margin`` (raw metric units, > 0) the one-sided Wilcoxon p of non-inferiority
    (H0: difference <= -margin) is added.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if margin is not None and not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    a_mean, b_mean, d, n_dropped = cluster_differences(arm, baseline, clusters,
                                                       higher_is_better=higher_is_better)
    n_pairs = int(np.asarray(arm).size) - n_dropped
    n = int(d.size)
    notes: list[str] = []
    if n_dropped:
        notes.append(f"{n_dropped} pair(s) dropped: a value is missing (NaN) for the arm or the baseline")
    if n < MIN_PROMPTS:
        notes.append(f"only {n} prompts (fewer than {MIN_PROMPTS}): only large effects can be found")
    nan = math.nan
    if n == 0:
        return PairedTest(n_pairs, 0, n_dropped, nan, nan, nan, nan, nan, nan, 1 - alpha, "none",
                          resamples, seed, nan, "wilcoxon", nan, "wilcox", False, "none", nan, nan,
                          0, 0, 0, nan, nan, nan, "ties count half", nan, "none", higher_is_better,
                          alpha, margin, None, scipy.__version__, tuple(notes))
    dr = _round_for_ranks(d)
    delta = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else nan
    lo, hi, ci_method, ci_notes = _bootstrap_ci(d, confidence=1 - alpha, resamples=resamples, seed=seed)
    notes.extend(ci_notes)
    if n >= 2:
        p, w_method = _wilcoxon(dr)
    else:
        p, w_method = nan, "none (one prompt)"
    if n >= 2 and sd > 0:
        p_t = float(scipy.stats.ttest_1samp(d, 0.0).pvalue)
    else:
        p_t = 1.0 if (n >= 2 and delta == 0.0) else nan
    if n >= 2 and sd > 0:
        dz = delta / sd
    else:
        dz = 0.0 if delta == 0.0 else nan
    wins, ties = int((dr > 0).sum()), int((dr == 0).sum())
    losses = n - wins - ties
    win_rate = (wins + 0.5 * ties) / n
    w_lo, w_hi = wilson_interval(wins + 0.5 * ties, n, alpha=alpha)
    mde = mde_paired(sd, n, alpha=alpha) if n >= 2 else nan
    p_ni: float | None = None
    if margin is not None and n >= 2:
        p_ni, _ = _wilcoxon(_round_for_ranks(d + margin), alternative="greater")
        if mde > margin:
            notes.append(f"the margin {margin:g} is below the minimum detectable difference {mde:.4g} "
                         f"at 80 % power: non-inferiority is unlikely to be shown with {n} prompts")
    sign = 1.0 if higher_is_better else -1.0
    return PairedTest(
        n_pairs=n_pairs, n_clusters=n, n_dropped=n_dropped,
        mean_arm=float(a_mean.mean()), mean_baseline=float(b_mean.mean()), delta=delta,
        sd_diff=sd, ci_low=lo, ci_high=hi, confidence=1 - alpha, ci_method=ci_method,
        resamples=resamples, seed=seed, p=p, test="wilcoxon", p_ttest=p_t,
        wilcoxon_zero_method="wilcox", wilcoxon_correction=False, wilcoxon_method=w_method,
        cohens_dz=dz, rank_biserial=_rank_biserial(dr) if n else nan,
        wins=wins, ties=ties, losses=losses, win_rate=win_rate, win_low=w_lo, win_high=w_hi,
        win_ties="a tied prompt counts half a win",
        mde=mde, mde_method="two-sided paired t on prompt means, exact noncentral t, 80 % power",
        higher_is_better=bool(higher_is_better), alpha=alpha, margin=margin,
        p_noninferiority=p_ni, scipy_version=scipy.__version__, warnings=tuple(notes))


def pass_rate_test(arm_pass: np.ndarray, base_pass: np.ndarray, *, alpha: float = 0.05) -> PassRateTest:
    """Pass rates of two arms on the same pairs: Wilson intervals, McNemar exact p, Newcombe CI.

    Inputs are booleans per pair; a float array may mark a missing verdict with NaN (dropped
    pairwise and counted). McNemar's exact test is ``binomtest(b, b + c, 0.5)`` (two-sided); with
    no discordant pair p = 1. The difference interval is Newcombe's method 10 (square-and-add of
    the Wilson limits, corrected by Newcombe's adjusted phi coefficient of the 2x2 table; phi = 0
    when a margin of the table is empty), which stays inside [-1, 1] and behaves at 0 or all
    discordant pairs. It reproduces Fagerland, Lydersen & Laake's published example (Cavo 2012).
    """
    a_raw = np.asarray(arm_pass).ravel()
    b_raw = np.asarray(base_pass).ravel()
    if a_raw.shape != b_raw.shape:
        raise ValueError(f"arm_pass {a_raw.shape} and base_pass {b_raw.shape} differ in length")
    af, bf = a_raw.astype(np.float64), b_raw.astype(np.float64)
    keep = np.isfinite(af) & np.isfinite(bf)
    n_dropped = int(keep.size - keep.sum())
    ap, bp = af[keep] != 0, bf[keep] != 0
    n = int(ap.size)
    both = int((ap & bp).sum())
    b = int((ap & ~bp).sum())
    c = int((~ap & bp).sum())
    neither = n - both - b - c
    notes: list[str] = []
    if n_dropped:
        notes.append(f"{n_dropped} pair(s) dropped: a verdict is missing for the arm or the baseline")
    nan = math.nan
    if n == 0:
        return PassRateTest(0, n_dropped, 0, 0, nan, nan, nan, nan, nan, nan, 0, 0, 0, 0, nan, nan,
                            nan, "newcombe-10 (paired Wilson score)", 1 - alpha, nan, "mcnemar-exact",
                            tuple(notes))
    pa, pb = (both + b) / n, (both + c) / n
    l1, u1 = wilson_interval(both + b, n, alpha=alpha)
    l2, u2 = wilson_interval(both + c, n, alpha=alpha)
    denom = float(both + b) * (c + neither) * (both + c) * (b + neither)
    # Newcombe's phi with his continuity adjustment: A = ad - bc shrunk by n/2 towards 0 when > 0
    cross = float(both * neither - b * c)
    if denom <= 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > n / 2 else cross) / math.sqrt(denom)
    delta = pa - pb
    d1, e1 = pa - l1, u1 - pa
    d2, e2 = pb - l2, u2 - pb
    ci_low = delta - math.sqrt(max(d1 * d1 - 2 * phi * d1 * e2 + e2 * e2, 0.0))
    ci_high = delta + math.sqrt(max(e1 * e1 - 2 * phi * e1 * d2 + d2 * d2, 0.0))
    p = float(scipy.stats.binomtest(b, b + c, 0.5).pvalue) if b + c > 0 else 1.0
    if b + c == 0:
        notes.append("no discordant pairs: McNemar's test has nothing to test (p = 1)")
    return PassRateTest(
        n_pairs=n, n_dropped=n_dropped, passed_arm=both + b, passed_baseline=both + c,
        rate_arm=pa, rate_arm_low=l1, rate_arm_high=u1, rate_baseline=pb, rate_baseline_low=l2,
        rate_baseline_high=u2, both=both, b=b, c=c, neither=neither, delta=delta,
        ci_low=max(-1.0, ci_low), ci_high=min(1.0, ci_high), ci_method="newcombe-10 (paired Wilson score)",
        confidence=1 - alpha, p=p, test="mcnemar-exact", warnings=tuple(notes))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order (family-wise error control).

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)), m the number of
    non-NaN p-values; the result is monotone in p. NaN stays NaN and does not count in m. (This
    is not ``scipy.stats.false_discovery_control``, which is Benjamini-Hochberg FDR control.)
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def decide(delta: float, ci_low: float, ci_high: float, p_adjusted: float, *, alpha: float,
           margin: float | None = None) -> str:
    """The decision for one (arm, metric): all values oriented so that positive = arm better.

    ``sig`` = ``p_adjusted < alpha`` (NaN is not significant). Rules, first match wins:

    ============== ========= ================================================================
    decision       margin    condition
    ============== ========= ================================================================
    improved       any       sig and ci_low > 0
    regressed      none      sig and ci_high < 0
    regressed      m         sig and ci_high < -m (the better bound is beyond -m)
    non_inferior   m         ci_low > -m (the worse bound is within the margin)
    inconclusive   m         otherwise: the interval reaches beyond -m, so non-inferiority is
                             not shown, and it is not a proven regression (this includes the
                             interval wider than the margin on both sides, ci_low < -m and
                             ci_high > m, and a missing interval)
    no_change      none      otherwise (not significant, or p and interval disagree)
    ============== ========= ================================================================

    ``delta`` is not used by the rules (the interval and p decide); it is checked to be finite
    or NaN only for symmetry of the call with the result rows.
    """
    del delta
    if margin is not None and not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    sig = bool(np.isfinite(p_adjusted) and p_adjusted < alpha)
    lo_ok, hi_ok = math.isfinite(ci_low), math.isfinite(ci_high)
    if sig and lo_ok and ci_low > 0:
        return "improved"
    if sig and hi_ok and ci_high < (0.0 if margin is None else -margin):
        return "regressed"
    if margin is None:
        return "no_change"
    if lo_ok and ci_low > -margin:
        return "non_inferior"
    return "inconclusive"


def rank_arms(means_with_ci: Mapping[str, tuple[float, float, float]], higher_is_better: bool, *,
              decisions: Mapping[str, str] | None = None,
              baseline: str | None = None) -> tuple[list[str], str | None]:
    """Order arms best first and name the best one only when the data supports it.

    ``means_with_ci`` maps arm -> (mean, ci_low, ci_high) in raw units (e.g. each arm's mean with
    its interval, or each arm's difference to the baseline with the baseline at (0, 0, 0)).
    Order: by mean, best first from ``higher_is_better`` (ties by name). The top arm is named
    ``best`` only when its worse interval bound is strictly better than every other arm's better
    bound (non-overlapping intervals: a conservative pairwise test) and, when ``decisions`` (arm ->
    decision against ``baseline``, from :func:`decide` after Holm) are given, the top arm is
    ``improved`` over the baseline (or, if the top arm is the baseline, every other arm is
    ``regressed``). Arms with a NaN mean go last, never win and
    are not counted as rivals. Otherwise ``best`` is None.
    """
    sign = 1.0 if higher_is_better else -1.0

    def key(name: str) -> tuple[int, float, str]:
        m = float(means_with_ci[name][0])
        return (0, -sign * m, name) if math.isfinite(m) else (1, 0.0, name)

    order = sorted(means_with_ci, key=key)
    if len(order) < 2:
        return order, None
    top = order[0]
    m0, lo0, hi0 = (float(v) for v in means_with_ci[top])
    if not all(math.isfinite(v) for v in (m0, lo0, hi0)):
        return order, None
    worse_bound = lo0 if higher_is_better else hi0
    for other in order[1:]:
        m, lo, hi = (float(v) for v in means_with_ci[other])
        if not math.isfinite(m):
            continue  # no value to compare (e.g. every image failed): listed last, not a rival
        better_bound = hi if higher_is_better else lo
        if not math.isfinite(better_bound) or not sign * (worse_bound - better_bound) > 0:
            return order, None
    if decisions is not None:
        if top == baseline:
            if any(decisions.get(o) != "regressed" for o in order[1:]):
                return order, None
        elif decisions.get(top) != "improved":
            return order, None
    return order, top
