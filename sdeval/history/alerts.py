"""Regression alerts for a recorded run, and change points over a whole series.

The rule (per watched value): the baseline is the median of the last K runs (default 7) of the same
label and protocol before this one. The value alerts when it is worse than the baseline by more than
``max(margin, k × spread)``, and, where the run has an interval, the interval does not reach the
baseline. ``spread`` is the series' run-to-run spread measured robustly: 1.4826 × the median absolute
difference of consecutive runs / √2 (the MAD estimate of σ for differences, which neither a step nor a
slow drift inflates), over the last 60 earlier runs. A series with fewer than 3 earlier runs never
alerts, and the check says so. ``benchmarks/history_alerts.py`` measures false alerts a year and
nights to detect a step and a drift for these defaults.

Change points over a series (the steps trends and the dashboard mark) come from ruptures' PELT
(least-squares cost, its C implementation) with a BIC-like penalty scaled by the same robust spread; they are computed
within one protocol segment only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sdeval.history.store import run_values, runs

DEFAULT_WINDOW = 7
DEFAULT_SPREAD_K = 5.0
MIN_EARLIER_RUNS = 3
SPREAD_WINDOW = 60
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class AlertRule:
    """``window`` runs for the baseline, ``k`` spreads (or the metric's ``margins`` entry) to alert."""

    window: int = DEFAULT_WINDOW
    k: float = DEFAULT_SPREAD_K
    margins: Mapping[str, float] = field(default_factory=dict)
    min_runs: int = MIN_EARLIER_RUNS
    spread_window: int = SPREAD_WINDOW


@dataclass(frozen=True)
class Check:
    """The rule applied to one value of one run."""

    metric: str
    value: float | None
    lo: float | None
    hi: float | None
    higher_is_better: bool | None
    earlier: int
    baseline: float | None = None
    spread: float | None = None
    threshold: float | None = None
    fired: bool = False
    reason: str = ""

    @property
    def message(self) -> str:
        return f"{self.metric}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "lo": self.lo, "hi": self.hi,
                "higher_is_better": self.higher_is_better, "earlier_runs": self.earlier, "baseline": self.baseline,
                "spread": self.spread, "threshold": self.threshold, "fired": self.fired, "reason": self.reason}


def robust_spread(values: Sequence[float]) -> float | None:
    """σ of one run's value from run to run, from consecutive differences (MAD); None under 2 values."""
    diffs = [abs(b - a) for a, b in zip(values, values[1:])]
    if not diffs:
        return None
    return _MAD_TO_SIGMA * statistics.median(diffs) / math.sqrt(2.0)


def check_value(metric: str, value: float | None, lo: float | None, hi: float | None,
                higher_is_better: bool | None, earlier: Sequence[float], rule: AlertRule = AlertRule()) -> Check:
    """The alert rule for one value given the earlier values of its series (oldest first)."""
    base = Check(metric, value, lo, hi, higher_is_better, len(earlier))
    if value is None or higher_is_better is None:
        return base
    if len(earlier) < rule.min_runs:
        return _with(base, reason=f"{len(earlier)} earlier run(s) in this series: no alert before {rule.min_runs}")
    window = list(earlier[-rule.window:])
    baseline = statistics.median(window)
    spread = robust_spread(list(earlier[-rule.spread_window:])) or 0.0
    margin = float(rule.margins.get(metric, 0.0))
    threshold = max(margin, rule.k * spread)
    worse_by = (baseline - value) if higher_is_better else (value - baseline)
    interval_clear = True
    if lo is not None and hi is not None:
        interval_clear = hi < baseline if higher_is_better else lo > baseline
    fired = worse_by > threshold and interval_clear
    direction = "lower" if higher_is_better else "higher"
    if fired:
        reason = (f"{value:.6g} is {worse_by:.3g} {direction} (worse) than the baseline {baseline:.6g} "
                  f"(median of {len(window)} runs); the limit is {threshold:.3g} "
                  f"(max(margin {margin:g}, {rule.k:g} x spread {spread:.3g}))")
        if lo is not None and hi is not None:
            reason += f"; its interval [{lo:.6g}, {hi:.6g}] does not reach the baseline"
    elif worse_by > threshold:
        reason = f"worse than the baseline by {worse_by:.3g}, but its interval [{lo:.6g}, {hi:.6g}] reaches it"
    else:
        reason = f"within {threshold:.3g} of the baseline {baseline:.6g}"
    return _with(base, baseline=baseline, spread=spread, threshold=threshold, fired=fired, reason=reason)


