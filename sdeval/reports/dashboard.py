"""The history dashboard (``sdeval history report --out dashboard.html``): one self-contained HTML file.

Per label, a small plot of every watched value over its runs: one line per protocol segment (a
protocol change is a gap with a dashed rule), change points as dotted rules, alerts as red rings,
intervals as a band; pass rate, NSFW rate, throughput and cost per accepted image come first. The
page needs no JavaScript and loads nothing. The plots are SVG written here from numbers only; every
text (labels, tags, metric names come from users and image metadata) goes through Jinja2 with
autoescape turned on explicitly (``select_autoescape`` would not escape a ``.j2`` template).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from sdeval.core.io import atomic_write_text, safe_text

_W, _H, _PAD = 320, 110, 6


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The geometry of one trend plot: polylines per segment, band, markers (numbers only)."""
    vals = [p["value"] for p in points if _finite(p["value"])]
    vals += [p[k] for p in points for k in ("lo", "hi") if _finite(p.get(k))]
    if not vals:
        return {"empty": True, "width": _W, "height": _H}
    lo, hi = min(vals), max(vals)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    n = len(points)

    def x(i: int) -> float:
        return round(_PAD + (i / (n - 1) if n > 1 else 0.5) * (_W - 2 * _PAD), 2)

    def y(v: float) -> float:
        return round(_H - _PAD - (v - lo) / (hi - lo) * (_H - 2 * _PAD), 2)

    lines: list[str] = []
    band: list[str] = []
    current: list[str] = []
    for i, p in enumerate(points):
        if p.get("break") and current:
            lines.append(" ".join(current))
            current = []
        if _finite(p["value"]):
            current.append(f"{x(i)},{y(p['value'])}")
        if _finite(p.get("lo")) and _finite(p.get("hi")):
            band.append((x(i), y(p["lo"]), y(p["hi"])))  # type: ignore[arg-type]
    if current:
        lines.append(" ".join(current))
    return {
        "empty": False, "width": _W, "height": _H, "lines": lines,
        "bands": [{"x": bx, "y": min(a, b), "h": round(abs(a - b), 2)} for bx, a, b in band],  # type: ignore[misc]
        "breaks": [x(i) for i, p in enumerate(points) if p.get("break")],
        "steps": [x(i) for i, p in enumerate(points) if p.get("change_point")],
        "alerts": [{"x": x(i), "y": y(p["value"])} for i, p in enumerate(points) if p.get("alert") and _finite(p["value"])],
        "last": {"x": x(n - 1), "y": y(points[-1]["value"])} if _finite(points[-1]["value"]) else None,
        "min": min(v for v in vals), "max": max(v for v in vals),
    }


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if _finite(v) else "–"


def render_dashboard(data: Mapping[str, Any]) -> str:
    """The HTML page for :func:`sdeval.history.trend.dashboard_data`'s ``data``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("sdeval.reports", "templates"),
                             autoescape=True,  # explicitly: the template's name ends in .j2
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    env.filters["safe_text"] = lambda s: safe_text(str(s))
    labels = []
    for entry in data.get("labels") or ():
        trends = []
        for t in entry["trends"]:
            pts = t["points"]
            last = pts[-1] if pts else {}
            trends.append({"metric": t["metric"], "n": len(pts), "last": last.get("value"),
                           "alerts": sum(1 for p in pts if p.get("alert")),
                           "segments": len({p["segment"] for p in pts}),
                           "steps": sum(1 for p in pts if p.get("change_point")), "plot": plot(pts)})
        labels.append({**entry, "trends": trends})
    template = env.get_template("dashboard.html.j2")
    return template.render(store=data.get("store"), labels=labels,
                           generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_dashboard(data: Mapping[str, Any], out: Path) -> Path:
    """Render and write atomically; returns the path."""
    atomic_write_text(out, render_dashboard(data))
    return out
