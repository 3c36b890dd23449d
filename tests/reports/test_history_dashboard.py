"""The history dashboard: self-contained, no script, untrusted labels/tags/metric names escaped."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "history"))

from hist_data import summary  # noqa: E402
from sdeval import api  # noqa: E402
from sdeval.history.config import HistorySettings  # noqa: E402
from sdeval.history.service import record_result  # noqa: E402
from sdeval.reports.dashboard import plot  # noqa: E402

HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script>'


def test_dashboard_escapes_everything_and_marks_breaks_steps_alerts(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    settings = HistorySettings(label=f"nightly {HOSTILE}", tags={"note": HOSTILE})
    values = [50.0, 50.5, 49.8, 50.2, 49.9, 50.3, 50.1, 49.7, 40.0, 40.2, 39.9, 40.1, 40.3, 39.8]
    for night, v in enumerate(values):
        s = summary(v, night)
        s["history_values"] = [{"name": f"x{HOSTILE}", "value": float(night), "higher_is_better": True}]
        record_result(db, s, settings=settings)
    record_result(db, summary(30.0, 30, version="2"), settings=settings)  # a protocol break
    out = api.history_report(db, tmp_path / "dash.html")
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert 'class="al"' in html and 'class="brk"' in html and 'class="step"' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # loads nothing
    # the SVG attributes are numbers (or fixed class names) only
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        body = re.sub(r"<title>.*?</title>", "", svg, flags=re.S)
        for attr, value in re.findall(r'\s([a-z-]+)="([^"]*)"', body):
            if attr not in ("class", "xmlns", "role", "aria-label", "viewBox", "points"):
                assert re.fullmatch(r"-?[0-9.]+", value), (attr, value)


def test_plot_geometry_splits_segments_at_breaks() -> None:
    pts = [{"value": float(v), "lo": None, "hi": None, "break": i == 3, "change_point": i == 2, "alert": i == 4}
           for i, v in enumerate([1, 2, 3, 10, 11])]
    g = plot(pts)
    assert len(g["lines"]) == 2 and len(g["breaks"]) == 1 and len(g["steps"]) == 1 and len(g["alerts"]) == 1
    assert plot([{"value": None}])["empty"]
