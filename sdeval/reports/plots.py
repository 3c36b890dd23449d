"""Plots as inline SVG (matplotlib, Agg): deterministic bytes, no markup from the data.

``svg.fonttype = "path"`` draws text as glyph outlines (no <text>, no font needed in the viewer),
``svg.hashsalt`` fixes the ids, and the date is left out, so the same folder renders the same SVG.
Comments (matplotlib writes each label's text in one) are stripped: nothing from image metadata or
arm names stays in the markup as text.
"""

from __future__ import annotations

import io
import re
from typing import Any, Sequence

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)

#: colours readable on light and dark pages (plots get a transparent background)
ARM_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")
_FG = "#777777"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({
        "svg.fonttype": "path", "svg.hashsalt": "sdeval-report", "font.family": "DejaVu Sans",
        "font.size": 9, "axes.edgecolor": _FG, "axes.labelcolor": _FG, "xtick.color": _FG,
        "ytick.color": _FG, "text.color": _FG, "axes.spines.top": False, "axes.spines.right": False,
        "figure.dpi": 72, "path.simplify": True,
    })
    return plt


def label(text: Any, limit: int = 40) -> str:
    """A label for a plot: printable, short, no mathtext (``$`` would be parsed as TeX)."""
    s = "".join(c if c.isprintable() else " " for c in str(text)).replace("$", "\\$")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", transparent=True, metadata={"Date": None})
    plt.close(fig)
    text = _COMMENT.sub("", buf.getvalue())
    text = _PROLOG.sub("", text, count=1)
    # scale with the page: drop the fixed size, keep the viewBox
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', text, count=1)


def _numbers(values: Sequence[Any]) -> list[float]:
    import math

    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]


def histogram(values: Sequence[Any], title: str, thresholds: Sequence[tuple[str, float]] = (),
              bins: int = 30) -> str | None:
    """A histogram of one metric with its thresholds as vertical lines; None without numbers."""
    vals = _numbers(values)
    if not vals:
        return None
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.2), layout="constrained")
    counts, edges = np.histogram(np.asarray(vals, dtype=np.float64), bins=bins)
    ax.stairs(counts, edges, fill=True, color=ARM_COLOURS[0], alpha=0.85)
    for text, x in thresholds:
        ax.axvline(x, color="#d62728", linestyle="--", linewidth=1)
        ax.annotate(label(text, 24), (x, 1), xycoords=("data", "axes fraction"), fontsize=7,
                    color="#d62728", ha="left", va="top", xytext=(2, 0), textcoords="offset points")
    ax.set_title(label(title), fontsize=9, loc="left")
    ax.set_ylabel("images")
    return _svg(fig)


def distributions(by_arm: Sequence[tuple[str, Sequence[Any]]], title: str, bins: int = 30) -> str | None:
    """Overlaid step histograms of one metric, one colour per arm."""
    series = [(name, _numbers(v)) for name, v in by_arm]
    series = [(n, v) for n, v in series if v]
    if not series:
        return None
    plt = _plt()
    lo = min(min(v) for _, v in series)
    hi = max(max(v) for _, v in series)
    edges = bins if hi <= lo else [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    fig, ax = plt.subplots(figsize=(4.2, 2.2), layout="constrained")
    import numpy as np

    for i, (name, vals) in enumerate(series):
        counts, e = np.histogram(np.asarray(vals, dtype=np.float64), bins=edges)
        ax.stairs(counts, e, linewidth=1.5, color=ARM_COLOURS[i % len(ARM_COLOURS)],
                  label=f"{label(name, 24)} (n={len(vals)})")
    ax.set_title(label(title), fontsize=9, loc="left")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def forest(rows: Sequence[dict[str, Any]]) -> str | None:
    """Each metric's deltas with their intervals, one panel per metric (their scales differ), one line
    per arm; oriented so that right is better."""
    rows = [r for r in rows if isinstance(r.get("delta"), (int, float))]
    if not rows:
        return None
    plt = _plt()
    colours = {"improved": "#2ca02c", "regressed": "#d62728", "non_inferior": "#1f77b4"}
    metrics = list(dict.fromkeys(str(r.get("metric")) for r in rows))
    per = {m: [r for r in rows if str(r.get("metric")) == m] for m in metrics}
    heights = [len(v) + 0.8 for v in per.values()]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(6.4, 0.34 * sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False, layout="constrained")
    for ax, m in zip(axes[:, 0], metrics):
        group = per[m]
        for i, r in enumerate(group):
            y = len(group) - 1 - i
            c = colours.get(str(r.get("decision")), "#888888")
            lo, hi = r.get("ci_low"), r.get("ci_high")
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                ax.plot([lo, hi], [y, y], color=c, linewidth=2.2, solid_capstyle="butt")
            ax.plot([r["delta"]], [y], "o", color=c, markersize=5)
        ax.axvline(0, color=_FG, linewidth=0.8)
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.set_yticks(range(len(group)))
        ax.set_yticklabels([label(r.get("arm"), 28) for r in reversed(group)])
        ax.set_title(label(m), fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("delta vs baseline (oriented: right = better)")
    return _svg(fig)
