"""A metric's trend over runs: points with protocol segments (a change is a break), the change points
inside each segment and the alerts that fired; a terminal sparkline; the data of the dashboard."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from sdeval.core.errors import UsageError
from sdeval.history.alerts import change_points
from sdeval.history.queries import SeriesPoint, labels, metric_names, series
from sdeval.history.store import Store, alerts, runs

_BARS = "▁▂▃▄▅▆▇█"
#: values shown first on the dashboard (the issue's list), then the rest by name
FIRST = ("pass_rate", "nsfw_rate", "error_rate", "images_per_second", "regen.acceptance_rate",
         "regen.cost_per_accepted", "regen.seconds_per_accepted")


@dataclass(frozen=True)
class Trend:
    metric: str
    label: str
    points: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "label": self.label, "points": [dict(p) for p in self.points]}


def _segments(points: Sequence[SeriesPoint]) -> list[int]:
    seg, out, prev = -1, [], None
    for p in points:
        if p.protocol_hash != prev:
            seg += 1
            prev = p.protocol_hash
        out.append(seg)
    return out


def build_trend(metric: str, label: str, pts: Sequence[SeriesPoint], alerted: set[int]) -> Trend:
    segs = _segments(pts)
    cps: set[int] = set()
    start = 0
    while start < len(pts):
        end = start
        while end < len(pts) and segs[end] == segs[start]:
            end += 1
        vals = [p.value for p in pts[start:end]]
        if all(v is not None for v in vals):
            cps.update(start + i for i in change_points([float(v) for v in vals if v is not None]))
        start = end
    points = []
    for i, p in enumerate(pts):
        points.append({"run": p.run_id, "uid": p.uid, "started_at": p.started_at, "value": p.value, "lo": p.lo,
                       "hi": p.hi, "protocol_hash": p.protocol_hash, "segment": segs[i],
                       "break": i > 0 and segs[i] != segs[i - 1], "change_point": i in cps,
                       "alert": p.run_id in alerted, "git_commit": p.git_commit})
    return Trend(metric, label, tuple(points))


def pick_label(store: Store, label: str | None) -> str:
    """``label``, or the only label of the history (several: the caller must say which)."""
    known = labels(store)
    if label is not None:
        if label not in known:
            raise UsageError(f"no runs labelled {label!r} (labels: {', '.join(known) or 'none'})")
        return label
    if len(known) == 1:
        return known[0]
    if not known:
        raise UsageError("the history has no runs yet")
    raise UsageError(f"several series in this history: give --label ({', '.join(known)})")


def trend(store: Store, metric: str, *, label: str | None = None, last: int | None = None) -> Trend:
    """``metric``'s points for one label, oldest first (the newest ``last`` runs)."""
    label = pick_label(store, label)
    with store.read() as conn:
        pts = series(conn, metric, label=label, last=last)
        if not pts:
            names = metric_names(store, label=label)
            close = [n for n in names if metric.split(".")[0] in n][:8]
            raise UsageError(f"no value named {metric!r} in the runs labelled {label!r}"
                             + (f" (similar: {', '.join(close)})" if close else f" ({len(names)} names: "
                                                                                  "see 'sdeval history show latest')"))
        alerted = _alerted_runs(conn, metric, label)
    return build_trend(metric, label, pts, alerted)


def _alerted_runs(conn: Any, metric: str, label: str) -> set[int]:
    q = (sa.select(alerts.c.run_id).distinct().join(runs, runs.c.id == alerts.c.run_id)
         .where(alerts.c.metric == metric, runs.c.label == label))
    return {r[0] for r in conn.execute(q)}


def sparkline(points: Sequence[dict[str, Any]], width: int = 60) -> str:
    """Block characters scaled within the points shown; ``┊`` at a protocol break, ``·`` for no value.
    More points than ``width``: the newest ``width``."""
    pts = list(points)[-width:]
    vals = [p["value"] for p in pts if p["value"] is not None and math.isfinite(p["value"])]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    out = []
    for i, p in enumerate(pts):
        if i and p.get("break"):
            out.append("┊")
        v = p["value"]
        if v is None or not math.isfinite(v):
            out.append("·")
        elif hi == lo:
            out.append(_BARS[len(_BARS) // 2])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - lo) / (hi - lo) * len(_BARS)))])
    return "".join(out)


def dashboard_data(store: Store, *, last: int | None = None) -> dict[str, Any]:
    """Per label: every watched value's trend plus the dashboard's first values, and the label's alerts."""
    from sdeval.history.queries import list_alerts, list_runs

    out = []
    for label in labels(store):
        names = set(metric_names(store, label=label, watched_only=True))
        names.update(n for n in metric_names(store, label=label) if n in FIRST)
        ordered = [n for n in FIRST if n in names] + sorted(n for n in names if n not in FIRST)
        trends = []
        with store.read() as conn:
            for name in ordered:
                pts = series(conn, name, label=label, last=last)
                if pts:
                    trends.append(build_trend(name, label, pts, _alerted_runs(conn, name, label)).as_dict())
        listed = list_runs(store, label=label, last=last)
        out.append({"label": label, "runs": len(listed), "latest": listed[-1] if listed else None,
                    "trends": trends, "alerts": list_alerts(store, label=label, last=10)})
    return {"store": store.name, "labels": out}