def _with(c: Check, **kw: Any) -> Check:
    from dataclasses import replace

    return replace(c, **kw)


def check_run(conn: Connection, run_id: int, rule: AlertRule = AlertRule()) -> list[Check]:
    """The rule for every watched value of run ``run_id`` against its label + protocol series."""
    run = conn.execute(sa.select(runs.c.id, runs.c.label, runs.c.protocol_hash, runs.c.started_at)
                       .where(runs.c.id == run_id)).one()
    values = conn.execute(sa.select(run_values).where(run_values.c.run_id == run_id,
                                                      run_values.c.watched.is_(True))
                          .order_by(run_values.c.name)).fetchall()
    depth = max(rule.window, rule.spread_window)
    earlier_ids = [r[0] for r in conn.execute(
        sa.select(runs.c.id).where(runs.c.label == run.label, runs.c.protocol_hash == run.protocol_hash,
                                   sa.or_(runs.c.started_at < run.started_at,
                                          sa.and_(runs.c.started_at == run.started_at, runs.c.id < run.id)))
        .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(depth))]
    order = {rid: i for i, rid in enumerate(reversed(earlier_ids))}
    history: dict[str, list[tuple[int, float]]] = {}
    if earlier_ids and values:
        for rid, name, v in conn.execute(
                sa.select(run_values.c.run_id, run_values.c.name, run_values.c.value)
                .where(run_values.c.run_id.in_(earlier_ids), run_values.c.name.in_([v.name for v in values]))):
            if v is not None:
                history.setdefault(name, []).append((order[rid], v))
    checks = []
    for v in values:
        earlier = [x for _, x in sorted(history.get(v.name, []))]
        checks.append(check_value(v.name, v.value, v.lo, v.hi, v.higher_is_better, earlier, rule))
    return checks


#: longer series are searched on means of consecutive blocks of runs (PELT's cost grows faster than n)
CHANGE_POINT_POINTS = 1500


def change_points(values: Sequence[float], *, min_size: int = 3, penalty_scale: float = 3.0) -> list[int]:
    """Indices where a new level starts (ruptures PELT, l2 cost); [] for a series too short or flat.

    Over :data:`CHANGE_POINT_POINTS` values, the search runs on the means of blocks of ``b`` consecutive
    runs (σ scaled by 1/√b) and a change is placed at its block's first run: within ``b`` runs
    (7 at 10,000 runs), invisible on a plot of that many.
    """
    n = len(values)
    if n < 2 * min_size:
        return []
    block = -(-n // CHANGE_POINT_POINTS)
    if block > 1:
        import numpy as np

        arr = np.asarray(values, dtype=np.float64)
        usable = (n // block) * block
        means = arr[:usable].reshape(-1, block).mean(axis=1).tolist()
        if usable < n:
            means.append(float(arr[usable:].mean()))
        return [b * block for b in change_points(means, min_size=min_size, penalty_scale=penalty_scale)
                if b * block < n]
    sigma = robust_spread(list(values))
    if not sigma:
        spread_all = statistics.pstdev(values)
        if spread_all == 0:
            return []
        sigma = spread_all / 10.0  # a series constant from run to run except for its steps
    import numpy as np
    import ruptures

    signal = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    # KernelCPD with a linear kernel is PELT on the least-squares cost, in ruptures' C code
    # (ruptures.Pelt(model="l2") finds the same change points in pure Python, ~10^4 x slower)
    algo = ruptures.KernelCPD(kernel="linear", min_size=min_size).fit(signal)
    bkps = algo.predict(pen=penalty_scale * sigma ** 2 * math.log(n))
    return [int(b) for b in bkps if 0 < b < n]
