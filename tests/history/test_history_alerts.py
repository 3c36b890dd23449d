"""The alert rule, its notes, protocol segments and change points."""

from __future__ import annotations

import numpy as np
import pytest

from hist_data import summary
from sdeval.history.alerts import AlertRule, change_points, check_value, robust_spread
from sdeval.history.config import HistorySettings
from sdeval.history.queries import list_alerts
from sdeval.history.service import record_result
from sdeval.history.store import open_store
from sdeval.history.trend import sparkline, trend

NOISE = [50.0, 50.8, 49.6, 50.3, 49.9, 50.5, 49.7, 50.1]


def test_fewer_than_three_earlier_runs_never_alerts_and_says_so() -> None:
    for earlier in ([], [50.0], [50.0, 50.1]):
        c = check_value("pixel_std", 1.0, None, None, True, earlier)
        assert not c.fired and "no alert before 3" in c.reason and c.earlier == len(earlier)
    assert check_value("pixel_std", 1.0, None, None, True, [50.0, 50.1, 49.9]).fired


def test_worse_than_baseline_by_more_than_k_spreads() -> None:
    spread = robust_spread(NOISE)
    assert spread is not None and 0.2 < spread < 1.0
    baseline = float(np.median(NOISE[-7:]))
    rule = AlertRule(k=4.0)
    assert not check_value("m", baseline - 3.5 * spread, None, None, True, NOISE, rule).fired
    fired = check_value("m", baseline - 4.5 * spread, None, None, True, NOISE, rule)
    assert fired.fired and fired.baseline == baseline and "worse" in fired.reason
    # better is never an alert; lower-is-better flips the direction
    assert not check_value("m", baseline + 50, None, None, True, NOISE, rule).fired
    assert check_value("m", baseline + 50, None, None, False, NOISE, rule).fired
    # unknown direction: tracked, never alerted on
    assert not check_value("m", -1e9, None, None, None, NOISE, rule).fired


def test_an_interval_that_reaches_the_baseline_holds_the_alert_back() -> None:
    baseline = float(np.median(NOISE[-7:]))
    low = baseline - 10
    assert not check_value("m", low, low - 1, baseline + 0.1, True, NOISE).fired
    c = check_value("m", low, low - 1, baseline - 0.1, True, NOISE)
    assert c.fired and "does not reach the baseline" in c.reason


def test_the_policy_margin_wins_over_a_small_spread() -> None:
    flat = [1.0, 1.0, 1.0, 1.0, 1.0]  # pass rate 100 % every night: spread 0
    assert check_value("pass_rate", 0.97, None, None, True, flat).fired
    rule = AlertRule(margins={"pass_rate": 0.05})
    c = check_value("pass_rate", 0.97, None, None, True, flat, rule)
    assert not c.fired and c.threshold == 0.05
    assert check_value("pass_rate", 0.9, None, None, True, flat, rule).fired


def test_spread_is_robust_to_a_step_and_a_drift() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, 60)
    stepped = noise + np.r_[np.zeros(30), np.full(30, 10.0)]
    drifting = noise + np.linspace(0, 6, 60)
    base = robust_spread(list(noise))
    assert base is not None
    assert robust_spread(list(stepped)) == pytest.approx(base, rel=0.25)
    assert robust_spread(list(drifting)) == pytest.approx(base, rel=0.25)


def test_change_points_find_a_step_and_none_in_noise() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(50, 1, 120)
    assert change_points(list(noise)) == []
    stepped = noise.copy()
    stepped[70:] -= 4
    cps = change_points(list(stepped))
    assert len(cps) == 1 and abs(cps[0] - 70) <= 2
    assert change_points([1.0, 2.0]) == [] and change_points([3.0] * 20) == []


def test_runs_are_checked_within_label_and_protocol(store_url: str) -> None:
    s = HistorySettings(label="nightly")
    for night, v in enumerate(NOISE):
        rec = record_result(store_url, summary(v, night), settings=s)
        assert not rec.alerts
        assert ("no alerts until 3" in " ".join(rec.notes)) == (night < 3)
    # another label's runs are another series: a very different value there is no alert here
    other = record_result(store_url, summary(5.0, 20), settings=HistorySettings(label="other"))
    assert not other.alerts
    # a protocol change (another metric version) starts a new segment: no comparison, a note and a break
    changed = record_result(store_url, summary(5.0, 21, version="2"), settings=s)
    assert not changed.alerts and any("protocol changed" in n for n in changed.notes)
    # back on the first protocol, a real drop alerts, and the alert is stored
    dropped = record_result(store_url, summary(40.0, 22), settings=s)
    assert [a.metric for a in dropped.alerts] == ["pixel_std"]
    with open_store(store_url) as store:
        t = trend(store, "pixel_std", label="nightly")
        flags = [(p["break"], p["alert"]) for p in t.points]
        assert flags[-2] == (True, False) and flags[-1] == (True, True)
        assert "┊" in sparkline(t.as_dict()["points"])
        stored = list_alerts(store)
        assert [(a["label"], a["metric"]) for a in stored] == [("nightly", "pixel_std")]
        assert stored[0]["baseline"] == pytest.approx(float(np.median(NOISE[-7:])))
