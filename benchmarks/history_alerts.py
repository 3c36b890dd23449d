"""How the history's regression alert behaves on a simulated nightly series.

    python benchmarks/history_alerts.py                # 200 simulated years of 365 nights
    python benchmarks/history_alerts.py --years 20     # quicker

Each night's value is one run's watched number (say the mean CLIP score of a nightly batch), in
units of its run-to-run σ: heavy-tailed noise (Student t, 4 degrees of freedom, scaled to σ = 1)
with AR(1) correlation 0.3 between nights (cache, driver and load states persist), of which a part
(σ 0.8) is the batch's sampling noise that the run's own 95 % interval covers. The alert rule is the
one recording uses (``sdeval.history.alerts.check_value``: median of the last 7 runs, max(margin 0,
k × MAD spread), interval must not reach the baseline, no alert under 3 earlier runs).

Reported, per k: false alerts a year on pure noise (goal ≤ 2); for a step of 3σ..6σ down at night
180, the fraction caught on its first night (goal: a 6σ step, ≥ 95 % of years)
and the median nights to the first alert; for slow drifts down from night 180 (0.05σ and 0.25σ a
night), nights to the first alert and nights until ruptures' change-point detection over the series
(what the trend and dashboard mark) shows a step down after the drift started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import record  # noqa: E402
from sdeval.history.alerts import DEFAULT_SPREAD_K, AlertRule, change_points, check_value  # noqa: E402

NIGHTS = 365
CHANGE_AT = 180
SAMPLING_SIGMA = 0.8
Z = 1.96


def noise(rng: np.random.Generator, n: int = NIGHTS, rho: float = 0.3, df: int = 4) -> np.ndarray:
    e = rng.standard_t(df, n) / np.sqrt(df / (df - 2))  # unit variance
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = rho * x[i - 1] + np.sqrt(1 - rho ** 2) * e[i]
    return x


def alert_nights(series: np.ndarray, rule: AlertRule, start: int = 0) -> list[int]:
    """Nights (from ``start``) on which the rule fires, higher is better."""
    fired = []
    vals = list(map(float, series))
    for t in range(start, len(vals)):
        v = vals[t]
        c = check_value("m", v, v - Z * SAMPLING_SIGMA, v + Z * SAMPLING_SIGMA, True, vals[max(0, t - max(rule.window, rule.spread_window)):t], rule)
        if c.fired:
            fired.append(t)
    return fired


def cp_detect_night(series: np.ndarray, start: int, horizon: int) -> int | None:
    """First night t >= start at which change points over series[:t+1] include one after ``start - 7``
    with a lower level after it."""
    for t in range(start, min(len(series), start + horizon)):
        x = list(map(float, series[: t + 1]))
        for b in change_points(x):
            if b >= start - 7 and np.mean(x[b:]) < np.mean(x[max(0, b - 30):b]):
                return t
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", type=int, default=200, help="simulated years (365 nights each)")
    ap.add_argument("--k", type=float, nargs="*", default=[4.0, 4.5, DEFAULT_SPREAD_K, 6.0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--df", type=int, default=4, help="Student t degrees of freedom of the noise (1000: ~Gaussian)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    years = [noise(rng, df=args.df) for _ in range(args.years)]
    steps = (3.0, 4.0, 5.0, 6.0)
    drifts = (0.05, 0.25)
    print(f"{args.years} simulated years x {NIGHTS} nights; noise t{args.df}, AR(1) 0.3, sigma 1; change at night {CHANGE_AT}")
    print(f"{'k':>4} {'false/yr':>9} " + " ".join(f"{'step ' + format(s, 'g') + 's: 1st/med':>19}" for s in steps)
          + " " + " ".join(f"{'drift ' + format(d, 'g') + 's/n':>14}" for d in drifts))
    for k in args.k:
        rule = AlertRule(k=k)
        false = sum(len(alert_nights(y, rule)) for y in years) / args.years
        cells = []
        first_night = {}
        for s in steps:
            delays = []
            for y in years:
                x = y.copy()
                x[CHANGE_AT:] -= s
                hits = [t for t in alert_nights(x, rule, start=CHANGE_AT)]
                delays.append(hits[0] - CHANGE_AT + 1 if hits else None)
            caught = [d for d in delays if d is not None]
            first_night[s] = sum(1 for d in delays if d == 1) / len(delays)
            med = statistics.median(caught) if caught else float("nan")
            cells.append(f"{first_night[s]:>10.1%}/{med:>7.0f}")
        drift_cells = []
        for d in drifts:
            delays = []
            for y in years:
                x = y.copy()
                x[CHANGE_AT:] -= d * np.arange(1, NIGHTS - CHANGE_AT + 1)
                hits = alert_nights(x, rule, start=CHANGE_AT)
                delays.append(hits[0] - CHANGE_AT + 1 if hits else None)
            caught = [v for v in delays if v is not None]
            drift_cells.append(f"{(statistics.median(caught) if caught else float('nan')):>8.0f} ({len(caught) / len(delays):.0%})")
        print(f"{k:>4g} {false:>9.2f} " + " ".join(f"{c:>19}" for c in cells) + " " + " ".join(f"{c:>14}" for c in drift_cells))
        if k == DEFAULT_SPREAD_K:
            record("false alerts per year (default k)", false, "<= 2")
            record("6-sigma step caught on its first night (fraction)", first_night[6.0], ">= 0.95")
            record("5-sigma step caught on its first night (fraction)", first_night[5.0])
    print("cells: step = fraction caught on its first night / median nights to the first alert; "
          "drift = median nights to the first alert (fraction of years caught before night 365)")
    # change points (trend and dashboard marks) on drifts: nights until a step down is marked
    sub = years[: max(1, min(len(years), 20))]
    for d in drifts:
        found = []
        for y in sub:
            x = y.copy()
            x[CHANGE_AT:] -= d * np.arange(1, NIGHTS - CHANGE_AT + 1)
            t = cp_detect_night(x, CHANGE_AT, NIGHTS - CHANGE_AT)
            found.append(None if t is None else t - CHANGE_AT + 1)
        caught = [f for f in found if f is not None]
        print(f"change points, drift {d:g} sigma/night: marked after a median of "
              f"{statistics.median(caught) if caught else float('nan'):.0f} nights ({len(caught)}/{len(found)} years)")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
