"""The tests of one comparison: every (arm, metric) against the baseline, Holm, decisions, verdict.

* per-image metrics: :func:`~sdeval.compare.statistics.paired_metric_test` on the pairs' values,
  clusters = prompts (a pair whose value is missing on either side is dropped and counted);
* pass rates (with a policy): :func:`~sdeval.compare.statistics.pass_rate_test` on the pairs'
  verdicts (``pass`` or not);
* set metrics: the paired images' features of both arms pooled, the distance to the reference
  recomputed under label swaps within prompt clusters
  (:func:`~sdeval.compare.set_tests.set_permutation_test`), so both arms always have N pairs.

All p-values of a run are Holm-adjusted together; each row then gets its decision, and the run a
regression verdict when any row is ``regressed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from sdeval.compare.pairing import ArmPairing
    from sdeval.compare.run import ArmData, CompareSettings, _Spec
    from sdeval.metrics.set_base import FeatureSet

#: the columns of compare.json's ``metrics`` list and metrics.csv, in this order (more may follow)
METRIC_COLUMNS = ("metric", "kind", "arm", "baseline", "higher_is_better", "unit", "n_pairs", "n_clusters",
                  "n_dropped", "mean_arm", "mean_baseline", "delta", "ci_low", "ci_high", "p", "p_adjusted",
                  "test", "decision", "margin", "p_ttest", "cohens_dz", "rank_biserial", "win_rate", "win_low",
                  "win_high", "mde", "warnings")


@dataclass(frozen=True)
class Analysis:
    rows: list[dict[str, Any]]
    regression: bool
    reasons: list[str]
    rankings: list[dict[str, Any]] = field(default_factory=list)


#: the sequential stop of the set-metric permutation test (h of Besag & Clifford 1991)
SET_TEST_EXCEEDANCES = 20


def _values(rows: Sequence[Mapping[str, Any]], idx: Sequence[int], metric: str) -> np.ndarray:
    out = np.full(len(idx), np.nan)
    for j, i in enumerate(idx):
        v = rows[i].get(metric)
        if v is not None:
            out[j] = float(v)
    return out


def _clusters(pairing: "ArmPairing") -> np.ndarray:
    return np.asarray([p.cluster for p in pairing.pairs], dtype=object)


def analyse(spec: "_Spec", settings: "CompareSettings", base: "ArmData", others: Sequence["ArmData"],
            pairings: Mapping[str, "ArmPairing"], reference: Mapping[str, "FeatureSet"]) -> Analysis:
    from sdeval.compare.statistics import decide, holm, pass_rate_test, paired_metric_test
    from sdeval.metrics import registry

    rows: list[dict[str, Any]] = []
    for arm in others:
        pairing = pairings[arm.name]
        clusters = _clusters(pairing)
        bi = [p.base for p in pairing.pairs]
        ai = [p.arm for p in pairing.pairs]
        for name in spec.tested:
            cls = registry.get_class(name)
            margin = settings.margins.get(name)
            t = paired_metric_test(_values(arm.rows, ai, name), _values(base.rows, bi, name), clusters,
                                   higher_is_better=bool(cls.higher_is_better), alpha=settings.alpha,
                                   resamples=settings.resamples, seed=settings.seed, margin=margin)
            rows.append({"metric": name, "kind": cls.kind, "arm": arm.name, "baseline": base.name,
                         "unit": cls.unit, **t.as_dict()})
        if spec.policy is not None:
            ap = np.asarray([arm.rows[i].get("verdict") == "pass" for i in ai], dtype=float)
            bp = np.asarray([base.rows[i].get("verdict") == "pass" for i in bi], dtype=float)
            t = pass_rate_test(ap, bp, alpha=settings.alpha)
            d = t.as_dict()
            rows.append({"metric": "pass_rate", "kind": "pass_rate", "arm": arm.name, "baseline": base.name,
                         "unit": "share of images passing the policy", "higher_is_better": True,
                         "margin": settings.margins.get("pass_rate"),
                         "mean_arm": d["rate_arm"], "mean_baseline": d["rate_baseline"],
                         "n_clusters": None, **d})
        for m in spec.set_metrics:
            rows.append(_set_row(m, arm, base, pairing, clusters, reference, settings))
    adjusted = holm([_p(r) for r in rows])
    reasons: list[str] = []
    for r, pa in zip(rows, adjusted):
        r["p_adjusted"] = None if math.isnan(pa) else float(pa)
        margin = r.get("margin")
        r["decision"] = decide(_f(r.get("delta")), _f(r.get("ci_low")), _f(r.get("ci_high")), _f(pa),
                               alpha=settings.alpha, margin=margin)
        if r["decision"] == "regressed":
            reasons.append(f"{r['metric']}: '{r['arm']}' regressed against '{r['baseline']}' "
                           f"(delta {_fmt(r.get('delta'))}, {int(100 * (1 - settings.alpha))}% CI "
                           f"[{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}], Holm p {_fmt(pa)})")
    ordered = [{**{c: r.get(c) for c in METRIC_COLUMNS}, **r} for r in rows]
    return Analysis(ordered, bool(reasons), reasons, _rankings(ordered, base.name, len(others)))


def _set_row(metric: Any, arm: "ArmData", base: "ArmData", pairing: "ArmPairing", clusters: np.ndarray,
             reference: Mapping[str, "FeatureSet"], settings: "CompareSettings") -> dict[str, Any]:
    """A set metric on the pairs whose features both arms have: pooled, permuted within clusters."""
    from sdeval.compare import set_tests

    fid = metric.feature
    af, bf = arm.features.get(fid, []), base.features.get(fid, [])
    keep = [k for k, p in enumerate(pairing.pairs) if af[p.arm] is not None and bf[p.base] is not None]
    n = len(keep)
    head = {"metric": metric.name, "kind": "set", "arm": arm.name, "baseline": base.name, "unit": metric.unit,
            "higher_is_better": bool(metric.higher_is_better), "margin": settings.margins.get(metric.name),
            "n_pairs": n, "n_clusters": len({clusters[k] for k in keep}),
            "n_dropped": len(pairing.pairs) - n}
    if n < 2:
        return {**head, "test": "label-swap permutation", "p": None, "delta": None, "ci_low": None,
                "ci_high": None, "warnings": [f"only {n} pair(s) with {fid} features on both sides"]}
    pool = np.stack([af[pairing.pairs[k].arm] for k in keep] + [bf[pairing.pairs[k].base] for k in keep])
    pool = pool.astype(np.float64)
    arm_idx, base_idx = np.arange(n), np.arange(n, 2 * n)
    ref = reference.get(fid)
    if ref is None:
        raise ValueError(f"{metric.name}: no reference {fid} features")
    o = metric.options
    if metric.name in ("fid", "clip_fid"):
        st = ref.finalize_stats()
        dist = set_tests.pooled_fid(pool, st.mu, st.sigma, name=metric.name)
    elif metric.name == "kid":
        dist = set_tests.pooled_kid(pool, ref.bank(), name=metric.name)
    else:
        dist = set_tests.pooled_cmmd(pool, ref.bank(), sigma=float(o.get("cmmd_sigma") or 10.0), scale=1000.0,
                                     unbiased=not bool(o.get("cmmd_biased")), name=metric.name)
    t = set_tests.set_permutation_test(dist, arm_idx, base_idx, clusters[keep],
                                       higher_is_better=bool(metric.higher_is_better),
                                       n_permutations=settings.permutations, seed=settings.seed,
                                       alpha=settings.alpha,
                                       # Besag-Clifford: a clearly null difference stops after 20
                                       # exceedances (a few dozen FID solves, not 1,000); p stays valid
                                       stop_after_exceedances=SET_TEST_EXCEEDANCES)
    d = t.as_dict()
    return {**head, "mean_arm": d["value_arm"], "mean_baseline": d["value_baseline"], **d}


def _p(r: Mapping[str, Any]) -> float:
    v = r.get("p")
    return float("nan") if v is None else float(v)


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v):.4g}"


def _rankings(rows: Sequence[Mapping[str, Any]], baseline: str, n_others: int) -> list[dict[str, Any]]:
    """With more than two arms: per metric, arms ordered by their oriented difference to the baseline
    (the baseline at 0), and the best arm named only when the intervals and decisions support it."""
    from sdeval.compare.statistics import rank_arms

    if n_others < 2:
        return []
    out = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        mine = [r for r in rows if r["metric"] == metric]
        cis = {baseline: (0.0, 0.0, 0.0)}
        cis.update({r["arm"]: (_f(r.get("delta")), _f(r.get("ci_low")), _f(r.get("ci_high"))) for r in mine})
        order, best = rank_arms(cis, True, decisions={r["arm"]: r["decision"] for r in mine}, baseline=baseline)
        by_arm = {r["arm"]: r for r in mine}
        table = []
        for rank, name in enumerate(order, start=1):
            r = by_arm.get(name)
            table.append({"rank": rank, "arm": name,
                          "mean": r.get("mean_arm") if r else (mine[0].get("mean_baseline") if mine else None),
                          "delta": r.get("delta") if r else 0.0, "ci_low": r.get("ci_low") if r else 0.0,
                          "ci_high": r.get("ci_high") if r else 0.0,
                          "decision": r.get("decision") if r else "baseline"})
        out.append({"metric": metric, "order": order, "best": best, "arms": table})
    return out
